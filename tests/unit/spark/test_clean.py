"""Every cleaning rule on tiny DataFrames, with the expected values written out by hand."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from nexgen_etl.core.contract import DEFAULT_CONTRACT, load_contract
from nexgen_etl.spark.transform import clean

C = load_contract()
RAW_COLS = ["date", "store_id", "sku", "units_sold", "unit_price", "promo"]


def raw_df(spark, rows, lm="2026-01-01 00:00:00", file=0):
    data = [(file, i, *r, None) for i, r in enumerate(rows)]
    schema = "_file int, _row_id long, " + ", ".join(
        f"{c} string" for c in RAW_COLS) + ", _corrupt_record string"
    return spark.createDataFrame(data, schema).withColumn("_source_lm", F.to_timestamp(F.lit(lm)))


@pytest.mark.parametrize(
    "row, reasons, parsed",
    [
        pytest.param(("2024-01-02", "s1", " sku-1 ", "3", "2.50", "1"), [],
                     {"date": dt.date(2024, 1, 2), "store_id": "S1", "sku": "SKU-1", "units_sold": 3.0,
                      "unit_price": 2.5, "promo": 1}, id="valid-trim-upper"),
        pytest.param(("01/03/2024", "S1", "K", "4", "", ""), [],
                     {"date": dt.date(2024, 1, 3), "unit_price": None, "promo": 0}, id="second-date-format-defaults"),
        pytest.param(("03.01.2024", "S1", "K", "4", "NA", "0"), [], {"date": dt.date(2024, 1, 3), "unit_price": None},
                     id="third-date-format-na"),
        pytest.param(("2024-13-45", "S1", "K", "4", "1", "0"), ["unparseable:date"], {}, id="bad-date"),
        pytest.param(("2024-01-02", "S1", "K", "", "1", "0"), ["missing:units_sold"], {}, id="blank-target"),
        pytest.param(("2024-01-02", "S1", "K", "-3", "1", "0"), ["below_min:units_sold"], {}, id="negative-units"),
        pytest.param(("2024-01-02", "S1", "K", "abc", "1", "0"), ["unparseable:units_sold"], {}, id="text-units"),
        pytest.param(("2024-01-02", "S1", "K", "NaN", "1", "0"), ["missing:units_sold"], {}, id="nan-is-missing"),
        pytest.param(("2024-01-02", "S1", "K", "2", "1", "7"), ["not_allowed:promo"], {}, id="promo-not-allowed"),
        pytest.param(("2024-01-02", " ", "K", "2", "1", "0"), ["missing:store_id"], {}, id="blank-key"),
        pytest.param(("2024-01-02", "S1", "K", "2000000", "1", "0"), ["above_max:units_sold"], {}, id="absurd-units"),
        pytest.param(("", "", "K", "x", "1", "0"), ["missing:date", "missing:store_id", "unparseable:units_sold"], {},
                     id="several-reasons"),
    ],
)
def test_parse_rules(spark, row, reasons, parsed):
    out = clean.parse_rows(raw_df(spark, [row]), C).collect()[0].asDict()
    assert out["_reasons"] == reasons
    for k, v in parsed.items():
        assert out[k] == v, k


def test_quarantine_keeps_source_raw_values_and_reason(spark):
    p = clean.parse_rows(raw_df(spark, [("2024-01-02", "S1", "K", "-1", "1", "0"),
                                        ("2024-01-02", "S1", "K", "1", "1", "0")]), C)
    q = clean.quarantine_rows(p).collect()
    assert len(q) == 1
    assert q[0]["_file"] == 0 and q[0]["reason"] == "below_min:units_sold"
    assert '"units_sold":"-1"' in q[0]["raw_values"]
    assert clean.valid_rows(p).count() == 1


def test_exact_then_key_duplicates_newest_file_wins(spark):
    rows_old = [("2024-01-02", "S1", "K", "5", "1", "0"), ("2024-01-02", "S1", "K", "5", "1", "0")]
    rows_new = [("2024-01-02", "s1 ", "k", "9", "1", "0")]
    old, new = 1, 0  # file ids: the newer file sorts first by key, the older one by LastModified
    df = raw_df(spark, rows_old, "2026-01-01 00:00:00", old).unionByName(
        raw_df(spark, rows_new, "2026-01-02 00:00:00", new))
    marked = clean.mark_duplicates(clean.valid_rows(clean.parse_rows(df, C)), C).collect()
    marks = sorted((r["_file"], r["_row_id"], r["_exact_dup"], r["_key_dup"]) for r in marked)
    # the old file's second row repeats its first; the first loses to the newer file's row
    assert marks == [(new, 0, False, False), (old, 0, False, True), (old, 1, True, False)]
    winners = [r for r in marked if not r["_exact_dup"] and not r["_key_dup"]]
    assert len(winners) == 1 and winners[0]["units_sold"] == 9.0 and winners[0]["_file"] == new


def test_within_one_file_the_last_row_wins(spark):
    df = raw_df(spark, [("2024-01-02", "S1", "K", "1", "1", "0"), ("2024-01-02", "S1", "K", "2", "1", "0")])
    marked = clean.mark_duplicates(clean.valid_rows(clean.parse_rows(df, C)), C)
    assert [r["units_sold"] for r in marked.where("not _key_dup").collect()] == [2.0]
    assert marked.where("_exact_dup").count() == 0


def test_malformed_row_is_quarantined(spark):
    df = raw_df(spark, [("2024-01-02", "S1", "K", "1", "1", "0")]).withColumn(
        "_corrupt_record", F.lit("2024-01-02,S1,K,1,1,0,extra"))
    out = clean.parse_rows(df, C).collect()[0]
    assert out["_reasons"][0] == "malformed_row"


def test_row_fates_without_a_rollup_in_one_projection(spark):
    rows_old = [("2024-01-02", "S1", "K", "5", "1", "0"), ("2024-01-02", "S1", "K", "5", "1", "0")]
    old, new = 1, 0
    df = raw_df(spark, rows_old, "2026-01-01 00:00:00", old).unionByName(
        raw_df(spark, [("2024-01-02", "S1", "K", "9", "1", "0"), ("2024-01-03", "S1", "K", "1", "1", "0")],
               "2026-01-02 00:00:00", new))
    marked = clean.mark_duplicates(clean.valid_rows(clean.parse_rows(df, C)), C)
    fates = clean.row_fates(marked, C)
    assert sorted(tuple(r) for r in fates.collect()) == [(new, "out", False), (new, "out", False),
                                                         (old, "duplicates_exact", False),
                                                         (old, "duplicates_key", False)]
    # with the old file as published history: the new 2 January row takes over the period the old one published
    # (catches `_took` on every out row, or on none)
    took = clean.row_fates(marked, C, F.col(clean.FILE) == old)
    assert sorted(tuple(r) for r in took.where(F.col(clean.FILE) == new).collect()) == [(new, "out", False),
                                                                                        (new, "out", True)]
    unions = [x._jdf.queryExecution().optimizedPlan().toString().count("Union") for x in (df, fates)]
    assert unions[1] == unions[0]  # no union of its own: one projection of the marked rows


def test_row_fates_with_a_rollup_merge_within_the_period(spark):
    sensors = load_contract(DEFAULT_CONTRACT.with_name("sensor_readings.yaml"))
    cols = [c.raw_name for c in sensors.columns]
    rows = [("2024-03-01T10:05:00Z", "a", "s1", "1", "90", "ok"),   # merged into the hour's last row
            ("2024-03-01T10:05:00Z", "a", "s1", "1", "90", "ok"),   # an exact repeat
            ("2024-03-01T10:35:00Z", "a", "s1", "2", "80", "ok"),   # the hour's last: out
            ("2024-03-01T11:00:00Z", "a", "s1", "3", "70", "ok")]
    data = [(0, i, *r, None) for i, r in enumerate(rows)]
    raw = spark.createDataFrame(data, "_file int, _row_id long, " + ", ".join(f"{c} string" for c in cols)
                                + ", _corrupt_record string").withColumn("_source_lm", F.current_timestamp())
    marked = clean.mark_duplicates(clean.valid_rows(clean.parse_rows(raw, sensors)), sensors)
    fates = sorted(r["fate"] for r in clean.row_fates(marked, sensors).collect())
    assert fates == ["duplicates_exact", "merged", "out", "out"]


def test_daily_dates_roll_up_into_a_longer_period_under_last(spark):
    """A `date` column with `period: month` under `last` (no `keep`, no `on`): the days of a month are several rows of
    one period and must roll up into one (units summed), each counted once. Catches a roll-up skipped because the
    time column is a date (two rows for March in the features, both `out`)."""
    from dataclasses import replace

    monthly = replace(C, period="month")
    rows = [("2024-03-01", "S1", "K", "2", "1", "0"), ("2024-03-17", "S1", "K", "3", "1", "0"),
            ("2024-04-02", "S1", "K", "5", "1", "0")]
    marked = clean.mark_duplicates(clean.valid_rows(clean.parse_rows(raw_df(spark, rows), monthly)), monthly)
    winners = marked.where(~F.col("_exact_dup") & ~F.col("_key_dup")).drop("_exact_dup", "_key_dup")
    periods = {r["_period"]: r["units_sold"] for r in clean.rollup_to_period(winners, monthly).collect()}
    assert periods == {dt.date(2024, 3, 1): 5.0, dt.date(2024, 4, 1): 5.0}
    assert sorted(r["fate"] for r in clean.row_fates(marked, monthly).collect()) == ["merged", "out", "out"]


def test_zone_names_offsets_and_epochs_become_the_declared_zones_wall_clock(spark):
    """`zone: America/New_York`: a time read with a zone name (VV) or an offset (XXX), or an epoch, is an instant shown
    as New York's wall clock; a time without either is taken as written. Catches the zone ignored (12:00 read as
    12:00), applied to times without an offset (09:00 shifted too), and a fractional epoch accepted."""
    from nexgen_etl.core.contract import parse_contract

    c = parse_contract({"name": "z", "keys": [], "target": "v", "time": {"column": "t", "period": "hour"},
                        "columns": [{"name": "t", "type": "timestamp", "zone": "America/New_York",
                                     "formats": ["yyyy-MM-dd HH:mm VV", "yyyy-MM-dd'T'HH:mmXXX", "epoch_s",
                                                 "yyyy-MM-dd HH:mm"]},
                                    {"name": "v", "type": "double"}]})
    values = ["2024-07-01 12:00 Europe/Berlin", "2024-07-01T12:00+00:00", "1719835200", "2024-07-01 09:00",
              "1719835200.5"]
    raw = spark.createDataFrame([(0, i, t, "1", None) for i, t in enumerate(values)],
                                "_file int, _row_id long, t string, v string, _corrupt_record string")
    rows = clean.parse_rows(raw.withColumn("_source_lm", F.current_timestamp()), c).orderBy("_row_id").collect()
    assert [r["t"] for r in rows[:4]] == [dt.datetime(2024, 7, 1, 6), dt.datetime(2024, 7, 1, 8),
                                          dt.datetime(2024, 7, 1, 8), dt.datetime(2024, 7, 1, 9)]
    assert rows[4]["_reasons"] == ["unparseable:t"]
