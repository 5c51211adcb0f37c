"""Column names as users write them (dots, spaces, parentheses, a leading digit, backticks, non-ASCII letters)
reach Spark quoted everywhere: the CSV schema, parsing, deduplication, the roll-up, both feature engines, the
fills and the output columns. Unquoted, `pm2.5` reads as field `5` of a column `pm2` ([UNRESOLVED_COLUMN]).
"""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from nexgen_etl.core.contract import parse_contract
from nexgen_etl.spark.io import read_csv_group
from nexgen_etl.spark.transform import clean, features

# raw header → declared name
HEADER = ["Zeit (UTC)", "Station ID", "pm2.5", "Regen`1h", "qualité (flag)", "Preis (€)"]


def awkward(**extra) -> dict:
    return {
        "name": "awkward",
        "csv": {"delimiter": ";", "null_values": ["", "-"]},
        "columns": [
            {"name": "Zeit (UTC)", "type": "timestamp", "formats": ["yyyy-MM-dd HH:mm"], "required": True},
            {"name": "station id", "source": "Station ID", "type": "string", "required": True, "case": "upper"},
            {"name": "pm2.5", "type": "double", "required": True, "min": 0, "rollup": "mean"},
            {"name": "1h `regen`", "source": "Regen`1h", "type": "double", "rollup": "sum"},
            {"name": "Qualität", "source": "qualité (flag)", "type": "string", "allowed": ["ok", "prüfen"]},
            {"name": "preis €.netto", "source": "Preis (€)", "type": "double", "rollup": "mean"},
        ],
        "time": {"column": "Zeit (UTC)", "period": "hour"},
        "keys": ["station id"],
        "target": "pm2.5",
        "price": "preis €.netto",
        "features": {"lags": [1, 2], "rolling": {"windows": [2], "stats": ["mean", "std", "min", "max"]}},
        **extra,
    }


ROWS = [
    # hour 10: two readings → pm mean 11, rain sum 0.5, quality of the latest (10:40) row, price mean 2
    "2024-06-01 10:10;a b;10;0.25;ok;1",
    "2024-06-01 10:40;a b;12;0.25;prüfen;3",
    # hour 11: one reading
    "2024-06-01 11:05;a b;20;-;ok;4",
    # hour 12: the same instant twice: the later row wins (`last` on keys and time)
    "2024-06-01 12:00;a b;99;1;ok;5",
    "2024-06-01 12:00;a b;30;1;ok;5",
    # rejected: a negative reading, a quality outside the list
    "2024-06-01 12:30;a b;-1;0;ok;5",
    "2024-06-01 12:30;a b;1;0;schlecht;5",
]


def read(spark, tmp_path, c):
    path = tmp_path / "awkward.csv"
    path.write_text(";".join(HEADER) + "\n" + "\n".join(ROWS) + "\n", encoding="utf-8")
    raw = read_csv_group(spark, [str(path)], c, HEADER)
    return raw.select("*", F.lit(0).alias(clean.FILE), F.monotonically_increasing_id().alias("_row_id"),
                      F.to_timestamp(F.lit("2026-01-01 00:00:00")).alias("_source_lm"))


def periods_of(spark, tmp_path, c):
    parsed = clean.parse_rows(read(spark, tmp_path, c), c)
    marked = clean.mark_duplicates(clean.valid_rows(parsed), c)
    winners = marked.where(~F.col("_exact_dup") & ~F.col("_key_dup")).drop("_exact_dup", "_key_dup")
    return parsed, marked, clean.rollup_to_period(winners, c)


def test_quoted_doubles_backticks():
    """Catches a backtick inside a name left single (the name would end there)."""
    assert clean.quoted("pm2.5") == "`pm2.5`"
    assert clean.quoted("1h `regen`") == "`1h ``regen```"


@pytest.mark.parametrize("engine", ["sql", "kernel"])
def test_awkward_names_from_csv_to_features(spark, tmp_path, engine):
    """Catches any contract name that reaches Spark unquoted: the CSV schema (backtick in `Regen`1h`), parse_rows,
    the duplicate and roll-up windows, the feature windows of either engine (SQL text or kernel), the output."""
    c = parse_contract(awkward())
    parsed, marked, periods = periods_of(spark, tmp_path, c)
    q = sorted(r["reasons"] for r in clean.quarantine_rows(parsed).collect())
    assert q == ["below_min:pm2.5", "not_allowed:Qualität"]
    assert sorted(r["fate"] for r in clean.row_fates(marked, c).collect()) == [
        "duplicates_key", "merged", "out", "out", "out"]
    out = features.finalize(features.build_features(periods, c, engine=engine), c)
    assert out.columns == features.output_columns(c)
    assert "pm2.5_lag_1" in out.columns and "preis €.netto_ratio_mean_2" in out.columns
    rows = {r["Zeit (UTC)"].hour: r.asDict() for r in out.collect()}
    assert sorted(rows) == [10, 11, 12]
    h10, h11, h12 = rows[10], rows[11], rows[12]
    assert (h10["station id"], h10["pm2.5"], h10["1h `regen`"], h10["Qualität"], h10["preis €.netto"]) == (
        "A B", 11.0, 0.5, "prüfen", 2.0)
    assert (h11["pm2.5"], h11["1h `regen`"], h11["pm2.5_lag_1"], h11["preis €.netto_change_1"]) == (20.0, None,
                                                                                                   11.0, 2.0)
    assert (h12["pm2.5"], h12["pm2.5_lag_1"], h12["pm2.5_lag_2"]) == (30.0, 20.0, 11.0)
    assert h12["pm2.5_roll_mean_2"] == pytest.approx(15.5) and h12["pm2.5_roll_std_2"] == pytest.approx(6.363961,
                                                                                                         rel=1e-6)
    assert h12["preis €.netto_ratio_mean_2"] == pytest.approx(5 / 3)
    assert (h12["hour"], h12["period_date"]) == (12, dt.date(2024, 6, 1))


def test_awkward_names_under_a_natural_key_keep_and_fills(spark, tmp_path):
    """The natural-key window, `keep` and the fill grid take quoted names too. Catches an unquoted name in
    duplicate_group, in the fill grid's select and join, or in the kernel's price column."""
    c = parse_contract(awkward(duplicates={"policy": "first", "on": ["station id", "Qualität"]}))
    _, marked, periods = periods_of(spark, tmp_path, c)
    # per day: (A B, ok) → 10:10 first; (A B, prüfen) → 10:40; the others lose to 10:10
    assert marked.where("not _exact_dup and not _key_dup").count() == 2
    c = parse_contract(awkward(duplicates={"policy": "keep"}, missing_periods="fill_zero"))
    _, _, periods = periods_of(spark, tmp_path, c)
    assert {r["_period"].hour: r["pm2.5"] for r in periods.collect()} == {10: 11.0, 11: 20.0, 12: (99 + 30) / 2}
    extents = periods.groupBy(*clean.entity(c)).agg(F.min("_period").alias("_first"),
                                                    F.max("_period").alias("_last"))
    filled = features.fill_missing_periods(periods.where(F.hour("_period") != 11), extents, c,
                                           [(dt.date(2024, 6, 1), dt.date(2024, 6, 1))])
    out = features.finalize(features.build_features(filled, c), c)
    got = {r["Zeit (UTC)"].hour: (r["pm2.5"], r["is_filled"]) for r in out.collect()}
    assert got == {10: (11.0, False), 11: (0.0, True), 12: (64.5, False)}
