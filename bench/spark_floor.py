"""spark-submit entry point of bench/run.py's floor runs (a_floor, e_log_floor, …), under the same spark-submit and
conf as the transform job: what Spark pays to read these files and write their rows once by day. It reads the CSV
files with every column a string (the first file's header names them: the bench's files have one header and no
quoted names; no inference, no parse) and writes them once as snappy Parquet; with a day column, repartitioned by
its first 10 characters and written partitioned by them, one file per day, as the job writes its clean rows. No
parse, check, quarantine, duplicate, roll-up or feature. The job reads the same files with the same reader and
writes their clean rows by day too (typed, not strings), besides all the rest: this is the floor under it.

    spark-submit … bench/spark_floor.py OUT_URI DAY_COLUMN|- DELIMITER CSV_PATH…
"""

import sys

if __name__ == "__main__":
    from nexgen_etl.spark.local.pyspark_path import prefer_installed_pyspark

    prefer_installed_pyspark()

    from pyspark.sql import SparkSession  # noqa: E402
    from pyspark.sql import functions as F  # noqa: E402
    from pyspark.sql.types import StringType, StructField, StructType  # noqa: E402

    out, day, sep, *paths = sys.argv[1:]
    spark = SparkSession.builder.appName("nexgen-etl-bench-floor").getOrCreate()
    with open(paths[0], encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split(sep)
    schema = StructType([StructField(c, StringType()) for c in header])
    rows = spark.read.csv(paths, sep=sep, header=True, schema=schema)
    if day != "-":
        rows = rows.withColumn("day", F.substring(F.col(day), 1, 10)).repartition("day")
    writer = rows.write.mode("overwrite").option("compression", "snappy")
    (writer if day == "-" else writer.partitionBy("day")).parquet(out)
    spark.stop()
