"""Transient and persistent S3 faults, injected by a proxy in front of the moto server, against the real clients
(boto3 in discover/extract/load/commit, S3A inside Spark): transient ones are retried and the run's output is
what a run without faults gives; persistent ones fail the run with a clear error and publish nothing."""

from __future__ import annotations

import dataclasses
import io
import uuid

import pandas as pd
import pyarrow.parquet as pq
import pytest

from nexgen_etl.contract import load_contract
from nexgen_etl.local_services import create_buckets
from nexgen_etl.pipeline import Pipeline
from nexgen_etl.publish import read_catalog
from nexgen_etl.sample import SampleSpec, generate
from nexgen_etl.settings import S3Settings, Settings
from nexgen_etl.state import FileStateStore
from nexgen_etl.storage import S3Store, s3_client
from tests.faultproxy import FaultProxy, FaultRule
from tests.integration.test_exactly_once import run_until_empty, spark_transform


def features(store: S3Store) -> pd.DataFrame:
    cat = read_catalog(store)
    df = pd.concat([pq.read_table(io.BytesIO(store.get_bytes(f))).to_pandas() for f in cat.files("features")])
    return df.sort_values(["store_id", "sku", "date"]).reset_index(drop=True)


def route_through(spark, bucket: str, proxy_url: str, limits: bool = False) -> None:
    """S3A per-bucket settings: this bucket's traffic goes through the proxy."""
    conf = spark._jsc.hadoopConfiguration()
    conf.set(f"fs.s3a.bucket.{bucket}.endpoint", proxy_url)
    if limits:  # a persistent fault should fail in seconds, not after minutes of retries
        for k, v in {"attempts.maximum": "2", "retry.limit": "2", "retry.throttle.limit": "2",
                     "retry.interval": "100ms", "retry.throttle.interval": "100ms"}.items():
            conf.set(f"fs.s3a.bucket.{bucket}.{k}", v)


@pytest.fixture(scope="module")
def setup(s3a_spark, moto_server, credentials, tmp_path_factory):
    direct = s3_client(S3Settings(endpoint_url=moto_server.url, path_style=True), credentials)
    tmp = tmp_path_factory.mktemp("faults")
    raw = f"flt-raw-{uuid.uuid4().hex[:6]}"
    create_buckets(direct, buckets=(raw,))
    generate(tmp / "d", SampleSpec(stores=2, skus=2, days=5, dirt=0.05, seed=31))
    store = S3Store(raw, "", direct)
    for p in sorted((tmp / "d").rglob("*.csv")):
        store.upload_file(p, p.relative_to(tmp / "d").as_posix())
    return {"direct": direct, "raw": raw, "tmp": tmp, "spark": s3a_spark, "moto": moto_server,
            "credentials": credentials}


def pipeline(setup, client, raw, out, state) -> Pipeline:
    settings = Settings(raw_url=f"s3://{raw}/", output_url=f"s3://{out}/")
    return Pipeline(settings=settings, contract=load_contract(), raw=S3Store(raw, "", client),
                    out=S3Store(out, "", client), state=FileStateStore(state))


def test_transient_faults_are_retried_and_the_output_is_unchanged(setup, monkeypatch):
    spark, direct = setup["spark"], setup["direct"]
    ref, out = f"flt-ref-{uuid.uuid4().hex[:6]}", f"flt-out-{uuid.uuid4().hex[:6]}"
    create_buckets(direct, buckets=(ref, out))
    run_until_empty(pipeline(setup, direct, setup["raw"], ref, setup["tmp"] / "ref.json"), spark)

    # boto3 gets throttled (503 SlowDown) and reset; S3A (aws-sdk-java) gets resets and stalls. 503s against
    # S3A are left out: Hadoop 3.3.4's throttle back-off (SDK retries x S3A throttle retries) turns them into
    # minutes of waiting, which is a tuning question, not a correctness one.
    rules = [FaultRule("slowdown", ("GET", "HEAD", "PUT"), every=4, agent="Boto3"),
             FaultRule("reset", ("PUT", "GET"), every=5, agent="Boto3"),
             FaultRule("reset", ("GET", "PUT", "HEAD"), every=6, agent="aws-sdk-java"),
             FaultRule("stall", ("GET",), every=41, agent="aws-sdk-java")]
    proxy = FaultProxy(setup["moto"].url, rules).start()
    try:
        # the raw bucket is read through the proxy by boto3 and S3A; the output bucket too
        via_proxy = s3_client(S3Settings(endpoint_url=proxy.url, path_style=True), setup["credentials"])
        route_through(spark, setup["raw"], proxy.url)
        route_through(spark, out, proxy.url)
        results = run_until_empty(pipeline(setup, via_proxy, setup["raw"], out, setup["tmp"] / "out.json"), spark)
    finally:
        proxy.stop()
        spark._jsc.hadoopConfiguration().unset(f"fs.s3a.bucket.{setup['raw']}.endpoint")
    assert [r["status"] for r in results] == ["committed", "nothing_new"]
    assert all(r.injected > 0 for r in rules), [(r.kind, r.agent, r.injected) for r in rules]
    pd.testing.assert_frame_equal(features(S3Store(out, "", direct)), features(S3Store(ref, "", direct)))


def test_persistent_fault_on_publish_fails_clearly_and_publishes_nothing(setup, monkeypatch):
    spark, direct = setup["spark"], setup["direct"]
    out = f"flt-pers-{uuid.uuid4().hex[:6]}"
    create_buckets(direct, buckets=(out,))
    monkeypatch.setenv("NEXGEN_S3_MAX_ATTEMPTS", "3")
    proxy = FaultProxy(setup["moto"].url, [FaultRule("slowdown", ("PUT",), every=1, path_contains="_catalog.json")])
    proxy.start()
    try:
        via_proxy = s3_client(S3Settings(endpoint_url=proxy.url, path_style=True), setup["credentials"])
        p = pipeline(setup, via_proxy, setup["raw"], out, setup["tmp"] / "pers.json")
        with pytest.raises(Exception, match="SlowDown") as err:
            p.run_once(None, transform=spark_transform(spark))
    finally:
        proxy.stop()
    assert "PutObject" in str(err.value) and "max retries" in str(err.value)
    store = S3Store(out, "", direct)
    assert store.head("_catalog.json") is None  # nothing was made visible
    assert read_catalog(store).files("features") == []
    assert FileStateStore(setup["tmp"] / "pers.json").read().last_modified is None  # watermark not advanced
    # once the fault is gone, the next run publishes exactly once
    run_until_empty(pipeline(setup, direct, setup["raw"], out, setup["tmp"] / "pers.json"), spark)
    assert len(read_catalog(store).batches) == 1


def test_persistent_fault_on_spark_reads_fails_the_transform(setup, monkeypatch):
    spark, direct = setup["spark"], setup["direct"]
    out = f"flt-s3a-{uuid.uuid4().hex[:6]}"
    create_buckets(direct, buckets=(out,))
    raw = f"flt-raw2-{uuid.uuid4().hex[:6]}"
    create_buckets(direct, buckets=(raw,))
    for o in S3Store(setup["raw"], "", direct).list():
        direct.copy_object(Bucket=raw, Key=o.key, CopySource={"Bucket": setup["raw"], "Key": o.key})
    proxy = FaultProxy(setup["moto"].url, [FaultRule("slowdown", ("GET",), every=1, path_contains="/sales/")])
    proxy.start()
    try:
        route_through(spark, raw, proxy.url, limits=True)
        p = pipeline(setup, direct, raw, out, setup["tmp"] / "s3a.json")  # boto3 direct: only Spark sees faults
        with pytest.raises(Exception) as err:
            p.run_once(None, transform=spark_transform(spark))
    finally:
        proxy.stop()
    assert "503" in str(err.value) or "SlowDown" in str(err.value) or "Throttl" in str(err.value)
    store = S3Store(out, "", direct)
    assert store.head("_catalog.json") is None
    assert FileStateStore(setup["tmp"] / "s3a.json").read().last_modified is None
