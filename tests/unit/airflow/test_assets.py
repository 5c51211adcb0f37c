"""The feed's asset event, at the level of the commit task's body (nexgen_etl.airflow.tasks.commit_and_announce):
the real Pipeline over local folders, Airflow's own OutletEventAccessors (what a task's context holds), and a
stand-in for Airflow's record of the asset's events (what `context["inlet_events"][asset]` queries).

Airflow records a task's outlet events only when the task succeeds; `announce` below does the same with the history.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.execution_time.context import OutletEventAccessors

from nexgen_etl.airflow import tasks
from nexgen_etl.airflow.feeds import default_feed
from nexgen_etl.core.publish import read_manifest
from tests.unit.airflow.conftest import as_xcom
from tests.unit.airflow.test_tasks import discover_and_extract, stage

ASSET = default_feed().asset()
PERIODS = ("2024-01-01", "2024-01-02", "2024-01-03")


class History:
    """The asset's events as Airflow keeps them: `history[asset].after(t)` lists those stamped at or after t."""

    def __init__(self, asset=ASSET) -> None:
        self.asset = asset
        self.events: list[SimpleNamespace] = []
        self.queried_after: list[datetime | None] = []

    def __getitem__(self, asset):
        assert asset == self.asset, "the commit task reads the history of its own asset"
        return Query(self)

    def record(self, outlet_events: OutletEventAccessors) -> None:
        """What Airflow does when the task succeeds: one event per asset, with the extra the task set."""
        for asset in outlet_events:
            self.events.append(SimpleNamespace(id=len(self.events) + 1, timestamp=datetime.now(timezone.utc),
                                               extra=dict(outlet_events[asset].extra), asset=asset))


class Query(list):
    def __init__(self, history: History) -> None:
        super().__init__(history.events)
        self.history = history

    def after(self, since):
        self.history.queried_after.append(since)
        return [e for e in self if e.timestamp >= since]


def announce(p, batch: dict, loaded: dict, history: History):
    """One try of the commit task: its XCom and the event's extra, or None and the reason it was skipped."""
    events = OutletEventAccessors()
    try:
        out = as_xcom(tasks.commit_and_announce(batch, loaded, asset=ASSET, outlet_events=events,
                                                inlet_events=history, pipeline=p))
    except AirflowSkipException as skip:
        return None, str(skip)
    history.record(events)
    return out, events[ASSET].extra


def published(p, periods=PERIODS, rows: int = 5) -> tuple[dict, dict]:
    batch = discover_and_extract(p)
    stage(p, batch, rows_per_file=rows, periods=periods)
    return batch, as_xcom(tasks.load(batch, pipeline=p))


def test_commit_announces_the_batch_with_the_manifest_periods_and_totals(local_pipeline):
    """Catches: the totals left out, an extra that is not JSON (a datetime in it), the history read without a bound
    (every event of the asset, each time)."""
    p = local_pipeline
    history = History()
    batch, loaded = published(p)
    out, extra = announce(p, batch, loaded, history)
    manifest = read_manifest(p.out, batch["batch_id"])
    assert out == {"batch_id": batch["batch_id"], "state_version": 1, "asset": "nexgen://features/nexgen_sales",
                   "periods": 3}
    assert extra == as_xcom(extra)
    assert extra["batch_id"] == batch["batch_id"] and extra["feed"] == "nexgen_sales"
    assert extra["output_url"] == p.out.url
    assert extra["periods"] == {"features": list(PERIODS), "clean": list(PERIODS)}
    assert extra["periods"]["features"] == sorted(manifest.outputs["features"])
    assert extra["totals"] == manifest.totals and extra["totals"]["rows_read"] == 15
    assert p.state.read().version == 1
    published_at = datetime.fromisoformat(manifest.published_at)
    assert history.queried_after == [published_at - tasks.ANNOUNCE_SKEW]


def test_a_commit_run_again_after_its_event_announces_nothing(local_pipeline):
    """A commit that runs again after it succeeded once (its task, or load and commit, cleared): the batch is
    committed already and its event is in Airflow's record, so no second event (the task is skipped).
    Catches: deciding by load's XCom (`publish` is still "published" when only commit is cleared), or by nothing
    at all (a second event: the consumers would train twice on the same batch)."""
    p = local_pipeline
    history = History()
    batch, loaded = published(p)
    assert announce(p, batch, loaded, history)[1]["batch_id"] == batch["batch_id"]
    # commit cleared: load's XCom is the first one ("published")
    out, why = announce(p, batch, loaded, history)
    assert out is None and "already announced" in why and batch["batch_id"] in why
    # load and commit cleared: load now finds the batch published
    again = as_xcom(tasks.load(batch, pipeline=p))
    assert again["publish"] == "already_published"
    out, why = announce(p, batch, again, history)
    assert out is None and "already announced" in why
    assert len(history.events) == 1 and p.state.read().version == 1


def test_a_retry_after_a_failed_try_still_announces(local_pipeline):
    """A failed try records no event, however far it got: a load retried after its catalog PUT reports
    "already_published", a commit retried after its compare-and-set finds the batch committed; the batch's one
    event must still go out. Catches: "no event when load says already_published" and "no event when the watermark
    was already committed" (either loses the batch's only event)."""
    p = local_pipeline
    history = History()
    batch, _ = published(p)
    retried = as_xcom(tasks.load(batch, pipeline=p))  # load's second try after a crash past the catalog PUT
    assert retried["publish"] == "already_published"
    tasks.commit(batch, retried, pipeline=p)  # commit's first try: the watermark moved, then the try died
    assert p.state.read().version == 1 and history.events == []
    out, extra = announce(p, batch, retried, history)  # commit's second try
    assert out["state_version"] == 1 and extra["batch_id"] == batch["batch_id"]
    assert extra["periods"]["features"] == list(PERIODS) and len(history.events) == 1


def test_no_event_for_a_batch_that_replaced_no_features_partition(local_pipeline):
    """A batch whose rows all went to quarantine publishes no features: it is committed, and the features Asset
    gets no event. Catches: an event with an empty period list (a consumer run with nothing to read)."""
    p = local_pipeline
    history = History()
    batch, loaded = published(p, periods=())
    out, why = announce(p, batch, loaded, history)
    assert out is None and "replaced no features partition" in why
    assert p.state.read().version == 1 and history.events == []


def test_each_batch_gets_its_own_event(local_pipeline, tmp_path):
    """Two batches, two events, each with its own periods. Catches: a check for an earlier event that matches any
    event of the asset (not this batch's), which would announce only the first batch ever; periods taken from the
    catalog (every published period) instead of the partitions the manifest says the batch replaced."""
    import os
    import shutil
    import time

    p = local_pipeline
    history = History()
    batch, loaded = published(p)
    announce(p, batch, loaded, history)
    raw = tmp_path / "raw"
    src = sorted(raw.rglob("*.csv"))[-1]
    new = raw / "sales" / "2024" / "01" / "04" / "sales_2024-01-04.csv"
    new.parent.mkdir(parents=True)
    shutil.copy(src, new)
    later = time.time() + 60
    os.utime(new, (later, later))
    second = as_xcom(tasks.extract(as_xcom(tasks.discover(None, pipeline=p)), pipeline=p))
    stage(p, second, periods=("2024-01-03", "2024-01-04"))
    out, extra = announce(p, second, as_xcom(tasks.load(second, pipeline=p)), history)
    assert out["state_version"] == 2 and extra["batch_id"] == second["batch_id"] != batch["batch_id"]
    assert extra["periods"]["features"] == ["2024-01-03", "2024-01-04"]
    assert [e.extra["batch_id"] for e in history.events] == [batch["batch_id"], second["batch_id"]]


def test_the_asset_is_named_after_the_feed_with_the_output_uri(monkeypatch):
    """nexgen://features/<feed>, its URI the features of the output location the environment gives."""
    from nexgen_etl.airflow.feeds import Feed

    monkeypatch.delenv("NEXGEN_OUTPUT_URL", raising=False)
    assert (ASSET.name, ASSET.uri) == ("nexgen://features/nexgen_sales", "s3://nexgen-loading-data/features")
    monkeypatch.setenv("NEXGEN_OUTPUT_URL", "s3://elsewhere/out/")
    other = Feed(name="sensor_readings").asset()
    assert (other.name, other.uri) == ("nexgen://features/sensor_readings", "s3://elsewhere/out/sensor_readings/features")


def test_an_old_manifest_without_a_publish_time_reads_the_whole_history(local_pipeline):
    """A manifest written before `published_at` existed: the history is read unbounded rather than not at all."""
    import dataclasses

    from nexgen_etl.core import layout

    p = local_pipeline
    history = History()
    batch, loaded = published(p)
    manifest = read_manifest(p.out, batch["batch_id"])
    p.out.put_bytes(layout.manifest_key(batch["batch_id"]),
                    dataclasses.replace(manifest, published_at=None).to_json().encode())
    out, extra = announce(p, batch, loaded, history)
    assert extra["batch_id"] == batch["batch_id"] and history.queried_after == []
    assert announce(p, batch, loaded, history)[0] is None
