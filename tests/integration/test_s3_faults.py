"""Transient and persistent S3 faults, injected by a proxy in front of the moto server, against the real clients
(boto3 in discover/extract/load/commit, S3A inside Spark): transient ones are retried and the run's output is
what a run without faults gives; persistent ones fail the run with a clear error and publish nothing."""

from __future__ import annotations

import io
import uuid

import pandas as pd
import pyarrow.parquet as pq
import pytest

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.publish import read_catalog
from nexgen_etl.core.settings import S3Settings, Settings
from nexgen_etl.core.state import FileStateStore
from nexgen_etl.core.storage import S3Store, s3_client
from nexgen_etl.dev.local_services import create_buckets
from nexgen_etl.dev.sample import SampleSpec, generate
from nexgen_etl.run.pipeline import Pipeline
from tests.faultproxy import FaultProxy, FaultRule
from tests.integration.test_exactly_once import run_until_empty, spark_transform


def features(store: S3Store) -> pd.DataFrame:
    cat = read_catalog(store)
    df = pd.concat([pq.read_table(io.BytesIO(store.get_bytes(f))).to_pandas() for f in cat.files("features")])
    return df.sort_values(["store_id", "sku", "date"]).reset_index(drop=True)


def route_through(spark, bucket: str, proxy_url: str) -> None:
    """S3A per-bucket settings: this bucket's traffic goes through the proxy. The retry settings stay the ones
    spark_submit.s3a_conf ships (the test session is built from the same conf)."""
    spark._jsc.hadoopConfiguration().set(f"fs.s3a.bucket.{bucket}.endpoint", proxy_url)


def fresh_copy(setup, prefix: str) -> str:
    """The raw files in a new bucket: S3A caches one FileSystem per bucket, endpoint included, so a bucket once
    routed through a (now stopped) proxy cannot be reused."""
    direct = setup["direct"]
    raw = f"{prefix}-{uuid.uuid4().hex[:6]}"
    create_buckets(direct, buckets=(raw,))
    for o in S3Store(setup["raw"], "", direct).list():
        direct.copy_object(Bucket=raw, Key=o.key, CopySource={"Bucket": setup["raw"], "Key": o.key})
    return raw


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


@pytest.fixture(scope="module")
def reference(setup) -> pd.DataFrame:
    """The features of a run without faults."""
    ref = f"flt-ref-{uuid.uuid4().hex[:6]}"
    create_buckets(setup["direct"], buckets=(ref,))
    run_until_empty(pipeline(setup, setup["direct"], setup["raw"], ref, setup["tmp"] / "ref.json"), setup["spark"])
    return features(S3Store(ref, "", setup["direct"]))


def pipeline(setup, client, raw, out, state) -> Pipeline:
    settings = Settings(raw_url=f"s3://{raw}/", output_url=f"s3://{out}/")
    return Pipeline(settings=settings, contract=load_contract(), raw=S3Store(raw, "", client),
                    out=S3Store(out, "", client), state=FileStateStore(state))


def test_transient_faults_are_retried_and_the_output_is_unchanged(setup, reference):
    """Catches: a client path that does not retry these faults; and (with the raw bucket a fresh copy, so that S3A
    opens it through the proxy, and a rule counting S3A's GETs of raw files) faults that never reach Spark's reads
    of the raw files (tried: on the reference run's bucket, S3A's cached file system bypassed the proxy and the raw
    rule saw no request)."""
    spark, direct = setup["spark"], setup["direct"]
    raw, out = fresh_copy(setup, "flt-tr"), f"flt-out-{uuid.uuid4().hex[:6]}"
    create_buckets(direct, buckets=(out,))

    # boto3 gets throttled (503 SlowDown), reset and stalled; S3A (aws-sdk-java) gets resets and stalls (S3A's
    # 503s: test_s3a_slowdown_burst_is_retried_within_seconds). A stall holds the request 2 s, then drops it.
    # boto3's rates stay inside botocore's retry quota (one per client, docs/guarantees.md): at rates where about
    # half the calls fail, calls fail twice in a row often enough to use the quota up, and botocore then stops
    # retrying (the run failed so at every 4th/5th/4th); at every 9th/11th/13th a call rarely fails twice.
    rules = [FaultRule("slowdown", ("GET", "HEAD", "PUT"), every=9, agent="Boto3"),
             FaultRule("reset", ("PUT", "GET"), every=11, agent="Boto3"),
             FaultRule("stall", ("GET", "PUT"), every=13, agent="Boto3"),
             FaultRule("reset", ("GET",), every=2, agent="aws-sdk-java", path_contains=f"/{raw}/sales/"),
             FaultRule("reset", ("GET", "PUT", "HEAD"), every=6, agent="aws-sdk-java"),
             FaultRule("stall", ("GET",), every=41, agent="aws-sdk-java")]
    proxy = FaultProxy(setup["moto"].url, rules).start()
    try:
        # the raw bucket is read through the proxy by boto3 and S3A; the output bucket too
        via_proxy = s3_client(S3Settings(endpoint_url=proxy.url, path_style=True), setup["credentials"])
        route_through(spark, raw, proxy.url)
        route_through(spark, out, proxy.url)
        results = run_until_empty(pipeline(setup, via_proxy, raw, out, setup["tmp"] / "out.json"), spark)
    finally:
        proxy.stop()
    assert [r["status"] for r in results] == ["committed", "nothing_new"]
    print("faults injected:", [(r.kind, r.agent, r.path_contains, r.seen, r.injected) for r in rules])
    assert all(r.injected > 0 for r in rules), [(r.kind, r.agent, r.path_contains, r.injected) for r in rules]
    pd.testing.assert_frame_equal(features(S3Store(out, "", direct)), reference)


def test_s3a_slowdown_burst_is_retried_within_seconds(setup, reference):
    """A burst of 503 SlowDown on every kind of S3A request (GET, HEAD, PUT, LIST) — more than the AWS SDK's own
    retries absorb, so S3A's throttle retry has to take over — is ridden out with the shipped retry settings."""
    import time

    spark, direct = setup["spark"], setup["direct"]
    raw, out = fresh_copy(setup, "flt-burst"), f"flt-bout-{uuid.uuid4().hex[:6]}"
    create_buckets(direct, buckets=(out,))
    # 6 in a row: the SDK's 4 attempts (fs.s3a.attempts.maximum=3 retries) fail, S3A backs off and retries
    rules = [FaultRule("slowdown", ("GET",), every=1, limit=6, agent="Hadoop", path_contains="/sales/"),
             FaultRule("slowdown", ("GET",), every=1, limit=6, agent="Hadoop", path_contains="list-type=2"),
             FaultRule("slowdown", ("HEAD",), every=1, limit=6, agent="Hadoop"),
             FaultRule("slowdown", ("PUT",), every=1, limit=6, agent="Hadoop")]
    proxy = FaultProxy(setup["moto"].url, rules).start()
    try:
        route_through(spark, raw, proxy.url)
        route_through(spark, out, proxy.url)
        t0 = time.monotonic()
        results = run_until_empty(pipeline(setup, direct, raw, out, setup["tmp"] / "burst.json"), spark)
        elapsed = time.monotonic() - t0
    finally:
        proxy.stop()
    spans = [f"{r.methods[0]} {r.path_contains or '*'}: {r.times[-1] - r.times[0]:.1f}s" for r in rules if r.times]
    print(f"S3A 503 burst: {sum(r.injected for r in rules)} SlowDowns injected, first to last per rule "
          f"({', '.join(spans)}), run took {elapsed:.1f}s")
    assert [r["status"] for r in results] == ["committed", "nothing_new"]
    assert [r.injected for r in rules] == [6, 6, 6, 6]
    pd.testing.assert_frame_equal(features(S3Store(out, "", direct)), reference)


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


def test_persistent_fault_on_spark_reads_fails_the_transform(setup):
    """A 503 that never ends fails the Spark job with a throttling error after the shipped retry settings give up
    (bounded: 4 SDK attempts x 7 S3A calls per read, counted at the proxy; not Hadoop's default 21 x 21), and
    nothing is published."""
    import time

    spark, direct = setup["spark"], setup["direct"]
    out = f"flt-s3a-{uuid.uuid4().hex[:6]}"
    create_buckets(direct, buckets=(out,))
    raw = fresh_copy(setup, "flt-raw2")
    proxy = FaultProxy(setup["moto"].url, [FaultRule("slowdown", ("GET",), every=1, path_contains="/sales/")])
    proxy.start()
    try:
        route_through(spark, raw, proxy.url)
        p = pipeline(setup, direct, raw, out, setup["tmp"] / "s3a.json")  # boto3 direct: only Spark sees faults
        t0 = time.monotonic()
        with pytest.raises(Exception) as err:
            p.run_once(None, transform=spark_transform(spark))
        elapsed = time.monotonic() - t0
    finally:
        proxy.stop()
    times = proxy.rules[0].times
    print(f"S3A persistent 503: failed after {elapsed:.1f}s and {len(times)} SlowDowns over "
          f"{times[-1] - times[0]:.1f}s")
    assert "503" in str(err.value) or "SlowDown" in str(err.value) or "Throttl" in str(err.value)
    # the bound, by counting: at most 4 SDK attempts x 7 S3A calls per read, 2 reads at once on local[2] (Hadoop's
    # defaults would allow 21 x 21 per read)
    assert 4 * 7 // 2 <= len(times) <= 4 * 7 * 2, len(times)
    store = S3Store(out, "", direct)
    assert store.head("_catalog.json") is None
    assert FileStateStore(setup["tmp"] / "s3a.json").read().last_modified is None
