"""A class data sharing archive for the driver JVM of local runs: its name, and the JVM options that use it.
(`python -m nexgen_etl.dev.class_archive`, run by setup, makes it.)

A Spark driver loads some twenty thousand classes (Spark, Hadoop, Parquet, Jackson, Scala) from about 250 jars, and
parses and verifies each of them at every start. JDK 17 can keep them in an archive file instead, mapped into
memory at start-up (`-XX:SharedArchiveFile`; JEP 350). The archive is made by running the transform once on
generated sample data with `-XX:ArchiveClassesAtExit`. It only fits the JVM and the class path it was made with,
so its name is a digest of both (the Java release, PySpark's jars folder, the jars on the driver's class path); a JVM
that finds it does not fit after all prints one warning and starts without it.

For local masters only: a cluster's driver and executors run elsewhere, with their own class path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from nexgen_etl.core.settings import Settings
from nexgen_etl.spark.jars import pyspark_home

log = logging.getLogger("nexgen_etl")

ARCHIVE_DIR = "cds"
# the version of the training (_train): a new one names the archive anew, so that setup builds it again
TRAINING = "2: output on S3"


def java_home() -> Path | None:
    """The Java that spark-class starts: $JAVA_HOME's, else the first java on PATH."""
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"]).resolve()
    java = shutil.which("java")
    return Path(java).resolve().parents[1] if java else None


def fingerprint(class_path: list[Path]) -> str:
    """What the archive depends on: the JVM build, PySpark's jars (its path: the class path is absolute) and the
    jars on the driver's class path, in order (the JVM checks each jar's size and modification time)."""
    home = java_home()
    release = home / "release" if home else None
    parts = [TRAINING, str(home), release.read_text() if release and release.exists() else "", pyspark_home()]
    for jar in class_path:
        st = jar.stat()
        parts += [str(jar), str(jar.resolve()), str(st.st_size), str(st.st_mtime_ns)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def archive_path(jars_dir: Path, class_path: list[Path]) -> Path:
    return Path(jars_dir) / ARCHIVE_DIR / f"driver-{fingerprint(class_path)}.jsa"


# JVM options from the environment that spark-class passes on: with a flight recording, this JDK 17 build crashed
# at start on a dynamic archive, in KlassFactory::check_shared_class_file_load_hook (the class file load hook that
# Java agents use too)
ENVIRONMENT_OPTIONS = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "SPARK_SUBMIT_OPTS")
UNSAFE_WITH_ARCHIVE = ("-agent", "-javaagent", "FlightRecord")


def archive_options(settings: Settings, class_path: list[Path], env: dict[str, str] | None = None) -> list[str]:
    """-XX:SharedArchiveFile for a local driver when the archive of this JVM and class path exists. Not when the
    settings bring their own driver class path (the archive's would not be a prefix of it) or JVM options (they
    replace the product's), nor with an agent or a flight recording in the environment's JVM options."""
    env = os.environ if env is None else env
    if {"spark.driver.extraClassPath", "spark.driver.extraJavaOptions"} & settings.spark_conf.keys():
        return []
    if any(u in env.get(name, "") for name in ENVIRONMENT_OPTIONS for u in UNSAFE_WITH_ARCHIVE):
        return []
    try:
        path = archive_path(settings.jars_dir, class_path)
    except OSError:
        return []
    return [f"-XX:SharedArchiveFile={path}"] if path.exists() else []


