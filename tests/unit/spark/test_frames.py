"""local_frame: driver-side rows as a DataFrame built in the JVM, with dates and timestamps as their types."""

import datetime as dt

from pyspark.sql import functions as F

from nexgen_etl.spark.frames import local_frame

UTC = dt.timezone.utc


def test_values_keep_their_types_and_instants(spark):
    rows = [("a", dt.date(2024, 2, 29), dt.datetime(2024, 3, 1, 12, 30, 5, tzinfo=UTC)),
            ("b", None, dt.datetime(2024, 3, 1, 23, 59, 59, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
            ("c", dt.date(2000, 1, 1), None)]
    df = local_frame(spark, rows, "k string, d date, ts timestamp")
    assert dict(df.dtypes) == {"k": "string", "d": "date", "ts": "timestamp"}
    # the instants as the per-row parse of the ISO string used to give them (session time zone UTC)
    got = df.select("k", "d", F.unix_micros("ts").alias("us"),
                    F.unix_micros(F.to_timestamp(F.lit(rows[1][2].isoformat()))).alias("b_us")).collect()
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    assert [(r.k, r.d, r.us) for r in got] == [
        ("a", dt.date(2024, 2, 29), (rows[0][2] - epoch) // dt.timedelta(microseconds=1)),
        ("b", None, (rows[1][2] - epoch) // dt.timedelta(microseconds=1)),
        ("c", dt.date(2000, 1, 1), None)]
    assert got[1].us == got[1].b_us


def test_no_rows_gives_an_empty_frame_of_the_schema(spark):
    df = local_frame(spark, [], "k string, ts timestamp")
    assert df.count() == 0 and dict(df.dtypes) == {"k": "string", "ts": "timestamp"}
