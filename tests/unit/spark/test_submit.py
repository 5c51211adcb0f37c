"""The spark-submit description is sized to the batch: JIT mode, AQE and shuffle partitions follow the input bytes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from nexgen_etl.core.settings import Settings
from nexgen_etl.core.storage import ObjectInfo
from nexgen_etl.spark.jars import KERNEL_JAR, LOCAL_FS_JAR
from nexgen_etl.spark.local.class_archive import archive_options, archive_path
from nexgen_etl.spark.local.jvm import (
    COMPILER_DIRECTIVES,
    LOCAL_FS_CLASS,
    UNSIGNED_DIR,
    compiler_directives_options,
    local_class_path,
)
from nexgen_etl.spark.submit import SMALL_BATCH_BYTES, input_bytes, sized_conf, submit_spec

MB = 1024 * 1024
QUICK = "-XX:TieredStopAtLevel=1"
PARALLEL = "-XX:+UseParallelGC"


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    monkeypatch.delenv("NEXGEN_SHUFFLE_PARTITIONS", raising=False)
    monkeypatch.delenv("NEXGEN_SMALL_BATCH_BYTES", raising=False)
    monkeypatch.delenv("NEXGEN_DRIVER_MEMORY", raising=False)


def obj(key: str, size: int) -> ObjectInfo:
    return ObjectInfo(last_modified=datetime(2026, 1, 1, tzinfo=timezone.utc), key=key, etag="e", size=size)


def test_small_batch_gets_the_quick_jit_no_aqe_and_two_partitions():
    for size in (100_000, SMALL_BATCH_BYTES):
        s = sized_conf(size)
        assert QUICK in s.java_opts and "-Dlog4j2.level=WARN" in s.java_opts
        assert s.conf["spark.sql.adaptive.enabled"] == "false"
        assert s.conf["spark.sql.shuffle.partitions"] == "2" and s.driver_memory == "1g"


def test_large_batch_keeps_the_optimising_jit_and_scales_partitions_and_memory():
    above = sized_conf(SMALL_BATCH_BYTES + 1)
    assert QUICK not in above.java_opts and "spark.sql.adaptive.enabled" not in above.conf
    assert PARALLEL in above.java_opts and above.large
    assert PARALLEL not in sized_conf(SMALL_BATCH_BYTES).java_opts and not sized_conf(SMALL_BATCH_BYTES).large
    assert above.conf["spark.sql.shuffle.partitions"] == "16"
    big = sized_conf(3000 * MB)
    assert big.conf["spark.sql.shuffle.partitions"] == str(-(-3000 // 64))  # 47
    assert big.driver_memory == "2g" and sized_conf(1024 * MB).driver_memory == "1g"
    assert sized_conf(64 * 16 * MB + 1).conf["spark.sql.shuffle.partitions"] == "17"


def test_unknown_size_changes_nothing():
    s = sized_conf(None)
    assert s.java_opts == ["-Dlog4j2.level=WARN"] and s.conf == {"spark.sql.shuffle.partitions": "16"}
    assert s.driver_memory == "1g" and not s.large


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("NEXGEN_SHUFFLE_PARTITIONS", "4")
    monkeypatch.setenv("NEXGEN_SMALL_BATCH_BYTES", "0")
    monkeypatch.setenv("NEXGEN_DRIVER_MEMORY", "3g")
    s = sized_conf(3000 * MB)
    assert s.conf["spark.sql.shuffle.partitions"] == "4" and s.driver_memory == "3g"
    assert QUICK not in sized_conf(10).java_opts and sized_conf(10).conf["spark.sql.shuffle.partitions"] == "4"
    monkeypatch.delenv("NEXGEN_SMALL_BATCH_BYTES")
    assert sized_conf(10).conf["spark.sql.shuffle.partitions"] == "4"  # the fixed number beats the small default


def test_gzip_counts_four_times_its_size():
    assert input_bytes([obj("a.csv", 10), obj("b.csv.gz", 10)]) == 50


def jars_in(path):
    for name in ("hadoop-aws-3.3.4.jar", "aws-java-sdk-bundle-1.12.262.jar", LOCAL_FS_JAR, KERNEL_JAR,
                 f"{UNSIGNED_DIR}/janino-3.1.9.jar", f"{UNSIGNED_DIR}/commons-compiler-3.1.9.jar"):
        (path / name).parent.mkdir(exist_ok=True)
        (path / name).write_bytes(b"")


def test_submit_spec_puts_the_sizing_into_argv(monkeypatch, tmp_path):
    jars_in(tmp_path)
    settings = Settings.from_env(spark_master="local[2]", jars_dir=tmp_path)
    small = submit_spec(settings, batch_bytes=10).argv(["--plan", "x"])
    big = submit_spec(settings, batch_bytes=900 * MB).argv(["--plan", "x"])
    assert any(QUICK in a for a in small) and not any(QUICK in a for a in big)
    assert "spark.sql.shuffle.partitions=2" in small and "spark.sql.shuffle.partitions=16" in big
    assert "spark.sql.adaptive.enabled=false" in small and "spark.sql.adaptive.enabled=true" in big
    assert small[small.index("--driver-memory") + 1] == "1g"


def class_path(tmp_path) -> str:
    """The local file system's jar first, then by name, Janino's unsigned copies among them."""
    return ":".join(str(tmp_path / n) for n in (LOCAL_FS_JAR, "aws-java-sdk-bundle-1.12.262.jar",
                                                 f"{UNSIGNED_DIR}/commons-compiler-3.1.9.jar", "hadoop-aws-3.3.4.jar",
                                                 f"{UNSIGNED_DIR}/janino-3.1.9.jar", KERNEL_JAR))


def test_local_masters_write_file_paths_without_chmod_processes(tmp_path):
    jars_in(tmp_path)
    local = submit_spec(Settings.from_env(spark_master="local[2]", jars_dir=tmp_path))
    assert local.conf["spark.hadoop.fs.file.impl"] == LOCAL_FS_CLASS
    # a local executor is the driver JVM: every jar on the driver's class path (the local file system's first),
    # none with --jars (which would copy each into a temporary folder on the first task)
    assert local.conf["spark.driver.extraClassPath"] == class_path(tmp_path)
    assert local.jars == [] and "--jars" not in local.argv([])
    # a cluster's executors are other machines: the local file system jar is not theirs, nor the setting; S3A and
    # the window kernel's jar go to them with --jars (executors run it)
    cluster = submit_spec(Settings.from_env(spark_master="spark://127.0.0.1:7077", jars_dir=tmp_path))
    assert "spark.hadoop.fs.file.impl" not in cluster.conf and "spark.driver.extraClassPath" not in cluster.conf
    assert [j.rsplit("/", 1)[-1] for j in cluster.jars] == ["aws-java-sdk-bundle-1.12.262.jar", "hadoop-aws-3.3.4.jar",
                                                            KERNEL_JAR]
    assert cluster.argv([])[cluster.argv([]).index("--jars") + 1] == ",".join(cluster.jars)


def test_a_class_path_of_the_users_keeps_the_products_jars(tmp_path):
    jars_in(tmp_path)
    settings = Settings.from_env(spark_master="local[2]", jars_dir=tmp_path,
                                 spark_conf={"spark.driver.extraClassPath": "/opt/extra.jar"})
    spec = submit_spec(settings)
    assert spec.conf["spark.driver.extraClassPath"] == f"/opt/extra.jar:{class_path(tmp_path)}"


def test_a_missing_local_fs_or_kernel_jar_says_make_jars(tmp_path):
    (tmp_path / "hadoop-aws-3.3.4.jar").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"nexgen-localfs\.jar.*make jars"):
        submit_spec(Settings.from_env(spark_master="local[2]", jars_dir=tmp_path))
    (tmp_path / LOCAL_FS_JAR).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"nexgen-spark\.jar.*make jars"):
        submit_spec(Settings.from_env(spark_master="local[2]", jars_dir=tmp_path))


def test_local_driver_maps_the_class_archive_once_setup_made_it(tmp_path):
    jars_in(tmp_path)
    settings = Settings.from_env(spark_master="local[2]", jars_dir=tmp_path)
    assert "SharedArchiveFile" not in submit_spec(settings).conf["spark.driver.extraJavaOptions"]
    jars = local_class_path(settings)
    archive = archive_path(tmp_path, jars)
    assert archive.parent == tmp_path / "cds"
    archive.parent.mkdir()
    archive.write_bytes(b"")
    opts = submit_spec(settings, batch_bytes=10).conf["spark.driver.extraJavaOptions"].split()
    assert f"-XX:SharedArchiveFile={archive}" in opts and QUICK in opts
    # a cluster's driver has another class path; a class path of the user's is not the archive's either
    cluster = submit_spec(Settings.from_env(spark_master="spark://127.0.0.1:7077", jars_dir=tmp_path))
    assert "SharedArchiveFile" not in cluster.conf["spark.driver.extraJavaOptions"]
    own = Settings.from_env(spark_master="local[2]", jars_dir=tmp_path,
                            spark_conf={"spark.driver.extraClassPath": "/opt/extra.jar"})
    assert "SharedArchiveFile" not in submit_spec(own).conf["spark.driver.extraJavaOptions"]
    jvm_opts = Settings.from_env(spark_master="local[2]", jars_dir=tmp_path,
                                 spark_conf={"spark.driver.extraJavaOptions": "-XX:StartFlightRecording"})
    assert submit_spec(jvm_opts).conf["spark.driver.extraJavaOptions"] == "-XX:StartFlightRecording"
    assert archive_options(jvm_opts, jars) == []
    # an agent or a flight recording in the JVM options spark-class takes from the environment: no archive
    assert archive_options(settings, jars, env={}) == [f"-XX:SharedArchiveFile={archive}"]
    for env in ({"JAVA_TOOL_OPTIONS": "-javaagent:/opt/a.jar"}, {"SPARK_SUBMIT_OPTS": "-XX:StartFlightRecording"}):
        assert archive_options(settings, jars, env=env) == []


def test_the_archive_name_follows_every_jar_on_the_class_path(tmp_path):
    jars_in(tmp_path)
    jars = local_class_path(Settings.from_env(spark_master="local[2]", jars_dir=tmp_path))
    before = archive_path(tmp_path, jars)
    assert archive_path(tmp_path, jars) == before
    # the JVM refuses an archive whose class path jars changed size or time, or their order
    for name in (LOCAL_FS_JAR, KERNEL_JAR, "aws-java-sdk-bundle-1.12.262.jar", f"{UNSIGNED_DIR}/janino-3.1.9.jar"):
        (tmp_path / name).write_bytes(b"rebuilt")
        assert archive_path(tmp_path, jars) != before
        before = archive_path(tmp_path, jars)
    assert archive_path(tmp_path, list(reversed(jars))) != before


def test_a_large_local_batch_keeps_c2_off_the_planners_code(tmp_path):
    jars_in(tmp_path)
    directives = f"-XX:CompilerDirectivesFile={COMPILER_DIRECTIVES}"
    local = Settings.from_env(spark_master="local[2]", jars_dir=tmp_path)
    opts = submit_spec(local, batch_bytes=SMALL_BATCH_BYTES + 1).conf["spark.driver.extraJavaOptions"].split()
    assert directives in opts and PARALLEL in opts
    assert opts.index("-XX:+UnlockDiagnosticVMOptions") < opts.index(directives)
    # the small batch has no C2 at all; a cluster's driver may not have this package's file
    assert directives not in submit_spec(local, batch_bytes=10).conf["spark.driver.extraJavaOptions"]
    cluster = submit_spec(Settings.from_env(spark_master="spark://127.0.0.1:7077", jars_dir=tmp_path),
                          batch_bytes=SMALL_BATCH_BYTES + 1).conf["spark.driver.extraJavaOptions"].split()
    assert directives not in cluster and PARALLEL in cluster


def test_the_installed_jvm_takes_the_compiler_directives():
    """A file the JVM cannot parse would stop every large batch's driver at start: the JDK reads it here."""
    import subprocess

    from nexgen_etl.spark.local.class_archive import java_home

    home = java_home()
    assert home is not None, "no Java: setup installs JDK 17"
    # the very options a large local driver gets
    proc = subprocess.run([str(home / "bin" / "java"), *compiler_directives_options(), "-XX:+CompilerDirectivesPrint",
                           "-version"], capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 compiler directives added" in out and "org/codehaus/*.*" in out
    first = out.split("Directive:")[1]  # ours, before the default one
    assert "Exclude:true" in first.split("c2 directives:")[1] and "Exclude:false" in first.split("c2 directives:")[0]


@pytest.mark.parametrize(("master", "env", "expected"), [
    pytest.param("local[2]", {}, "com.amazonaws.auth.EnvironmentVariableCredentialsProvider", id="local"),
    pytest.param("spark://h:7077", {}, "com.amazonaws.auth.EnvironmentVariableCredentialsProvider", id="standalone"),
    pytest.param("yarn", {}, "com.amazonaws.auth.DefaultAWSCredentialsProviderChain", id="yarn"),
    pytest.param("k8s://https://api:6443", {}, "com.amazonaws.auth.DefaultAWSCredentialsProviderChain", id="k8s"),
    pytest.param("yarn", {"NEXGEN_S3A_CREDENTIALS_PROVIDER": "x.Mine"}, "x.Mine", id="set-by-the-user"),
])
def test_the_credentials_provider_follows_the_master(master, env, expected):
    """Catches: the environment provider on YARN/Kubernetes, where the operator passes no keys (a cluster run failed
    until someone found NEXGEN_S3A_CREDENTIALS_PROVIDER)."""
    from nexgen_etl.spark.submit import credentials_provider

    assert credentials_provider(master, env) == expected


def test_a_teams_spark_conf_from_the_environment_is_merged_over_the_products(monkeypatch):
    """Catches: NEXGEN_SPARK_CONF read by nothing (the settings had the field, nothing filled it), and a team's
    spark.driver.memory lost to the sized one (spark-submit's --driver-memory beats --conf spark.driver.memory; tried:
    submit_spec's driver memory taken from the sizing alone)."""
    monkeypatch.setenv("NEXGEN_SPARK_CONF", '{"spark.sql.shuffle.partitions": "64", "spark.executor.cores": "4", '
                                            '"spark.driver.memory": "3g"}')
    spec = submit_spec(Settings.from_env(spark_master="yarn"), batch_bytes=MB)
    assert spec.conf["spark.sql.shuffle.partitions"] == "64" and spec.conf["spark.executor.cores"] == "4"
    argv = spec.argv([])
    assert argv[argv.index("--driver-memory") + 1] == "3g" == spec.conf["spark.driver.memory"]
    monkeypatch.setenv("NEXGEN_SPARK_CONF", '{"not.spark": "1"}')
    with pytest.raises(ValueError, match="NEXGEN_SPARK_CONF: 'not.spark' is not a Spark property"):
        Settings.from_env()
    monkeypatch.setenv("NEXGEN_SPARK_CONF", "{oops")
    with pytest.raises(ValueError, match="NEXGEN_SPARK_CONF: not valid JSON"):
        Settings.from_env()


# -- the S3A jars: shipped unless the cluster brings its own ----------------------------------------------------------

S3A_JARS = ["aws-java-sdk-bundle-1.12.262.jar", "hadoop-aws-3.3.4.jar", "wildfly-openssl-1.0.7.Final.jar"]


def shipped(spec) -> list[str]:
    """The jar names of --jars in the spec's argv (what spark-submit ships to the cluster)."""
    argv = spec.argv([])
    return [j.rsplit("/", 1)[-1] for j in argv[argv.index("--jars") + 1].split(",")] if "--jars" in argv else []


@pytest.mark.parametrize(("master", "setting", "s3a"), [
    pytest.param("spark://h:7077", None, True, id="standalone-auto"),
    pytest.param("k8s://https://api:6443", None, True, id="k8s-auto"),
    pytest.param("yarn", None, False, id="yarn-auto"),
    pytest.param("yarn://rm.example:8032", None, False, id="yarn-host-auto"),
    pytest.param("yarn", True, True, id="yarn-true"),
    pytest.param("spark://h:7077", False, False, id="standalone-false"),
    pytest.param("k8s://https://api:6443", False, False, id="k8s-false"),
])
def test_the_s3a_jars_go_with_the_job_unless_the_cluster_brings_its_own(tmp_path, master, setting, s3a):
    """--jars has hadoop-aws and what Maven resolved with it (the AWS SDK bundle, wildfly-openssl) only when they are
    shipped: NEXGEN_SHIP_S3A_JARS=true|false, or auto (every master but YARN); the window kernel's jar always.
    Catches: the setting ignored (tried: resolved_jars without the ships_s3a_jars filter fails the false and
    yarn-auto cases), auto shipping to YARN (tried: `return True`), and the kernel jar dropped with S3A's (tried:
    filtering on PROJECT_JARS = (LOCAL_FS_JAR,) fails every false case)."""
    jars_in(tmp_path)
    (tmp_path / S3A_JARS[2]).write_bytes(b"")
    spec = submit_spec(Settings.from_env(spark_master=master, jars_dir=tmp_path, ship_s3a_jars=setting))
    assert shipped(spec) == (sorted([*S3A_JARS, KERNEL_JAR]) if s3a else [KERNEL_JAR])
    if not s3a:  # nowhere in the command: not in --jars, --packages or a class path of the conf
        assert not [a for a in spec.argv([]) if any(n in a for n in ("hadoop-aws-", "aws-java-sdk-", "wildfly-"))]


def test_without_shipping_the_s3a_jars_setup_needs_only_the_projects_own(tmp_path):
    """A deployment for a cluster with its own S3A need not resolve hadoop-aws; the kernel jar stays required."""
    (tmp_path / LOCAL_FS_JAR).write_bytes(b"")
    (tmp_path / KERNEL_JAR).write_bytes(b"")
    spec = submit_spec(Settings.from_env(spark_master="yarn", jars_dir=tmp_path))
    assert shipped(spec) == [KERNEL_JAR]
    with pytest.raises(FileNotFoundError, match=r"no hadoop-aws jar .*make jars.*NEXGEN_SHIP_S3A_JARS=false"):
        submit_spec(Settings.from_env(spark_master="yarn", jars_dir=tmp_path, ship_s3a_jars=True))
    (tmp_path / KERNEL_JAR).unlink()
    with pytest.raises(FileNotFoundError, match=r"nexgen-spark\.jar.*make jars"):
        submit_spec(Settings.from_env(spark_master="yarn", jars_dir=tmp_path))


def test_a_local_driver_without_the_s3a_jars_has_only_the_projects_on_its_class_path(tmp_path):
    """false applies to a local master too (its Spark is then trusted to have S3A); auto keeps them there."""
    jars_in(tmp_path)
    auto = submit_spec(Settings.from_env(spark_master="local[2]", jars_dir=tmp_path))
    assert auto.conf["spark.driver.extraClassPath"] == class_path(tmp_path)
    own = submit_spec(Settings.from_env(spark_master="local[2]", jars_dir=tmp_path, ship_s3a_jars=False))
    path = own.conf["spark.driver.extraClassPath"].split(":")
    assert [p.rsplit("/", 1)[-1] for p in path] == [LOCAL_FS_JAR, "commons-compiler-3.1.9.jar", "janino-3.1.9.jar",
                                                    KERNEL_JAR]
    assert own.jars == []
