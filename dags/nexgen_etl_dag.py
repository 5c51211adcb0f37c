"""NexGen ETL: raw CSVs (S3) → PySpark cleaning and features → partitioned Parquet (S3), one DAG per feed.

A feed is a data contract in include/contracts/<feed>.yaml (nexgen_etl.airflow.feeds): this file makes one DAG
for each, from the files alone. Nothing here reads a Variable, a Connection, the metadata DB or the network at
parse time. The DAGs only wire tasks; what each task does is in nexgen_etl.airflow.tasks (and the transform in
nexgen_etl.airflow.operator).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from nexgen_etl.airflow import tasks as steps
from nexgen_etl.airflow.feeds import Feed, contracts_dir, discover_feeds
from nexgen_etl.airflow.operator import NexgenSparkSubmitOperator

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
# Each task's execution_timeout. A run holds the feed's lease (2 h, nexgen_etl.core.state.LEASE_SECONDS) from
# discover on: the transform (spark-submit, killed by the operator's on_kill at its timeout) must end well
# inside it, so that a hung job is stopped and retried while its run still owns the lease.
TIMEOUTS = {
    "discover_files": timedelta(minutes=15),  # the listing of a large raw bucket, page by page
    "extract": timedelta(minutes=20),  # one ranged GET per file of the batch (up to limits.max_batch_files)
    "transform": timedelta(minutes=90),
    "load": timedelta(minutes=20),  # server-side copies of the batch's files, the manifest, the catalog PUT
    "commit": timedelta(minutes=5),
}

DEFAULT_ARGS = {
    "owner": "nexgen",
    "retries": 2,
    # an environment setting, not a Variable: nothing is looked up in the metadata DB at parse time
    "retry_delay": timedelta(seconds=float(os.environ.get("NEXGEN_RETRY_DELAY_SECONDS", "30"))),
    "retry_exponential_backoff": True,
}

PARAMS = {
    "operation": Param("run", enum=["run", "reset", "rewind", "reprocess", "rebuild", "approve", "reject"],
                       description="State operation applied before the pass (see docs/operations.md)"),
    # optional (null allowed): a plain "string" type makes the UI's trigger form demand a value for each
    "to_batch": Param(None, type=["null", "string"],
                      description="rewind: the batch to go back to; approve, reject: the batch the quality gates hold"),
    "key": Param(None, type=["null", "string"], description="reprocess: one raw key"),
    "prefix": Param(None, type=["null", "string"], description="reprocess: a raw key prefix"),
    "since": Param(None, type=["null", "string"], description="reprocess: ISO time, LastModified at or after it"),
}


def feed_dag(feed: Feed):
    """The DAG of one feed: discover_files → extract → transform → load → commit (which emits the feed's Asset)."""
    features = feed.asset()

    @dag(
        dag_id=feed.dag_id,
        schedule=feed.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["nexgen", "etl", "spark", "s3", f"feed:{feed.name}"],
        doc_md=f"{__doc__}\nFeed **{feed.name}**: contract `{feed.contract_path or 'packaged default'}`, watermark "
               f"Variable `{feed.state_variable}`, Asset `{feed.asset_name}` ({features.uri}).",
        params=PARAMS,
    )
    def pipeline():
        @task.short_circuit(execution_timeout=TIMEOUTS["discover_files"])
        def discover_files(params: dict | None = None) -> dict | bool:
            """List the raw location above the watermark: the new objects, or False (skip the rest) when none."""
            return steps.discover(params, feed=feed)

        @task(execution_timeout=TIMEOUTS["extract"])
        def extract(discovered: dict) -> dict:
            """Validate and freeze the batch: the exact object versions it owns, and the plan's URI."""
            return steps.extract(discovered, feed=feed)

        # spark-submit of the job with --plan <extract's plan_uri> (templated application_args)
        app = "nexgen-etl-transform" if feed.is_default else f"nexgen-etl-transform-{feed.name}"  # Spark's name
        transform = NexgenSparkSubmitOperator(task_id="transform", conn_id="spark_default", name=app,
                                              extract_task_id="extract", feed=feed,
                                              execution_timeout=TIMEOUTS["transform"])

        @task(execution_timeout=TIMEOUTS["load"])
        def load(batch: dict) -> dict:
            """Publish the staged output and the manifest (all at once, never twice); write the run report."""
            return steps.load(batch, feed=feed)

        @task(execution_timeout=TIMEOUTS["commit"], inlets=[features], outlets=[features])
        def commit(batch: dict, loaded: dict) -> dict:
            """Advance the watermark Variable (compare-and-set), only after load succeeded; finalise the report.
            Its success carries the feed's asset event (batch, periods, row counts), once per batch."""
            context = get_current_context()
            return steps.commit_and_announce(batch, loaded, asset=features, outlet_events=context["outlet_events"],
                                             inlet_events=context["inlet_events"], feed=feed)

        batch = extract(discover_files())
        loaded = load(batch)
        batch >> transform >> loaded
        commit(batch, loaded)

    return pipeline()


for _feed in discover_feeds(contracts_dir(Path(__file__).resolve().parent)):
    feed_dag(_feed)
