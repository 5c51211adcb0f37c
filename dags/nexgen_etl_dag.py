"""NexGen ETL: raw sales CSVs (S3) → PySpark cleaning and features → partitioned Parquet (S3).

A thin DAG: every decision lives in the nexgen_etl package. Nothing here reads a Variable, a Connection or the
network at parse time.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from nexgen_etl.airflow.support import NexgenSparkSubmitOperator

DEFAULT_ARGS = {
    "owner": "nexgen",
    "retries": 2,
    # an environment setting, not a Variable: nothing is looked up in the metadata DB at parse time
    "retry_delay": timedelta(seconds=float(os.environ.get("NEXGEN_RETRY_DELAY_SECONDS", "30"))),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="nexgen_etl_pipeline",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["nexgen", "etl", "spark", "s3"],
    doc_md=__doc__,
    params={
        "operation": Param("run", enum=["run", "reset", "rewind", "reprocess", "rebuild"],
                           description="State operation applied before the pass (see docs/operations.md)"),
        # optional (null allowed): a plain "string" type makes the UI's trigger form demand a value for each
        "to_batch": Param(None, type=["null", "string"], description="rewind: the batch to go back to"),
        "key": Param(None, type=["null", "string"], description="reprocess: one raw key"),
        "prefix": Param(None, type=["null", "string"], description="reprocess: a raw key prefix"),
        "since": Param(None, type=["null", "string"], description="reprocess: ISO time, LastModified at or after it"),
    },
)
def nexgen_etl_pipeline():
    @task.short_circuit
    def discover_files(params: dict | None = None) -> dict | bool:
        """List the raw bucket; the objects above the watermark, or False (skip the rest) when nothing is new."""
        from nexgen_etl.airflow.support import apply_operation, checked_pipeline

        pipeline = checked_pipeline()
        if op := apply_operation(pipeline, params or {}):
            print(f"Applied state operation {op!r}; continuing with a normal pass.")
        found, wm = pipeline.discover()
        if not found.new:
            mark = f"{wm.last_modified.isoformat()} {wm.key}" if wm.last_modified else "(empty)"
            print(f"No new files above the watermark {mark}; nothing to do.")
            return False
        return {"objects": [o.to_dict() for o in found.new], "state_version": wm.version,
                "deferred": found.deferred, "timing": found.timing}

    @task
    def extract(discovered: dict) -> dict:
        """Validate and freeze the batch: the exact object versions it owns."""
        from nexgen_etl.airflow.support import airflow_pipeline
        from nexgen_etl.core.storage import ObjectInfo

        plan = airflow_pipeline().extract([ObjectInfo.from_dict(o) for o in discovered["objects"]],
                                          discovered["state_version"], discovered.get("timing"))
        return {"batch_id": plan.batch_id, "files": len(plan.objects), "bytes": plan.total_bytes}

    transform = NexgenSparkSubmitOperator(task_id="transform", conn_id="spark_default", name="nexgen-etl-transform")

    @task
    def load(batch: dict) -> dict:
        """Publish the staged output and the manifest (all at once, never twice); write the run report."""
        from nexgen_etl.airflow.support import airflow_pipeline

        p = airflow_pipeline()
        manifest = p.load(p.read_plan(batch["batch_id"]))
        return {"batch_id": batch["batch_id"], "publish": manifest["publish"], "totals": manifest.get("totals")}

    @task
    def commit(batch: dict, loaded: dict) -> dict:
        """Advance the watermark Variable (compare-and-set), only after load succeeded; finalise the report."""
        from nexgen_etl.airflow.support import airflow_pipeline

        p = airflow_pipeline()
        wm = p.commit(p.read_plan(batch["batch_id"]), loaded)
        return {"batch_id": batch["batch_id"], "state_version": wm.version}

    batch = extract(discover_files())
    loaded = load(batch)
    batch >> transform >> loaded
    commit(batch, loaded)


nexgen_etl_pipeline()
