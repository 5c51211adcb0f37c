"""Discovery at scale: N raw objects in a real moto S3 server, listed against a watermark.

Counts every S3 API call the listing makes (botocore `before-call` events) and checks they are paginated
ListObjectsV2 calls only, one per 1000 keys, never one per object. Then the same with the contract's
`source.keys_ordered_by_date: true`, where listing starts at the watermark's date folder (StartAfter).

Usage: python bench/discovery.py [N]   (default 100000; also run by bench/run.py)
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.discovery import discover_new_objects, listing_start_after
from nexgen_etl.core.state import Watermark

PER_DAY = 1000
BODY = b"date,store_id,sku,units_sold,unit_price,promo\n"


def day_keys(day: date, n: int, first: int = 0) -> list[str]:
    return [f"raw/sales/{day:%Y/%m/%d}/part-{i:05d}.csv" for i in range(first, first + n)]


def put_all(client, bucket: str, keys: list[str], threads: int = 32) -> float:
    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=BODY), keys))
    return time.monotonic() - t0


class CallCounter:
    """Every S3 operation the client sends, by name (registered on the client's event system)."""

    def __init__(self, client) -> None:
        self.calls: list[str] = []
        client.meta.events.register("before-call.s3", self._seen)

    def _seen(self, model, **_) -> None:
        self.calls.append(model.name)

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


def discover(store, wm: Watermark, contract, counter: CallCounter) -> dict:
    counter.take()
    t0 = time.monotonic()
    start = listing_start_after(wm, contract)
    found = discover_new_objects(store.list(contract.source.prefix, start_after=start), wm, contract)
    elapsed = time.monotonic() - t0
    calls = counter.take()
    ops = sorted(set(calls))
    if ops != ["ListObjectsV2"]:
        raise AssertionError(f"discovery made calls other than ListObjectsV2: {ops}")
    if len(calls) != max(1, math.ceil(found.listed / 1000)):
        raise AssertionError(f"{len(calls)} list calls for {found.listed} keys: not one call per 1000-key page")
    return {"start_after": start, "listed": found.listed, "new": sorted(o.key for o in found.new),
            "calls": len(calls), "operations": ops, "seconds": round(elapsed, 3),
            "ms_per_1k_listed": round(1000 * elapsed / max(found.listed, 1) * 1000, 1)}


def run(n: int = 100_000, threads: int = 32) -> dict:
    import boto3
    from botocore.config import Config

    from nexgen_etl.core.storage import S3Store
    from nexgen_etl.dev.local_services import MotoServer

    with MotoServer() as moto:
        client = boto3.session.Session().client(
            "s3", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="AKIABENCH0000000001",
            aws_secret_access_key="bench-not-a-real-secret",
            config=Config(max_pool_connections=threads, s3={"addressing_style": "path"},
                          retries={"max_attempts": 8, "mode": "adaptive"}))
        bucket = "nexgen-raw-data"
        client.create_bucket(Bucket=bucket)
        days = max(1, math.ceil(n / PER_DAY))
        start = date(2026, 1, 1)
        keys = [k for d in range(days) for k in day_keys(start + timedelta(days=d), min(PER_DAY, n - d * PER_DAY))]
        put_s = put_all(client, bucket, keys, threads)
        store = S3Store(bucket, "", client)
        counter = CallCounter(client)
        base = load_contract()
        plain = dataclasses.replace(base, source=dataclasses.replace(base.source, prefix="raw/"))
        ordered = dataclasses.replace(plain, source=dataclasses.replace(plain.source, keys_ordered_by_date=True))
        # the state after everything so far was processed. The fixture uploads in minutes what arrives over
        # `days` days in production, so the band (late-arrival window) is narrowed to 1 s to keep it realistic.
        listing = list(store.list("raw/"))
        wm = Watermark(band_seconds=1).advance(listing, {"batch_id": "bench"})
        nothing = discover(store, wm, plain, counter)
        time.sleep(2.1)
        last = start + timedelta(days=days - 1)
        # new arrivals: a late file in the watermark's folder whose key sorts before the mark's, and a new day
        late = [f"raw/sales/{last:%Y/%m/%d}/late-00000.csv"]
        new_day = day_keys(last + timedelta(days=1), 5)
        put_all(client, bucket, late + new_day, threads)
        full = discover(store, wm, plain, counter)
        fast = discover(store, wm, ordered, counter)
        expected = sorted(late + new_day)
        for name, r in (("full listing", full), ("start-after", fast)):
            if r["new"] != expected:
                raise AssertionError(f"{name}: found {r['new']}, expected {expected}")
        if nothing["new"]:
            raise AssertionError(f"discovery right after the watermark found {len(nothing['new'])} new objects")
    return {"objects": n + len(expected), "put_seconds": round(put_s, 1), "put_threads": threads,
            "no_new": {k: v for k, v in nothing.items() if k != "new"},
            "full_listing": {**{k: v for k, v in full.items() if k != "new"}, "new": len(full["new"])},
            "start_after": {**{k: v for k, v in fast.items() if k != "new"}, "new": len(fast["new"])}}


def print_report(r: dict) -> None:
    print(f"\nDiscovery: {r['objects']} objects in moto (put in {r['put_seconds']} s with {r['put_threads']} threads)")
    print(f"{'listing':<16}{'listed':>9}{'calls':>7}{'new':>5}{'seconds':>9}{'ms/1k':>8}  operations")
    for name in ("no_new", "full_listing", "start_after"):
        x = r[name]
        new = x.get("new", 0)
        print(f"{name:<16}{x['listed']:>9}{x['calls']:>7}{new:>5}{x['seconds']:>9.2f}{x['ms_per_1k_listed']:>8.1f}"
              f"  {','.join(x['operations'])}{'  StartAfter=' + x['start_after'] if x['start_after'] else ''}")
    print()


if __name__ == "__main__":
    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
    print_report(result)
    print(json.dumps(result, indent=1))
