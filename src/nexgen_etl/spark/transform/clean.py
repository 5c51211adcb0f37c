"""Cleaning: trim/case rules, parsing with the declared formats, casts, rule checks, deduplication, roll-up.

Every function takes and returns DataFrames; none opens a session, a path or a bucket. Each input row ends
with exactly one fate, so per-file accounting adds up: quarantined, duplicate_exact, duplicate_key, merged, out.
"""

from __future__ import annotations

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from nexgen_etl.core.contract import Column, Contract

# a row's source: its file as a small int (numbered in the order of the files' keys, so that it sorts as the key
# does; the job maps it back to the key and ETag where they are written), the file's LastModified, its row id
FILE = "_file"
SOURCE_COLUMNS = [FILE, "_source_lm", "_row_id"]
REASONS = "_reasons"
CORRUPT = "_corrupt_record"
REASON_SEPARATOR = "\u001f"  # ASCII unit separator: never part of a reason code

SPARK_TYPES = {"string": "string", "int": "int", "long": "bigint", "double": "double", "boolean": "boolean"}


def raw_schema_ddl(contract: Contract, header: list[str] | None = None) -> str:
    """All-string read schema in source column order (plus the corrupt-record column)."""
    names = header or [c.raw_name for c in contract.columns]
    return ", ".join(f"`{n}` STRING" for n in names) + f", `{CORRUPT}` STRING"


def _normalised(col: Column, contract: Contract) -> SparkColumn:
    c = F.col(f"`{col.raw_name}`")
    if col.trim:
        c = F.trim(c)
    nulls = list(contract.csv.null_values)
    if nulls:  # compared before the case rule, so "NA" stays missing in a lower-cased column
        c = F.when(c.isin(*nulls), F.lit(None)).otherwise(c)
    if col.case == "upper":
        c = F.upper(c)
    elif col.case == "lower":
        c = F.lower(c)
    return c


def _parsed(col: Column, s: SparkColumn) -> SparkColumn:
    if col.type in SPARK_TYPES:
        if col.type in {"int", "long"}:
            # "12.0" is fine for an int column, "12.5" is not
            d = s.cast("double")
            return F.when(d == F.floor(d), d.cast(SPARK_TYPES[col.type]))
        if col.type == "double":
            d = s.cast("double")
            return F.when(~F.isnan(d), d)  # "NaN" is not a number: unparseable unless null_values lists it
        return s.cast(SPARK_TYPES[col.type])
    fn = F.to_date if col.type == "date" else F.to_timestamp
    return F.coalesce(*[fn(s, fmt) for fmt in col.formats])


def _bound(col: Column, value) -> SparkColumn:
    if col.type == "date":
        return F.lit(value).cast("date")
    if col.type == "timestamp":
        return F.lit(value).cast("timestamp")
    return F.lit(value)


def parse_rows(raw: DataFrame, contract: Contract) -> DataFrame:
    """Typed canonical columns, the raw values of rejected rows, and `_reasons` (empty array: the row is valid).

    Built as three projections (normalised strings, typed values, checks) so that each normalised string and
    each parse is computed once per row: the checks refer to them several times, and Spark keeps a projection
    apart when merging it would repeat a costly expression.
    """
    cols = contract.columns
    raw_cols = [F.col(f"`{c.raw_name}`") for c in cols]
    has_corrupt = CORRUPT in raw.columns
    carried = [*SOURCE_COLUMNS, *raw_cols, *([F.col(CORRUPT)] if has_corrupt else [])]
    s_name = {c.name: f"__s{i}" for i, c in enumerate(cols)}
    v_name = {c.name: f"__v{i}" for i, c in enumerate(cols)}
    normalised = raw.select(*carried, *[_normalised(c, contract).alias(s_name[c.name]) for c in cols])
    values = []
    for c in cols:
        s = F.col(s_name[c.name])
        v = _parsed(c, s)
        if c.default is not None:
            v = F.when(s.isNull(), F.lit(c.default)).otherwise(v)
        values.append(v.alias(v_name[c.name]))
    typed = normalised.select("*", *values)

    checks: list[SparkColumn] = []
    if has_corrupt:
        checks.append(F.when(F.col(CORRUPT).isNotNull(), F.lit("malformed_row")))
    # bytes that are not valid in the declared encoding decode to U+FFFD: never a real value
    checks.append(F.when(F.concat_ws("", *raw_cols).contains("\ufffd"), F.lit("invalid_encoding")))
    for c in cols:
        s, v = F.col(s_name[c.name]), F.col(v_name[c.name])
        if c.required:
            checks.append(F.when(s.isNull(), F.lit(f"missing:{c.name}")))
        checks.append(F.when(s.isNotNull() & v.isNull(), F.lit(f"unparseable:{c.name}")))
        if c.min is not None:
            checks.append(F.when(v < _bound(c, c.min), F.lit(f"below_min:{c.name}")))
        if c.max is not None:
            checks.append(F.when(v > _bound(c, c.max), F.lit(f"above_max:{c.name}")))
        if c.allowed is not None:
            checks.append(F.when(v.isNotNull() & ~v.isin(*c.allowed), F.lit(f"not_allowed:{c.name}")))
    # the reasons that apply, in check order: concat_ws skips nulls and, unlike a higher-order filter over an
    # array (which Spark evaluates row by row without code generation), compiles to plain generated code
    joined = F.concat_ws(REASON_SEPARATOR, *checks)
    reasons = F.when(joined == "", F.array().cast("array<string>")).otherwise(F.split(joined, REASON_SEPARATOR))
    checked = typed.select("*", reasons.alias(REASONS))
    # the raw values are kept for rejected rows only (the quarantine's evidence); valid rows carry a null
    raw_values = F.to_json(F.struct(*[col.alias(c.raw_name) for col, c in zip(raw_cols, cols)]))
    if has_corrupt:
        raw_values = F.coalesce(F.col(CORRUPT), raw_values)
    return checked.select(*SOURCE_COLUMNS, *[F.col(v_name[c.name]).alias(c.name) for c in cols],
                          F.when(F.size(REASONS) > 0, raw_values).alias("_raw"), REASONS)


def quarantine_rows(parsed: DataFrame) -> DataFrame:
    """Rejected rows with their source, raw values and reason codes (first reason is the primary one)."""
    return parsed.where(F.size(REASONS) > 0).select(
        FILE, "_row_id", F.col(REASONS)[0].alias("reason"),
        F.array_join(REASONS, ";").alias("reasons"), F.col("_raw").alias("raw_values"))


def valid_rows(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.size(REASONS) == 0).drop(REASONS, "_raw")


# the winner among rows with the same key and time is the greatest of these: newest file (then the greatest key),
# then last row in the file
WINNER_RANK = ("_source_lm", FILE, "_row_id")


def winner_order(contract: Contract) -> list[SparkColumn]:
    """The stated winner among rows with the same key and time first (WINNER_RANK, descending)."""
    return [F.col(c).desc() for c in WINNER_RANK]


def mark_duplicates(rows: DataFrame, contract: Contract) -> DataFrame:
    """Adds `_exact_dup` and `_key_dup`; a row with neither is the winner of its (keys, time) group.

    `_exact_dup`: a repeat of an identical (cleaned) row earlier in the same file. `_key_dup`: a row that is not
    such a repeat but loses to its group's winner, the newest file's last row (`winner_order`).

    One sort serves both windows and the feature windows after them: the exact-repeat window lists the keys and
    the time first (then the file, whose modification time is the same on all its rows, and the other columns),
    so its order begins with the group window's partition and the features' (keys, period) order.
    """
    keys, t = list(contract.keys), contract.time_column
    rest = [n for n in contract.column_names if n not in keys and n != t]
    repeats = Window.partitionBy(*keys, t, "_source_lm", FILE, *rest).orderBy("_row_id")
    df = rows.withColumn("_exact_dup", F.row_number().over(repeats) > 1)
    # the winner is the greatest WINNER_RANK among the rows that are not repeats; max skips the nulls
    rank = F.struct(*WINNER_RANK)
    best = F.max(F.when(~F.col("_exact_dup"), rank)).over(Window.partitionBy(*keys, t))
    return df.withColumn("_key_dup", ~F.col("_exact_dup") & (rank != best))


def period_start(contract: Contract) -> SparkColumn:
    t = F.col(contract.time_column)
    if contract.column(contract.time_column).type == "date":
        return t
    return F.date_trunc(contract.period, t) if contract.period == "hour" else F.to_date(t)


def needs_rollup(contract: Contract) -> bool:
    return contract.column(contract.time_column).type != "date"


_AGG = {"sum": F.sum, "mean": F.avg, "max": F.max, "min": F.min, "count": F.count}


def rollup_to_period(winners: DataFrame, contract: Contract) -> DataFrame:
    """One row per (keys, period). Each column rolls up as its contract says; `last` = latest time in the period.

    Also returns, per source row, whether it was the representative (`out`) or `merged` into another.
    """
    key_cols = [*contract.keys]
    df = winners.withColumn("_period", period_start(contract))
    if not needs_rollup(contract):
        return df
    w_last = Window.partitionBy(*key_cols, "_period").orderBy(
        F.col(contract.time_column).desc(), *winner_order(contract))
    df = df.withColumn("_rank_in_period", F.row_number().over(w_last))
    aggs = []
    for c in contract.columns:
        if c.name in key_cols or c.name == contract.time_column:
            continue
        if c.rollup == "last":
            aggs.append(F.max_by(F.col(c.name), -F.col("_rank_in_period")).alias(c.name))
        else:
            aggs.append(_AGG[c.rollup](c.name).alias(c.name))
    return df.groupBy(*key_cols, "_period").agg(*aggs)


def row_fates(marked: DataFrame, contract: Contract) -> DataFrame:
    """(FILE, fate) for every row of a marked frame (mark_duplicates): `duplicates_exact`, `duplicates_key`, or
    for a winner `out` or `merged` as rollup_fates decides among all winners of its period. Without a roll-up,
    one projection: every winner is `out`."""
    dup = F.when(F.col("_exact_dup"), F.lit("duplicates_exact")).when(F.col("_key_dup"), F.lit("duplicates_key"))
    if not needs_rollup(contract):
        return marked.select(FILE, dup.otherwise(F.lit("out")).alias("fate"))
    winners = marked.where(~F.col("_exact_dup") & ~F.col("_key_dup"))
    return (marked.where(dup.isNotNull()).select(FILE, dup.alias("fate"))
            .unionByName(rollup_fates(winners, contract).select(FILE, F.col("_fate").alias("fate"))))


def rollup_fates(winners: DataFrame, contract: Contract) -> DataFrame:
    """Per winning row of a contract that rolls up (needs_rollup): `out` if it represents its period, else `merged`
    (rolled into the representative)."""
    df = winners.withColumn("_period", period_start(contract))
    w = Window.partitionBy(*contract.keys, "_period").orderBy(F.col(contract.time_column).desc(),
                                                              *winner_order(contract))
    return df.withColumn("_fate", F.when(F.row_number().over(w) == 1, "out").otherwise("merged"))
