"""The example consumer's task body (nexgen_etl.airflow.consumer, dags/examples/forecaster_training.py): the periods
of its triggering asset events, read from the published features through the catalog, over local folders."""

from __future__ import annotations

import os
import shutil
import time
from types import SimpleNamespace

import pytest

from nexgen_etl.airflow import consumer, tasks
from tests.unit.airflow.conftest import as_xcom
from tests.unit.airflow.test_assets import ASSET, History, announce, published
from tests.unit.airflow.test_tasks import stage


def event(extra: dict, name: str = ASSET.name) -> SimpleNamespace:
    """A triggering asset event as the consumer's context lists it (.asset.name, .extra)."""
    return SimpleNamespace(asset=SimpleNamespace(name=name), extra=extra)


def two_batches(p, raw) -> list[dict]:
    """Batch 1 replaces 2024-01-01..03 (5 rows each), batch 2 replaces 2024-01-03..04 (7 rows each): the extras of
    their two events."""
    history = History()
    batch, loaded = published(p)
    announce(p, batch, loaded, history)
    new = raw / "sales" / "2024" / "01" / "04" / "sales_2024-01-04.csv"
    new.parent.mkdir(parents=True)
    shutil.copy(sorted(raw.rglob("*.csv"))[0], new)
    later = time.time() + 60
    os.utime(new, (later, later))
    second = as_xcom(tasks.extract(as_xcom(tasks.discover(None, pipeline=p)), pipeline=p))
    stage(p, second, rows_per_file=7, periods=("2024-01-03", "2024-01-04"))
    announce(p, second, as_xcom(tasks.load(second, pipeline=p)), history)
    return [e.extra for e in history.events]


def test_training_reads_exactly_the_periods_of_its_events(local_pipeline, tmp_path):
    """Catches: reading every published period (the catalog's whole features list) instead of the events' ones,
    and reading only the last event of a run that several batches triggered. A period replaced again since is read
    as the catalog lists it now (batch 2's rows for 2024-01-03)."""
    p = local_pipeline
    first, second = two_batches(p, tmp_path / "raw")
    got = as_xcom(consumer.training_slice([event(second)], ASSET.name, store=p.out))
    assert got["periods"] == ["2024-01-03", "2024-01-04"] and got["batches"] == [second["batch_id"]]
    assert got["rows_per_period"] == {"2024-01-03": 7, "2024-01-04": 7} and got["rows"] == 14 and got["files"] == 2
    both = consumer.training_slice([event(first), event(second)], ASSET.name, store=p.out)
    assert both["periods"] == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    # 2024-01-03 as batch 2 left it (7 rows), not batch 1's superseded file as well
    assert both["rows_per_period"] == {"2024-01-01": 5, "2024-01-02": 5, "2024-01-03": 7, "2024-01-04": 7}
    assert "units_sold" in both["columns"] and "period_date" in both["columns"]


def test_events_of_another_asset_are_not_read_and_two_locations_are_refused():
    ours = event({"batch_id": "b1", "output_url": "s3://out/", "periods": {"features": ["2024-01-02"]}})
    other = event({"batch_id": "x", "output_url": "s3://other/", "periods": {"features": ["1999-01-01"]}},
                  name="nexgen://features/sensor_readings")
    assert consumer.new_periods([ours, other], ASSET.name) == {"batches": ["b1"], "output_url": "s3://out/",
                                                               "periods": ["2024-01-02"]}
    moved = event({"batch_id": "b2", "output_url": "s3://moved/", "periods": {"features": ["2024-01-03"]}})
    with pytest.raises(ValueError, match="several output locations"):
        consumer.new_periods([ours, moved], ASSET.name)


def test_no_period_no_read_and_no_event_no_run():
    """An event without periods reads nothing (and needs no store); a run with no event of the asset at all (by
    hand, or scheduled on a name reference, which Airflow 3.3.2 gives no events) is skipped, saying so."""
    from airflow.sdk.exceptions import AirflowSkipException

    got = consumer.training_slice([event({"batch_id": "b", "periods": {"features": []}})], ASSET.name)
    assert got["rows"] == 0 and got["files"] == 0
    with pytest.raises(AirflowSkipException, match="no nexgen://features/nexgen_sales event behind this run"):
        consumer.training_slice([], ASSET.name)
