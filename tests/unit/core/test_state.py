from datetime import datetime, timedelta, timezone

import pytest

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.discovery import BatchPlan, batch_id_for, discover_new_objects
from nexgen_etl.core.state import FileStateStore, StaleStateError, Watermark
from nexgen_etl.core.storage import ObjectInfo

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def obj(key, seconds=0, etag=None, size=100):
    return ObjectInfo(last_modified=T0 + timedelta(seconds=seconds), key=key, etag=etag or f"e-{key}", size=size)


def test_files_sharing_the_mark_timestamp_are_neither_lost_nor_repeated():
    a, b = obj("a.csv"), obj("b.csv")
    wm = Watermark().advance([a], {"batch_id": "1"})
    # b has the same LastModified as the mark but sorts after it: new; a is done
    assert not wm.is_new(a)
    assert wm.is_new(b)
    c = obj("0.csv")  # same second, key before the mark key, never processed: inside the band → new
    assert wm.is_new(c)
    wm2 = wm.advance([b, c], {"batch_id": "2"})
    assert not any(wm2.is_new(o) for o in (a, b, c))


def test_late_file_inside_band_is_picked_up_and_outside_is_not():
    wm = Watermark(band_seconds=600).advance([obj("z.csv", 1000)], {"batch_id": "1"})
    assert wm.is_new(obj("late.csv", 1000 - 300))
    assert not wm.is_new(obj("ancient.csv", 1000 - 900))


def test_overwritten_object_with_new_etag_is_new_again():
    wm = Watermark().advance([obj("a.csv", 0, "v1")], {"batch_id": "1"})
    assert not wm.is_new(obj("a.csv", 0, "v1"))
    assert wm.is_new(obj("a.csv", 5, "v2"))


def test_band_is_pruned_and_state_round_trips():
    wm = Watermark(band_seconds=10).advance([obj("a.csv", 0), obj("b.csv", 100)], {"batch_id": "1"})
    assert set(wm.band) == {"b.csv"}
    assert Watermark.from_json(wm.to_json()) == wm


def test_file_store_compare_and_set(tmp_path):
    store = FileStateStore(tmp_path / "state.json")
    wm = store.read()
    assert wm.version == 0
    new = wm.advance([obj("a.csv")], {"batch_id": "1"})
    store.compare_and_set(0, new)
    assert store.read().version == 1
    with pytest.raises(StaleStateError):
        store.compare_and_set(0, new)


def test_discovery_orders_caps_and_ignores_non_sources():
    c = load_contract()
    listing = [obj("sales/b.csv", 2), obj("sales/a.csv", 1), obj("sales/"), obj("notes.txt"), obj("sales/c.csv.gz", 3)]
    found = discover_new_objects(listing, Watermark(), c)
    assert [o.key for o in found.new] == ["sales/a.csv", "sales/b.csv", "sales/c.csv.gz"]
    assert sorted(found.ignored) == ["notes.txt", "sales/"]
    import dataclasses

    capped = discover_new_objects(listing, Watermark(), dataclasses.replace(c, max_batch_files=2))
    assert [o.key for o in capped.new] == ["sales/a.csv", "sales/b.csv"] and capped.deferred == 1
    by_bytes = discover_new_objects(listing, Watermark(), dataclasses.replace(c, max_batch_bytes=150))
    assert len(by_bytes.new) == 1 and by_bytes.deferred == 2


def test_batch_id_is_deterministic_and_content_sensitive():
    a, b = obj("a.csv"), obj("b.csv")
    assert batch_id_for([a, b]) == batch_id_for([b, a])
    assert batch_id_for([a, b]) != batch_id_for([a, obj("b.csv", etag="other")])
    plan = BatchPlan.build([a, b], "s3://r/", "s3://o/", load_contract(), 3, {"a.csv": ["x"]}, {"b.csv": {"reason": "r"}})
    assert BatchPlan.from_json(plan.to_json()) == plan


def test_listing_start_after_is_the_oldest_tracked_folder_and_only_when_the_contract_says_so():
    import dataclasses

    from nexgen_etl.core.discovery import listing_start_after

    plain = load_contract()
    ordered = dataclasses.replace(plain, source=dataclasses.replace(plain.source, keys_ordered_by_date=True))
    t = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
    wm = Watermark().advance([ObjectInfo(t - timedelta(minutes=5), "s/2026/11/25/z.csv", "e1", 1),
                              ObjectInfo(t, "s/2026/11/26/b.csv", "e2", 1)], {})
    assert listing_start_after(Watermark(), ordered) is None  # nothing processed yet: list everything
    assert listing_start_after(wm, plain) is None  # off by default
    assert listing_start_after(wm, ordered) == "s/2026/11/25"  # the band still tracks yesterday's file
    narrow = dataclasses.replace(wm, band={"s/2026/11/26/b.csv": "e2"})
    assert listing_start_after(narrow, ordered) == "s/2026/11/26"
    assert "s/2026/11/26/a.csv" > listing_start_after(narrow, ordered)  # a late file in the folder is listed
    assert listing_start_after(dataclasses.replace(narrow, reprocess=("s/2026/01/01/x.csv",)), ordered) == "s/2026/01/01"
    assert listing_start_after(dataclasses.replace(narrow, reprocess=("top.csv",)), ordered) is None
