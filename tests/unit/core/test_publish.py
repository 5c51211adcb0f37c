"""Publishing a staged batch on a local folder (no JVM: the staged files are stand-ins; publish only copies them)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from nexgen_etl.core import layout
from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.publish import StaleCatalogError, TransformMissingError, publish_batch, read_catalog, read_manifest
from nexgen_etl.core.results import FileAccounting, StagedResult
from nexgen_etl.core.storage import LocalStore, ObjectInfo


def _plan(store: LocalStore, key: str, etag: str) -> BatchPlan:
    obj = ObjectInfo(datetime(2024, 1, 2, tzinfo=timezone.utc), key, etag, 10)
    return BatchPlan.build([obj], "raw/", store.url, load_contract(), 0, {key: ["date"]}, {})


def _stage(store: LocalStore, plan: BatchPlan, days: list[str], catalog_version: int) -> None:
    for ds in ("clean", "features"):
        for day in days:
            store.put_bytes(f"{layout.staged_dataset_dir(plan.batch_id, ds)}period_date={day}/part-0.parquet",
                            f"{ds} {plan.batch_id} {day}".encode())
    key = plan.objects[0].key
    store.put_bytes(f"{layout.staged_dataset_dir(plan.batch_id, 'quarantine')}source_id=s/part-0.parquet", b"q")
    result = StagedResult(batch_id=plan.batch_id, catalog_version=catalog_version, clean_partitions=days,
                          features_ranges=[[days[0], days[-1]]], quarantine_partitions=["s"],
                          sources={key: {"etag": plan.objects[0].etag, "min": days[0], "max": days[-1]}},
                          accounting={key: FileAccounting(rows_read=len(days), rows_out=len(days))},
                          schemas={"clean": "{}", "features": "{}"})
    store.put_bytes(layout.result_key(plan.batch_id), result.to_json().encode())


def _files(root: Path, dataset: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / dataset).rglob("*.parquet"))


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
    assert read_manifest(store, plan.batch_id).accounting["sales/a.csv"].rows_read == 2

    again = publish_batch(store, plan)
    assert again.publish == "already_published"
    assert read_catalog(store) == cat and cat.files("features") == _files(tmp_path, "features")


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
