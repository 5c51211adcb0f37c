"""A local master's driver JVM: its class path (the jars, the unsigned copies, the local file system first), the
local file system's conf and the JIT directives for large batches. Nothing here applies to a cluster's driver.
Why each exists, and what it bought: docs/performance.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from nexgen_etl.core.settings import Settings
from nexgen_etl.spark.jars import LOCAL_FS_JAR, resolved_jars

LOCAL_FS_CLASS = "io.nexgen.fs.NioLocalFileSystem"
UNSIGNED_DIR = "unsigned"
COMPILER_DIRECTIVES = Path(__file__).parent / "jvm" / "compiler-directives.json"


def unsigned_jars(jars_dir: Path) -> list[str]:
    """resolve_jars.sh's copies of PySpark's signed jars (Janino's) without their signatures. On a driver's class
    path they come before PySpark's own, so that the class archive (nexgen_etl.spark.local.class_archive) can hold
    their classes: JDK 17 archives no class from a signed jar."""
    folder = Path(jars_dir) / UNSIGNED_DIR
    return sorted(str(p) for p in folder.glob("*.jar")) if folder.is_dir() else []


def local_class_path(settings: Settings) -> list[Path]:
    """A local driver's class path: resolved_jars and unsigned_jars, the local file system's first.

    A local master's executor is the driver JVM: jars on its class path need no --jars, which in local mode has
    the executor fetch each jar from the driver's file server into a temporary folder on its first task (the AWS
    SDK bundle alone is hundreds of MB), in every run."""
    paths = [Path(j) for j in resolved_jars(settings) + unsigned_jars(settings.jars_dir)]
    return sorted(paths, key=lambda p: (p.name != LOCAL_FS_JAR, p.name))


def local_conf(class_path: list[Path]) -> dict[str, str]:
    """For local masters (where the driver runs the tasks): the jars on the driver's class path, and file:// paths
    through NioLocalFileSystem, which sets permissions through java.nio instead of starting the chmod program for
    every file and folder written (PySpark ships no native Hadoop)."""
    return {"spark.hadoop.fs.file.impl": LOCAL_FS_CLASS,
            "spark.driver.extraClassPath": os.pathsep.join(str(p) for p in class_path)}


def compiler_directives_options() -> list[str]:
    """JIT directives for a large batch's local driver: the optimising compiler (C2) kept off code that only plans
    (Janino compiling Spark's generated classes, ANTLR, Java serialisation, formatting), so that its thread does
    not compete with the task threads for the cores; C1 still compiles that code. The file is in this package; a
    remote driver may not have it."""
    if not COMPILER_DIRECTIVES.exists():
        return []
    return ["-XX:+UnlockDiagnosticVMOptions", f"-XX:CompilerDirectivesFile={COMPILER_DIRECTIVES}"]
