"""Shared fixtures: a real local Spark session, a real moto S3 server, buckets and credentials for tests."""

from __future__ import annotations

import os
import uuid

import pytest

from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret, Settings
from nexgen_etl.dev.local_services import MotoServer, create_buckets

# A distinctive secret: leak tests search every output for it.
TEST_ACCESS_KEY = "AKIANEXGENTEST0001"
TEST_SECRET = "nexgen-Test-Secret-9f3b2c7e1d"

# The in-process Spark session's JVM reads S3A credentials from its environment, fixed when it starts.
os.environ.setdefault("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", TEST_SECRET)
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    from nexgen_etl.spark.submit import submit_spec

    spec = submit_spec(Settings.from_env(spark_master="local[2]"))
    builder = SparkSession.builder.master("local[2]").appName("nexgen-tests")
    for k, v in spec.conf.items():
        if not k.startswith("spark.pyspark"):
            builder = builder.config(k, v)
    builder = builder.config("spark.sql.shuffle.partitions", "2").config("spark.ui.enabled", "false")
    # the jars are on the driver's class path (spec.conf), as for a local spark-submit
    session = builder.getOrCreate()
    yield session
    session.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    with MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture(scope="session")
def s3a_spark(spark, moto_server):
    """The in-process session pointed at the moto endpoint through S3A (real Spark, real HTTP)."""
    conf = spark._jsc.hadoopConfiguration()
    conf.set("fs.s3a.endpoint", moto_server.url)
    conf.set("fs.s3a.path.style.access", "true")
    conf.set("fs.s3a.connection.ssl.enabled", "false")
    return spark


@pytest.fixture(scope="session")
def credentials() -> AwsCredentials:
    return AwsCredentials(TEST_ACCESS_KEY, Secret(TEST_SECRET))


@pytest.fixture()
def s3(moto_server, credentials):
    from nexgen_etl.core.storage import s3_client

    return s3_client(S3Settings(endpoint_url=moto_server.url, path_style=True), credentials)


@pytest.fixture()
def buckets(s3):
    """A fresh raw and loading bucket pair for one test."""
    suffix = uuid.uuid4().hex[:8]
    raw, out = f"raw-{suffix}", f"loading-{suffix}"
    create_buckets(s3, buckets=(raw, out))
    return raw, out


@pytest.fixture()
def aws_env(moto_server):
    """Environment for child processes that use the test endpoint and credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": TEST_SECRET,
                "AWS_DEFAULT_REGION": "us-east-1", "NEXGEN_S3_ENDPOINT": moto_server.url})
    return env
