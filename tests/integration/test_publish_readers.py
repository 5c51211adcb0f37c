"""Readers polling the loading bucket while a batch publishes: a reader of the catalog sees whole batches only (every
file the catalog it read lists is there, each (key, period) once); a plain reader of the `features/` prefix sees each
(key, period) once, every period present (S3 through moto's server; the staged files are small real Parquet files,
so no Spark is needed)."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from nexgen_etl.core import layout, publish
from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.publish import publish_batch
from nexgen_etl.core.results import FileAccounting, StagedResult
from nexgen_etl.core.storage import ObjectInfo, S3Store

DAYS = [f"2024-01-{d:02d}" for d in range(1, 9)]


def _parquet(day: str, version: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"store_id": ["S1", "S2"], "date": [day, day], "version": [version, version]}), sink)
    return sink.getvalue()


def _stage(store: S3Store, etag: str, catalog_version: int, version: int) -> BatchPlan:
    obj = ObjectInfo(datetime(2024, 1, 9, tzinfo=timezone.utc), "sales/a.csv", etag, 10)
    plan = BatchPlan.build([obj], "raw/", store.url, load_contract(), catalog_version, {obj.key: ["date"]}, {})
    for day in DAYS:
        store.put_bytes(f"{layout.staged_dataset_dir(plan.batch_id, 'features')}period_date={day}/p.parquet",
                        _parquet(day, version))
    result = StagedResult(batch_id=plan.batch_id, catalog_version=catalog_version,
                          features_ranges=[[DAYS[0], DAYS[-1]]],
                          sources={obj.key: {"etag": etag, "min": DAYS[0], "max": DAYS[-1]}},
                          accounting={obj.key: FileAccounting()})
    store.put_bytes(layout.result_key(plan.batch_id), result.to_json().encode())
    return plan


class SlowCopies:
    """The store with each copy and delete slowed down, so that a publish lasts long enough for many reads."""

    def __init__(self, store: S3Store) -> None:
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def copy(self, src: str, dst: str) -> None:
        time.sleep(0.05)
        self.store.copy(src, dst)

    def delete(self, keys) -> None:
        time.sleep(0.05)
        self.store.delete(keys)


def _poll_during_publish(store: S3Store, plan: BatchPlan, read) -> tuple[list, list[str]]:
    """read(problems) called over and over in a thread while plan publishes (slowed): what each call returned, and
    the problems the calls noted."""
    seen: list = []
    problems: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.append(read(problems))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        publish_batch(SlowCopies(store), plan)
    finally:
        done.set()
        thread.join()
    return seen, problems


def _rows(store: S3Store, keys: list[str], problems: list[str], label: str) -> list[dict]:
    """The rows of the Parquet files, each (store, day) expected once and every day present; a file that cannot be
    read, a key twice or a day missing noted as a problem."""
    rows = []
    for k in keys:
        try:
            rows += pq.read_table(io.BytesIO(store.get_bytes(k))).to_pylist()
        except Exception as exc:  # noqa: BLE001 - any failure to read a listed file is the finding
            problems.append(f"{label}: {k} listed, unreadable: {type(exc).__name__}")
    keys_seen = [(r["store_id"], r["date"]) for r in rows]
    if len(keys_seen) != len(set(keys_seen)) or len(keys_seen) != 2 * len(DAYS):
        problems.append(f"{label}: {len(keys_seen)} rows, {len(set(keys_seen))} distinct keys")
    return rows


def test_a_catalog_reader_sees_whole_batches_during_a_publish(s3, buckets) -> None:
    """Catches: superseded files deleted before the catalog PUT (tried: moving the cleanup before the PUT made the
    reader meet files its catalog listed but that were gone), or the catalog written before the copies."""
    store = S3Store(buckets[1], "", s3)
    publish_batch(store, _stage(store, "e1", 0, 1))

    def read(problems: list[str]) -> tuple[int, frozenset[int]]:
        cat = Catalog.from_json(store.get_bytes(layout.CATALOG_KEY).decode())
        rows = _rows(store, cat.files("features"), problems, f"catalog v{cat.version}")
        return cat.version, frozenset(r["version"] for r in rows)

    seen, problems = _poll_during_publish(store, _stage(store, "e2", 1, 2), read)
    assert not problems, problems[:5]
    assert {v for v, _ in seen} >= {1} and all(versions == {v} for v, versions in seen), seen[:5]
    assert len(seen) > 3  # the reader really read during the publish


def test_a_plain_reader_sees_each_key_once_during_a_publish(s3, buckets, monkeypatch) -> None:
    """A reader of the prefix `features/` (every Parquet file under it, as Spark, pandas or DuckDB read a folder)
    polling while a correction publishes: every read holds each (store, day) exactly once, all days present.

    Catches: a view replaced by new names then deletion of the old ones (tried: copying each partition's new file
    under a name of its batch before deleting the old file made the reader see 2 versions of a day), and the plain
    view written before the catalog PUT or not at all (the final check: the view is the second batch's)."""
    monkeypatch.setattr(publish, "PUBLISH_THREADS", 1)  # the view changes over partition by partition, slowly
    store = S3Store(buckets[1], "", s3)
    publish_batch(store, _stage(store, "e1", 0, 1))

    def read(problems: list[str]) -> frozenset[int]:
        keys = [o.key for o in store.list("features/") if o.key.endswith(".parquet")]
        return frozenset(r["version"] for r in _rows(store, keys, problems, "features/"))

    seen, problems = _poll_during_publish(store, _stage(store, "e2", 1, 2), read)
    assert not problems, problems[:5]
    assert len(seen) > 3 and frozenset({1, 2}) in seen  # the reader really read while the view changed over
    assert read([]) == {2}
