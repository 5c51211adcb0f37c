"""Example consumer: the NexGen Forecaster's training, run by Airflow whenever the sales feed publishes new features.

Scheduled on the Asset `nexgen://features/nexgen_sales` (the commit task of `nexgen_etl_pipeline` emits it once per
batch it publishes and commits), it reads exactly the features periods that the batches behind its run replaced
(the triggering asset events' extra), from the files the catalog lists for them, and logs what a training would
get. No model is trained here. Like every new DAG it starts paused.

The schedule is the Asset itself (name and URI, as the producer declares it), not `Asset.ref(name=...)`: Airflow
3.3.2's scheduler triggers a DAG scheduled on a name reference but gives its run no events (it collects a run's
events through the DAG's direct asset references only), so `triggering_asset_events` would be empty.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task

from nexgen_etl.airflow.consumer import training_slice
from nexgen_etl.airflow.feeds import DEFAULT_FEED, Feed

FEATURES = Feed(name=DEFAULT_FEED).asset()  # nexgen://features/nexgen_sales, URI: the features' location


@dag(
    dag_id="forecaster_training",
    schedule=FEATURES,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "forecaster", "retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["nexgen", "example", "consumer"],
    doc_md=__doc__,
)
def forecaster_training():
    @task(execution_timeout=timedelta(minutes=30))
    def train_on_new_features() -> dict:
        """Read the new periods' features (pyarrow over the catalog's file list) and log what training would get."""
        events = [e for evs in get_current_context()["triggering_asset_events"].values() for e in evs]
        return training_slice(events, FEATURES.name)

    train_on_new_features()


forecaster_training()
