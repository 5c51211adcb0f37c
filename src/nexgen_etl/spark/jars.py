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
# the project's own jars in jars_dir; every other jar there is S3A's
PROJECT_JARS = (LOCAL_FS_JAR, KERNEL_JAR)


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


def ships_s3a_jars(settings: Settings) -> bool:
    """Whether the job gets the S3A jars of jars_dir (hadoop-aws and its AWS SDK): `Settings.ship_s3a_jars`
    (NEXGEN_SHIP_S3A_JARS) when it is true or false; auto, on every master but YARN.

    They are built for the Hadoop inside the installed PySpark, which has no S3A of its own: a local driver, a
    standalone cluster of this PySpark, and Kubernetes (the driver on the Airflow worker is this PySpark, and Apache's
    Spark images have no hadoop-aws either) need them. A YARN cluster is a Hadoop installation whose Spark brings its
    own S3A (EMR's spark-defaults put its hadoop-aws on the class path), and Hadoop's S3A documentation warns against
    mixing a hadoop-aws of one release with the hadoop-common of another; submitting to YARN with pip's PySpark (which
    runs its own Hadoop in the containers) is the case for `true`."""
    if settings.ship_s3a_jars is not None:
        return settings.ship_s3a_jars
    return not settings.spark_master.startswith("yarn")


def resolved_jars(settings: Settings) -> list[str]:
    """The jars in jars_dir the job gets: the local file system jar and the window kernel's always, and the rest of
    the folder (hadoop-aws and what Maven resolved with it: the AWS SDK bundle, wildfly-openssl; jars/pom.xml) when
    ships_s3a_jars."""
    jars_dir = Path(settings.jars_dir)
    jars = sorted(str(p) for p in jars_dir.glob("*.jar")) if jars_dir.is_dir() else []
    required = [(LOCAL_FS_JAR, LOCAL_FS_JAR, ""), (KERNEL_JAR, KERNEL_JAR, "")]
    if ships_s3a_jars(settings):
        required.insert(0, ("hadoop-aws-", "hadoop-aws jar",
                            " (or NEXGEN_SHIP_S3A_JARS=false where the Spark that runs the job has its own S3A)"))
    else:
        jars = [j for j in jars if Path(j).name in PROJECT_JARS]
    for prefix, what, hint in required:
        if not any(Path(j).name.startswith(prefix) for j in jars):
            raise FileNotFoundError(f"no {what} in {jars_dir}: run `make jars` (scripts/resolve_jars.sh) first{hint}")
    return jars
