"""The window kernel (jars/scala: io.nexgen.spark.WindowFeatures) against Spark's own SQL windows, bit for bit.

The SQL path (`engine="sql"`) is the definition: lags and rolling statistics over RANGE frames on calendar time.
The kernel must give the same doubles (same arithmetic in the same order), the same nulls, on data with gaps,
nulls, zeros of both signs, ties, and values from 0.001 to 1e6, for daily and hourly contracts; and for int and
long columns the same types and integers, beyond 2^53 too.
"""

import datetime as dt
import random
import struct

import pytest
import yaml
from pyspark.sql import functions as F

from nexgen_etl.core.contract import DEFAULT_CONTRACT, load_contract, parse_contract
from nexgen_etl.spark.transform import features

SALES = load_contract()
SENSORS = load_contract(DEFAULT_CONTRACT.parent / "sensor_readings.yaml")


def exact(value):
    """A value compared by its bits (a float's sign of zero and last bit count)."""
    return struct.pack(">d", value) if isinstance(value, float) else value


def rows_by_key(df, keys):
    return {tuple(r[k] for k in keys): {c: exact(r[c]) for c in df.columns} for r in df.collect()}


def assert_same(sql, kernel, keys):
    assert sql.columns == kernel.columns
    a, b = rows_by_key(sql, keys), rows_by_key(kernel, keys)
    assert a.keys() == b.keys()
    diffs = [(k, c, a[k][c], b[k][c]) for k in a for c in sql.columns if a[k][c] != b[k][c]]
    assert not diffs, diffs[:10]


def double_values(rnd: random.Random) -> tuple:
    units = rnd.choice([None, 0.0, -0.0, 1e6, 0.1, 0.001, 1e6 - 0.5, rnd.random() * 1000, float(rnd.randint(0, 50))])
    return units, rnd.choice([None, 0.0, 2.5, rnd.random() * 10, 99999.99])


def sales_periods(spark, seed: int, entities: int = 12, rows: int = 150, draw=double_values,
                  types: tuple[str, str] = ("double", "double")):
    """Periods of the sales contract with gaps of 1 to 40 days; draw(rnd) gives a row's target and price."""
    rnd = random.Random(seed)
    data = []
    for e in range(entities):
        d = dt.date(2024, 1, 1)
        for _ in range(rows):
            d += dt.timedelta(days=rnd.choice([1, 1, 1, 1, 1, 2, 3, 7, 8, 27, 28, 29, 40]))
            units, price = draw(rnd)
            data.append((f"S{e % 3}", f"K{e}", d, units, price, 0))
    df = spark.createDataFrame(data, f"store_id string, sku string, date date, units_sold {types[0]}, "
                                     f"unit_price {types[1]}, promo int")
    return df.withColumn("_period", F.col("date"))


@pytest.mark.parametrize("seed", [1, 2])
def test_the_kernel_gives_the_sql_windows_doubles_for_a_daily_contract(spark, seed):
    periods = sales_periods(spark, seed)
    sql = features.build_features(periods, SALES, engine="sql")
    kernel = features.build_features(periods, SALES, engine="kernel")
    assert_same(sql, kernel, ["store_id", "sku", "date"])
    # the data exercised what it should: nulls, gaps longer than a window, and two-value std frames
    lag = kernel.where(F.col("units_sold_lag_1").isNull() & F.col("units_sold_roll_mean_28").isNotNull()).count()
    assert lag > 0
    assert kernel.where(F.col("units_sold_roll_mean_28").isNull()).count() > 0


def test_other_lags_windows_and_stats_in_another_order(spark):
    d = yaml.safe_load(DEFAULT_CONTRACT.read_text())
    d["features"] = {"lags": [3, 1], "rolling": {"windows": [14, 2], "stats": ["max", "std"]}, "calendar": False,
                     "price": False}
    c = parse_contract(d)
    periods = sales_periods(spark, 3, entities=5)
    sql = features.build_features(periods, c, engine="sql")
    kernel = features.build_features(periods, c, engine="kernel")
    assert "unit_price_change_1" not in kernel.columns
    assert_same(sql, kernel, ["store_id", "sku", "date"])


def test_the_kernel_gives_the_sql_windows_doubles_for_an_hourly_contract(spark):
    rnd = random.Random(5)
    data = []
    for e in range(6):
        t = dt.datetime(2024, 3, 1)
        for _ in range(300):
            t += dt.timedelta(hours=rnd.choice([1, 1, 1, 2, 5, 23, 24, 25, 200]))
            data.append((f"SITE{e % 2}", f"s{e}", t, rnd.choice([None, -50.0, 0.0, 21.5, rnd.uniform(-50, 150)])))
    periods = spark.createDataFrame(data, "site string, sensor string, _period timestamp, reading double")
    assert features.kernel_applies(periods, SENSORS)
    sql = features.build_features(periods, SENSORS, engine="sql")
    kernel = features.build_features(periods, SENSORS, engine="kernel")
    assert_same(sql, kernel, ["site", "sensor", "_period"])


BIG = 2 ** 53  # above it a double holds only every other integer, and further up fewer


@pytest.mark.parametrize("target_type, price_type, values", [
    ("int", "int", [0, 1, -1, 7, 250, 2 ** 31 - 1, -(2 ** 31)]),
    ("bigint", "bigint", [0, 3, -5, BIG - 1, BIG, BIG + 1, BIG + 3, 2 ** 62 + 1, -(2 ** 63)]),
])
def test_the_kernel_gives_the_sql_windows_values_for_int_and_long_columns(spark, target_type, price_type, values):
    """Lags, min and max keep the column's type and its exact integers; means and stds are the SQL doubles.

    Catches: the kernel taking an integral column's lags, min or max through doubles (BIG + 1 comes back as
    BIG, 2^62 + 1 as 2^62), or giving them as doubles; means summed in another type than Spark's double."""
    periods = sales_periods(spark, 6, entities=8, rows=120, types=(target_type, price_type),
                            draw=lambda rnd: (rnd.choice([None, *values]), rnd.choice([None, *values])))
    assert features.kernel_applies(periods, SALES)
    sql = features.build_features(periods, SALES, engine="sql")
    kernel = features.build_features(periods, SALES, engine="kernel")
    assert "nexgen_window_features" in explained(kernel)
    assert kernel.dtypes == sql.dtypes
    types = dict(kernel.dtypes)
    assert (types["units_sold_lag_7"], types["units_sold_roll_max_7"], types["units_sold_roll_mean_7"]) == (
        target_type, target_type, "double")
    assert types["unit_price_change_1"] == price_type
    assert_same(sql, kernel, ["store_id", "sku", "date"])
    if target_type == "bigint":  # the frames held integers that a double cannot tell apart
        odd = [r["units_sold_roll_max_28"] for r in kernel.select("units_sold_roll_max_28").collect()]
        assert {BIG + 1, 2 ** 62 + 1} <= set(odd)


def test_auto_takes_the_kernel_for_every_numeric_target_and_sql_for_another_type(spark):
    periods = sales_periods(spark, 4, entities=2, rows=20)
    assert "nexgen_window_features" in explained(features.build_features(periods, SALES))
    ints = periods.withColumn("units_sold", F.col("units_sold").cast("int"))
    assert "nexgen_window_features" in explained(features.build_features(ints, SALES))
    decimals = periods.withColumn("units_sold", F.col("units_sold").cast("decimal(12,3)"))
    assert not features.kernel_applies(decimals, SALES)
    auto = features.build_features(decimals, SALES)
    assert "nexgen_window_features" not in explained(auto)
    with pytest.raises(ValueError, match="double, int or long target"):
        features.build_features(decimals, SALES, engine="kernel")


def test_rows_out_of_period_order_stop_the_kernel(spark):
    from pyspark.sql import Window

    df = spark.createDataFrame([(1, 3.0), (3, 1.0), (2, 2.0)], "p long, v double")
    col = features.kernel_column(spark, F.col("p"), F.col("v"), None, lags=[1], windows=[], stats=[])
    # ordered by v: the periods come 3, 2, 1
    w = Window.orderBy(F.col("v")).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    with pytest.raises(Exception, match="period order"):
        df.select(col.over(w)).collect()


def explained(df) -> str:
    return df._jdf.queryExecution().executedPlan().toString()
