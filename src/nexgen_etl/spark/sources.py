"""Each row's source file as a small int through the job (clean.FILE), and its key and ETag put back at the writes."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from nexgen_etl.spark.frames import local_frame
from nexgen_etl.spark.spans import Span
from nexgen_etl.spark.transform import clean

# Up to this many source files, with_source looks a row's key and ETag up in literals, above with a broadcast join
LITERAL_SOURCES = 8


class SourceFiles:
    """The raw files whose rows can meet in a batch's frame (the batch's and every published one), each numbered
    by the order of its key: the rows carry that int (clean.FILE), which sorts as the key does, through the caches,
    the shuffles and the sort instead of the key and ETag strings; the writes put the strings back (with_source).
    """

    def __init__(self, batch: dict[str, str], published: dict[str, dict]) -> None:
        self.keys = sorted(set(batch) | set(published))
        self.ids = {k: i for i, k in enumerate(self.keys)}
        # a published key's rows all hold the ETag its catalog entry holds: a new version replaces all of them
        self.etags = {**{k: v.get("etag") for k, v in published.items()}, **batch}
        self.published = published

    def key(self, file_id: int | None) -> str:
        if file_id is None:
            raise RuntimeError("rows from a path that is not in the plan")
        return self.keys[file_id]

    def published_within(self, spans: list[Span], exclude: list[str]) -> list[str]:
        """Published keys with clean rows on a day inside the spans (their valid rows' day range meets one)."""
        skip = set(exclude)
        return sorted(k for k, v in self.published.items() if k not in skip and v.get("min")
                      and any(v["min"] <= b.isoformat() and a.isoformat() <= v["max"] for a, b in spans))

    def frame(self, spark: SparkSession, keys: list[str]) -> DataFrame:
        """(file id, `_source_key`, `_source_etag`) for these keys."""
        return local_frame(spark, [(self.ids[k], k, self.etags[k]) for k in keys],
                           f"{clean.FILE} int, _source_key string, _source_etag string")

    @staticmethod
    def to_ids(published: DataFrame, frame: DataFrame) -> DataFrame:
        """Published rows (key and ETag columns) with the file id in their place; a key the frame does not hold
        stops the job (its rows would otherwise have no id, and no winner order)."""
        out = published.join(F.broadcast(frame.select(clean.FILE, "_source_key")), "_source_key", "left")
        missing = F.raise_error(F.concat(F.lit("a published row's source is not in the catalog: "), "_source_key"))
        return out.select(F.coalesce(F.col(clean.FILE), missing.cast("int")).alias(clean.FILE),
                          *[clean.col(c) for c in published.columns
                            if c not in (clean.FILE, "_source_key", "_source_etag")])


def with_source(df: DataFrame, files: SourceFiles, keys: Sequence[str]) -> DataFrame:
    """df with `_source_key` and `_source_etag` first, in place of the file id (as published). Every row's file
    must be one of keys: another stops the job.

    A few files' keys and ETags are literals chosen per row (a small batch's rows mostly come from one file): no
    broadcast, whose job is planned, compiled and run on the driver (docs/performance.md). More files
    are joined from a broadcast table."""
    rest = [c for c in df.columns if c != clean.FILE]
    fid = F.col(clean.FILE)
    missing = F.raise_error(F.concat(F.lit("a row's file id is not among its sources: "), fid.cast("string")))
    if len(keys) <= LITERAL_SOURCES:
        def pick(values: list) -> SparkColumn:
            out = None
            for k, v in zip(keys, values):
                out = (F.when if out is None else out.when)(fid == files.ids[k], F.lit(v))
            return missing if out is None else out.otherwise(missing)

        key, etag = pick(keys), pick([files.etags[k] for k in keys])
    else:
        df = df.join(F.broadcast(files.frame(df.sparkSession, keys)), clean.FILE, "left")
        key = F.coalesce(F.col("_source_key"), missing)
        etag = F.when(F.col("_source_key").isNotNull(), F.col("_source_etag")).otherwise(missing)
    return df.select(key.cast("string").alias("_source_key"), etag.cast("string").alias("_source_etag"),
                     *[clean.col(c) for c in rest])
