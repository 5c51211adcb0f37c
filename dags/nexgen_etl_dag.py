"""NexGen ETL: raw sales CSVs (S3) → PySpark cleaning and features → partitioned Parquet (S3).

A thin DAG: it only wires tasks; what each task does is in nexgen_etl.airflow.tasks (and the transform in
nexgen_etl.airflow.operator). Nothing here reads a Variable, a Connection or the network at parse time.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from nexgen_etl.airflow import tasks as steps
from nexgen_etl.airflow.operator import NexgenSparkSubmitOperator

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
        return steps.discover(params)

    @task
    def extract(discovered: dict) -> dict:
        """Validate and freeze the batch: the exact object versions it owns, and the plan's URI."""
        return steps.extract(discovered)

    # spark-submit of the job with --plan <extract's plan_uri> (templated application_args)
    transform = NexgenSparkSubmitOperator(task_id="transform", conn_id="spark_default", name="nexgen-etl-transform",
                                          extract_task_id="extract")

    @task
    def load(batch: dict) -> dict:
        """Publish the staged output and the manifest (all at once, never twice); write the run report."""
        return steps.load(batch)

    @task
    def commit(batch: dict, loaded: dict) -> dict:
        """Advance the watermark Variable (compare-and-set), only after load succeeded; finalise the report."""
        return steps.commit(batch, loaded)

    batch = extract(discover_files())
    loaded = load(batch)
    batch >> transform >> loaded
    commit(batch, loaded)


nexgen_etl_pipeline()
