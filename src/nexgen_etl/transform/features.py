"""Forecasting features on calendar time (not row offsets), computed from one row per (keys, period).

Lags read the target at exactly t-k periods (null when that period has no row); rolling statistics cover the
k periods before t and never t itself, so no feature at t can see the target at t.
"""

from __future__ import annotations

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from nexgen_etl.contract import Contract

PERIOD = "_period"
T = "_t"
PARTITION_COLUMN = "period_date"

_STATS = {"mean": F.avg, "std": F.stddev_samp, "min": F.min, "max": F.max}


def period_index(contract: Contract) -> SparkColumn:
    """Periods since the epoch as an integer, so that range frames count calendar periods."""
    p = F.col(PERIOD)
    if contract.period == "day":
        return F.datediff(p.cast("date"), F.lit("1970-01-01").cast("date")).cast("long")
    return F.floor(F.unix_timestamp(p) / 3600).cast("long")


def feature_columns(contract: Contract) -> list[str]:
    f, tgt = contract.features, contract.target
    cols = [f"{tgt}_lag_{k}" for k in f.lags]
    cols += [f"{tgt}_roll_{s}_{w}" for w in f.rolling_windows for s in f.rolling_stats]
    if f.price and contract.price_column:
        p = contract.price_column
        cols += [f"{p}_change_1"] + [f"{p}_ratio_mean_{w}" for w in f.rolling_windows]
    if f.calendar:
        cols += ["day_of_week", "week_of_year", "month", "quarter", "is_weekend", "is_month_start", "is_month_end"]
        if contract.period == "hour":
            cols.append("hour")
    return cols


def calendar_columns(contract: Contract) -> list[SparkColumn]:
    p = F.col(PERIOD)
    d = p.cast("date")
    cols = [
        ((F.dayofweek(d) + 5) % 7 + 1).alias("day_of_week"),  # ISO: Monday = 1 .. Sunday = 7
        F.weekofyear(d).alias("week_of_year"),
        F.month(d).alias("month"),
        F.quarter(d).alias("quarter"),
        F.dayofweek(d).isin(1, 7).alias("is_weekend"),
        (F.dayofmonth(d) == 1).alias("is_month_start"),
        (d == F.last_day(d)).alias("is_month_end"),
    ]
    if contract.period == "hour":
        cols.append(F.hour(p).alias("hour"))
    return cols


def build_features(periods: DataFrame, contract: Contract) -> DataFrame:
    """periods: one row per (keys, `_period`) with the target and other columns → the same rows with features.

    All frames share one partitioning and ordering, so Spark sorts once.
    """
    f, tgt = contract.features, F.col(contract.target)
    w = Window.partitionBy(*contract.keys).orderBy(T)
    df = periods.withColumn(T, period_index(contract))
    out: list[SparkColumn] = []
    for k in f.lags:
        out.append(F.max(tgt).over(w.rangeBetween(-k, -k)).alias(f"{contract.target}_lag_{k}"))
    for win in f.rolling_windows:
        frame = w.rangeBetween(-win, -1)
        for s in f.rolling_stats:
            out.append(_STATS[s](tgt).over(frame).alias(f"{contract.target}_roll_{s}_{win}"))
    if f.price and contract.price_column:
        price = F.col(contract.price_column)
        out.append((price - F.max(price).over(w.rangeBetween(-1, -1))).alias(f"{contract.price_column}_change_1"))
        for win in f.rolling_windows:
            mean = F.avg(price).over(w.rangeBetween(-win, -1))
            out.append(F.when(mean != 0, price / mean).alias(f"{contract.price_column}_ratio_mean_{win}"))
    if f.calendar:
        out.extend(calendar_columns(contract))
    return df.select("*", *out)


def output_columns(contract: Contract) -> list[str]:
    """The published column order: keys, period, declared columns, features, lineage, partition."""
    declared = [c.name for c in contract.columns if c.name not in contract.keys and c.name != contract.time_column]
    return [*contract.keys, contract.time_column, *declared, *feature_columns(contract), PARTITION_COLUMN]


def finalize(features: DataFrame, contract: Contract) -> DataFrame:
    """Stable column order and the partition column (the period's date as yyyy-MM-dd)."""
    df = features.withColumn(contract.time_column, F.col(PERIOD)).withColumn(
        PARTITION_COLUMN, F.date_format(F.col(PERIOD).cast("date"), "yyyy-MM-dd"))
    return df.select(*output_columns(contract))
