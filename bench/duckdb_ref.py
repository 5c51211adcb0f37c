"""The DuckDB yardstick: the transform's essentials as SQL over the same CSVs, written as Parquet.

Not a product path. Same work as the Spark job for the default sales contract: parse with the declared date
formats and null values, trim/upper the keys, range/allowed checks, quarantine the rest, drop exact repeats
within a file, keep the newest file's (then last) row per key and day, lags at calendar offsets 1/7/14/28,
rolling mean/std/min/max over the 7/28 days before t (t excluded), calendar and price features; writes
features and clean partitioned by day and the quarantine, like the job does.

Usage: python bench/duckdb_ref.py RAW_DIR OUT_DIR [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import duckdb

NULLS = "('', 'NA', 'N/A', 'null', 'NULL', 'NaN', '-')"


def norm(col: str, case: str | None = None) -> str:
    s = f"trim({col})"
    s = f"CASE WHEN {s} IN {NULLS} THEN NULL ELSE {s} END"
    return f"{case}({s})" if case else s


SQL = f"""
CREATE TEMP TABLE raw AS
SELECT *, row_number() OVER () AS _row_id
FROM read_csv('@RAW@/**/*.csv', header = true, all_varchar = true, filename = true,
              columns = {{'date': 'VARCHAR', 'store_id': 'VARCHAR', 'sku': 'VARCHAR', 'units_sold': 'VARCHAR',
                          'unit_price': 'VARCHAR', 'promo': 'VARCHAR'}});

CREATE TEMP TABLE parsed AS
WITH n AS (
  SELECT filename, _row_id, date AS r_date, store_id AS r_store, sku AS r_sku, units_sold AS r_units,
         unit_price AS r_price, promo AS r_promo,
         {norm('date')} AS s_date, {norm('store_id', 'upper')} AS store_id, {norm('sku', 'upper')} AS sku,
         {norm('units_sold')} AS s_units, {norm('unit_price')} AS s_price, {norm('promo')} AS s_promo
  FROM raw
), t AS (
  SELECT *,
    coalesce(try_strptime(s_date, '%Y-%m-%d'), try_strptime(s_date, '%m/%d/%Y'),
             try_strptime(s_date, '%d.%m.%Y'))::DATE AS date,
    try_cast(s_units AS DOUBLE) AS units_sold,
    try_cast(s_price AS DOUBLE) AS unit_price,
    CASE WHEN s_promo IS NULL THEN 0
         WHEN try_cast(s_promo AS DOUBLE) = floor(try_cast(s_promo AS DOUBLE)) THEN try_cast(s_promo AS DOUBLE)::INT
    END AS promo
  FROM n
)
SELECT *,
  list_filter([
    CASE WHEN s_date IS NULL THEN 'missing:date' END,
    CASE WHEN s_date IS NOT NULL AND date IS NULL THEN 'unparseable:date' END,
    CASE WHEN date < DATE '2000-01-01' THEN 'below_min:date' END,
    CASE WHEN date > DATE '2099-12-31' THEN 'above_max:date' END,
    CASE WHEN store_id IS NULL THEN 'missing:store_id' END,
    CASE WHEN sku IS NULL THEN 'missing:sku' END,
    CASE WHEN s_units IS NULL THEN 'missing:units_sold' END,
    CASE WHEN s_units IS NOT NULL AND units_sold IS NULL THEN 'unparseable:units_sold' END,
    CASE WHEN units_sold < 0 THEN 'below_min:units_sold' END,
    CASE WHEN units_sold > 1000000 THEN 'above_max:units_sold' END,
    CASE WHEN s_price IS NOT NULL AND unit_price IS NULL THEN 'unparseable:unit_price' END,
    CASE WHEN unit_price < 0 THEN 'below_min:unit_price' END,
    CASE WHEN unit_price > 100000 THEN 'above_max:unit_price' END,
    CASE WHEN s_promo IS NOT NULL AND promo IS NULL THEN 'unparseable:promo' END,
    CASE WHEN promo IS NOT NULL AND promo NOT IN (0, 1) THEN 'not_allowed:promo' END
  ], lambda x: x IS NOT NULL) AS reasons
FROM t;

COPY (SELECT filename AS source_key, _row_id, reasons[1] AS reason, array_to_string(reasons, ';') AS reasons,
             to_json({{'date': r_date, 'store_id': r_store, 'sku': r_sku, 'units_sold': r_units,
                      'unit_price': r_price, 'promo': r_promo}}) AS raw_values
      FROM parsed WHERE len(reasons) > 0)
  TO '@OUT@/quarantine.parquet' (FORMAT PARQUET, COMPRESSION SNAPPY);

CREATE TEMP TABLE clean AS
SELECT * EXCLUDE (rk) FROM (
  SELECT store_id, sku, date, units_sold, unit_price, promo, filename, _row_id,
         row_number() OVER (PARTITION BY store_id, sku, date ORDER BY filename DESC, _row_id DESC) AS rk
  FROM (
    -- exact repeats of a cleaned row within one file: the first one stays
    SELECT * FROM parsed WHERE len(reasons) = 0
    QUALIFY row_number() OVER (PARTITION BY filename, store_id, sku, date, units_sold, unit_price, promo
                               ORDER BY _row_id) = 1
  )
) WHERE rk = 1;

COPY (SELECT store_id, sku, date, units_sold, unit_price, promo, strftime(date, '%Y-%m-%d') AS period_date
      FROM clean)
  TO '@OUT@/clean' (FORMAT PARQUET, COMPRESSION SNAPPY, PARTITION_BY (period_date));

COPY (
  WITH d AS (SELECT *, date_diff('day', DATE '1970-01-01', date) AS t FROM clean)
  SELECT store_id, sku, date, units_sold, unit_price, promo,
    max(units_sold) OVER (w RANGE BETWEEN 1 PRECEDING AND 1 PRECEDING) AS units_sold_lag_1,
    max(units_sold) OVER (w RANGE BETWEEN 7 PRECEDING AND 7 PRECEDING) AS units_sold_lag_7,
    max(units_sold) OVER (w RANGE BETWEEN 14 PRECEDING AND 14 PRECEDING) AS units_sold_lag_14,
    max(units_sold) OVER (w RANGE BETWEEN 28 PRECEDING AND 28 PRECEDING) AS units_sold_lag_28,
    avg(units_sold) OVER (w RANGE BETWEEN 7 PRECEDING AND 1 PRECEDING) AS units_sold_roll_mean_7,
    stddev_samp(units_sold) OVER (w RANGE BETWEEN 7 PRECEDING AND 1 PRECEDING) AS units_sold_roll_std_7,
    min(units_sold) OVER (w RANGE BETWEEN 7 PRECEDING AND 1 PRECEDING) AS units_sold_roll_min_7,
    max(units_sold) OVER (w RANGE BETWEEN 7 PRECEDING AND 1 PRECEDING) AS units_sold_roll_max_7,
    avg(units_sold) OVER (w RANGE BETWEEN 28 PRECEDING AND 1 PRECEDING) AS units_sold_roll_mean_28,
    stddev_samp(units_sold) OVER (w RANGE BETWEEN 28 PRECEDING AND 1 PRECEDING) AS units_sold_roll_std_28,
    min(units_sold) OVER (w RANGE BETWEEN 28 PRECEDING AND 1 PRECEDING) AS units_sold_roll_min_28,
    max(units_sold) OVER (w RANGE BETWEEN 28 PRECEDING AND 1 PRECEDING) AS units_sold_roll_max_28,
    unit_price - max(unit_price) OVER (w RANGE BETWEEN 1 PRECEDING AND 1 PRECEDING) AS unit_price_change_1,
    unit_price / nullif(avg(unit_price) OVER (w RANGE BETWEEN 7 PRECEDING AND 1 PRECEDING), 0)
      AS unit_price_ratio_mean_7,
    unit_price / nullif(avg(unit_price) OVER (w RANGE BETWEEN 28 PRECEDING AND 1 PRECEDING), 0)
      AS unit_price_ratio_mean_28,
    isodow(date) AS day_of_week, weekofyear(date) AS week_of_year, month(date) AS month,
    quarter(date) AS quarter, isodow(date) >= 6 AS is_weekend, day(date) = 1 AS is_month_start,
    date = last_day(date) AS is_month_end,
    strftime(date, '%Y-%m-%d') AS period_date
  FROM d
  WINDOW w AS (PARTITION BY store_id, sku ORDER BY t)
) TO '@OUT@/features' (FORMAT PARQUET, COMPRESSION SNAPPY, PARTITION_BY (period_date));
"""


def run(raw: str, out: str, threads: int = 2, memory_limit: str | None = None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    Path(out).mkdir(parents=True)
    con = duckdb.connect(config={"threads": threads, **({"memory_limit": memory_limit} if memory_limit else {})})
    timings = {}
    t = time.monotonic()
    for stmt in SQL.replace("@RAW@", raw).replace("@OUT@", out).split(";\n"):
        if stmt.strip():
            con.execute(stmt)
            first = stmt.strip().split("\n")[0][:40]
            now = time.monotonic()
            timings[first] = round(now - t, 3)
            t = now
    rows = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    feats = con.execute("SELECT count(*) FROM clean").fetchone()[0]
    return {"rows_read": rows, "rows_out": feats, "timings": timings}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-limit")
    a = ap.parse_args()
    import json

    print(json.dumps(run(a.raw, a.out, a.threads, a.memory_limit)))


if __name__ == "__main__":
    main()
