"""The duplicate policies (`duplicates: {policy, on, drop_exact_repeats}`) on tiny frames: each row's fate and the
rolled-up period, written out by hand.

The rows: a shop's sales log. File A (older) holds two invoices in the same minute and an exact repeat of the
second line; file B (newer) holds a third line in that minute, and (for the natural key) a correction of invoice
1 at another minute of the same day and a line of invoice 2 on the next day.
"""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from nexgen_etl.core.contract import contract_from_dict, load_contract, parse_contract
from nexgen_etl.spark.transform import clean

COLUMNS = ["at", "shop", "invoice", "qty"]
A, B = 0, 1  # file ids (in key order); A is the older file
LM = {A: "2026-01-01 00:00:00", B: "2026-01-02 00:00:00"}


def contract(time_type="timestamp", **duplicates):
    fmt = "yyyy-MM-dd HH:mm" if time_type == "timestamp" else "yyyy-MM-dd"
    return parse_contract({
        "name": "log",
        "columns": [{"name": "at", "type": time_type, "formats": [fmt], "required": True},
                    {"name": "shop", "type": "string", "required": True},
                    {"name": "invoice", "type": "string"},
                    {"name": "qty", "type": "double", "required": True, "rollup": "sum"}],
        "time": {"column": "at", "period": "day"}, "keys": ["shop"], "target": "qty",
        "duplicates": duplicates or {"policy": "last"}, "features": {"lags": [1], "rolling": {"windows": [2]}}})


def marked(spark, c, files):
    """files: {file id: [row values]} → the marked rows (mark_duplicates) of the valid parsed rows."""
    data = [(fid, i, *r, None) for fid, rows in files.items() for i, r in enumerate(rows)]
    raw = spark.createDataFrame(data, "_file int, _row_id long, " + ", ".join(f"{n} string" for n in COLUMNS)
                                + ", _corrupt_record string")
    raw = raw.withColumn("_source_lm", F.to_timestamp(F.element_at(F.create_map(
        *[x for fid, lm in LM.items() for x in (F.lit(fid), F.lit(lm))]), F.col("_file"))))
    return clean.mark_duplicates(clean.valid_rows(clean.parse_rows(raw, c)), c)


def fates(df, c) -> dict:
    """{(file, row): fate}"""
    with_ids = df.withColumn("_fid", F.struct("_file", "_row_id"))
    rows = clean.row_fates(with_ids.withColumn(clean.FILE, F.col("_fid")), c).collect()
    return {(r[clean.FILE]["_file"], r[clean.FILE]["_row_id"]): r["fate"] for r in rows}


def periods(df, c) -> dict:
    winners = df.where(~F.col("_exact_dup") & ~F.col("_key_dup")).drop("_exact_dup", "_key_dup")
    return {(r["shop"], r["_period"]): r["qty"] for r in clean.rollup_to_period(winners, c).collect()}


SAME_MINUTE = {
    A: [("2024-05-01 10:00", "S1", "inv-1", "2"),
        ("2024-05-01 10:00", "S1", "inv-2", "3"),
        ("2024-05-01 10:00", "S1", "inv-2", "3")],   # an exact repeat of the line before
    B: [("2024-05-01 10:00", "S1", "inv-3", "5")],
}
DAY = dt.date(2024, 5, 1)


def test_last_the_newest_file_wins_then_the_later_row(spark):
    """The default, unchanged for existing contracts. Catches a winner that is not the newest file's last row."""
    c = contract(policy="last")
    m = marked(spark, c, SAME_MINUTE)
    assert fates(m, c) == {(A, 0): "duplicates_key", (A, 1): "duplicates_key", (A, 2): "duplicates_exact",
                           (B, 0): "out"}
    assert periods(m, c) == {("S1", DAY): 5.0}


def test_first_the_oldest_file_wins_then_the_earlier_row(spark):
    """Catches a `first` that picks like `last` (max instead of min), or orders the rows within a file wrongly."""
    c = contract(policy="first")
    m = marked(spark, c, SAME_MINUTE)
    assert fates(m, c) == {(A, 0): "out", (A, 1): "duplicates_key", (A, 2): "duplicates_exact",
                           (B, 0): "duplicates_key"}
    assert periods(m, c) == {("S1", DAY): 2.0}


def test_keep_rolls_every_line_into_the_period_but_drops_exact_repeats(spark):
    """Catches `keep` still removing same-minute lines as key duplicates (the sales log losing real rows)."""
    c = contract(policy="keep")
    m = marked(spark, c, SAME_MINUTE)
    # the representative of the period: the latest time (all equal), then the newest file's last row
    assert fates(m, c) == {(A, 0): "merged", (A, 1): "merged", (A, 2): "duplicates_exact", (B, 0): "out"}
    assert periods(m, c) == {("S1", DAY): 2.0 + 3.0 + 5.0}


def test_keep_without_dropping_exact_repeats_keeps_every_row(spark):
    """Catches `drop_exact_repeats: false` being ignored."""
    c = contract(policy="keep", drop_exact_repeats=False)
    m = marked(spark, c, SAME_MINUTE)
    assert fates(m, c) == {(A, 0): "merged", (A, 1): "merged", (A, 2): "merged", (B, 0): "out"}
    assert periods(m, c) == {("S1", DAY): 2.0 + 3.0 + 3.0 + 5.0}


def test_last_without_dropping_exact_repeats_makes_them_key_duplicates(spark):
    """Catches `drop_exact_repeats: false` ignored under `last` (the repeat would be `duplicates_exact`)."""
    c = contract(policy="last", drop_exact_repeats=False)
    m = marked(spark, c, {A: SAME_MINUTE[A]})
    assert fates(m, c) == {(A, 0): "duplicates_key", (A, 1): "duplicates_key", (A, 2): "out"}


NATURAL = {
    A: [("2024-05-01 10:00", "S1", "inv-1", "2"),
        ("2024-05-01 10:00", "S1", "inv-2", "3"),
        ("2024-05-01 10:00", "S1", "inv-2", "3")],   # an exact repeat
    B: [("2024-05-01 10:07", "S1", "inv-1", "4"),    # invoice 1 again, same day, another minute: a correction
        ("2024-05-02 09:00", "S1", "inv-2", "7")],   # invoice 2 on another day: not a duplicate (groups are daily)
}


def test_natural_key_last_the_newest_line_of_an_invoice_wins(spark):
    """Catches a natural key compared on keys + time (invoice 1's correction at 10:07 would not replace 10:00) or
    across days (invoice 2 on 2 May would remove 1 May's line)."""
    c = contract(policy="last", on=["invoice"])
    m = marked(spark, c, NATURAL)
    assert fates(m, c) == {(A, 0): "duplicates_key", (A, 1): "merged", (A, 2): "duplicates_exact",
                           (B, 0): "out", (B, 1): "out"}
    assert periods(m, c) == {("S1", DAY): 4.0 + 3.0, ("S1", dt.date(2024, 5, 2)): 7.0}


def test_natural_key_first_the_oldest_line_of_an_invoice_wins(spark):
    c = contract(policy="first", on=["invoice"])
    m = marked(spark, c, NATURAL)
    # the period's representative is its latest line (10:00, file A's last winning row: inv-2)
    assert fates(m, c) == {(A, 0): "merged", (A, 1): "out", (A, 2): "duplicates_exact",
                           (B, 0): "duplicates_key", (B, 1): "out"}
    assert periods(m, c) == {("S1", DAY): 2.0 + 3.0, ("S1", dt.date(2024, 5, 2)): 7.0}


def test_natural_key_on_a_date_time_column_rolls_up_the_day(spark):
    """With a date time column and no natural key there is no roll-up; with one (or `keep`), several lines of one
    key and day are left, and roll up. Catches needs_rollup ignoring `on` (two rows of one key and day would reach
    the features)."""
    c = contract("date", policy="last", on=["invoice"])
    rows = {A: [("2024-05-01", "S1", "inv-1", "2"), ("2024-05-01", "S1", "inv-2", "3")],
            B: [("2024-05-01", "S1", "inv-1", "4")]}
    m = marked(spark, c, rows)
    assert clean.needs_rollup(c) and not clean.needs_rollup(contract("date", policy="last"))
    assert fates(m, c) == {(A, 0): "duplicates_key", (A, 1): "merged", (B, 0): "out"}
    assert periods(m, c) == {("S1", DAY): 7.0}


@pytest.mark.parametrize("policy, expected", [("last", 9.0), ("first", 5.0), ("keep", 14.0)])
def test_the_default_sales_contract_under_each_policy(spark, policy, expected):
    """The default contract (date time column, units summed by the roll-up) with only the policy changed. Catches
    a policy that works only with a timestamp time column (`keep` on dates would leave two rows per day)."""
    d = load_contract().to_dict()
    d["duplicate_policy"] = policy
    c = contract_from_dict(d)
    cols = [col.raw_name for col in c.columns]
    data = [(0, 0, "2024-01-02", "S1", "K", "5", "1", "0", None), (1, 0, "2024-01-02", "S1", "K", "9", "1", "0", None)]
    raw = spark.createDataFrame(data, "_file int, _row_id long, " + ", ".join(f"{n} string" for n in cols)
                                + ", _corrupt_record string")
    raw = raw.withColumn("_source_lm", F.when(F.col("_file") == 0, F.to_timestamp(F.lit("2026-01-01 00:00:00")))
                         .otherwise(F.to_timestamp(F.lit("2026-01-02 00:00:00"))))
    m = clean.mark_duplicates(clean.valid_rows(clean.parse_rows(raw, c)), c)
    winners = m.where(~F.col("_exact_dup") & ~F.col("_key_dup")).drop("_exact_dup", "_key_dup")
    assert [r["units_sold"] for r in clean.rollup_to_period(winners, c).collect()] == [expected]
    assert sorted(r["fate"] for r in clean.row_fates(m, c).collect()) == (
        ["duplicates_key", "out"] if policy != "keep" else ["merged", "out"])
