"""The installed Spark and the project's jars: where spark-submit and PySpark are, and the jars every master needs.

Imports no PySpark (the CLI and the Airflow worker use it to build the submit spec).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from nexgen_etl.core.settings import Settings

# built by scripts/resolve_jars.sh from jars/src: Hadoop's local file system without a chmod process per file
# (nexgen_etl.spark.local.jvm puts it first on a local driver's class path)
LOCAL_FS_JAR = "nexgen-localfs.jar"
# built by scripts/resolve_jars.sh from jars/scala: the feature window kernel (features.KERNEL_CLASS)
KERNEL_JAR = "nexgen-spark.jar"


def spark_submit_binary() -> str:
    """The spark-submit of the installed PySpark (beside this interpreter), else whatever PATH has."""
    beside = Path(sys.executable).parent / "spark-submit"
    return str(beside) if beside.exists() else "spark-submit"


def pyspark_home() -> str:
    """The installed pyspark package's folder (SPARK_HOME of pip's PySpark), found without importing it."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("pyspark is not installed in this interpreter")
    return str(Path(spec.origin).parent)


def resolved_jars(settings: Settings) -> list[str]:
    """The jars in jars_dir: hadoop-aws and its AWS SDK, the local file system jar and the window kernel's."""
    jars_dir = Path(settings.jars_dir)
    jars = sorted(str(p) for p in jars_dir.glob("*.jar")) if jars_dir.is_dir() else []
    for prefix, what in (("hadoop-aws-", "hadoop-aws jar"), (LOCAL_FS_JAR, LOCAL_FS_JAR), (KERNEL_JAR, KERNEL_JAR)):
        if not any(Path(j).name.startswith(prefix) for j in jars):
            raise FileNotFoundError(f"no {what} in {jars_dir}: run `make jars` (scripts/resolve_jars.sh) first")
    return jars
