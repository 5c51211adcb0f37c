"""Discovery against the real moto S3 endpoint: paginated ListObjectsV2 calls only, and StartAfter on date-ordered
keys skips earlier folders without missing a late file in the watermark's folder. A few hundred objects."""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.discovery import discover_new_objects, listing_start_after
from nexgen_etl.core.state import Watermark
from nexgen_etl.core.storage import S3Store

PAGE = 20  # small pages, so that a hundred-odd keys take several list calls
PER_DAY = 30


def keys_for(day: int, n: int, stem: str = "part") -> list[str]:
    return [f"raw/sales/2026/11/{day:02d}/{stem}-{i:03d}.csv" for i in range(n)]


def put(s3, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"date,store_id\n"), keys))


def contract(ordered: bool):
    c = load_contract()
    return dataclasses.replace(c, source=dataclasses.replace(c.source, prefix="raw/", keys_ordered_by_date=ordered))


@pytest.fixture(scope="module")
def listed(moto_server, credentials):
    """Days 20..24 (30 keys each) processed; then a late file in day 24 and a new day 25 arrive."""
    import uuid

    from nexgen_etl.core.settings import S3Settings
    from nexgen_etl.core.storage import s3_client

    s3 = s3_client(S3Settings(endpoint_url=moto_server.url, path_style=True), credentials)
    raw = f"raw-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=raw)
    put(s3, raw, [k for d in range(20, 24) for k in keys_for(d, PER_DAY)])
    time.sleep(2.1)  # only day 24 is inside the (1 s) band of the mark (LastModified has 1 s resolution)
    put(s3, raw, keys_for(24, PER_DAY))
    store = S3Store(raw, "", s3)
    store.page_size = PAGE
    wm = Watermark(band_seconds=1).advance(list(store.list("raw/")), {"batch_id": "b1"})
    time.sleep(2.1)  # the arrivals are newer than the band
    late = ["raw/sales/2026/11/24/early-000.csv"]  # sorts before the mark's key, in the mark's folder
    new = keys_for(25, 3)
    put(s3, raw, late + new)
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    return store, wm, sorted(late + new), calls


def discover(store, wm, c, calls):
    calls.clear()
    found = discover_new_objects(store.list(c.source.prefix, start_after=listing_start_after(wm, c)), wm, c)
    return found, list(calls)


def test_full_listing_is_paginated_list_calls_only(listed):
    store, wm, expected, calls = listed
    found, made = discover(store, wm, contract(False), calls)
    assert sorted(o.key for o in found.new) == expected
    assert found.listed == 5 * PER_DAY + len(expected)
    assert set(made) == {"ListObjectsV2"}
    assert len(made) == math.ceil(found.listed / PAGE)


def test_start_after_skips_earlier_folders_but_not_a_late_file(listed):
    store, wm, expected, calls = listed
    c = contract(True)
    assert listing_start_after(wm, c) == "raw/sales/2026/11/24"
    found, made = discover(store, wm, c, calls)
    assert sorted(o.key for o in found.new) == expected  # the late "early-000" in day 24 is found
    assert found.listed == PER_DAY + len(expected)  # days 20..23 were never listed
    assert set(made) == {"ListObjectsV2"}
    assert len(made) == math.ceil(found.listed / PAGE)


def test_start_after_goes_back_for_keys_to_reprocess(listed):
    store, wm, expected, calls = listed
    wm = dataclasses.replace(wm, reprocess=("raw/sales/2026/11/21/part-007.csv",))
    found, _ = discover(store, wm, contract(True), calls)
    assert sorted(o.key for o in found.new) == sorted([*expected, "raw/sales/2026/11/21/part-007.csv"])
