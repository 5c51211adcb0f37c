"""The example contracts (examples/contracts/*.yaml) end to end, on their own sample files, through the pipeline's
steps and the real Spark job (in process, local folders), checked against the independent pandas reference
(tests/reference.py: run_contract) within 1e-9 relative, file by file:

- sales_log: a transaction log (`duplicates: {policy: keep}`): same-minute lines are all sales;
- order_lines: duplicates on a natural key (`on: [order_id, line_no]`, `last`), lines re-sent by a later export;
- filiale: awkward column names everywhere (dots, spaces, parentheses, a backtick, a leading digit, umlauts) and
  `policy: first`;
- grid_load: one series without entity keys (`keys: []`), rolled up to the hour.

Each sample's files are run as they would arrive: the first file, a run, the next file, a run (so the second run
reads the first's clean rows back); filiale's two files arrive together, in one batch. The reference sees all files
at once, so matching it shows that the incremental result is the full recompute's. Every expected value is the
reference's, except where a test says "by hand".
"""

from __future__ import annotations

import math
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import yaml

from nexgen_etl.core import layout
from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.publish import read_catalog, read_manifest
from nexgen_etl.core.settings import Settings
from nexgen_etl.core.state import FileStateStore
from nexgen_etl.core.storage import LocalStore
from nexgen_etl.run.pipeline import Pipeline
from nexgen_etl.spark.job import BatchJob
from nexgen_etl.spark.transform.features import output_columns
from tests import reference

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"
# contract → how its sample files arrive: one batch each (incremental), or all in one batch
CASES = {"sales_log": "one_by_one", "order_lines": "one_by_one", "filiale": "together", "grid_load": "one_by_one",
         "weekly_demand": "one_by_one", "monthly_prices": "one_by_one", "yearly_wide": "one_by_one",
         "sensor_wide": "one_by_one", "meter_export": "one_by_one"}


def samples(name: str) -> list[Path]:
    """The example's sample files, the first to arrive first (`<name>.csv`, then `<name>.<later>.csv`)."""
    return sorted(EXAMPLES.glob(f"{name}*.csv"), key=lambda p: (p.name != f"{name}.csv", p.name))


def run_pass(p: Pipeline, spark) -> dict:
    r = p.run_once(None, transform=lambda plan: BatchJob(spark, plan).run())
    assert r["status"] == "committed", r
    assert p.run_once(None)["status"] == "nothing_new"
    return r


def run_example(spark, name: str, tmp: Path, now: float) -> dict:
    """One example through the pipeline, its files arriving as CASES says: its outputs, each batch's manifest, the
    features after the first file, and the files as the reference takes them."""
    raw, published = tmp / "raw", tmp / "out"
    p = Pipeline(settings=Settings(raw_url=str(raw), output_url=str(published)),
                 contract=load_contract(EXAMPLES / f"{name}.yaml"), raw=LocalStore(raw),
                 out=LocalStore(published), state=FileStateStore(tmp / "state.json"))
    files, batches, after_first = [], [], None
    for i, path in enumerate(samples(name)):
        key = f"feed/{path.name}"
        (raw / "feed").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, raw / key)
        mtime = int(now) - 600 + 60 * i  # arrival order; whole seconds
        os.utime(raw / key, (mtime, mtime))
        files.append((key, datetime.fromtimestamp(mtime, timezone.utc), path.read_bytes()))
        if CASES[name] == "one_by_one":
            batches.append(run_pass(p, spark))
            if i == 0:
                after_first = features(published)
    if CASES[name] == "together":
        batches.append(run_pass(p, spark))
    return {"out": published, "files": files, "batches": batches, "after_first": after_first}


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """Each example through the pipeline (run_example), with the reference's results (after the first file, and
    over all files)."""
    t0, out = time.monotonic(), {}
    now = time.time()
    for name in CASES:
        spec = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))
        r = run_example(spark, name, tmp_path_factory.mktemp(name), now)
        out[name] = {**r, "spec": spec, "ref": reference.run_contract(spec, r["files"]),
                     "ref_first": reference.run_contract(spec, r["files"][:1])}
    print(f"example contracts: {sum(len(v['batches']) for v in out.values())} batches in "
          f"{time.monotonic() - t0:.1f}s")
    return out


# -- reading and comparing ------------------------------------------------------------------------------------------
def read_table(out: Path, dataset: str) -> pa.Table:
    """The live files (as the catalog lists them), with hive partitioning."""
    files = [str(out / f) for f in read_catalog(LocalStore(out)).files(dataset)]
    return ds.dataset(files, format="parquet", partitioning="hive",
                      partition_base_dir=str(out / layout.published_dir(dataset))).to_table()


def read_arrow(out: Path, dataset: str) -> pd.DataFrame:
    return read_table(out, dataset).to_pandas()


def features(out: Path) -> pd.DataFrame:
    return read_arrow(out, "features")


def plain(v):
    """A cell as a plain Python value: None for every kind of missing, naive UTC datetimes, Python numbers."""
    if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return (v.tz_convert("UTC").tz_localize(None) if v.tzinfo else v).to_pydatetime()
    if isinstance(v, np.generic):
        return plain(v.item())
    return v


def same(a, b) -> bool:
    a, b = plain(a), plain(b)
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def sort_key(v) -> str:
    """A cell as it sorts: numbers by their value to 6 places (an int and an equal float alike)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{float(v):020.6f}"
    return repr(v)


def records(df: pd.DataFrame, columns: list[str]) -> list[dict]:
    rows = [{c: plain(r[c]) for c in columns} for r in df.to_dict("records")]
    return sorted(rows, key=lambda r: [sort_key(r[c]) for c in columns])


def assert_same_rows(got: pd.DataFrame, ref: pd.DataFrame, columns: list[str], what: str) -> None:
    assert len(got) == len(ref), (what, len(got), len(ref))
    a, b = records(got, columns), records(ref, columns)
    diffs = [(i, c, x[c], y[c]) for i, (x, y) in enumerate(zip(a, b)) for c in columns if not same(x[c], y[c])]
    assert not diffs, (what, diffs[:10])


def assert_features_match(got: pd.DataFrame, ref: pd.DataFrame, spec: dict, what: str) -> None:
    assert set(got.columns) == set(ref.columns), (what, sorted(set(got.columns) ^ set(ref.columns)))
    got = got.assign(period_date=got["period_date"].astype(str))
    # sorted by entity and time first, so that a row's features are compared with the same row's
    by = [*spec["keys"], spec["time"]["column"]]
    assert_same_rows(got, ref, [*by, *[c for c in ref.columns if c not in by]], what)


def accounting(out: Path, batch: dict) -> dict:
    acc = read_manifest(LocalStore(out), batch["batch_id"]).to_dict()["accounting"]
    for key, a in acc.items():
        assert a["balanced"] and a["rows_read"] == (a["rows_out"] + a["rows_quarantined"] + a["duplicates_exact"]
                                                    + a["duplicates_key"] + a["rows_merged"]), (key, a)
    return {key: {f: a[f] for f in reference.FATES} for key, a in acc.items()}


# -- every example against the reference ----------------------------------------------------------------------------
def test_every_example_contract_has_samples_and_a_case():
    """The examples stay true: every contract under examples/contracts/ is run here, on its own sample files."""
    assert sorted(p.stem for p in EXAMPLES.glob("*.yaml")) == sorted(CASES)
    for name in CASES:
        load_contract(EXAMPLES / f"{name}.yaml")
        assert samples(name) and samples(name)[0].name == f"{name}.csv"


@pytest.mark.parametrize("name", list(CASES))
def test_features_match_the_reference(runs, name):
    """Catches any change in what reaches the features: a policy that keeps or drops the wrong rows, a roll-up, a
    lag or window over the wrong rows (a keyless series split up, history not read back), a column renamed."""
    r = runs[name]
    got = features(r["out"])
    assert list(got.columns) == output_columns(load_contract(EXAMPLES / f"{name}.yaml"))
    assert_features_match(got, r["ref"].features, r["spec"], f"{name}: features")
    if r["after_first"] is not None:
        assert_features_match(r["after_first"], r["ref_first"].features, r["spec"], f"{name}: after the first file")


@pytest.mark.parametrize("name", list(CASES))
def test_clean_and_quarantine_match_the_reference(runs, name):
    """Catches a row lost from or added to the clean dataset (an exact repeat kept, or a key duplicate dropped:
    key duplicates stay in clean), and a quarantine reason that differs."""
    r = runs[name]
    names = [c["name"] for c in reference.declared_columns(r["spec"])]
    clean = read_arrow(r["out"], "clean")
    clean = clean.assign(period_date=clean["period_date"].astype(str))
    assert_same_rows(clean, r["ref"].clean, ["_source_key", *names, "period_date"], f"{name}: clean")
    q = read_arrow(r["out"], "quarantine")
    assert_same_rows(q, r["ref"].quarantine, ["_source_key", "reason", "reasons"], f"{name}: quarantine")
    assert len(q) > 0


@pytest.mark.parametrize("name", list(CASES))
def test_each_files_accounting_balances_and_matches_the_reference(runs, name):
    """Catches a row counted under the wrong fate (an exact repeat as a key duplicate, a merged row as out, a
    `keep` line as a key duplicate) and any row not counted exactly once."""
    r = runs[name]
    ref_all = r["ref"].accounting
    if CASES[name] == "together":
        assert accounting(r["out"], r["batches"][0]) == ref_all
        return
    first, *later = r["batches"]
    key1 = r["files"][0][0]
    assert accounting(r["out"], first) == {key1: r["ref_first"].accounting[key1]}
    for batch, (key, _, _) in zip(later, r["files"][1:]):
        # a later file's rows meet every row they compete with (read back): their fates are the full run's
        assert accounting(r["out"], batch) == {key: ref_all[key]}


@pytest.mark.parametrize("name", list(CASES))
def test_accounting_across_batches_reconciles_with_the_published_rows(runs, name):
    """Summed over every batch, rows_out less periods_taken_over is the number of real (not filled) feature rows
    published. Catches a later batch's row that takes over a published period (a late line with a later time, a
    newer copy of a published row) without saying so: the sum of rows_out alone exceeds the rows published."""
    r = runs[name]
    manifests = [read_manifest(LocalStore(r["out"]), b["batch_id"]).to_dict()["accounting"] for b in r["batches"]]
    files = [a for m in manifests for a in m.values()]
    f = features(r["out"])
    real = len(f) - (int(f.is_filled.sum()) if "is_filled" in f else 0)
    assert sum(a["rows_out"] - a["periods_taken_over"] for a in files) == real
    if name in ("sales_log", "grid_load", "monthly_prices", "meter_export"):
        assert sum(a["periods_taken_over"] for a in files) > 0  # the samples do take periods over


def test_spark_windows_by_conf_give_the_kernels_features_exactly(runs, spark, tmp_path):
    """`spark.nexgen.features.engine=sql` (job.FEATURE_ENGINE_CONF) runs the features on Spark's own windows; on the
    sales log, whose int target rolls up to a long sum and whose lags, min and max are longs, they are the
    kernel's values and types exactly, over two batches. Catches the job ignoring the conf (an unknown engine would
    not stop it), and the kernel and Spark's windows parting on an integer target."""
    from nexgen_etl.spark.job import FEATURE_ENGINE_CONF

    kernel = read_table(runs["sales_log"]["out"], "features")
    assert {str(kernel.schema.field(c).type) for c in ("quantity_lag_1", "quantity_roll_max_3")} == {"int64"}
    try:
        spark.conf.set(FEATURE_ENGINE_CONF, "sql")
        sql = read_table(run_example(spark, "sales_log", tmp_path / "sql", time.time())["out"], "features")
        spark.conf.set(FEATURE_ENGINE_CONF, "fastest")
        with pytest.raises(Exception, match="engine must be one of"):
            run_example(spark, "sales_log", tmp_path / "unknown", time.time())
    finally:
        spark.conf.unset(FEATURE_ENGINE_CONF)
    assert sql.schema == kernel.schema
    by = ["store", "product", "sold_at"]
    a, b = (t.to_pandas().sort_values(by).reset_index(drop=True) for t in (kernel, sql))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


# -- by hand, one per capability ------------------------------------------------------------------------------------
def cell(df: pd.DataFrame, **where) -> pd.Series:
    hit = df
    for k, v in where.items():
        hit = hit[hit[k].map(plain) == v]
    assert len(hit) == 1, (where, len(hit))
    return hit.iloc[0]


def test_sales_log_counts_every_sale_in_the_same_minute(runs):
    """`keep`: two receipts for the same product in the same minute are two sales. Catches `keep` treated as `last`
    (1 May would show 1, not 3), exact repeats kept (2 May: 8, not 4), and a late line not rolled up with the day's
    published lines (4 May: 1 or 2, not 3)."""
    f = features(runs["sales_log"]["out"])
    day = lambda d: datetime(2024, 5, d).date()  # noqa: E731
    assert cell(f, store="S1", product="APPLE", sold_at=day(1)).quantity == 2 + 1
    assert cell(f, store="S1", product="APPLE", sold_at=day(2)).quantity == 4
    r3 = cell(f, store="S1", product="APPLE", sold_at=day(3))
    assert (r3.quantity, r3.receipt, r3.quantity_lag_1) == (3 + 2, 1, 4)  # a line without a receipt id
    r4 = cell(f, store="S1", product="APPLE", sold_at=day(4))
    assert (r4.quantity, r4.receipt, r4.quantity_lag_1) == (1 + 2, 2, 5)


def test_order_lines_deduplicate_on_the_natural_key(runs):
    """`on: [order_id, line_no]`: two orders in one minute both count; a re-sent line replaces its earlier copy.
    Catches duplicates compared on keys and time (1 May AB-1 would be 1 or 2, not 3; the re-sent O-1007 at 16:20
    would add to 16:00: 2, not 1) and a natural-key winner that is not the newest (3 May CD-2: 4, not 3)."""
    f = features(runs["order_lines"]["out"])
    day = lambda d: datetime(2024, 5, d).date()  # noqa: E731
    assert cell(f, sku="AB-1", ordered_at=day(1)).qty == 2 + 1
    assert cell(f, sku="EF-3", ordered_at=day(2)).qty == 2  # O-1004 line 2: the later row of the file
    assert cell(f, sku="CD-2", ordered_at=day(3)).qty == 3  # O-1006 line 2, corrected by the re-export
    assert cell(f, sku="EF-3", ordered_at=day(3)).qty == 1  # O-1007 re-sent at another minute of the same day
    assert cell(f, sku="AB-1", ordered_at=day(3)).qty == 1 + 2  # 01:30 on 4 May at +02:00 is 3 May in UTC
    assert cell(f, sku="AB-1", ordered_at=day(4)).qty == 3 + 1


def test_filiale_awkward_names_and_the_first_report(runs):
    """Catches a name that reaches Spark unquoted (the job fails with [UNRESOLVED_COLUMN] or a parse error) and
    `first` picking like `last` (4 May F-01 KAFFEE would be 99, 5 May the re-sent +50 figures)."""
    f = features(runs["filiale"]["out"])
    assert list(f.columns[:6]) == ["Filiale Nr.", "Artikel`SKU", "Datum (Tag)", "menge.stück", "preis €", "2für1"]
    day = lambda d: datetime(2024, 5, d).date()  # noqa: E731
    k = {"Filiale Nr.": "F-01", "Artikel`SKU": "KAFFEE"}
    assert cell(f, **k, **{"Datum (Tag)": day(4)})["menge.stück"] == 12 + 12 % 7
    r5 = cell(f, **k, **{"Datum (Tag)": day(5)})
    assert (r5["menge.stück"], r5["menge.stück_lag_1"]) == (12 + 15 % 7, 12 + 12 % 7)
    assert cell(f, **k, **{"Datum (Tag)": day(2)})["2für1"] == 0  # "-" is null, and the default is 0


def test_grid_load_is_one_series(runs):
    """`keys: []`: one row per hour, features over the single series. Catches the contract refusing no keys, the
    job partitioning by no keys (a Spark error), a constant or helper column left in the output, lags that do not
    reach across the late 05:00 hour, and a filled hour (fill_null) left behind once its readings arrive (the
    first and last periods of a series without keys, read back by the job)."""
    r = runs["grid_load"]
    first, f = r["after_first"], features(r["out"])
    assert list(f.columns[:4]) == ["ts", "load_mw", "price_eur_mwh", "status"]
    assert not [c for c in f.columns if c.startswith("_")]
    # after the first file: 05:00 has no readings, so a filled row with a null load; 06:00's lag reads it
    h5 = cell(first, ts=datetime(2024, 5, 1, 5))
    assert h5.is_filled and plain(h5.load_mw) is None
    assert plain(cell(first, ts=datetime(2024, 5, 1, 6)).load_mw_lag_1) is None
    # after the late file: every hour real, 05:00 included
    assert sorted(plain(t).hour for t in f.ts) == list(range(11)) and not f.is_filled.any()
    h6, h5 = cell(f, ts=datetime(2024, 5, 1, 6)), cell(f, ts=datetime(2024, 5, 1, 5))
    assert h6.load_mw_lag_1 == h5.load_mw == (545 + 544 + 543 + 542) / 4
    h8 = cell(f, ts=datetime(2024, 5, 1, 8))
    assert h8.load_mw == pytest.approx((496 + 470.5 + 501 + 480) / 4) and h8.status == "estimated"


def test_weekly_demand_rolls_days_up_to_iso_weeks(runs):
    """`period: week`: the days Monday–Sunday of a store sum into one row dated that Monday, a week without rows is a
    zero row (fill_zero), and lags count weeks. Catches weeks that start on Sunday (the time would be 21 April), a
    fill that skips the empty week (no row for 22 April), lags counted in rows or days, and day-level calendar
    columns on weekly rows."""
    f = features(runs["weekly_demand"]["out"])
    assert {plain(d).weekday() for d in f.day} == {0}
    assert not {"day_of_week", "is_weekend", "is_month_end"} & set(f.columns)
    week = lambda m, d: datetime(2024, m, d).date()  # noqa: E731
    lines = (EXAMPLES / "weekly_demand.csv").read_text().splitlines()[1:]
    by_hand = sum(float(u) for s, d, u, _ in (x.split(",") for x in lines)
                  if s.upper() == "S2" and d in [f"2024-04-{n}" for n in range(15, 22)]
                  + [f"{n}.04.2024" for n in range(15, 22)])
    assert cell(f, store="S2", day=week(4, 15)).units == by_hand
    empty = cell(f, store="S2", day=week(4, 22))
    assert (empty.units, empty.is_filled) == (0, True)
    after = cell(f, store="S2", day=week(4, 29))
    assert (after.units_lag_1, after.units_lag_2, after.is_filled) == (0, by_hand, False)
    folders = {p.name for p in (runs["weekly_demand"]["out"] / "features").glob("period_date=*")}
    assert folders == {f"period_date={plain(d)}" for d in f.day}  # one folder per week, not per day


def test_monthly_prices_lag_by_calendar_month(runs):
    """A time from `time.parts` (year, month) and `period: month`: lag 1 of November is October, lag 12 the November
    before, a missing month stays a gap. Catches lags counted in rows (copper's November 2023 would read September
    as lag 1), months counted in days, a month 13 or an empty month turned into a date, and the parts' raw names in
    the quarantine evidence replaced by the time column's name."""
    r = runs["monthly_prices"]
    f = features(r["out"])
    nov = cell(f, commodity="copper", month_start=datetime(2023, 11, 1).date())
    assert plain(nov.price_lag_1) is None
    assert (nov.price_lag_3, nov.price_lag_12) == (8243.58, 7858.34)  # August 2023, November 2022: by hand
    q = read_arrow(r["out"], "quarantine")
    evidence = {reason: sorted(q[q.reason == reason].raw_values, reverse=True) for reason in q.reason}
    assert evidence["unparseable:month_start"] == [
        '{"Year":"20x3","Month":"2","commodity":"cocoa","price":"3.1","unit":"kg"}',
        '{"Year":"2023","Month":"13","commodity":"brent","price":"81.5","unit":"bbl"}']
    assert evidence["missing:month_start"] == ['{"Year":"2023","commodity":"cocoa","price":"3.1","unit":"kg"}']


def test_yearly_wide_reads_a_row_per_cell(runs):
    """`unpivot` with a pattern: every year column's cell of a country row is a row read, an empty cell is quarantined
    and counted, a column the later file adds (2013) is picked up. Catches cells dropped or counted as one row per
    line (52 read, not 4), the indicator column unpivoted too, and the year label not becoming the time."""
    r = runs["yearly_wide"]
    first = accounting(r["out"], r["batches"][0])
    assert sum(a["rows_read"] for a in first.values()) == 4 * 13
    f = features(r["out"])
    assert sorted({plain(y).year for y in f.year}) == list(range(2000, 2014))
    aland = cell(f, country="Aland", year=datetime(2013, 1, 1).date())
    assert (aland.population, aland.population_lag_1) == (31867, 31601)  # the update's 2013, its revised 2012
    q = read_arrow(r["out"], "quarantine")
    assert sorted(q.reasons) == ["below_min:population", "missing:population", "missing:population",
                                 "unparseable:population"]


def test_sensor_wide_converts_offsets_to_the_declared_zone(runs):
    """Timestamps with +01:00 / +02:00 become Europe/Berlin's wall clock (`zone`): on 31 March 2024 the clock jumps
    from 02:00 to 03:00, so 02:00 has no reading and is a filled hour, and the readings at 01:00 UTC are 03:00. Catches
    times left in UTC (the 22:00+01:00 readings would be 21:00), offsets ignored (03:00+02:00 read as 03:00 UTC),
    and a sensor's name lost in the unpivot."""
    f = features(runs["sensor_wide"]["out"])
    assert set(f.sensor) == {"pm2.5 north", "pm2.5 south", "pm2.5 east", "pm2.5 west"}
    north = f[f.sensor == "pm2.5 north"]
    hours = {plain(t): bool(filled) for t, filled in zip(north.ts, north.is_filled)}
    assert min(hours) == datetime(2024, 3, 30, 22)
    assert hours[datetime(2024, 3, 31, 2)] is True and hours[datetime(2024, 3, 31, 3)] is False


def test_meter_export_reads_a_repeated_header_by_position(runs):
    """`csv.header: positional` with `names`: a header that repeats "value" is read, its two columns told apart; epoch
    milliseconds become Berlin's days (22:00 UTC on 31 May is 1 June). Catches the file rejected as
    duplicate_header, the two "value" columns swapped (tariff 2.6 where kwh is), and days cut in UTC (a 31 May row)."""
    f = features(runs["meter_export"]["out"])
    assert min(plain(d) for d in f.read_at) == datetime(2024, 6, 1).date()
    assert f.tariff.dropna().between(0.2, 0.4).all() and f.kwh.max() > 1
