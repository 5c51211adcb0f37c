"""A feed without entity keys (`keys: []`): one series. Deduplication, roll-up, both feature engines and the fills
work over all rows as one entity, and no partition column of their own reaches the output."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from nexgen_etl.core.contract import parse_contract
from nexgen_etl.spark.transform import clean, features


def series(**extra):
    return parse_contract({
        "name": "index",
        "columns": [{"name": "day", "type": "date", "formats": ["yyyy-MM-dd"], "required": True},
                    {"name": "level", "type": "double", "required": True},
                    {"name": "price", "type": "double"}],
        "time": {"column": "day", "period": "day"}, "keys": [], "target": "level", "price": "price",
        "features": {"lags": [1, 2], "rolling": {"windows": [3], "stats": ["mean", "std", "min", "max"]}},
        **extra})


# 1..6 May, no row on 4 May; level and price by hand
LEVELS = {1: (10.0, 1.0), 2: (12.0, 2.0), 3: (11.0, 2.0), 5: (15.0, 4.0), 6: (13.0, None)}


def periods(spark):
    rows = [(dt.date(2024, 5, d), lv, p) for d, (lv, p) in LEVELS.items()]
    return spark.createDataFrame(rows, "day date, level double, price double").withColumn("_period", F.col("day"))


@pytest.mark.parametrize("engine", ["sql", "kernel"])
def test_features_over_the_single_series(spark, engine):
    """Catches a window that still partitions by keys (SQL: `PARTITION BY ` with nothing after it, a syntax error)
    or a kernel window that restarts its state within the series."""
    c = series()
    out = features.finalize(features.build_features(periods(spark), c, engine=engine), c)
    assert out.columns[:3] == ["day", "level", "price"] and out.columns[-1] == "period_date"
    got = {r["day"].day: r for r in out.collect()}
    assert [got[d]["level_lag_1"] for d in (1, 2, 3, 5, 6)] == [None, 10.0, 12.0, None, 15.0]  # 4 May: no row
    assert [got[d]["level_lag_2"] for d in (1, 2, 3, 5, 6)] == [None, None, 10.0, 11.0, None]
    # 6 May: the window 3..5 May holds 11 and 15 (no row on 4 May)
    assert got[6]["level_roll_mean_3"] == 13.0 and got[6]["level_roll_min_3"] == 11.0
    assert got[6]["level_roll_std_3"] == pytest.approx(2 ** 0.5 * 2)
    assert got[5]["price_change_1"] is None and got[3]["price_change_1"] == 0.0
    assert got[5]["price_ratio_mean_3"] == pytest.approx(4.0 / 2.0)  # mean price over 2..4 May: (2 + 2) / 2


def test_sql_and_kernel_agree_on_the_single_series(spark):
    """Catches the engines disagreeing without keys (one of them partitioning or restarting differently)."""
    c = series()
    p = periods(spark)
    sql = {r["day"]: r.asDict() for r in features.build_features(p, c, engine="sql").collect()}
    kernel = {r["day"]: r.asDict() for r in features.build_features(p, c, engine="kernel").collect()}
    assert sql == kernel


def test_duplicates_and_fills_without_keys(spark):
    """Catches deduplication or the fill grid needing a key column (the grid joins on the period alone)."""
    c = series(duplicates={"policy": "last"}, missing_periods="fill_null")
    data = [(0, 0, "2024-05-01", "10", "1"), (0, 1, "2024-05-01", "11", "1"), (0, 2, "2024-05-03", "12", "2")]
    raw = spark.createDataFrame([(*r, None) for r in data], "_file int, _row_id long, day string, level string, "
                                "price string, _corrupt_record string").withColumn("_source_lm", F.current_timestamp())
    marked = clean.mark_duplicates(clean.valid_rows(clean.parse_rows(raw, c)), c)
    assert sorted(r["fate"] for r in clean.row_fates(marked, c).collect()) == ["duplicates_key", "out", "out"]
    winners = marked.where("not _exact_dup and not _key_dup").drop("_exact_dup", "_key_dup")
    p = clean.rollup_to_period(winners, c)
    extents = p.groupBy().agg(F.min("_period").alias("_first"), F.max("_period").alias("_last"))
    filled = features.fill_missing_periods(p, extents, c, [(dt.date(2024, 5, 1), dt.date(2024, 5, 3))])
    out = features.finalize(features.build_features(filled, c), c)
    got = sorted((r["day"].day, r["level"], r["is_filled"], r["level_lag_1"]) for r in out.collect())
    assert got == [(1, 11.0, False, None), (2, None, True, 11.0), (3, 12.0, False, None)]
