"""Property: however the same files are split into batches and in whatever order they arrive (late files for
earlier dates, a file that corrects another, a re-uploaded file), the published output equals one full run.

50 seeded cases run at once as 50 *lanes*: each lane has its own entities and its own 20-day stretch of the
calendar, further apart than the features' lookback, so lanes never share a feature partition nor a history
read (the job recomputes separate day spans separately), and a lane's batching can only be right or wrong on
its own. Each lane draws its own delivery order and its own split into 1-4 batches; step j delivers every lane's
j-th batch and runs the real pipeline (discover → extract → Spark job → load → commit) until nothing is new.
One full run over the final files (same LastModified times) is the reference. The contract fills missing
periods with zeros, the policy with the most incremental state (entities' first and last periods).

Three feeds, the same deliveries: `daily` (the sales contract: one row per key and day, the newest file wins),
`keep` (a transaction log: every line of a key and day counts, summed into the day) and `monthly` (the rows'
days spread over the month, rolled up to months: lags, windows and fills count months, and a lane's 20 periods are
20 months).
"""

from __future__ import annotations

import os
import random
import shutil
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.contract import DEFAULT_CONTRACT, parse_contract
from nexgen_etl.core.layout import CATALOG_KEY
from nexgen_etl.core.settings import Settings
from nexgen_etl.core.state import FileStateStore
from nexgen_etl.core.storage import LocalStore
from nexgen_etl.run.pipeline import Pipeline
from nexgen_etl.spark.job import BatchJob

SEED = int(os.environ.get("NEXGEN_PROPERTY_SEED", "20261126"))
LANES = int(os.environ.get("NEXGEN_PROPERTY_LANES", "50"))
LANE_DAYS = 20  # lane content spans days 0..11, lookback is 3: spans of two lanes never meet
START = date(2023, 1, 2)
MONTHLY_START = date(1990, 1, 1)
T0 = 1_700_000_000
HEADER = "date,store_id,sku,units_sold,unit_price,promo\n"


KINDS = ("daily", "keep", "monthly")


def contract(kind: str = "daily"):
    d = yaml.safe_load(DEFAULT_CONTRACT.read_text())
    d["missing_periods"] = "fill_zero"
    d["features"] = {"lags": [1, 2], "rolling": {"windows": [3], "stats": ["mean", "std", "min", "max"]},
                     "calendar": True, "price": True}
    if kind == "keep":
        d["duplicates"] = {"policy": "keep"}
    if kind == "monthly":
        d["time"]["period"] = "month"
        d["columns"][0].pop("min"), d["columns"][0].pop("max")  # 50 lanes of 20 months reach past 2099
    return parse_contract(d)


def csv(rows) -> str:
    return HEADER + "".join(",".join(str(x) for x in r) + "\n" for r in rows)


def lane_files(lane: int, rng: random.Random, kind: str = "daily") -> list[tuple[str, str]]:
    """(key, content) deliveries of one lane; a re-upload of a key comes after its first version. Period d of the
    lane is its d-th day, or for `monthly` a day of its d-th month (drawn per row)."""
    base = START + timedelta(days=lane * LANE_DAYS)
    store = f"L{lane:02d}"

    def day(d):
        if kind == "monthly":
            months = MONTHLY_START.month - 1 + lane * LANE_DAYS + d
            return date(MONTHLY_START.year + months // 12, months % 12 + 1, rng.randint(1, 28)).isoformat()
        return (base + timedelta(days=d)).isoformat()

    def rows(entities, days, p=0.75):
        out = [(day(d), store, e, rng.randint(0, 40), round(rng.uniform(1, 9), 2), rng.randint(0, 1))
               for d in days for e in entities if rng.random() < p]
        return out or [(day(days[0]), store, entities[0], 1, 1.0, 0)]

    a = rows(["A", "B"], range(0, 4))
    b = rows(["A", "B"], range(4, 8))
    b += [b[0], (day(5), store, "B", -5, 1.0, 0)]  # an exact duplicate and a row to quarantine
    far = [(day(11), store, "A", 7, 2.0, 0)]  # far after A's last day: a gap to fill
    late = [(day(1), store, "C", 3, 1.5, 1), (day(2), store, "C", 4, 1.5, 0), (day(2), store, "A", 99, 3.0, 1)]
    fix = [(day(5), store, "A", 50, 2.5, 0), (day(6), store, "A", 60, 2.5, 1)]  # key duplicates of b
    if rng.random() < 0.5:  # correct `a`: new values, and the first row (an entity's first day) gone
        corrected = ("a.csv", csv([(d, s, e, u + 1, p, pr) for d, s, e, u, p, pr in a[1:]]))
    else:  # correct `far`: A's far day was wrong, it belongs to B one day earlier (A's last day moves back)
        corrected = ("far.csv", csv([(day(10), store, "B", 7, 2.0, 0)]))
    first = [("a.csv", csv(a)), ("b.csv", csv(b)), ("far.csv", csv(far)), ("late.csv", csv(late)),
             ("fix.csv", csv(fix))]
    order = first[:]
    rng.shuffle(order)
    # the correction goes anywhere after the version it replaces
    at = next(i for i, (k, _) in enumerate(order) if k == corrected[0])
    order.insert(rng.randint(at + 1, len(order)), corrected)
    return [(f"lane{lane:02d}/{k}", text) for k, text in order]


def schedule(rng: random.Random, n: int, steps: int) -> list[int]:
    """The step each of n ordered deliveries arrives in: a random split into `steps` consecutive batches."""
    cuts = sorted(rng.sample(range(1, n), steps - 1))
    return [sum(i >= c for c in cuts) for i in range(n)]


def pipeline(root: Path, name: str, c) -> Pipeline:
    raw, out = root / f"{name}-raw", root / f"{name}-out"
    raw.mkdir()
    settings = Settings(raw_url=f"{raw}/", output_url=f"{out}/")
    return Pipeline(settings=settings, contract=c, raw=LocalStore(raw), out=LocalStore(out),
                    state=FileStateStore(root / f"{name}-state.json"))


def deliver(p: Pipeline, key: str, text: str, step: int) -> None:
    path = p.raw.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (T0 + step * 10, T0 + step * 10))  # one LastModified per step: ties inside a step


def run_until_empty(p: Pipeline, spark) -> list[dict]:
    out = []
    while (r := p.run_once(None, transform=lambda plan: BatchJob(spark, plan).run()))["status"] != "nothing_new":
        out.append(r)
    return out


def dataset(p: Pipeline, name: str) -> pd.DataFrame:
    root = p.out.root
    cat = Catalog.from_json((root / CATALOG_KEY).read_text())
    df = pd.concat([pq.read_table(root / f).to_pandas() for f in cat.files(name)], ignore_index=True)
    df = df.drop(columns=[c for c in ("_row_id",) if c in df.columns])
    return df.sort_values(list(df.columns)).reset_index(drop=True)


@pytest.fixture(scope="module", params=KINDS)
def runs(request, spark, tmp_path_factory):
    kind = request.param
    root = tmp_path_factory.mktemp(f"prop-{kind}")
    c = contract(kind)
    rng = random.Random(SEED)
    lanes = []
    for lane in range(LANES):
        files = lane_files(lane, rng, kind)
        steps = 4 if lane == 0 else rng.randint(1, 4)
        lanes.append(list(zip(files, schedule(rng, len(files), steps))))
    inc = pipeline(root, "inc", c)
    batches = []
    for step in range(4):
        for deliveries in lanes:
            for (key, text), s in deliveries:
                if s == step:
                    deliver(inc, key, text, step)
        batches.append(run_until_empty(inc, spark))
    full = pipeline(root, "full", c)
    shutil.rmtree(full.raw.root)
    shutil.copytree(inc.raw.root, full.raw.root)  # the final files, same LastModified times
    full_batches = run_until_empty(full, spark)
    return {"inc": inc, "full": full, "batches": batches, "full_batches": full_batches, "lanes": lanes, "kind": kind}


def test_cases_really_differ(runs):
    steps = {max(s for _, s in deliveries) + 1 for deliveries in runs["lanes"]}
    orders = {tuple(k for (k, _), _ in deliveries) for deliveries in runs["lanes"]}
    assert steps == {1, 2, 3, 4} and len(orders) > LANES // 2
    assert [len(b) for b in runs["batches"]] == [1, 1, 1, 1] and len(runs["full_batches"]) == 1


@pytest.mark.parametrize("name", ["features", "clean", "quarantine"])
def test_incremental_batches_equal_one_full_run(runs, name):
    """Catches any way an incremental batch's output parts from the full run's, e.g. the job reading back the
    published filled periods of the partitions it does not restage as real rows (BatchJob.settled_periods)."""
    inc, full = dataset(runs["inc"], name), dataset(runs["full"], name)
    if name == "features":
        assert inc["is_filled"].sum() > LANES  # every lane has gaps filled with zeros
        if runs["kind"] == "monthly":
            assert set(pd.to_datetime(inc["date"]).dt.day) == {1}  # one row per month, dated the 1st
        bad = sorted(set(inc.merge(full, how="outer", indicator=True).query("_merge != 'both'")["store_id"]))
        assert not bad, f"lanes whose features differ from the full run (seed {SEED}): {bad}"
    assert len(inc) == len(full)
    pd.testing.assert_frame_equal(inc, full, check_exact=False, rtol=1e-12, atol=1e-12)


def test_every_row_of_every_version_is_accounted_for(runs):
    """Rows read over all incremental batches = lines of every file version the pipeline saw (a version
    overwritten by its correction within the same step was never seen)."""
    seen = {}
    for deliveries in runs["lanes"]:
        for (key, text), step in deliveries:
            seen[(key, step)] = text
    lines = sum(text.count("\n") - 1 for text in seen.values())
    totals = [r["totals"] for batch in runs["batches"] for r in batch]
    assert sum(t["rows_read"] for t in totals) == lines
    for t in totals:
        assert t["rows_read"] == (t["rows_out"] + t["rows_quarantined"] + t["duplicates_exact"]
                                  + t["duplicates_key"] + t["rows_merged"])
