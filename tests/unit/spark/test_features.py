"""Features on calendar time, with expected values written out by hand."""

import datetime as dt
import math

import pytest
import yaml
from pyspark.sql import functions as F

from nexgen_etl.core.contract import DEFAULT_CONTRACT, parse_contract
from nexgen_etl.spark.transform import features


def contract(**feat):
    d = yaml.safe_load(DEFAULT_CONTRACT.read_text())
    d["features"] = {"lags": [1, 2], "rolling": {"windows": [3], "stats": ["mean", "std", "min", "max"]},
                     "calendar": True, "price": True, **feat}
    return parse_contract(d)


def periods(spark, rows):
    """rows: (store, sku, date, units, price, promo)."""
    df = spark.createDataFrame(rows, "store_id string, sku string, date date, units_sold double, "
                                     "unit_price double, promo int")
    return df.withColumn("_period", F.col("date"))


D = dt.date


@pytest.fixture()
def out(spark):
    # S1/K has a gap on Jan 4; S2/K is another entity that must not leak into S1's features
    rows = [("S1", "K", D(2024, 1, 1), 10.0, 2.0, 0), ("S1", "K", D(2024, 1, 2), 20.0, 2.0, 0),
            ("S1", "K", D(2024, 1, 3), 30.0, 1.0, 1), ("S1", "K", D(2024, 1, 5), 50.0, 2.0, 0),
            ("S2", "K", D(2024, 1, 4), 999.0, 5.0, 0)]
    c = contract()
    df = features.finalize(features.build_features(periods(spark, rows), c), c)
    return {(r["store_id"], r["date"]): r.asDict() for r in df.collect()}


def test_lags_use_calendar_periods_not_rows(out):
    r = out[("S1", D(2024, 1, 5))]
    assert r["units_sold_lag_1"] is None  # Jan 4 has no row
    assert r["units_sold_lag_2"] == 30.0  # Jan 3
    assert out[("S1", D(2024, 1, 2))]["units_sold_lag_1"] == 10.0
    assert out[("S1", D(2024, 1, 1))]["units_sold_lag_1"] is None


def test_rolling_excludes_t_and_spans_calendar_window(out):
    r = out[("S1", D(2024, 1, 5))]  # window Jan 2..Jan 4 → 20, 30
    assert r["units_sold_roll_mean_3"] == 25.0
    assert r["units_sold_roll_min_3"] == 20.0 and r["units_sold_roll_max_3"] == 30.0
    assert math.isclose(r["units_sold_roll_std_3"], math.sqrt(50.0))
    r3 = out[("S1", D(2024, 1, 3))]  # Jan 1, Jan 2
    assert r3["units_sold_roll_mean_3"] == 15.0
    assert out[("S1", D(2024, 1, 1))]["units_sold_roll_mean_3"] is None
    assert out[("S2", D(2024, 1, 4))]["units_sold_roll_mean_3"] is None  # no leakage across entities


def test_price_features(out):
    assert out[("S1", D(2024, 1, 3))]["unit_price_change_1"] == -1.0
    assert out[("S1", D(2024, 1, 5))]["unit_price_change_1"] is None  # no row at t-1
    assert out[("S1", D(2024, 1, 5))]["unit_price_ratio_mean_3"] == pytest.approx(2.0 / 1.5)


def test_calendar(out):
    r = out[("S1", D(2024, 1, 5))]  # Friday
    assert (r["day_of_week"], r["week_of_year"], r["month"], r["quarter"]) == (5, 1, 1, 1)
    assert r["is_weekend"] is False and r["is_month_start"] is False and r["is_month_end"] is False
    assert out[("S1", D(2024, 1, 1))]["is_month_start"] is True
    assert out[("S1", D(2024, 1, 1))]["period_date"] == D(2024, 1, 1)  # written as the folder period_date=2024-01-01


def test_changing_target_at_t_changes_no_feature_at_t(spark):
    c = contract()
    base = [("S1", "K", D(2024, 1, d), float(d), 1.0, 0) for d in range(1, 8)]
    changed = [r if r[2] != D(2024, 1, 5) else (*r[:3], 1000.0, *r[4:]) for r in base]
    f = features.feature_columns(c)
    a = features.finalize(features.build_features(periods(spark, base), c), c).where("date = '2024-01-05'")
    b = features.finalize(features.build_features(periods(spark, changed), c), c).where("date = '2024-01-05'")
    assert a.select(f).collect() == b.select(f).collect()
    assert a.select("units_sold").collect() != b.select("units_sold").collect()


def filled(spark, policy, rows, extents, lo=D(2024, 1, 1), hi=D(2024, 1, 10), spans=None):
    c = contract()
    d = yaml.safe_load(DEFAULT_CONTRACT.read_text())
    d["missing_periods"] = policy
    d["features"] = {"lags": [1, 2], "rolling": {"windows": [3], "stats": ["mean", "min"]}, "calendar": False,
                     "price": True}
    c = parse_contract(d)
    ext = spark.createDataFrame(extents, "store_id string, sku string, _first date, _last date")
    p = features.fill_missing_periods(periods(spark, rows), ext, c, spans or [(lo, hi)])
    df = features.finalize(features.build_features(p, c), c)
    assert df.columns == features.output_columns(c) and "is_filled" in df.columns
    return {(r["store_id"], r["date"]): r.asDict() for r in df.collect()}


GAPPY = [("S1", "K", D(2024, 1, 2), 10.0, 2.0, 1), ("S1", "K", D(2024, 1, 5), 40.0, 4.0, 0)]


def test_fill_zero_fills_gaps_between_first_and_last_period_only(spark):
    # the extents say S1/K's history goes on to Jan 6 (a row outside this frame), S2/K has one day
    out = filled(spark, "fill_zero", GAPPY + [("S2", "K", D(2024, 1, 8), 7.0, 1.0, 0)],
                 [("S1", "K", D(2024, 1, 2), D(2024, 1, 6)), ("S2", "K", D(2024, 1, 8), D(2024, 1, 8))])
    assert sorted(d.day for s, d in out if s == "S1") == [2, 3, 4, 5, 6]  # Jan 1 is before the first period
    assert [d.day for s, d in out if s == "S2"] == [8]
    jan3, jan4, jan5 = (out[("S1", D(2024, 1, d))] for d in (3, 4, 5))
    assert (jan3["units_sold"], jan3["is_filled"], jan3["unit_price"], jan3["promo"]) == (0.0, True, None, 0)
    assert out[("S1", D(2024, 1, 2))]["is_filled"] is False and jan5["is_filled"] is False
    assert jan5["units_sold_lag_1"] == 0.0 and jan5["units_sold_lag_2"] == 0.0  # filled, not null
    assert jan5["units_sold_roll_mean_3"] == pytest.approx(10.0 / 3) and jan5["units_sold_roll_min_3"] == 0.0
    assert jan4["units_sold_lag_2"] == 10.0
    assert jan5["unit_price_change_1"] is None and jan5["unit_price_ratio_mean_3"] == pytest.approx(2.0)


def test_fill_null_adds_rows_with_null_target(spark):
    out = filled(spark, "fill_null", GAPPY, [("S1", "K", D(2024, 1, 2), D(2024, 1, 5))])
    assert sorted(d.day for _, d in out) == [2, 3, 4, 5]
    jan4, jan5 = out[("S1", D(2024, 1, 4))], out[("S1", D(2024, 1, 5))]
    assert jan4["units_sold"] is None and jan4["is_filled"] is True
    assert jan5["units_sold_lag_1"] is None and jan5["units_sold_lag_2"] is None
    assert jan5["units_sold_roll_mean_3"] == 10.0  # nulls are skipped: only Jan 2 counts


def test_fill_is_clipped_to_the_frame(spark):
    out = filled(spark, "fill_zero", GAPPY, [("S1", "K", D(2023, 12, 1), D(2024, 2, 1))],
                 lo=D(2024, 1, 1), hi=D(2024, 1, 6))
    assert sorted(d.day for _, d in out) == [1, 2, 3, 4, 5, 6]


def test_leave_adds_no_rows_and_no_flag(spark):
    c = contract()
    ext = spark.createDataFrame([("S1", "K", D(2024, 1, 2), D(2024, 1, 5))],
                                "store_id string, sku string, _first date, _last date")
    p = features.fill_missing_periods(periods(spark, GAPPY), ext, c, [(D(2024, 1, 1), D(2024, 1, 10))])
    assert p.count() == 2 and "is_filled" not in p.columns


def test_fill_only_inside_the_frame_spans(spark):
    out = filled(spark, "fill_zero", GAPPY, [("S1", "K", D(2024, 1, 2), D(2024, 1, 9))],
                 spans=[(D(2024, 1, 1), D(2024, 1, 3)), (D(2024, 1, 6), D(2024, 1, 8))])
    assert sorted(d.day for _, d in out) == [2, 3, 5, 6, 7, 8]  # 5 is real; 4 and 9 lie outside the spans
    assert sorted(d.day for (_, d), r in out.items() if r["is_filled"]) == [3, 6, 7, 8]


def test_merge_spans():
    from nexgen_etl.spark.spans import merge_spans

    s = [(D(2024, 1, 10), D(2024, 1, 12)), (D(2024, 1, 1), D(2024, 1, 3)), (D(2024, 1, 4), D(2024, 1, 4)),
         (D(2024, 1, 11), D(2024, 1, 20)), (D(2024, 2, 1), D(2024, 2, 1))]
    assert merge_spans(s) == [(D(2024, 1, 1), D(2024, 1, 4)), (D(2024, 1, 10), D(2024, 1, 20)),
                              (D(2024, 2, 1), D(2024, 2, 1))]
    assert merge_spans([]) == []
