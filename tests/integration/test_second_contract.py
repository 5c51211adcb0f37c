"""A second, different contract end to end with no code of its own: hourly sensor readings, two key columns,
no price, timestamps with a UTC offset, `;` as delimiter, `NA` as missing, a renamed column.

Local folders (no S3), the in-process Spark session, the pipeline's own steps: file 1 → run, file 2 (later hours,
late rows for earlier hours, a correction, reordered header with an extra column) → run; then one full run over
both files into a second folder. Every expected value below is worked out by hand in the comments.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

import nexgen_etl.core.contract as contract_module
from nexgen_etl.core import layout
from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.publish import read_catalog, read_manifest
from nexgen_etl.core.settings import Settings
from nexgen_etl.core.state import FileStateStore
from nexgen_etl.core.storage import LocalStore
from nexgen_etl.run.pipeline import Pipeline
from nexgen_etl.spark.job import BatchJob
from nexgen_etl.spark.transform.features import output_columns

CONTRACT_PATH = Path(contract_module.__file__).with_name("contracts") / "sensor_readings.yaml"
KEYS = ["site", "sensor", "ts"]
FILE1, FILE2 = "readings/2024-03-01.csv", "readings/2024-03-02.csv"
HEADER1 = ["ts", "site", "sensor_id", "reading", "battery", "status"]
# file 2: other column order and an extra column (columns are matched by name)
HEADER2 = ["site", "sensor_id", "firmware", "ts", "battery", "reading", "status"]

# raw site (lower case: the contract upper-cases it) and sensor → reading base
BASE = {("north", "T-01"): 10.0, ("north", "T-02"): 20.0, ("south", "T-01"): 30.0}
DAY1, DAY2 = datetime(2024, 3, 1), datetime(2024, 3, 2)  # UTC


# -- raw data -----------------------------------------------------------------------------------------------------
def stamp(utc: datetime, style: int) -> str:
    """The same instant written five ways; three of them in local time at +02:00."""
    local = utc + timedelta(hours=2)
    return [
        local.strftime("%Y-%m-%dT%H:%M:%S") + "+02:00",
        utc.strftime("%Y-%m-%d %H:%M:%S") + "Z",
        local.strftime("%Y-%m-%d %H:%M:%S") + "+02",
        local.strftime("%Y-%m-%d %H:%M:%S") + "+0200",
        utc.strftime("%Y-%m-%dT%H:%M:%S") + "Z",
    ][style % 5]


def regular(day: datetime, hours, offset: float, battery0: float, skip=()):
    """Three readings per key and UTC hour, at :05, :25, :45: reading = base + offset + hour + 0.5*i, so the hourly
    mean is base + offset + hour + 0.5; battery = battery0 - 0.5*hour - 0.25*i, so the hourly min is
    battery0 - 0.5*hour - 0.5."""
    rows = []
    for (site, sensor), base in BASE.items():
        for h in hours:
            if (site, sensor, h) in skip:
                continue
            for i in range(3):
                t = day + timedelta(hours=h, minutes=5 + 20 * i)
                rows.append({"ts": stamp(t, h + i), "site": site, "sensor_id": sensor,
                             "reading": f"{base + offset + h + 0.5 * i}", "battery": f"{battery0 - 0.5 * h - 0.25 * i}",
                             "status": "ok"})
    return rows


def row(ts, site, sensor, reading, battery, status, **extra):
    return {"ts": ts, "site": site, "sensor_id": sensor, "reading": reading, "battery": battery, "status": status,
            **extra}


# Cell A = (NORTH, T-01, 2024-03-01 10:00 UTC), written by hand
CELL_A = [
    row("2024-03-01T12:05:00+02:00", "north", "T-01", "12.0", "80", "ok"),      # 10:05 UTC
    row("2024-03-01 10:20:00Z", " North ", "T-01", "13.0", "NA", "ok"),          # battery NA: kept, null
    row("2024-03-01 12:40:00+02", "NORTH", "T-01", "NA", "70", "ok"),            # reading NA: missing:reading
    row("2024-03-01T12:50:00+02:00", "north", "T-01", "17", "75.5", "warn"),     # 10:50 UTC, latest in file 1
]
# Cell B = (SOUTH, T-01, 2024-03-01 23:00 UTC): local time is already the next day; one instant written twice
CELL_B = [
    row("2024-03-02T01:10:00+02:00", "south", "T-01", "31", "10", "ok"),         # 23:10 UTC, loses to the next-but-one
    row("2024-03-02 01:30:00+02", "south", "T-01", "34", "49.5", "ok"),          # 23:30 UTC
    row("2024-03-01 23:10:00Z", "south", "T-01", "32", "50", "ok"),              # same instant as the first: wins
    row("2024-03-01T23:59:59Z", "south", "T-01", "36", "NA", "warn"),            # latest in the hour
]
BAD_1 = [
    row("2024-03-01 05:10:00", "north", "T-01", "14", "80", "ok"),               # no offset: unparseable:ts
    row("2024-02-30T10:00:00+02:00", "north", "T-01", "14", "80", "ok"),         # no such day: unparseable:ts
    row("2024-03-01T07:10:00+02:00", "NA", "T-01", "14", "80", "ok"),            # missing:site
    row("2024-03-01T07:10:00+02:00", "north", "T-01", "abc", "80", "ok"),        # unparseable:reading
    row("2024-03-01T07:10:00+02:00", "north", "T-01", "14", "80", "broken"),     # not_allowed:status
    row("2024-03-01T07:10:00+02:00", "north", "T-01", "999", "80", "ok"),        # above_max:reading
    row("2024-03-01T07:10:00+02:00", "north", "T-01", "14", "80", "ok", x="extra"),  # malformed_row (7 fields)
    row("NA", "north", "T-02", "1", "1", "ok"),                                  # missing:ts
    row("2024-03-01T07:10:00+02:00", "north", "T-01", "NA", "150", "ok"),        # missing:reading;above_max:battery
]
# an exact duplicate once cleaned: (north, T-02) at 05:05 UTC, reading 25, battery 87.5 (a regular row)
EXACT_DUP = row("2024-03-01T07:05:00+02:00", " NORTH ", "T-02", "25.0", "87.5", "ok")

FILE2_EXTRA = [
    # late row for cell A, the latest in that hour: 10:55 UTC
    row("2024-03-01T12:55:00+02:00", "north", "T-01", "20", "60", "fault", firmware="2.1"),
    # late row for (NORTH, T-02, 2024-03-01 23:00), 23:59:59 UTC, the latest in that hour
    row("2024-03-02T01:59:59+02:00", "north", "T-02", "47.5", "77", "ok", firmware="2.1"),
    # correction: the same instant as file 1's (NORTH, T-02) 20:45 row (reading 41.0); the newer file wins
    row("2024-03-01T22:45:00+02:00", "north", "T-02", "42.5", "79.5", "ok", firmware="2.1"),
    # reading NA (required): quarantined; battery and status NA alone would be fine
    row("2024-03-02T04:20:00+02:00", "north", "T-02", "NA", "NA", "NA", firmware="2.1"),
]


def file1_rows():
    rows = regular(DAY1, range(24), 0.0, 90.0, skip={("north", "T-01", 10), ("south", "T-01", 23)})
    return rows + CELL_A + CELL_B + BAD_1 + [EXACT_DUP]


def file2_rows():
    rows = regular(DAY2, range(6), 50.0, 80.0, skip={("south", "T-01", 1)})  # SOUTH/T-01 has no 01:00 reading
    for r in rows:
        r["firmware"] = "2.0"
        # cell C = (NORTH, T-02, 2024-03-02 03:00): its latest row (:45) has battery and status NA
        if (r["site"], r["sensor_id"], r["ts"]) == ("north", "T-02", stamp(DAY2 + timedelta(hours=3, minutes=45), 5)):
            r["battery"], r["status"] = "NA", "NA"
    return rows + FILE2_EXTRA


def write_csv(path: Path, header: list[str], rows: list[dict], mtime: float) -> None:
    lines = [";".join(header)]
    for r in rows:
        fields = [r.get(h, "") for h in header] + ([r["x"]] if "x" in r else [])
        lines.append(";".join(fields))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.utime(path, (mtime, mtime))


# -- running and reading ------------------------------------------------------------------------------------------
def make_pipeline(raw: Path, out: Path, state: Path) -> Pipeline:
    return Pipeline(settings=Settings(raw_url=str(raw), output_url=str(out)),
                    contract=load_contract(CONTRACT_PATH), raw=LocalStore(raw), out=LocalStore(out),
                    state=FileStateStore(state))


def run_until_empty(p: Pipeline, spark) -> list[dict]:
    results = []
    while True:
        r = p.run_once(None, transform=lambda plan: BatchJob(spark, plan).run())
        results.append(r)
        if r["status"] == "nothing_new":
            return results


def live_files(out: Path, dataset: str) -> list[str]:
    return [str(out / f) for f in read_catalog(LocalStore(out)).files(dataset)]


def utc_naive(s: pd.Series) -> pd.Series:
    s = pd.to_datetime(s)
    return s.dt.tz_convert("UTC").dt.tz_localize(None) if s.dt.tz is not None else s


def read_arrow(out: Path, dataset: str) -> pd.DataFrame:
    """The live files (as the catalog lists them) through pyarrow.dataset with hive partitioning."""
    d = ds.dataset(live_files(out, dataset), format="parquet", partitioning="hive",
                   partition_base_dir=str(out / layout.published_dir(dataset)))
    df = d.to_table().to_pandas()
    for c in ("ts", "_source_lm"):
        if c in df.columns:
            df[c] = utc_naive(df[c])
    return df


def features(out: Path) -> pd.DataFrame:
    return read_arrow(out, "features").sort_values(KEYS).reset_index(drop=True)


def cell(df: pd.DataFrame, site: str, sensor: str, ts: str) -> pd.Series:
    hit = df[(df.site == site) & (df.sensor == sensor) & (df.ts == pd.Timestamp(ts))]
    assert len(hit) == 1, (site, sensor, ts, len(hit))
    return hit.iloc[0]


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sensor")
    raw, out, full = tmp / "raw", tmp / "out", tmp / "full"
    now = time.time()
    t0 = time.monotonic()
    write_csv(raw / FILE1, HEADER1, file1_rows(), now - 600)
    p = make_pipeline(raw, out, tmp / "state.json")
    first = run_until_empty(p, spark)
    after_first = features(out)
    write_csv(raw / FILE2, HEADER2, file2_rows(), now - 300)
    (raw / "readings" / "README.txt").write_text("not a source file\n")
    second = run_until_empty(p, spark)
    pf = make_pipeline(raw, full, tmp / "full-state.json")
    whole = run_until_empty(pf, spark)
    print(f"sensor pipeline: 3 passes in {time.monotonic() - t0:.1f}s")
    return {"raw": raw, "out": out, "full": full, "spark": spark, "first": first, "second": second, "whole": whole,
            "after_first": after_first}


# -- the contract -------------------------------------------------------------------------------------------------
def test_contract_is_a_different_shape():
    c = load_contract(CONTRACT_PATH)
    assert (c.period, c.keys, c.target, c.price_column, c.features.price) == ("hour", ("site", "sensor"),
                                                                             "reading", None, False)
    assert c.csv.delimiter == ";" and "NA" in c.csv.null_values
    assert c.column("sensor").raw_name == "sensor_id" and c.column("ts").type == "timestamp"
    assert (c.column("reading").rollup, c.column("battery").rollup, c.column("status").rollup) == ("mean", "min",
                                                                                                   "last")
    assert c.features.lookback == 24
    assert output_columns(c) == [
        "site", "sensor", "ts", "reading", "battery", "status",
        "reading_lag_1", "reading_lag_24",
        *[f"reading_roll_{s}_{w}" for w in (3, 24) for s in ("mean", "std", "min", "max")],
        "day_of_week", "week_of_year", "month", "quarter", "is_weekend", "is_month_start", "is_month_end", "hour",
        "period_date"]


def test_runs_are_one_batch_each(world):
    assert [r["status"] for r in world["first"]] == ["committed", "nothing_new"]
    assert [r["status"] for r in world["second"]] == ["committed", "nothing_new"]
    assert [r["status"] for r in world["whole"]] == ["committed", "nothing_new"]


# -- roll-up to the UTC hour --------------------------------------------------------------------------------------
def test_hourly_rollup_cells(world):
    f, f1 = features(world["out"]), world["after_first"]
    # 3 keys x 24 hours on day 1; day 2: 3 keys x 6 hours, less SOUTH/T-01 at 01:00
    assert len(f1) == 72 and len(f) == 72 + 17
    assert (f.ts.dt.minute == 0).all() and (f.ts.dt.second == 0).all()

    # cell A after file 1: readings 12, 13, 17 (the NA reading is quarantined, with its battery 70) → mean 14;
    # battery min(80, NA, 75.5) = 75.5; status of the latest row (10:50) = warn
    a1 = cell(f1, "NORTH", "T-01", "2024-03-01 10:00")
    assert (a1.reading, a1.battery, a1.status) == (14.0, 75.5, "warn")
    # after file 2's late row at 10:55 (20, battery 60, fault): mean (12+13+17+20)/4 = 15.5
    a = cell(f, "NORTH", "T-01", "2024-03-01 10:00")
    assert (a.reading, a.battery, a.status, a.period_date, a.hour) == (15.5, 60.0, "fault", "2024-03-01", 10)

    # cell B: 01:10/01:30 at +02:00 are 23:10/23:30 UTC on the day before. The row at 23:10 (31, battery 10) loses
    # to a later row for the same instant (32, battery 50): mean (32+34+36)/3 = 34; min(50, 49.5, NA) = 49.5
    b = cell(f, "SOUTH", "T-01", "2024-03-01 23:00")
    assert (b.reading, b.battery, b.status, b.period_date, b.hour) == (34.0, 49.5, "warn", "2024-03-01", 23)
    assert b.day_of_week == 5 and b.is_month_start and not b.is_weekend  # Friday 1 March 2024

    # cell C (day 2, NORTH/T-02 03:00): 73, 73.5, 74 → 73.5; batteries 78.5, 78.25, NA → 78.25; the latest row's
    # status is NA, and `last` takes the latest row's value: null
    c = cell(f, "NORTH", "T-02", "2024-03-02 03:00")
    assert c.reading == 73.5 and c.battery == 78.25 and c.status is None

    # a late row at 23:59:59 UTC (written 01:59:59+02:00 on 2 March) joins NORTH/T-02 23:00 on 1 March:
    # (43 + 43.5 + 44 + 47.5)/4 = 44.5; battery min(78.5, 78.25, 78, 77) = 77
    late = cell(f, "NORTH", "T-02", "2024-03-01 23:00")
    assert (late.reading, late.battery, late.period_date) == (44.5, 77.0, "2024-03-01")
    assert cell(f1, "NORTH", "T-02", "2024-03-01 23:00").reading == 43.5

    # a correction of the 20:45 row (41 → 42.5) from the newer file: (40 + 40.5 + 42.5)/3 = 41
    assert cell(f1, "NORTH", "T-02", "2024-03-01 20:00").reading == 40.5
    assert cell(f, "NORTH", "T-02", "2024-03-01 20:00").reading == 41.0

    # a regular cell: 30 + 4 + 0.5
    r = cell(f, "SOUTH", "T-01", "2024-03-01 04:00")
    assert (r.reading, r.battery, r.status) == (34.5, 87.5, "ok")

    # the partition is the UTC date of the hour
    assert (f.period_date == f.ts.dt.strftime("%Y-%m-%d")).all()
    assert sorted(f.period_date.unique()) == ["2024-03-01", "2024-03-02"]
    assert set(zip(f.site, f.sensor)) == {("NORTH", "T-01"), ("NORTH", "T-02"), ("SOUTH", "T-01")}


# -- features -----------------------------------------------------------------------------------------------------
def test_lags_and_rolling_by_hand(world):
    f = features(world["out"])
    # NORTH/T-01 on 2 March 03:00: hourly means on day 2 are 60.5 + hour; on day 1 10.5 + hour, except 10:00 (15.5)
    e = cell(f, "NORTH", "T-01", "2024-03-02 03:00")
    assert e.reading == 63.5
    assert e.reading_lag_1 == 62.5                 # 02:00 on day 2
    assert e.reading_lag_24 == 13.5                # 03:00 on day 1
    assert e.reading_roll_mean_3 == pytest.approx((60.5 + 61.5 + 62.5) / 3)
    assert (e.reading_roll_min_3, e.reading_roll_max_3) == (60.5, 62.5)
    assert e.reading_roll_std_3 == pytest.approx(1.0)
    # t-24 … t-1: 03:00..23:00 on day 1 (21 hours, sum 493.5 with 20.5 at 10:00, which is 15.5) and 3 hours of day 2
    assert e.reading_roll_mean_24 == pytest.approx((493.5 - 20.5 + 15.5 + 60.5 + 61.5 + 62.5) / 24)
    assert (e.reading_roll_min_24, e.reading_roll_max_24) == (13.5, 62.5)
    assert (e.hour, e.day_of_week, e.is_weekend, e.week_of_year, e.month, e.quarter) == (3, 6, True, 9, 3, 1)
    assert not e.is_month_start and not e.is_month_end

    # SOUTH/T-01 on 2 March: 00:00 reads cell B (day 1, read back from the clean history by the second batch)
    s0 = cell(f, "SOUTH", "T-01", "2024-03-02 00:00")
    assert (s0.reading, s0.reading_lag_1, s0.reading_lag_24) == (80.5, 34.0, 30.5)
    # 01:00 has no row: no cell, lag_1 at 02:00 is null, and the 3-hour window holds two hours
    assert ((f.site == "SOUTH") & (f.sensor == "T-01") & (f.ts == pd.Timestamp("2024-03-02 01:00"))).sum() == 0
    s2 = cell(f, "SOUTH", "T-01", "2024-03-02 02:00")
    assert s2.reading == 82.5 and pd.isna(s2.reading_lag_1) and s2.reading_lag_24 == 32.5
    assert s2.reading_roll_mean_3 == pytest.approx((34.0 + 80.5) / 2)

    # the hour after cell A: recomputed when the late row arrived in the second batch
    assert cell(world["after_first"], "NORTH", "T-01", "2024-03-01 11:00").reading_lag_1 == 14.0
    n11 = cell(f, "NORTH", "T-01", "2024-03-01 11:00")
    assert n11.reading_lag_1 == 15.5
    assert n11.reading_roll_mean_3 == pytest.approx((18.5 + 19.5 + 15.5) / 3)

    # the first hour has no history
    first = cell(f, "NORTH", "T-01", "2024-03-01 00:00")
    assert pd.isna(first.reading_lag_1) and pd.isna(first.reading_lag_24) and pd.isna(first.reading_roll_mean_3)
    assert pd.isna(cell(f, "NORTH", "T-01", "2024-03-01 01:00").reading_roll_std_3)  # one value: no sample std

    # each key's first hour has nothing before it, so every lag and window is null there
    firsts = f.sort_values("ts").groupby(["site", "sensor"]).head(1)
    assert len(firsts) == 3
    assert firsts.filter(regex=r"^reading_(lag|roll)_").isna().all().all()


# -- NA and quarantine --------------------------------------------------------------------------------------------
def test_na_is_missing_and_only_required_columns_quarantine(world):
    q = read_arrow(world["out"], "quarantine")
    counts = q.groupby("reasons").size().to_dict()
    assert counts == {
        "missing:reading": 2,                       # cell A's NA reading, file 2's all-NA row
        "missing:reading;above_max:battery": 1,
        "unparseable:ts": 2, "missing:site": 1, "unparseable:reading": 1, "not_allowed:status": 1,
        "above_max:reading": 1, "malformed_row": 1, "missing:ts": 1,
    }
    na = q[q.reasons == "missing:reading"]
    raws = [json.loads(v) for v in na.raw_values]
    assert {r["reading"] for r in raws} == {"NA"} and all("sensor_id" in r for r in raws)  # raw names, raw strings

    clean = read_arrow(world["out"], "clean")
    # an NA in an optional column is a null, and the row stays
    kept = clean[(clean.site == "NORTH") & (clean.sensor == "T-01") & (clean.ts == pd.Timestamp("2024-03-01 10:20"))]
    assert len(kept) == 1 and kept.iloc[0].reading == 13.0 and pd.isna(kept.iloc[0].battery)
    c45 = clean[(clean.sensor == "T-02") & (clean.ts == pd.Timestamp("2024-03-02 03:45"))].iloc[0]
    assert pd.isna(c45.battery) and c45.status is None
    assert not clean.reading.isna().any() and not clean.ts.isna().any()
    assert set(clean.site) == {"NORTH", "SOUTH"}  # trimmed and upper-cased
    # the clean dataset is partitioned by the UTC date too
    assert (clean.period_date == clean.ts.dt.strftime("%Y-%m-%d")).all()


# -- accounting ---------------------------------------------------------------------------------------------------
def accounting(out: Path, result: dict) -> dict:
    m = read_manifest(LocalStore(out), result["batch_id"]).to_dict()
    assert m["contract"] == "sensor_readings"
    for key, acc in m["accounting"].items():
        assert acc["balanced"], (key, acc)
        assert acc["rows_read"] == (acc["rows_out"] + acc["rows_quarantined"] + acc["duplicates_exact"]
                                    + acc["duplicates_key"] + acc["rows_merged"])
        assert sum(acc["quarantine_reasons"].values()) == acc["rows_quarantined"]
    return m["accounting"]


def counts(acc: dict) -> tuple:
    return (acc["rows_read"], acc["rows_quarantined"], acc["duplicates_exact"], acc["duplicates_key"],
            acc["rows_out"], acc["rows_merged"])


def test_row_accounting_balances(world):
    out = world["out"]
    # file 1: 210 regular + 4 (A) + 4 (B) + 9 bad + 1 exact duplicate = 228 rows; 10 quarantined (9 bad + A's NA
    # reading), 1 exact and 1 key duplicate; 216 winners in 72 hours → 72 out, 144 merged
    a1 = accounting(out, world["first"][0])
    assert list(a1) == [FILE1]
    assert counts(a1[FILE1]) == (228, 10, 1, 1, 72, 144)
    assert a1[FILE1]["quarantine_reasons"] == {
        "missing:reading": 2, "unparseable:ts": 2, "missing:site": 1, "unparseable:reading": 1,
        "not_allowed:status": 1, "above_max:reading": 1, "malformed_row": 1, "missing:ts": 1}
    assert a1[FILE1]["file_rejected"] is None
    # file 2: 51 regular + 4 extra = 55; 1 quarantined; 17 new hours (51 rows → 17 out, 34 merged) and the three
    # rows for day-1 hours, each the latest in its hour, represent it → 20 out
    a2 = accounting(out, world["second"][0])
    assert list(a2) == [FILE2]  # README.txt does not match the patterns
    assert counts(a2[FILE2]) == (55, 1, 0, 0, 20, 34)
    # one full run over both files: file 1's 20:45 row now loses to the correction (2 key duplicates), and the
    # three day-1 hours that file 2 reaches are represented by file 2's rows
    af = accounting(world["full"], world["whole"][0])
    assert counts(af[FILE1]) == (228, 10, 1, 2, 69, 146)
    assert counts(af[FILE2]) == (55, 1, 0, 0, 20, 34)
    assert af[FILE1]["rows_out"] + af[FILE2]["rows_out"] == len(features(world["full"])) == 89
    m = read_manifest(LocalStore(world["full"]), world["whole"][0]["batch_id"]).to_dict()
    assert m["totals"] == {"rows_read": 283, "rows_out": 89, "rows_quarantined": 11, "duplicates_exact": 1,
                           "duplicates_key": 2, "rows_merged": 180}


# -- incremental = full -------------------------------------------------------------------------------------------
def test_incremental_equals_one_full_run(world):
    pd.testing.assert_frame_equal(features(world["out"]), features(world["full"]))

    def clean(out):
        df = read_arrow(out, "clean").drop(columns=["_row_id"])
        return df.sort_values([c for c in df.columns if c != "_source_lm"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(clean(world["out"]), clean(world["full"]))


# -- readers ------------------------------------------------------------------------------------------------------
def test_readable_by_pyarrow_duckdb_and_spark(world):
    import duckdb

    out = world["out"]
    files = live_files(out, "features")
    assert files and all(Path(f).is_file() for f in files)
    on_disk = sorted(str(p) for p in (out / "features").rglob("*.parquet"))
    parts = read_catalog(LocalStore(out)).datasets["features"]
    assert on_disk == sorted(str(out / layout.view_file("features", p, i)) for p, fs in parts.items()
                             for i in range(len(fs)))  # the plain view: the live files, nothing stale beside them

    # pyarrow.dataset, hive partitioning
    pa_df = features(out)
    assert len(pa_df) == 89 and not pa_df.duplicated(KEYS).any()
    assert list(pa_df.columns) == output_columns(load_contract(CONTRACT_PATH))

    # DuckDB
    con = duckdb.connect()
    rel = f"read_parquet({files!r}, hive_partitioning = true)"
    total, distinct, worst = con.execute(
        f"select count(*), count(distinct (site, sensor, ts)), "
        f"(select max(n) from (select count(*) n from {rel} group by site, sensor, ts)) from {rel}").fetchone()
    assert (total, distinct, worst) == (89, 89, 1)
    con.execute("set TimeZone = 'UTC'")
    assert con.execute(f"select typeof(ts) from {rel} limit 1").fetchone()[0] == "TIMESTAMP WITH TIME ZONE"
    b = con.execute(f"select reading, battery, status, cast(period_date as varchar), strftime(ts, '%Y-%m-%d %H:%M:%S') from {rel} "
                    "where site = 'SOUTH' and sensor = 'T-01' and hour = 23 and period_date = '2024-03-01'").fetchall()
    assert b == [(34.0, 49.5, "warn", "2024-03-01", "2024-03-01 23:00:00")]

    # Spark
    spark = world["spark"]
    store = LocalStore(out)
    sdf = spark.read.option("basePath", store.spark_uri(layout.published_dir("features"))).parquet(
        *[store.spark_uri(f) for f in read_catalog(store).files("features")])
    assert sdf.count() == 89
    assert sdf.groupBy("site", "sensor", "ts").count().where("count > 1").count() == 0
    assert dict(sdf.dtypes)["ts"] == "timestamp" and dict(sdf.dtypes)["period_date"] == "string"
    got = sdf.where("site = 'NORTH' and sensor = 'T-01' and ts = timestamp'2024-03-01 10:00:00'").collect()
    assert [(r.reading, r.battery, r.status, r.period_date) for r in got] == [(15.5, 60.0, "fault", "2024-03-01")]
