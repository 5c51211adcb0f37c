"""A consumer of a feed's Asset (dags/examples/forecaster_training.py): the features periods that new batches
replaced, read from the published output exactly as the catalog lists them.

A consumer DAG scheduled on `nexgen://features/<feed>` gets, in its run's triggering asset events, one event per
batch committed since its last run; each event's extra names the batch, the output location and the features
periods the batch replaced (nexgen_etl.airflow.tasks.event_extra). The features of those periods are the files the
catalog (`_catalog.json`) lists for them now: a reader of the catalog never sees a half-published batch.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

from nexgen_etl.airflow.connections import AWS_CONN_ID

if TYPE_CHECKING:
    import pyarrow as pa

    from nexgen_etl.core.storage import ObjectStore

log = logging.getLogger("nexgen_etl")


def new_periods(events, asset_name: str) -> dict[str, Any]:
    """What the asset events (objects with .extra, and .asset.name) of `asset_name` announced: their batches, the
    output location and the union of their features periods (several batches may have come since the last run)."""
    mine = [e for e in events if getattr(getattr(e, "asset", None), "name", asset_name) == asset_name]
    extras = [e.extra or {} for e in mine]
    urls = sorted({x["output_url"] for x in extras if x.get("output_url")})
    if len(urls) > 1:
        raise ValueError(f"{asset_name} events name several output locations {urls}: read them one at a time")
    periods = sorted({p for x in extras for p in (x.get("periods") or {}).get("features", [])})
    return {"batches": [x.get("batch_id") for x in extras], "output_url": urls[0] if urls else None,
            "periods": periods}


def read_features(store: ObjectStore, periods: list[str]) -> tuple[pa.Table | None, list[str]]:
    """The published features of exactly these periods, as one pyarrow Table with a `period_date` column, and the
    files read: those the catalog lists for the periods now (a period that a later batch replaced again is read as
    it is now; one that lost all its rows has no file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nexgen_etl.core.publish import read_catalog

    files = read_catalog(store).files("features", periods)
    tables = []
    for key in files:
        period = key.split("period_date=", 1)[1].split("/", 1)[0]
        table = pq.read_table(io.BytesIO(store.get_bytes(key)))
        if "period_date" not in table.column_names:  # a partition's value is in its path, not in its files
            table = table.append_column("period_date", pa.array([period] * table.num_rows, pa.string()))
        tables.append(table)
    return (pa.concat_tables(tables, promote_options="default") if tables else None), files


def training_slice(events, asset_name: str, *, store: ObjectStore | None = None,
                   conn_id: str = AWS_CONN_ID) -> dict[str, Any]:
    """The consumer's task body: read the features of the periods the triggering events announced and log what a
    training would get (no model here). The output location comes from the events; `store` replaces it (tests)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from nexgen_etl.core.storage import open_store

    wanted = new_periods(events, asset_name)
    if not wanted["batches"]:
        raise AirflowSkipException(f"no {asset_name} event behind this run (triggered by hand?): nothing new to read")
    if not wanted["periods"]:
        log.info("training: the %s events of batches %s name no features period; nothing to train on", asset_name,
                 wanted["batches"])
        return {**wanted, "files": 0, "rows": 0, "rows_per_period": {}}
    if store is None:
        from nexgen_etl.airflow.tasks import store_factory

        store = open_store(wanted["output_url"], store_factory(conn_id))
    table, files = read_features(store, wanted["periods"])
    rows_per_period: dict[str, int] = {}
    if table is not None:
        for period in table.column("period_date").to_pylist():
            rows_per_period[period] = rows_per_period.get(period, 0) + 1
    summary = {**wanted, "files": len(files), "rows": table.num_rows if table is not None else 0,
               "rows_per_period": dict(sorted(rows_per_period.items())),
               "columns": table.column_names if table is not None else []}
    log.info("training: would train on %d rows of %d periods (%s … %s) from %d files of batches %s, %d columns",
             summary["rows"], len(wanted["periods"]), wanted["periods"][0], wanted["periods"][-1], len(files),
             wanted["batches"], len(summary["columns"]))
    return summary
