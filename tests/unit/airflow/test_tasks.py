"""The DAG's task bodies (nexgen_etl.airflow.tasks) as plain functions: the XCom dicts the DAG passes in, a real
Pipeline over local folders, and a staged transform result in place of Spark."""

from __future__ import annotations

import pytest

from nexgen_etl.airflow import tasks
from nexgen_etl.core import layout
from nexgen_etl.core.publish import read_catalog, read_manifest
from nexgen_etl.core.results import FileAccounting, StagedResult
from tests.unit.airflow.conftest import as_xcom


def stage(pipeline, batch: dict, rows_per_file: int = 5, periods: tuple[str, ...] = ()) -> dict[str, int]:
    """What the transform leaves for load: its result beside the staged output (one small features and clean file
    per period, `rows_per_file` rows each; no file at all without periods)."""
    plan = pipeline.read_plan(batch["batch_id"])
    accounting = {o.key: FileAccounting(rows_read=rows_per_file, rows_out=rows_per_file) for o in plan.objects}
    for period in periods:
        for ds in ("features", "clean"):
            key = f"{layout.staged_dataset_dir(plan.batch_id, ds)}period_date={period}/part-00000.parquet"
            pipeline.out.put_bytes(key, parquet_rows(rows_per_file, period))
    result = StagedResult(batch_id=plan.batch_id, catalog_version=read_catalog(pipeline.out).version,
                          clean_partitions=sorted(periods),
                          features_ranges=[[min(periods), max(periods)]] if periods else [], accounting=accounting)
    pipeline.out.put_bytes(layout.result_key(plan.batch_id), result.to_json().encode())
    return {"rows_read": rows_per_file * len(plan.objects)}


def parquet_rows(n: int, period: str) -> bytes:
    """n feature rows of one period, as a Parquet file's bytes (the partition value stays in the path)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"store_id": [f"S{i}" for i in range(n)], "sku": ["A"] * n,
                             "units_sold": [float(i) for i in range(n)], "day": [period] * n}), buf)
    return buf.getvalue()


def discover_and_extract(pipeline) -> dict:
    discovered = as_xcom(tasks.discover({"operation": "run"}, pipeline=pipeline))
    assert discovered and len(discovered["objects"]) == 3
    return as_xcom(tasks.extract(discovered, pipeline=pipeline))


def test_a_pass_through_the_task_bodies_commits_what_load_published(local_pipeline):
    """Catches: commit handing load's XCom dict to Pipeline.commit where a Manifest is expected (AttributeError on
    .totals), load reading the Manifest as a dict (manifest["publish"]), an XCom that is not JSON."""
    p = local_pipeline
    batch = discover_and_extract(p)
    assert batch["plan_uri"] == p.plan_uri(batch["batch_id"]) and batch["files"] == 3
    expected = stage(p, batch)
    loaded = as_xcom(tasks.load(batch, pipeline=p))
    assert loaded["batch_id"] == batch["batch_id"] and loaded["publish"] == "published"
    assert loaded["totals"]["rows_read"] == expected["rows_read"]
    committed = as_xcom(tasks.commit(batch, loaded, pipeline=p))
    assert committed == {"batch_id": batch["batch_id"], "state_version": 1}
    wm = p.state.read()
    # the watermark's batch summary has the manifest's totals: commit read the manifest load wrote
    assert wm.recent_batches[0]["batch_id"] == batch["batch_id"]
    assert wm.recent_batches[0]["rows_read"] == read_manifest(p.out, batch["batch_id"]).totals["rows_read"] == 15
    assert tasks.discover(None, pipeline=p) is False  # nothing new: the DAG's short-circuit


def test_load_and_commit_again_are_no_ops(local_pipeline):
    """A retried load reports the batch as already published; a retried commit leaves the state where it is."""
    p = local_pipeline
    batch = discover_and_extract(p)
    stage(p, batch)
    loaded = as_xcom(tasks.load(batch, pipeline=p))
    assert as_xcom(tasks.commit(batch, loaded, pipeline=p))["state_version"] == 1
    again = as_xcom(tasks.load(batch, pipeline=p))
    assert again["publish"] == "already_published" and again["totals"] == loaded["totals"]
    assert as_xcom(tasks.commit(batch, again, pipeline=p))["state_version"] == 1


def test_commit_without_a_published_manifest_fails_naming_it(local_pipeline):
    p = local_pipeline
    batch = discover_and_extract(p)
    with pytest.raises(FileNotFoundError, match="no manifest at .*_manifests/"):
        tasks.commit(batch, {"batch_id": batch["batch_id"]}, pipeline=p)
    assert p.state.read().version == 0


def test_commit_refuses_the_load_result_of_another_batch(local_pipeline):
    p = local_pipeline
    batch = discover_and_extract(p)
    with pytest.raises(ValueError, match="load reported batch 'other'"):
        tasks.commit(batch, {"batch_id": "other"}, pipeline=p)


def test_discover_applies_the_state_operation_of_the_params(local_pipeline):
    """The DAG params' operation runs before the listing: after a reset the committed files are new again."""
    p = local_pipeline
    batch = discover_and_extract(p)
    stage(p, batch)
    tasks.commit(batch, tasks.load(batch, pipeline=p), pipeline=p)
    assert tasks.discover({"operation": "run", "to_batch": None}, pipeline=p) is False
    again = as_xcom(tasks.discover({"operation": "reset"}, pipeline=p))
    assert sorted(o["key"] for o in again["objects"]) == sorted(o.key for o in p.read_plan(batch["batch_id"]).objects)
