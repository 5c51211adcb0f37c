"""How the transform is submitted: application, --conf (S3A endpoint, region, path style), jars, environment.

One description, used by the CLI (subprocess) and by the DAG (SparkSubmitOperator), so both run the same job.
Credentials are never part of it: they are added to the process environment at run time only.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nexgen_etl.core.settings import PROJECT_ROOT, REDACTION_REGEX, Settings
from nexgen_etl.spark.jars import LOCAL_FS_JAR, pyspark_home, resolved_jars
from nexgen_etl.spark.local.class_archive import archive_options
from nexgen_etl.spark.local.jvm import compiler_directives_options, local_class_path, local_conf

ENV_CREDENTIALS_PROVIDER = "com.amazonaws.auth.EnvironmentVariableCredentialsProvider"
# the AWS SDK's own chain: environment, system properties, web identity (IRSA), profile, container and instance role
DEFAULT_CHAIN_PROVIDER = "com.amazonaws.auth.DefaultAWSCredentialsProviderChain"


def credentials_provider(master: str, env: dict[str, str] | None = None) -> str:
    """S3A's credentials provider: NEXGEN_S3A_CREDENTIALS_PROVIDER when set; else the process environment where the
    keys are handed to spark-submit's environment (local and standalone masters), and the SDK's default chain where
    they are not (YARN, Kubernetes: the cluster's identity, e.g. an instance profile or IRSA)."""
    env = os.environ if env is None else env
    if env.get("NEXGEN_S3A_CREDENTIALS_PROVIDER"):
        return env["NEXGEN_S3A_CREDENTIALS_PROVIDER"]
    return ENV_CREDENTIALS_PROVIDER if master.startswith(("local", "spark://")) else DEFAULT_CHAIN_PROVIDER


def transform_script() -> str:
    script = PROJECT_ROOT / "include" / "scripts" / "transform.py"
    if script.exists():
        return str(script)
    return str(Path(__file__).with_name("job.py"))


def s3a_conf(settings: Settings) -> dict[str, str]:
    s3 = settings.s3
    conf = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.aws.credentials.provider": credentials_provider(settings.spark_master),
        "spark.hadoop.fs.s3a.path.style.access": str(s3.path_style).lower(),
        "spark.hadoop.fs.s3a.endpoint.region": s3.region,
        # Two retry layers multiply: the AWS SDK retries each request (attempts.maximum, its own back-off of up
        # to 20 s on throttling), then S3A retries the call (retry.* for errors, retry.throttle.* for 503
        # SlowDown, exponential from the interval). Hadoop 3.3.4's defaults (20 SDK attempts x 20 throttle
        # retries) wait for many minutes on a persistent 503; these ride out a burst of throttling in seconds
        # and fail a persistent one within about a minute (docs/guarantees.md, tests/integration/test_s3_faults.py).
        "spark.hadoop.fs.s3a.attempts.maximum": "3",
        "spark.hadoop.fs.s3a.retry.limit": "7",
        "spark.hadoop.fs.s3a.retry.interval": "500ms",
        "spark.hadoop.fs.s3a.retry.throttle.limit": "6",
        "spark.hadoop.fs.s3a.retry.throttle.interval": "500ms",
        "spark.hadoop.fs.s3a.connection.timeout": "60000",
    }
    if s3.endpoint_url:
        conf["spark.hadoop.fs.s3a.endpoint"] = s3.endpoint_url
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(s3.endpoint_url.startswith("https")).lower()
    return conf


def event_log_conf(env: dict[str, str] | None = None) -> dict[str, str]:
    """The Spark event log (what the history server and the UI's pages are rebuilt from) when
    NEXGEN_SPARK_EVENT_LOG_DIR names a local folder or a Hadoop URI; off by default."""
    where = (os.environ if env is None else env).get("NEXGEN_SPARK_EVENT_LOG_DIR")
    if not where:
        return {}
    if "://" not in where:
        Path(where).mkdir(parents=True, exist_ok=True)
        where = Path(where).resolve().as_uri()
    return {"spark.eventLog.enabled": "true", "spark.eventLog.dir": where}


@dataclass(frozen=True)
class SubmitSpec:
    master: str
    application: str
    conf: dict[str, str]
    jars: list[str]  # --jars: for cluster masters; a local driver has the jars on its class path (local_conf)
    driver_memory: str = "1g"
    env: dict[str, str] = field(default_factory=dict)  # non-secret environment for spark-submit

    def argv(self, application_args: list[str], spark_submit: str = "spark-submit") -> list[str]:
        args = [spark_submit, "--master", self.master, "--driver-memory", self.driver_memory]
        for k, v in sorted(self.conf.items()):
            args += ["--conf", f"{k}={v}"]
        if self.jars:
            args += ["--jars", ",".join(self.jars)]
        return [*args, self.application, *application_args]


# a batch up to this many bytes of input is small: its run is start-up, planning and code generation, not rows.
# It runs with the JVM's quick (C1-only) JIT, whose optimising compiler's threads would only compete for the cores,
# and without adaptive query execution on SMALL_SHUFFLE_PARTITIONS: AQE plans each stage again after the shuffle
# before it, which costs a cold JVM more than coalescing a few MB saves. Above it the optimised code pays off
# (docs/performance.md)
SMALL_BATCH_BYTES = 8 * 1024 * 1024
SMALL_SHUFFLE_PARTITIONS = 2
# one shuffle partition per this many input bytes, never fewer than the default; AQE coalesces small ones
SHUFFLE_PARTITION_BYTES = 64 * 1024 * 1024
DEFAULT_SHUFFLE_PARTITIONS = 16
# driver heap (the whole of Spark in local mode): 1g runs the full bench set as fast as 2g at a lower peak; above
# 1 GiB of input 2g gives margin for spills' bookkeeping (docs/performance.md)
LARGE_BATCH_BYTES = 1024 * 1024 * 1024


# Above SMALL_BATCH_BYTES the driver runs the parallel (throughput) collector instead of G1, and a local driver gets
# the JIT directives (spark.local.jvm.compiler_directives_options); docs/performance.md
LARGE_BATCH_JAVA_OPTS = ["-XX:+UseParallelGC"]


@dataclass(frozen=True)
class Sizing:
    conf: dict[str, str]
    java_opts: list[str]
    driver_memory: str
    large: bool = False  # known to be above the small-batch size


def sized_conf(batch_bytes: int | None) -> Sizing:
    """Spark conf, driver JVM options and driver memory sized to a batch's input (bytes as listed; a .gz counts
    4×); NEXGEN_SHUFFLE_PARTITIONS, NEXGEN_SMALL_BATCH_BYTES and NEXGEN_DRIVER_MEMORY override."""
    java_opts = ["-Dlog4j2.level=WARN"]
    conf: dict[str, str] = {}
    partitions = int(os.environ.get("NEXGEN_SHUFFLE_PARTITIONS") or 0)
    memory = "1g" if batch_bytes is None or batch_bytes <= LARGE_BATCH_BYTES else "2g"
    large = False
    if batch_bytes is not None:
        if batch_bytes <= int(os.environ.get("NEXGEN_SMALL_BATCH_BYTES", SMALL_BATCH_BYTES)):
            java_opts.append("-XX:TieredStopAtLevel=1")
            conf["spark.sql.adaptive.enabled"] = "false"
            partitions = partitions or SMALL_SHUFFLE_PARTITIONS
        else:
            large = True
            java_opts += LARGE_BATCH_JAVA_OPTS
        if not partitions:
            partitions = max(DEFAULT_SHUFFLE_PARTITIONS, -(-batch_bytes // SHUFFLE_PARTITION_BYTES))
    conf["spark.sql.shuffle.partitions"] = str(partitions or DEFAULT_SHUFFLE_PARTITIONS)
    return Sizing(conf, java_opts, os.environ.get("NEXGEN_DRIVER_MEMORY") or memory, large)


def input_bytes(objects) -> int:
    """What a batch will read, for sizing: listed sizes, gzip counted at 4× (a typical CSV ratio)."""
    return sum(o.size * (4 if o.key.endswith(".gz") else 1) for o in objects)


def submit_spec(settings: Settings, app_name: str = "nexgen-etl-transform", batch_bytes: int | None = None
                ) -> SubmitSpec:
    """How to submit the transform; with batch_bytes (the plan's input) the JIT, shuffle partitions and driver
    memory are sized to it (sized_conf). The team's conf (`Settings.spark_conf`: NEXGEN_SPARK_CONF, and in Airflow
    the Variables over it) is merged last, over the product's; its spark.driver.memory is the driver memory. The jars
    are nexgen_etl.spark.jars.resolved_jars: the S3A ones only where ships_s3a_jars."""
    local = settings.spark_master.startswith("local")
    sizing = sized_conf(batch_bytes)
    jars: list[str] = []  # a local driver has them on its class path
    local_driver, java_opts = {}, sizing.java_opts
    if local:  # the driver's classes from the class data sharing archive once setup made it (spark.local.class_archive)
        class_path = local_class_path(settings)
        local_driver, java_opts = local_conf(class_path), java_opts + archive_options(settings, class_path)
        if sizing.large:
            java_opts = java_opts + compiler_directives_options()
    else:
        jars = resolved_jars(settings)
    conf = {
        "spark.app.name": app_name,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        **sizing.conf,
        "spark.sql.parquet.compression.codec": "snappy",
        # UTC-aware timestamps for pyarrow/pandas/DuckDB readers (Spark's default INT96 has no time zone)
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # many small raw files: pack them into few read tasks instead of one task per file
        "spark.sql.files.openCostInBytes": "131072",
        "spark.sql.files.maxPartitionBytes": "64m",
        # list a batch's files on the driver: above 32 paths Spark otherwise runs a listing job (one task per file)
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000",
        "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "2",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": " ".join(java_opts),
        # defense in depth: credentials never enter the conf (only the process environment), but if one were
        # set by hand (fs.s3a.secret.key, an executorEnv) the UI, event log and REST API would show it redacted
        "spark.redaction.regex": REDACTION_REGEX,
        **s3a_conf(settings),
        **local_driver,
        **event_log_conf(),
        **settings.spark_conf,
    }
    class_path_key = "spark.driver.extraClassPath"
    if local_driver and settings.spark_conf.get(class_path_key):
        # a class path of the user's own keeps the product's jars on it
        conf[class_path_key] = os.pathsep.join([settings.spark_conf[class_path_key], local_driver[class_path_key]])
    env = {"SPARK_HOME": os.environ.get("SPARK_HOME") or pyspark_home()}
    if local or settings.spark_master.startswith("spark://"):
        # the driver and (same-host) executors use this interpreter, which has nexgen_etl installed
        conf.setdefault("spark.pyspark.python", sys.executable)
        conf.setdefault("spark.pyspark.driver.python", sys.executable)
    # spark-submit's --driver-memory beats a --conf spark.driver.memory: the team's value goes into both
    driver_memory = settings.spark_conf.get("spark.driver.memory") or sizing.driver_memory
    return SubmitSpec(master=settings.spark_master, application=transform_script(), conf=conf,
                      jars=[j for j in jars if Path(j).name != LOCAL_FS_JAR], driver_memory=driver_memory, env=env)
