"""Cleaning: trim/case rules, parsing with the declared formats, casts, rule checks, deduplication, roll-up.

Every function takes and returns DataFrames; none opens a session, a path or a bucket. Each input row ends
with exactly one fate, so per-file accounting adds up: quarantined, duplicate_exact, duplicate_key, merged, out.

A contract's column names are the user's (dots, spaces, backticks, any letters): they reach Spark only through
`quoted` / `col`, never as a bare string that Spark would parse (`pm2.5` would read as field `5` of `pm2`).
"""

from __future__ import annotations

import operator
from functools import reduce

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from nexgen_etl.core.contract import EPOCH_FORMATS, Column, Contract, format_has_zone

# a row's source: its file as a small int (numbered in the order of the files' keys, so that it sorts as the key
# does; the job maps it back to the key and ETag where they are written), the file's LastModified, its row id
FILE = "_file"
SOURCE_COLUMNS = [FILE, "_source_lm", "_row_id"]
REASONS = "_reasons"
CORRUPT = "_corrupt_record"
REASON_SEPARATOR = "\u001f"  # ASCII unit separator: never part of a reason code

SPARK_TYPES = {"string": "string", "int": "int", "long": "bigint", "double": "double", "boolean": "boolean"}


def quoted(name: str) -> str:
    """A column name as Spark SQL reads it literally (in F.col, SQL text, a DDL schema): in backticks, with a
    backtick inside doubled."""
    return "`" + name.replace("`", "``") + "`"


def col(name: str) -> SparkColumn:
    """The column of this exact name (no parsing of dots or backticks)."""
    return F.col(quoted(name))


def entity(contract: Contract) -> list[SparkColumn]:
    """The entity key columns, to partition by; none for a single series (`keys: []`): one window over all rows."""
    return [col(k) for k in contract.keys]


def raw_schema_ddl(contract: Contract, header: list[str] | None = None) -> str:
    """All-string read schema in source column order (plus the corrupt-record column)."""
    names = header or contract.raw_inputs
    return ", ".join(f"{quoted(n)} STRING" for n in names) + f", {quoted(CORRUPT)} STRING"


def _normalised(col: Column, contract: Contract, raw_name: str | None = None) -> SparkColumn:
    c = F.col(quoted(raw_name or col.raw_name))
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


def _integral(s: SparkColumn, to: str = "bigint") -> SparkColumn:
    """A whole number ("12.0" is fine, "12.5" is not), else null."""
    d = s.cast("double")
    return F.when(d == F.floor(d), d.cast(to))


def _parsed(col: Column, s: SparkColumn, parts: dict[str, SparkColumn] | None = None) -> SparkColumn:
    if parts:
        return _from_parts(col, parts)
    if col.type in SPARK_TYPES:
        if col.type in {"int", "long"}:
            return _integral(s, SPARK_TYPES[col.type])
        if col.type == "double":
            d = s.cast("double")
            return F.when(~F.isnan(d), d)  # "NaN" is not a number: unparseable unless null_values lists it
        return s.cast(SPARK_TYPES[col.type])
    return F.coalesce(*[_datetime(col, s, fmt) for fmt in col.formats])


def _datetime(col: Column, s: SparkColumn, fmt: str) -> SparkColumn:
    """s parsed with one format: an epoch number, or a pattern. The session's zone is UTC, so a time read with an
    offset or zone is a UTC instant; with a declared `zone` it becomes that zone's wall clock. A time read without
    one is taken as written (the zone's wall clock already)."""
    if col.type == "date" and not format_has_zone(fmt):
        return F.to_date(s, fmt)
    if fmt in EPOCH_FORMATS:
        n = _integral(s)
        t = F.timestamp_seconds(n) if fmt == "epoch_s" else F.timestamp_millis(n)
    else:
        t = F.to_timestamp(s, fmt)
    if col.zone and format_has_zone(fmt):
        t = F.from_utc_timestamp(t, col.zone)
    return t.cast("date") if col.type == "date" else t


def _from_parts(col: Column, parts: dict[str, SparkColumn]) -> SparkColumn:
    """The date or timestamp of whole-number parts (month and day default to 1); null when a part is not a whole
    number or the parts make no date (month 13, 30 February)."""
    n = {p: _integral(v, "int") for p, v in parts.items()}
    one = F.lit(1)
    d = F.make_date(n["year"], n.get("month", one), n.get("day", one))
    if col.type == "date":
        return d
    zero = F.lit(0)
    return F.make_timestamp(n["year"], n.get("month", one), n.get("day", one), n.get("hour", zero),
                            n.get("minute", zero), n.get("second", zero).cast("decimal(8,6)"))


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
    raw_names = contract.raw_inputs
    raw_cols = [F.col(quoted(n)) for n in raw_names]
    has_corrupt = CORRUPT in raw.columns
    carried = [*SOURCE_COLUMNS, *raw_cols, *([F.col(CORRUPT)] if has_corrupt else [])]
    s_name = {c.name: f"__s{i}" for i, c in enumerate(cols)}
    v_name = {c.name: f"__v{i}" for i, c in enumerate(cols)}
    # a time built from parts: each part normalised as a column of its own; its string is null when any part is
    p_name = {(c.name, part): f"__p{i}_{part}" for i, c in enumerate(cols) for part, _ in c.parts}
    strings = []
    for c in cols:
        if c.parts:
            strings += [_normalised(c, contract, raw).alias(p_name[c.name, part]) for part, raw in c.parts]
            s = F.concat_ws("-", *[F.col(p_name[c.name, part]) for part, _ in c.parts])
            s = F.when(reduce(operator.and_, [F.col(p_name[c.name, part]).isNotNull() for part, _ in c.parts]), s)
            strings.append(s.alias(s_name[c.name]))
        else:
            strings.append(_normalised(c, contract).alias(s_name[c.name]))
    normalised = raw.select(*carried, *strings)
    values = []
    for c in cols:
        s = F.col(s_name[c.name])
        v = _parsed(c, s, {part: F.col(p_name[c.name, part]) for part, _ in c.parts})
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
    raw_values = F.to_json(F.struct(*[col.alias(n) for col, n in zip(raw_cols, raw_names)]))
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


# the winner among duplicates by key is the greatest of these under `last` (newest file, then the greatest key, then
# the last row in the file) and the least under `first` (oldest file, then the least key, then the first row)
WINNER_RANK = ("_source_lm", FILE, "_row_id")


def winner_order(contract: Contract) -> list[SparkColumn]:
    """The newest row first (WINNER_RANK, descending): the tie-break among rows of one period with the same latest
    time, when the roll-up picks its representative (the policies `keep` and `on` leave such rows side by side)."""
    return [F.col(c).desc() for c in WINNER_RANK]


def duplicate_group(contract: Contract) -> list[SparkColumn]:
    """The columns whose equal values make rows duplicates by key: the natural key (`duplicates.on`) with the
    row's day, else the entity keys and the exact time. A group never spans two days: an incremental batch reads
    back the days around its own rows only, and must find every row its rows compete with there."""
    if contract.duplicate_on:
        return [*[col(c) for c in contract.duplicate_on], period_start(contract).cast("date")]
    return [*entity(contract), col(contract.time_column)]


def mark_duplicates(rows: DataFrame, contract: Contract) -> DataFrame:
    """Adds `_exact_dup` and `_key_dup`; a row with neither goes on to the roll-up (to the features).

    `_exact_dup`: a repeat of an identical (cleaned) row earlier in the same file; never, with
    `duplicates.drop_exact_repeats: false`. `_key_dup`: a row that is not such a repeat but loses to its group's
    winner (duplicate_group; the newest file's last row under `last`, the oldest file's first row under `first`);
    never under `keep`, where every row rolls up into its period.

    With the default policy, one sort serves both windows and the feature windows after them: the exact-repeat
    window lists the keys and the time first (then the file, whose modification time is the same on all its rows,
    and the other columns), so its order begins with the group window's partition and the features' (keys,
    period) order.
    """
    keys, t = entity(contract), col(contract.time_column)
    rest = [col(n) for n in contract.column_names if n not in contract.keys and n != contract.time_column]
    if contract.drop_exact_repeats:
        repeats = Window.partitionBy(*keys, t, "_source_lm", FILE, *rest).orderBy("_row_id")
        df = rows.withColumn("_exact_dup", F.row_number().over(repeats) > 1)
    else:
        df = rows.withColumn("_exact_dup", F.lit(False))
    if contract.duplicate_policy == "keep":
        return df.withColumn("_key_dup", F.lit(False))
    # the winner is the greatest (last) or least (first) WINNER_RANK among the rows that are not repeats; max and
    # min skip the nulls
    rank = F.struct(*WINNER_RANK)
    pick = F.min if contract.duplicate_policy == "first" else F.max
    best = pick(F.when(~F.col("_exact_dup"), rank)).over(Window.partitionBy(*duplicate_group(contract)))
    return df.withColumn("_key_dup", ~F.col("_exact_dup") & (rank != best))


def period_start(contract: Contract) -> SparkColumn:
    """The start of a row's period: a timestamp for `hour`, else a date (weeks start on Monday)."""
    t, period = col(contract.time_column), contract.period
    if period == "hour":
        return F.date_trunc("hour", t)
    if period == "day":
        return t if contract.column(contract.time_column).type == "date" else F.to_date(t)
    return F.trunc(t, period)


def needs_rollup(contract: Contract) -> bool:
    """Whether rows of one entity and period merge: a timestamp time column, a period longer than a day, or a policy
    that leaves several rows with the same keys and time (`keep`, a natural key), whatever the time column's type."""
    return (contract.column(contract.time_column).type != "date" or contract.period != "day"
            or contract.duplicate_policy == "keep" or bool(contract.duplicate_on))


_AGG = {"sum": F.sum, "mean": F.avg, "max": F.max, "min": F.min, "count": F.count}


def _in_period(contract: Contract) -> Window:
    """The rows of one entity and period, the representative first: the latest time, then winner_order."""
    return Window.partitionBy(*entity(contract), "_period").orderBy(col(contract.time_column).desc(),
                                                                    *winner_order(contract))


def rollup_to_period(winners: DataFrame, contract: Contract) -> DataFrame:
    """One row per (keys, period). Each column rolls up as its contract says; `last` = latest time in the period.

    Also returns, per source row, whether it was the representative (`out`) or `merged` into another.
    """
    df = winners.withColumn("_period", period_start(contract))
    if not needs_rollup(contract):
        return df
    df = df.withColumn("_rank_in_period", F.row_number().over(_in_period(contract)))
    aggs = []
    for c in contract.columns:
        if c.name in contract.keys or c.name == contract.time_column:
            continue
        if c.rollup == "last":
            aggs.append(F.max_by(col(c.name), -F.col("_rank_in_period")).alias(c.name))
        else:
            aggs.append(_AGG[c.rollup](col(c.name)).alias(c.name))
    return df.groupBy(*entity(contract), "_period").agg(*aggs)


def row_fates(marked: DataFrame, contract: Contract, history: SparkColumn | None = None) -> DataFrame:
    """(FILE, fate, `_took`) for every row of a marked frame (mark_duplicates): `duplicates_exact`, `duplicates_key`,
    or for a winner `out` or `merged` as rollup_fates decides among all winners of its period. Without a roll-up,
    one projection: every winner is `out`.

    history: true on the rows published by earlier batches (None: there are none). `_took` is true on an `out` row
    whose period also holds such a row (not an exact repeat): a period published before, now represented by this
    row, so the earlier batch's `out` row for it is not one any more. Its group is the period's (with a roll-up) or
    the duplicate group (without one: keys and time, as one period holds one row), so its window shares the sort
    of the roll-up's or the duplicates'."""
    dup = F.when(F.col("_exact_dup"), F.lit("duplicates_exact")).when(F.col("_key_dup"), F.lit("duplicates_key"))
    if history is None:
        took = F.lit(False)
    else:
        group = (Window.partitionBy(*entity(contract), "_period") if needs_rollup(contract)
                 else Window.partitionBy(*duplicate_group(contract)))
        took = F.max(history & ~F.col("_exact_dup")).over(group)
    if not needs_rollup(contract):
        fate = dup.otherwise(F.lit("out"))
        return marked.select(FILE, fate.alias("fate"), ((fate == "out") & took).alias("_took"))
    # the period's history rows are among the marked rows (a key duplicate of a history row included): `took` is
    # computed over all of them before the winners are picked out
    marked = marked.withColumn("_period", period_start(contract)).withColumn("_took", took)
    losers = marked.where(dup.isNotNull()).select(FILE, dup.alias("fate"), F.lit(False).alias("_took"))
    winners = marked.where(~F.col("_exact_dup") & ~F.col("_key_dup"))
    fates = rollup_fates(winners, contract)
    return losers.unionByName(fates.select(FILE, F.col("_fate").alias("fate"),
                                           ((F.col("_fate") == "out") & F.col("_took")).alias("_took")))


def rollup_fates(winners: DataFrame, contract: Contract) -> DataFrame:
    """Per winning row of a contract that rolls up (needs_rollup): `out` if it represents its period, else `merged`
    (rolled into the representative)."""
    df = winners.withColumn("_period", period_start(contract))
    return df.withColumn("_fate", F.when(F.row_number().over(_in_period(contract)) == 1, "out").otherwise("merged"))
