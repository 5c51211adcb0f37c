"""The catalog: the live file list of every partition, replaced whole per batch."""

from __future__ import annotations

from nexgen_etl.core.catalog import Catalog


def test_with_batch_replaces_exactly_the_given_partitions() -> None:
    """Catches: a replaced partition keeping its old files beside the new ones, or an emptied one kept."""
    cat = Catalog().with_batch("b1", {"features": {"d1": ["f1"], "d2": ["f2"]}}, {"a": {"etag": "e"}}, {})
    cat2 = cat.with_batch("b2", {"features": {"d1": ["g1", "g0"], "d2": []}}, {"a": {"etag": "e2"}}, {})
    assert cat2.version == 2 and cat2.batches == ("b1", "b2")
    assert cat2.files("features") == ["g0", "g1"] and cat2.partitions("features") == ["d1"]
    assert cat2.sources["a"]["etag"] == "e2"
    assert cat.files("features") == ["f1", "f2"]  # the old version is untouched


def test_json_round_trip() -> None:
    cat = Catalog().with_batch("b1", {"clean": {"d1": ["c"]}}, {"a": {"etag": "e"}}, {"clean": "{}"})
    assert Catalog.from_json(cat.to_json()) == cat
    assert Catalog.from_json(None) == Catalog()
