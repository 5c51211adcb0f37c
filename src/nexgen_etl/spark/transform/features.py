"""Forecasting features on calendar time (not row offsets), computed from one row per (keys, period).

Lags read the target at exactly t-k periods (null when that period has no row); rolling statistics cover the
k periods before t and never t itself, so no feature at t can see the target at t.

An entity is one combination of the contract's keys; with `keys: []` all rows are one series, and the windows
partition by nothing. Every contract column name goes through clean.col / clean.quoted.
"""

from __future__ import annotations

from datetime import date

from py4j.java_gateway import JavaClass
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType

from nexgen_etl.core.contract import Contract
from nexgen_etl.spark.frames import local_frame
from nexgen_etl.spark.transform.clean import col, entity, quoted

PERIOD = "_period"
T = "_t"
PARTITION_COLUMN = "period_date"
FILLED = "is_filled"

_STATS = {"mean": "avg", "std": "stddev_samp", "min": "min", "max": "max"}  # SQL aggregate names
# the window kernel (jars/scala, built into nexgen-spark.jar by scripts/resolve_jars.sh; on a local driver's class
# path, shipped to a cluster's executors with --jars: spark.submit.submit_spec)
KERNEL_CLASS = "io.nexgen.spark.WindowFeatures"
ENGINES = ("auto", "kernel", "sql")


def period_index(period: str) -> SparkColumn:
    """A period's number, consecutive periods consecutive numbers, so that range frames count periods on the
    calendar (lag 1 of March is February): hours or days since the epoch, weeks since the Monday before it,
    months, quarters or years since year 0."""
    p = F.col(PERIOD)
    if period == "hour":
        return F.floor(F.unix_timestamp(p) / 3600).cast("long")
    if period == "day":
        return F.expr(f"unix_date({quoted(PERIOD)})").cast("long")
    if period == "week":  # 1970-01-01 is a Thursday: Monday-based weeks count from 1969-12-29
        return F.floor((F.expr(f"unix_date({quoted(PERIOD)})") + 3) / 7).cast("long")
    per_year = {"month": 12, "quarter": 4, "year": 1}[period]
    within = {"month": F.month(p) - 1, "quarter": F.quarter(p) - 1, "year": F.lit(0)}[period]
    return (F.year(p) * per_year + within).cast("long")


# the calendar columns of each period: what varies between periods of that size
CALENDAR = {
    "hour": ("day_of_week", "week_of_year", "month", "quarter", "is_weekend", "is_month_start", "is_month_end",
             "hour"),
    "day": ("day_of_week", "week_of_year", "month", "quarter", "is_weekend", "is_month_start", "is_month_end"),
    "week": ("week_of_year", "month", "quarter"),
    "month": ("month", "quarter"),
    "quarter": ("quarter",),
    "year": (),
}


def feature_columns(contract: Contract) -> list[str]:
    f, tgt = contract.features, contract.target
    cols = [f"{tgt}_lag_{k}" for k in f.lags]
    cols += [f"{tgt}_roll_{s}_{w}" for w in f.rolling_windows for s in f.rolling_stats]
    if f.price and contract.price_column:
        p = contract.price_column
        cols += [f"{p}_change_1"] + [f"{p}_ratio_mean_{w}" for w in f.rolling_windows]
    if f.calendar:
        cols += CALENDAR[contract.period]
    return cols


def calendar_columns(contract: Contract) -> list[SparkColumn]:
    """The period's calendar columns (CALENDAR), of its start: a week's month is its Monday's."""
    p = F.col(PERIOD)
    d = p.cast("date")
    every = {
        "day_of_week": (F.dayofweek(d) + 5) % 7 + 1,  # ISO: Monday = 1 .. Sunday = 7
        "week_of_year": F.weekofyear(d),
        "month": F.month(d),
        "quarter": F.quarter(d),
        "is_weekend": F.dayofweek(d).isin(1, 7),
        "is_month_start": F.dayofmonth(d) == 1,
        "is_month_end": d == F.last_day(d),
        "hour": F.hour(p),
    }
    return [every[name].alias(name) for name in CALENDAR[contract.period]]


def kernel_applies(periods: DataFrame, contract: Contract) -> bool:
    """The kernel reproduces the SQL windows for double, int and long columns (every numeric type a contract's
    target, price or roll-up gives: lags, min and max keep an int or long column's type and exact value)."""
    f, types = contract.features, {fld.name: fld.dataType for fld in periods.schema.fields}
    cols = [contract.target] + ([contract.price_column] if f.price and contract.price_column else [])
    return all(isinstance(types.get(c), (DoubleType, IntegerType, LongType)) for c in cols)


def build_features(periods: DataFrame, contract: Contract, engine: str = "auto") -> DataFrame:
    """periods: one row per (keys, `_period`) with the target and other columns → the same rows with features.

    All frames share one partitioning and ordering, so Spark sorts once (or not at all, when the rows come
    sorted by keys and period). engine: `kernel` computes the lags and rolling statistics in one pass per entity
    (io.nexgen.spark.WindowFeatures: the same doubles as the SQL windows, without Spark's sliding frames, which
    update every aggregate over the whole frame again for every row); `sql` with Spark's own RANGE windows;
    `auto` the kernel where it applies (a double, int or long target and price), else SQL.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    f, tgt, price = contract.features, contract.target, contract.price_column
    if contract.period == "day":
        # a date order takes whole days as range offsets; ordering by the period itself (not a number derived
        # from it) lets Spark reuse the (keys, period) order the rows may already have (clean.mark_duplicates)
        df, order = periods, PERIOD
    else:
        df, order = periods.withColumn(T, period_index(contract.period)), T
    if engine == "kernel" or (engine == "auto" and kernel_applies(periods, contract)):
        if not kernel_applies(periods, contract):
            raise ValueError("the window kernel needs a double, int or long target and price")
        return _kernel_features(df, order, contract)
    partition = f"PARTITION BY {', '.join(quoted(k) for k in contract.keys)} " if contract.keys else ""

    def over(agg: str, column: str, back_from: int, back_to: int) -> SparkColumn:
        """agg(column) over the periods t-back_from … t-back_to. Written in SQL: the DataFrame API passes frame
        offsets as BIGINT, which a date order does not take."""
        return F.expr(f"{agg}({quoted(column)}) OVER ({partition}ORDER BY {quoted(order)} "
                      f"RANGE BETWEEN {back_from} PRECEDING AND {back_to} PRECEDING)")

    out: list[SparkColumn] = []
    for k in f.lags:
        out.append(over("max", tgt, k, k).alias(f"{tgt}_lag_{k}"))
    for win in f.rolling_windows:
        for s in f.rolling_stats:
            out.append(over(_STATS[s], tgt, win, 1).alias(f"{tgt}_roll_{s}_{win}"))
    if f.price and price:
        out.append((col(price) - over("max", price, 1, 1)).alias(f"{price}_change_1"))
        for win in f.rolling_windows:
            mean = over("avg", price, win, 1)
            out.append(F.when(mean != 0, col(price) / mean).alias(f"{price}_ratio_mean_{win}"))
    if f.calendar:
        out.extend(calendar_columns(contract))
    return df.select("*", *out)


def kernel_column(spark, period: SparkColumn, target: SparkColumn, price: SparkColumn | None, lags: list[int],
                  windows: list[int], stats: list[str]) -> SparkColumn:
    """The kernel's aggregate (a struct of the lags, `<stat>_<w>`, `price_lag_1`, `price_mean_<w>`) as a Column,
    for `.over()` a window ordered by the period; period a long, target and price doubles, ints or longs (price
    may be None)."""
    jvm, gateway = spark._jvm, spark.sparkContext._gateway
    kernel = getattr(jvm, KERNEL_CLASS)
    if not isinstance(kernel, JavaClass):  # py4j answers a class it cannot load with a package of that name
        raise RuntimeError(f"the window kernel {KERNEL_CLASS} is not on the Spark class path: pass "
                           "jars/lib/nexgen-spark.jar with --jars, spark.jars or spark.driver.extraClassPath "
                           "(`make jars` builds it)")

    def array(jtype, values):
        arr = gateway.new_array(jtype, len(values))
        for i, v in enumerate(values):
            arr[i] = v
        return arr

    return SparkColumn(kernel.column(period._jc, target._jc, price._jc if price is not None else None,
                                     array(jvm.int, list(lags)), array(jvm.int, list(windows)),
                                     array(jvm.java.lang.String, list(stats))))


def _kernel_features(df: DataFrame, order: str, contract: Contract) -> DataFrame:
    """build_features' columns from one kernel call per row (a struct), over the window's rows up to the current
    one: Spark updates that frame one row at a time, and the kernel keeps each entity's last periods itself."""
    f, tgt, price = contract.features, contract.target, contract.price_column
    period = period_index(contract.period) if order == PERIOD else F.col(order).cast("long")
    with_price = bool(f.price and price)
    kernel = kernel_column(df.sparkSession, period, col(tgt), col(price) if with_price else None, f.lags,
                           f.rolling_windows, f.rolling_stats)
    # no keys: one window over all rows (one series); the kernel's state starts afresh in each window partition
    window = Window.partitionBy(*entity(contract)).orderBy(order).rowsBetween(Window.unboundedPreceding,
                                                                              Window.currentRow)
    wf = "_wf"
    out: list[SparkColumn] = [F.col(f"{wf}.lag_{k}").alias(f"{tgt}_lag_{k}") for k in f.lags]
    for win in f.rolling_windows:
        for s in f.rolling_stats:
            out.append(F.col(f"{wf}.{s}_{win}").alias(f"{tgt}_roll_{s}_{win}"))
    if with_price:
        out.append((col(price) - F.col(f"{wf}.price_lag_1")).alias(f"{price}_change_1"))
        for win in f.rolling_windows:
            mean = F.col(f"{wf}.price_mean_{win}")
            out.append(F.when(mean != 0, col(price) / mean).alias(f"{price}_ratio_mean_{win}"))
    if f.calendar:
        out.extend(calendar_columns(contract))
    return df.select("*", kernel.over(window).alias(wf)).select(*[col(c) for c in df.columns], *out)


def fills(contract: Contract) -> bool:
    return contract.missing_periods != "leave"


STEPS = {"hour": "INTERVAL 1 HOUR", "day": "INTERVAL 1 DAY", "week": "INTERVAL 7 DAYS", "month": "INTERVAL 1 MONTH",
         "quarter": "INTERVAL 3 MONTHS", "year": "INTERVAL 1 YEAR"}


def period_step(contract: Contract) -> SparkColumn:
    return F.expr(STEPS[contract.period])


def fill_missing_periods(periods: DataFrame, extents: DataFrame, contract: Contract,
                         spans: list[tuple[date, date]]) -> DataFrame:
    """Adds a row for every period with no row between an entity's first and last period, inside the spans given
    (the frame the features are computed on: days, or for a period longer than a day the periods' starts).

    extents: one row per entity with `_first` and `_last` periods over all its clean rows (not just the frame),
    so a gap is filled the same way whichever batch the neighbouring rows came in. A filled row has the target
    0 (`fill_zero`) or null (`fill_null`), each other column its declared `default` or null, and `is_filled`
    true. With `leave` the rows are returned as they are (and no `is_filled` column is added).
    """
    if not fills(contract) or not spans:
        return periods
    keys = entity(contract)
    frame = local_frame(periods.sparkSession, spans, "_lo date, _hi date")
    lo, hi = F.col("_lo"), F.col("_hi")
    if contract.period == "hour":
        lo, hi = F.to_timestamp(lo), F.to_timestamp(hi) + F.expr("INTERVAL 23 HOURS")
    start, end = F.greatest(F.col("_first"), lo), F.least(F.col("_last"), hi)
    grid = (extents.crossJoin(F.broadcast(frame)).where(start <= end)
            .select(*keys, F.explode(F.sequence(start, end, period_step(contract))).alias(PERIOD)))
    missing = grid.join(periods.select(*keys, PERIOD), [*contract.keys, PERIOD], "left_anti")
    declared = {c.name: c for c in contract.columns}
    values = []
    for fld in periods.schema.fields:
        if fld.name in contract.keys or fld.name == PERIOD:
            continue
        if fld.name == contract.target:
            value = F.lit(0) if contract.missing_periods == "fill_zero" else F.lit(None)
        elif fld.name == contract.time_column:
            value = F.col(PERIOD)
        elif fld.name in declared and declared[fld.name].default is not None:
            value = F.lit(declared[fld.name].default)
        else:
            value = F.lit(None)
        values.append(value.cast(fld.dataType).alias(fld.name))
    filled = missing.select(*keys, PERIOD, *values).withColumn(FILLED, F.lit(True))
    return periods.withColumn(FILLED, F.lit(False)).unionByName(filled)


def output_columns(contract: Contract) -> list[str]:
    """The published column order: keys, period, declared columns, features, the fill flag, partition."""
    declared = [c.name for c in contract.columns if c.name not in contract.keys and c.name != contract.time_column]
    filled = [FILLED] if fills(contract) else []
    return [*contract.keys, contract.time_column, *declared, *feature_columns(contract), *filled, PARTITION_COLUMN]


def finalize(features: DataFrame, contract: Contract) -> DataFrame:
    """Stable column order and the partition column (the period's date, of its start for a week or longer; its
    folders read yyyy-MM-dd: one per day for hours and days, one per period for longer ones)."""
    df = features.withColumn(contract.time_column, F.col(PERIOD)).withColumn(PARTITION_COLUMN,
                                                                             F.col(PERIOD).cast("date"))
    return df.select(*[col(c) for c in output_columns(contract)])
