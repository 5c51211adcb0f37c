"""Exactly-once under faults and retries, on the real stack: moto's S3 server, real Spark (in-process session,
S3A over HTTP), the pipeline's own steps. Every fault point, in two retry modes: the failed step retried with
the same plan (an Airflow task retry) or a whole new run (a new DAG run / CLI run)."""

from __future__ import annotations

import io
import os
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.faults import POINTS, InjectedFault
from nexgen_etl.core.publish import read_catalog
from nexgen_etl.core.settings import Settings
from nexgen_etl.core.state import FileStateStore, LeaseHeldError
from nexgen_etl.core.storage import LocalStore, S3Store
from nexgen_etl.dev.local_services import create_buckets
from nexgen_etl.dev.sample import SampleSpec, generate
from nexgen_etl.run.pipeline import Pipeline
from nexgen_etl.spark.job import BatchJob

KEYS = ["store_id", "sku", "date"]


def make_pipeline(s3, raw_bucket, out_bucket, state_path, owner=None, contract=None) -> Pipeline:
    settings = Settings(raw_url=f"s3://{raw_bucket}/", output_url=f"s3://{out_bucket}/")
    p = Pipeline(settings=settings, contract=contract or load_contract(), raw=S3Store(raw_bucket, "", s3),
                 out=S3Store(out_bucket, "", s3), state=FileStateStore(state_path))
    if owner:
        p.owner = owner
    return p


def spark_transform(spark):
    return lambda plan: BatchJob(spark, plan).run()


def run_until_empty(p: Pipeline, spark) -> list[dict]:
    results = []
    while True:
        r = p.run_once(None, transform=spark_transform(spark))
        results.append(r)
        if r["status"] == "nothing_new":
            return results


def dataset(s3, bucket, name) -> pd.DataFrame:
    store = S3Store(bucket, "", s3)
    cat = read_catalog(store)
    frames = [pq.read_table(io.BytesIO(store.get_bytes(f))).to_pandas() for f in cat.files(name)]
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    sort = [c for c in df.columns if c not in {"_row_id"}]
    return df.drop(columns=[c for c in ("_row_id",) if c in df.columns]).sort_values(sort).reset_index(drop=True)


def visible_features(s3, bucket) -> pd.DataFrame:
    """What a plain reader of the features/ prefix sees (all parquet files there, no catalog)."""
    store = S3Store(bucket, "", s3)
    frames = [pq.read_table(io.BytesIO(store.get_bytes(o.key))).to_pandas() for o in store.list("features/")
              if o.key.endswith(".parquet")]
    return pd.concat(frames, ignore_index=True).sort_values(KEYS).reset_index(drop=True)


def upload(s3, bucket, folder: Path):
    store = S3Store(bucket, "", s3)
    for p in sorted(folder.rglob("*.csv")):
        store.upload_file(p, p.relative_to(folder).as_posix())


def copy_bucket(s3, src, dst):
    create_buckets(s3, buckets=(dst,))
    for o in S3Store(src, "", s3).list():
        s3.copy_object(Bucket=dst, Key=o.key, CopySource={"Bucket": src, "Key": o.key})


@pytest.fixture(scope="module")
def world(s3a_spark, moto_server, credentials, tmp_path_factory):
    """Raw files in two drops; a clean reference run; a snapshot of output + state after the first drop."""
    from nexgen_etl.core.settings import S3Settings
    from nexgen_etl.core.storage import s3_client

    s3 = s3_client(S3Settings(endpoint_url=moto_server.url, path_style=True), credentials)
    tmp = tmp_path_factory.mktemp("eo")
    sfx = uuid.uuid4().hex[:6]
    raw, ref, snap = f"eo-raw-{sfx}", f"eo-ref-{sfx}", f"eo-snap-{sfx}"
    create_buckets(s3, buckets=(raw, ref))
    generate(tmp / "a", SampleSpec(stores=2, skus=3, days=6, dirt=0.05, seed=21))
    upload(s3, raw, tmp / "a")
    p = make_pipeline(s3, raw, ref, tmp / "ref.json")
    run_until_empty(p, s3a_spark)
    copy_bucket(s3, ref, snap)
    (tmp / "snap.json").write_text((tmp / "ref.json").read_text())
    # drop B: new days, and a corrected re-upload of day 2
    generate(tmp / "b", SampleSpec(stores=2, skus=3, days=3, start=date(2024, 1, 7), dirt=0.05, seed=22))
    generate(tmp / "b", SampleSpec(stores=2, skus=3, days=1, start=date(2024, 1, 2), dirt=0.0, seed=23))
    upload(s3, raw, tmp / "b")
    run_until_empty(p, s3a_spark)
    return {"s3": s3, "spark": s3a_spark, "raw": raw, "ref": ref, "snap": snap, "tmp": tmp,
            "ref_state": FileStateStore(tmp / "ref.json").read()}


def fresh_case(world):
    """An output bucket and state as they were after the first drop."""
    s3, tmp = world["s3"], world["tmp"]
    name = f"eo-case-{uuid.uuid4().hex[:8]}"
    copy_bucket(s3, world["snap"], name)
    state = tmp / f"{name}.json"
    state.write_text((tmp / "snap.json").read_text())
    return name, state


def assert_same_as_reference(world, out, state_path, same_history=True):
    """Output and state equal the clean run's; with same_history (not after an operation that republishes on
    purpose) the catalog's batches and version and the manifests too. Catches a batch published twice (batches,
    version), superseded files deleted or kept wrongly (catalog and plain prefix readers), a lost or repeated
    manifest."""
    s3 = world["s3"]
    if same_history:
        got_cat, want_cat = (read_catalog(S3Store(b, "", s3)) for b in (out, world["ref"]))
        assert (got_cat.batches, got_cat.version) == (want_cat.batches, want_cat.version)
        manifests = [sorted(o.key for o in S3Store(b, "", s3).list("_manifests/")) for b in (out, world["ref"])]
        assert manifests[0] == manifests[1]
    for name in ("features", "clean", "quarantine"):
        pd.testing.assert_frame_equal(dataset(s3, out, name), dataset(s3, world["ref"], name), obj=name)
    pd.testing.assert_frame_equal(visible_features(s3, out), visible_features(s3, world["ref"]))
    got, want = FileStateStore(state_path).read(), world["ref_state"]
    assert (got.last_modified, got.key, got.band) == (want.last_modified, want.key, want.band)
    assert got.lease is None
    assert not [o.key for o in S3Store(out, "", s3).list("_staging/")]


def steps_with_step_retry(p: Pipeline, spark):
    """discover → … → commit, where a failed step is retried once with the same inputs (an Airflow retry)."""
    def attempt(fn, *a):
        try:
            return fn(*a)
        except InjectedFault:
            os.environ.pop("NEXGEN_FAULT", None)
            return fn(*a)

    found, wm = attempt(p.discover)
    plan = attempt(p.extract, found.new, wm.version)
    attempt(spark_transform(spark), plan)
    manifest = attempt(p.load, plan)
    attempt(p.commit, plan, manifest)


# Every fault point retried as Airflow does (the same step again, same plan); the points where a whole new run
# takes a different path (a new discover, a transform that finds its batch published, a publish that finds
# leftovers) are also retried as a new run.
NEW_RUN_POINTS = ("discover.after_lease", "transform.between_writes", "load.mid_copy", "load.after_catalog", "load.mid_view",
                  "commit.before_write")
CASES = [pytest.param(p, "step-retry", id=f"{p}-step-retry") for p in POINTS] + [
    pytest.param(p, "new-run", id=f"{p}-new-run") for p in NEW_RUN_POINTS]


@pytest.mark.parametrize("point, mode", CASES)
def test_fault_then_retry_equals_clean_run(world, point, mode, monkeypatch):
    out, state = fresh_case(world)
    p = make_pipeline(world["s3"], world["raw"], out, state)
    monkeypatch.setenv("NEXGEN_FAULT", point)
    if mode == "step-retry":
        steps_with_step_retry(p, world["spark"])
    else:
        with pytest.raises(InjectedFault):
            p.run_once(None, transform=spark_transform(world["spark"]))
        monkeypatch.delenv("NEXGEN_FAULT")
        # a new run: same owner (the DAG's next run / the same CLI user re-running)
        run_until_empty(p, world["spark"])
    assert_same_as_reference(world, out, state)


def test_rerun_of_a_committed_pass_processes_nothing(world):
    out, state = fresh_case(world)
    p = make_pipeline(world["s3"], world["raw"], out, state)
    results = run_until_empty(p, world["spark"])
    assert [r["status"] for r in results] == ["committed", "nothing_new"]
    before = read_catalog(S3Store(out, "", world["s3"])).version
    assert p.run_once(None, transform=spark_transform(world["spark"]))["status"] == "nothing_new"
    assert read_catalog(S3Store(out, "", world["s3"])).version == before


def test_run_refused_while_another_holds_the_lease(world):
    out, state = fresh_case(world)
    holder = make_pipeline(world["s3"], world["raw"], out, state, owner="airflow:nexgen_etl_pipeline")
    holder.lease.acquire()
    intruder = make_pipeline(world["s3"], world["raw"], out, state, owner="cli:someone")
    with pytest.raises(LeaseHeldError, match="airflow:nexgen_etl_pipeline"):
        intruder.run_once(None, transform=spark_transform(world["spark"]))
    assert read_catalog(S3Store(out, "", world["s3"])).version == read_catalog(
        S3Store(world["snap"], "", world["s3"])).version
    run_until_empty(holder, world["spark"])  # the holder goes on, and releases at commit
    assert_same_as_reference(world, out, state)
    assert intruder.run_once(None, transform=spark_transform(world["spark"]))["status"] == "nothing_new"


def test_lost_state_is_rebuilt_from_manifests(world):
    out, state = fresh_case(world)
    p = make_pipeline(world["s3"], world["raw"], out, state)
    run_until_empty(p, world["spark"])
    before = FileStateStore(state).read()
    state.unlink()  # the Variable is lost
    rebuilt = p.operations.rebuild_from_manifests()
    assert (rebuilt.last_modified, rebuilt.key, rebuilt.band) == (before.last_modified, before.key, before.band)
    assert p.run_once(None, transform=spark_transform(world["spark"]))["status"] == "nothing_new"


def test_rewind_then_rerun_gives_the_same_output(world):
    out, state = fresh_case(world)
    p = make_pipeline(world["s3"], world["raw"], out, state)
    run_until_empty(p, world["spark"])
    first_batch = read_catalog(S3Store(out, "", world["s3"])).batches[0]
    wm = p.operations.rewind(first_batch)
    assert wm.last_modified < world["ref_state"].last_modified
    results = run_until_empty(p, world["spark"])
    assert results[0]["status"] == "committed"
    assert_same_as_reference(world, out, state, same_history=False)  # the rewound files are published again


def test_reprocess_a_key_and_reset_leave_output_unchanged(world):
    out, state = fresh_case(world)
    p = make_pipeline(world["s3"], world["raw"], out, state)
    run_until_empty(p, world["spark"])
    key = "sales/2024/01/03/sales_2024-01-03.csv"
    wm = p.operations.reprocess(key=key)
    assert wm.reprocess == (key,)
    results = run_until_empty(p, world["spark"])
    assert results[0]["status"] == "committed"
    assert FileStateStore(state).read().reprocess == ()
    p.operations.reset()
    run_until_empty(p, world["spark"])
    for name in ("features", "clean", "quarantine"):
        pd.testing.assert_frame_equal(dataset(world["s3"], out, name), dataset(world["s3"], world["ref"], name))


def test_same_last_modified_across_two_runs(world, tmp_path):
    """Two files with one LastModified, split over two runs by the batch cap: each processed exactly once."""
    import dataclasses

    s3, spark = world["s3"], world["spark"]
    raw, out = f"tie-raw-{uuid.uuid4().hex[:6]}", f"tie-out-{uuid.uuid4().hex[:6]}"
    create_buckets(s3, buckets=(raw, out))
    generate(tmp_path / "d", SampleSpec(stores=1, skus=2, days=2, dirt=0, seed=3))
    files = sorted((tmp_path / "d").rglob("*.csv"))
    store = S3Store(raw, "", s3)
    # upload both within one second so moto gives them the same LastModified
    for _ in range(5):
        for f in files:
            store.upload_file(f, f.relative_to(tmp_path / "d").as_posix())
        lms = {o.last_modified for o in store.list()}
        if len(lms) == 1:
            break
    assert len({o.last_modified for o in store.list()}) == 1, "could not get equal LastModified values"
    contract = dataclasses.replace(load_contract(), max_batch_files=1)
    p = make_pipeline(s3, raw, out, tmp_path / "tie.json", contract=contract)
    results = run_until_empty(p, spark)
    assert [r["status"] for r in results] == ["committed", "committed", "nothing_new"]
    cat = read_catalog(S3Store(out, "", s3))
    assert sorted(cat.sources) == sorted(o.key for o in store.list())
    df = dataset(s3, out, "features")
    assert len(df) == 4 and not df.duplicated(KEYS).any()


def test_late_file_inside_the_band_is_processed(world, tmp_path):
    """A file whose LastModified is older than the mark (a slow upload) but inside the band is picked up;
    one older than the band is not (the documented limit)."""
    raw_dir = tmp_path / "raw"
    generate(raw_dir, SampleSpec(stores=1, skus=2, days=3, dirt=0, seed=4))
    now = datetime.now(timezone.utc).timestamp()
    for i, f in enumerate(sorted(raw_dir.rglob("*.csv"))):
        os.utime(f, (now - 100 + i, now - 100 + i))
    out = f"late-out-{uuid.uuid4().hex[:6]}"
    create_buckets(world["s3"], buckets=(out,))
    settings = Settings(raw_url=str(raw_dir), output_url=f"s3://{out}/")
    p = Pipeline(settings=settings, contract=load_contract(), raw=LocalStore(raw_dir),
                 out=S3Store(out, "", world["s3"]), state=FileStateStore(tmp_path / "late.json"))
    run_until_empty(p, world["spark"])
    extra = tmp_path / "extra"
    generate(extra, SampleSpec(stores=1, skus=2, days=2, start=date(2024, 2, 1), dirt=0, seed=5))
    late, ancient = sorted(extra.rglob("*.csv"))
    for f, age in ((late, 600), (ancient, 2 * 3600 + 100)):
        dst = raw_dir / f.relative_to(extra)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(f.read_bytes())
        os.utime(dst, (now - age, now - age))
    found, _ = p.discover()
    assert [o.key for o in found.new] == [late.relative_to(extra).as_posix()]
    p.lease.release()
