"""Publishing a staged batch on a local folder (no JVM: the staged files are stand-ins that name their batch, day and
index; publish only copies them)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from nexgen_etl.core import layout, publish
from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.publish import StaleCatalogError, TransformMissingError, publish_batch, read_catalog, read_manifest
from nexgen_etl.core.results import FileAccounting, StagedResult
from nexgen_etl.core.storage import LocalStore, ObjectInfo


def _plan(store: LocalStore, key: str, etag: str) -> BatchPlan:
    obj = ObjectInfo(datetime(2024, 1, 2, tzinfo=timezone.utc), key, etag, 10)
    return BatchPlan.build([obj], "raw/", store.url, load_contract(), 0, {key: ["date"]}, {})


def _stage(store: LocalStore, plan: BatchPlan, days: list[str], catalog_version: int, per_partition: int = 1) -> None:
    for ds in ("clean", "features"):
        for day in days:
            for i in range(per_partition):
                store.put_bytes(f"{layout.staged_dataset_dir(plan.batch_id, ds)}period_date={day}/part-{i}.parquet",
                                f"{ds} {plan.batch_id} {day} {i}".encode())
    key = plan.objects[0].key
    store.put_bytes(f"{layout.staged_dataset_dir(plan.batch_id, 'quarantine')}source_id=s/part-0.parquet",
                    f"quarantine {plan.batch_id} s 0".encode())
    result = StagedResult(batch_id=plan.batch_id, catalog_version=catalog_version, clean_partitions=days,
                          features_ranges=[[days[0], days[-1]]], quarantine_partitions=["s"],
                          sources={key: {"etag": plan.objects[0].etag, "min": days[0], "max": days[-1]}},
                          accounting={key: FileAccounting(rows_read=len(days), rows_out=len(days))},
                          schemas={"clean": "{}", "features": "{}"})
    store.put_bytes(layout.result_key(plan.batch_id), result.to_json().encode())


def _files(root: Path, dataset: str) -> list[str]:
    """The catalog folder's files of a dataset."""
    return sorted(str(p.relative_to(root)) for p in (root / layout.published_dir(dataset)).rglob("*.parquet"))


def _view(root: Path, dataset: str) -> dict[str, list[bytes]]:
    """What a plain reader of the dataset's prefix reads: partition folder → its files' contents in name order."""
    folders = sorted(p for p in (root / dataset).glob("*=*") if p.is_dir()) if (root / dataset).exists() else []
    return {f.name: [p.read_bytes() for p in sorted(f.glob("*.parquet"))] for f in folders}


def _catalog_view(store: LocalStore, root: Path, dataset: str) -> dict[str, list[bytes]]:
    """What the plain view must hold: the catalog's live files of each partition, in order."""
    parts = read_catalog(store).datasets[dataset]
    return {f"{layout.PARTITION_OF[dataset]}={p}": [(root / f).read_bytes() for f in files]
            for p, files in sorted(parts.items()) if files}


def _assert_view_is_the_catalog(store: LocalStore, root: Path) -> None:
    for ds in layout.DATASETS:
        assert _view(root, ds) == _catalog_view(store, root, ds), ds


def test_publish_switches_the_catalog_once_and_cleans_up(tmp_path: Path) -> None:
    """Catches: a second publish of the same batch adding its files again (the retry after the catalog PUT)."""
    store = LocalStore(tmp_path)
    plan = _plan(store, "sales/a.csv", "e1")
    _stage(store, plan, ["2024-01-01", "2024-01-02"], catalog_version=0)
    m = publish_batch(store, plan)
    assert m.publish == "published" and m.totals["rows_out"] == 2
    cat = read_catalog(store)
    assert (cat.version, cat.batches) == (1, (plan.batch_id,))
    assert cat.files("features") == _files(tmp_path, "features")
    assert not [p for p in (tmp_path / layout.staging_dir(plan.batch_id)).rglob("*") if p.is_file()]
    assert not list(store.list(layout.VIEW_PENDING_PREFIX))
    assert read_manifest(store, plan.batch_id).accounting["sales/a.csv"].rows_read == 2
    _assert_view_is_the_catalog(store, tmp_path)
    assert _view(tmp_path, "features")["period_date=2024-01-01"] == [f"features {plan.batch_id} 2024-01-01 0".encode()]

    again = publish_batch(store, plan)
    assert again.publish == "already_published"
    assert read_catalog(store) == cat and cat.files("features") == _files(tmp_path, "features")
    _assert_view_is_the_catalog(store, tmp_path)


def test_a_correction_replaces_the_old_files_and_empties_what_it_no_longer_covers(tmp_path: Path) -> None:
    """Catches: superseded files left beside the new ones (a plain prefix reader would see both versions)."""
    store = LocalStore(tmp_path)
    first = _plan(store, "sales/a.csv", "e1")
    _stage(store, first, ["2024-01-01", "2024-01-02"], catalog_version=0)
    publish_batch(store, first)
    second = _plan(store, "sales/a.csv", "e2")
    _stage(store, second, ["2024-01-01"], catalog_version=1)
    # the correction's features range covers 01-01 only: 01-02 keeps the first batch's features
    publish_batch(store, second)
    cat = read_catalog(store)
    assert cat.batches == (first.batch_id, second.batch_id)
    assert _files(tmp_path, "features") == cat.files("features")
    assert [f for f in cat.files("features", ["2024-01-01"]) if first.batch_id in f] == []
    assert cat.sources["sales/a.csv"]["etag"] == "e2"
    _assert_view_is_the_catalog(store, tmp_path)


def test_publish_refuses_a_result_computed_against_another_catalog(tmp_path: Path) -> None:
    """Catches: publishing a batch transformed before another batch published (its history would be stale)."""
    store = LocalStore(tmp_path)
    plan = _plan(store, "sales/a.csv", "e1")
    _stage(store, plan, ["2024-01-01"], catalog_version=0)
    store.put_bytes(layout.CATALOG_KEY, Catalog(version=3).to_json().encode())
    with pytest.raises(StaleCatalogError, match="catalog v0, the catalog is now v3"):
        publish_batch(store, plan)
    assert read_catalog(store).version == 3 and _files(tmp_path, "features") == []


def test_publish_before_the_transform_names_the_missing_result(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    plan = _plan(store, "sales/a.csv", "e1")
    with pytest.raises(TransformMissingError, match="run the transform step first"):
        publish_batch(store, plan)


class Died(Exception):
    """The publisher's process ends here (nothing after this write runs)."""


class DyingStore:
    """The store, dying before its `die_at`-th write (put, copy, delete), and after every write looking at the plain
    view as a reader of the prefix would: a partition whose files come from two batches is a finding."""

    def __init__(self, store: LocalStore, root: Path, die_at: int | None = None) -> None:
        self.store, self.root, self.die_at = store, root, die_at
        self.writes = 0
        self.mixed: list[str] = []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def _write(self, fn, *args, **kwargs) -> None:
        if self.writes == self.die_at:
            raise Died
        self.writes += 1
        fn(*args, **kwargs)
        for ds in layout.DATASETS:
            for part, contents in _view(self.root, ds).items():
                if len({c.split()[1] for c in contents}) > 1:
                    self.mixed.append(f"after write {self.writes}: {ds}/{part} holds {contents}")

    def put_bytes(self, *args, **kwargs) -> None:
        self._write(self.store.put_bytes, *args, **kwargs)

    def copy(self, *args) -> None:
        self._write(self.store.copy, *args)

    def delete(self, *args) -> None:
        self._write(self.store.delete, *args)


def _published_then_corrected(root: Path) -> tuple[LocalStore, BatchPlan]:
    """Two days published with two files per partition, and a correction of both staged (also two files each)."""
    store = LocalStore(root)
    first = _plan(store, "sales/a.csv", "e1")
    _stage(store, first, ["2024-01-01", "2024-01-02"], catalog_version=0, per_partition=2)
    publish_batch(store, first)
    second = _plan(store, "sales/a.csv", "e2")
    _stage(store, second, ["2024-01-01", "2024-01-02"], catalog_version=1, per_partition=2)
    return store, second


@pytest.mark.parametrize("then", ["the-same-batch-again", "another-batch"])
def test_a_plain_reader_never_sees_two_versions_whichever_write_the_publisher_dies_before(tmp_path, monkeypatch,
                                                                                          then) -> None:
    """The publisher dies before each of its writes in turn; after every write, no partition of the plain view
    holds files of two batches; then the same batch is published again (a retry) or another batch is (a new run with
    new files): the view equals the catalog, nothing is pending, no superseded file is left.

    Catches: the view's new files written before the old ones are removed (tried: the delete after the copies mixed
    a partition's old second file with its new first one), and a publish that ignores what a dead publisher left
    pending (tried: with `_finish` reading no `_views_pending/`, the other batch left the dead one's partitions in
    the view at the old version and its copies in the catalog folder)."""
    monkeypatch.setattr(publish, "PUBLISH_THREADS", 1)  # one order of writes, so that "the n-th write" is one point
    store, second = _published_then_corrected(tmp_path / "count")
    counting = DyingStore(store, tmp_path / "count")
    publish_batch(counting, second)
    assert counting.writes > 10 and not counting.mixed, counting.mixed
    for die_at in range(counting.writes):
        root = tmp_path / str(die_at)
        store, second = _published_then_corrected(root)
        dying = DyingStore(store, root, die_at)
        with pytest.raises(Died):
            publish_batch(dying, second)
        after = DyingStore(store, root)
        if then == "the-same-batch-again":
            publish_batch(after, second)
        else:
            third = _plan(store, "sales/b.csv", "e3")
            _stage(store, third, ["2024-01-05"], catalog_version=read_catalog(store).version)
            publish_batch(after, third)
        assert not dying.mixed and not after.mixed, (die_at, dying.mixed, after.mixed)
        _assert_view_is_the_catalog(store, root)
        assert not list(store.list(layout.VIEW_PENDING_PREFIX)), die_at
        for ds in layout.DATASETS:
            assert _files(root, ds) == read_catalog(store).files(ds), (die_at, ds)


def test_a_bucket_published_by_the_earlier_layout_moves_over_partition_by_partition(tmp_path: Path) -> None:
    """A catalog whose files are the dataset prefix itself (the layout before `_published/`): a batch replacing one
    of its days gets that day's view under the fixed name, the old file gone; the day it does not replace stays as
    it was, listed by the catalog and in the view. Catches a view sync that treats the old layout's live files as
    stale (tried: without the `_published/` check in sync_view, the untouched day's file was deleted while the
    catalog still listed it)."""
    store = LocalStore(tmp_path)
    old = {day: f"features/period_date={day}/part-bold-00000.snappy.parquet" for day in ("2024-01-01", "2024-01-02")}
    for day, key in old.items():
        store.put_bytes(key, f"features bold {day} 0".encode())
    store.put_bytes(layout.CATALOG_KEY, Catalog(version=1, datasets={"features": {d: [k] for d, k in old.items()},
                                                                     "clean": {}, "quarantine": {}},
                                                batches=("bold",)).to_json().encode())
    plan = _plan(store, "sales/a.csv", "e1")
    _stage(store, plan, ["2024-01-01"], catalog_version=1)
    publish_batch(store, plan)
    publish.sync_view(store, read_catalog(store), {"features": ["2024-01-02"]})  # as a later publish touching it
    cat = read_catalog(store)
    assert cat.files("features", ["2024-01-02"]) == [old["2024-01-02"]]
    assert _view(tmp_path, "features") == {
        "period_date=2024-01-01": [f"features {plan.batch_id} 2024-01-01 0".encode()],
        "period_date=2024-01-02": [b"features bold 2024-01-02 0"]}
    assert not (tmp_path / old["2024-01-01"]).exists()
