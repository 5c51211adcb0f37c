"""Conditional writes on a real S3 endpoint (moto's server through boto3): the state and the catalog are replaced
only over the exact version that was read, so a writer that lost a race fails instead of overwriting."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from nexgen_etl.core import layout
from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.publish import StaleCatalogError, publish_batch, read_catalog
from nexgen_etl.core.results import FileAccounting, StagedResult
from nexgen_etl.core.state import ObjectStateStore, StaleStateError, Watermark
from nexgen_etl.core.storage import ObjectInfo, PreconditionFailed, S3Store
from tests.racing import CompetingWriter


def test_s3_conditional_puts(s3, buckets) -> None:
    """Catches: the conditions not reaching S3 (a put that ignores If-Match / If-None-Match)."""
    store = S3Store(buckets[1], "", s3)
    store.put_bytes("k", b"one", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put_bytes("k", b"two", if_none_match=True)
    _, etag = store.get_versioned("k")
    store.put_bytes("k", b"two", if_match=etag)
    with pytest.raises(PreconditionFailed):
        store.put_bytes("k", b"three", if_match=etag)  # the version it names is gone
    assert store.get_bytes("k") == b"two"


def test_state_writers_racing_on_s3(s3, buckets) -> None:
    """Catches: the S3 state store's read-check-write (two PUTs of the state after one read each)."""
    store = ObjectStateStore(S3Store(buckets[1], "", s3), "_state.json")
    store.compare_and_set(0, Watermark())
    base = store.read()
    first = Watermark(version=5, revision=base.revision + 1)
    racing = ObjectStateStore(CompetingWriter(store.store, lambda: store.compare_and_set(base.revision, first)),
                              "_state.json")
    with pytest.raises(StaleStateError):
        racing.compare_and_set(base.revision, Watermark(version=6, revision=base.revision + 1))
    assert store.read().version == 5


def test_catalog_put_loses_to_a_batch_that_published_first(s3, buckets) -> None:
    """A publish whose catalog changed after it started fails at the commit point and publishes nothing.

    Catches: re-reading the catalog before an unconditional PUT (another batch could publish between the two; tried:
    with an unconditional PUT the competitor's catalog was overwritten)."""
    store = S3Store(buckets[1], "", s3)
    obj = ObjectInfo(datetime(2024, 1, 2, tzinfo=timezone.utc), "sales/a.csv", "e1", 10)
    plan = BatchPlan.build([obj], "raw/", store.url, load_contract(), 0, {obj.key: ["date"]}, {})
    store.put_bytes(f"{layout.staged_dataset_dir(plan.batch_id, 'features')}period_date=2024-01-01/p.parquet", b"f")
    result = StagedResult(batch_id=plan.batch_id, catalog_version=0, features_ranges=[["2024-01-01", "2024-01-01"]],
                          sources={obj.key: {"etag": "e1", "min": None, "max": None}},
                          accounting={obj.key: FileAccounting()})
    store.put_bytes(layout.result_key(plan.batch_id), result.to_json().encode())
    competitor = Catalog(version=1, batches=("other",))
    racing = CompetingWriter(store, lambda: store.put_bytes(layout.CATALOG_KEY, competitor.to_json().encode()))
    with pytest.raises(StaleCatalogError, match="another batch published"):
        publish_batch(racing, plan)
    assert read_catalog(store) == competitor
