"""The spark-submit entry: read a frozen batch plan, clean and build features, write the batch's staging output.

Reads and writes through Hadoop paths (s3a:// or file://) only; credentials come from the process environment.
Publishing the staged output is the `load` step's job (nexgen_etl.core.publish), not this one's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from functools import reduce
from datetime import date, timedelta

from pyspark import InheritableThread, StorageLevel
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.layout import CATALOG_KEY, PARTITION_OF, RESULT_NAME, STAGING_PREFIX
from nexgen_etl.core.contract import Contract, contract_from_dict
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.faults import maybe_fail
from nexgen_etl.core.storage import spark_uri
from nexgen_etl.spark.io import HadoopFS, read_csv_group
from nexgen_etl.spark.transform import clean, features
from nexgen_etl.spark.transform.features import PARTITION_COLUMN
from nexgen_etl.spark.frames import TIMESTAMP_FORMAT, local_frame

# The two large caches (the parsed rows, the marked frame) go to local disk uncompressed (DISK_ONLY with
# spark.sql.inMemoryColumnarStorage.compressed off): the in-memory columnar compression chose an encoding value by
# value (7 % of a large batch's samples), and uncompressed they do not fit a 1g heap. The OS's page cache holds them.
CACHE = StorageLevel.DISK_ONLY


def lookback_days(contract: Contract) -> int:
    lb = contract.features.lookback
    return lb if contract.period == "day" else -(-lb // 24)


class BatchJob:
    """One batch: everything between the frozen plan and the staged output + result file."""

    def __init__(self, spark: SparkSession, plan: BatchPlan) -> None:
        self.spark = spark
        self.plan = plan
        self.contract = contract_from_dict(plan.contract)
        self.fs = HadoopFS(spark)
        self.timings: dict[str, float] = {}
        self.staging = f"{STAGING_PREFIX}{plan.batch_id}/"
        spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")

    def uri(self, key: str) -> str:
        return spark_uri(self.plan.output_url, key)

    def _timed(self, name: str, t0: float) -> float:
        now = time.monotonic()
        self.timings[name] = round(now - t0, 3)
        return now

    def read_raw(self, files: "SourceFiles") -> DataFrame | None:
        """All readable plan files as string rows with their source columns, grouped by header so that columns
        are matched by name (reordered or extra columns are fine). Whole-file rejects were decided at extract."""
        c = self.contract
        expected = [col.raw_name for col in c.columns]
        groups: dict[tuple[str, ...], list] = {}
        for obj in self.plan.objects:
            if obj.key in self.plan.headers:
                groups.setdefault(tuple(self.plan.headers[obj.key]), []).append(obj)
        frames = []
        for header, members in groups.items():
            uris = [spark_uri(self.plan.raw_url, o.key) for o in members]
            df = read_csv_group(self.spark, uris, c, list(header))
            for name in expected:
                if name not in df.columns:
                    df = df.withColumn(name, F.lit(None).cast("string"))
            df = df.select(*expected, clean.CORRUPT)
            if len(members) == 1:  # the file is known: no file name per row, no join (nor its broadcast job)
                o = members[0]
                df = df.select("*", F.lit(files.ids[o.key]).alias(clean.FILE),
                               F.to_timestamp(F.lit(o.last_modified.isoformat()), TIMESTAMP_FORMAT).alias("_source_lm"))
            else:
                # map each file's path (as input_file_name() reports it) to its plan entry with a broadcast hash
                # join: a literal map looked up per row scans all of its keys, which costs rows × files string
                # comparisons. The plan's times are timestamps already (parsed per row, they were ~4 % of a
                # profile's task samples).
                plan_df = local_frame(self.spark, [(self.fs.qualified(u), files.ids[o.key], o.last_modified)
                                                   for u, o in zip(uris, members)],
                                      f"_source_path string, {clean.FILE} int, _source_lm timestamp")
                df = (df.withColumn("_source_path", F.input_file_name())
                      .join(F.broadcast(plan_df), "_source_path", "left").drop("_source_path"))
            frames.append(df)
        if not frames:
            return None
        raw = reduce(DataFrame.unionByName, frames)
        raw = raw.withColumn("_row_id", F.monotonically_increasing_id())
        return raw.select(*expected, clean.CORRUPT, "_row_id", clean.FILE, "_source_lm")

    def read_clean(self, files: list[str]) -> DataFrame | None:
        """Published clean files (catalog keys), with the partition column; None when there are none."""
        if not files:
            return None
        df = self.spark.read.option("basePath", self.uri("clean/")).parquet(*[self.uri(f) for f in files])
        return df.withColumn(PARTITION_COLUMN, F.col(PARTITION_COLUMN).cast("date"))  # a date, as in the job

    def read_clean_history(self, catalog: Catalog, spans: list[tuple[date, date]]) -> DataFrame | None:
        return self.read_clean(catalog.files("clean", [p for p in catalog.partitions("clean") if in_spans(p, spans)]))

    def entity_extents(self, catalog: Catalog, batch_rows: DataFrame | None,
                       published_in_batch) -> tuple[DataFrame, list[tuple[date, date]]]:
        """Each entity's first and last period over all clean rows once this batch is in, and the calendar days
        where a first or last period moved (the filled rows there appear or vanish).

        Reads only the key and time columns of the whole published clean dataset: a gap can open or close far
        from the batch's own dates (a new day months after an entity's last one, or a correction that removes
        its last row)."""
        c = self.contract
        keys = list(c.keys)
        p = clean.period_start(c).alias("_p")
        kept = []
        old = None
        pub = self.read_clean(catalog.files("clean"))
        if pub is not None:
            pub = pub.select(*keys, c.time_column, "_source_key")
            old = pub.groupBy(*keys).agg(F.min(p).alias("_of"), F.max(p).alias("_ol"))
            kept.append(pub.where(~published_in_batch).select(*keys, p))
        if batch_rows is not None:
            kept.append(batch_rows.select(*keys, p))
        if not kept:
            return local_frame(self.spark, [], "_first date, _last date"), []
        new = (reduce(DataFrame.unionByName, kept).groupBy(*keys)
               .agg(F.min("_p").alias("_first"), F.max("_p").alias("_last"))
               .persist(StorageLevel.MEMORY_AND_DISK))
        if old is None:
            old = local_frame(self.spark, [], new.schema).select(*keys, F.col("_first").alias("_of"),
                                                                 F.col("_last").alias("_ol"))
        of, ol, nf, nl = (F.col(x) for x in ("_of", "_ol", "_first", "_last"))
        # where filled rows can appear or vanish: between an old and a new first (or last) period, all of a new
        # entity's span (its gaps may lie further than the lookback from any of its rows), all of a gone one's
        moved = old.join(new, keys, "full_outer").select(
            F.least(F.when(of != nf, F.least(of, nf)), F.when(ol != nl, F.least(ol, nl)),
                    F.when(nf.isNull(), of), F.when(of.isNull(), nf)).alias("lo"),
            F.greatest(F.when(of != nf, F.greatest(of, nf)), F.when(ol != nl, F.greatest(ol, nl)),
                       F.when(nf.isNull(), ol), F.when(of.isNull(), nl)).alias("hi"))
        spans = moved.where(F.col("lo").isNotNull()).select(F.to_date("lo").alias("lo"), F.to_date("hi").alias("hi"))
        return new, merge_spans((r["lo"], r["hi"]) for r in spans.distinct().collect())

    def write(self, df: DataFrame, dataset: str, files: "SourceFiles | None" = None, keys: Sequence[str] = ()) -> None:
        """df into the batch's staging folder, one file per partition value. files and keys: the source key and
        ETag to put in place of the file ids (with_source), after the shuffle (which they would only make larger)."""
        part = PARTITION_OF[dataset]
        df = df.repartition(part)
        if files is not None:
            df = with_source(df, files, keys)
        (df.write.mode("overwrite").option("compression", "snappy")
         .partitionBy(part).parquet(self.uri(f"{self.staging}{dataset}")))

    def run(self) -> dict:
        t0 = time.monotonic()
        c = self.contract
        catalog = Catalog.from_json(self.fs.read_text(self.uri(CATALOG_KEY)))
        if self.plan.batch_id in catalog.batches:
            return {"batch_id": self.plan.batch_id, "status": "already_published"}
        batch_keys = [o.key for o in self.plan.objects]
        files = SourceFiles({o.key: o.etag for o in self.plan.objects}, catalog.sources)
        raw = self.read_raw(files)
        in_batch = F.col(clean.FILE).isin([files.ids[k] for k in batch_keys])
        published_in_batch = F.col("_source_key").isin(batch_keys)  # in published rows, which hold the key
        schemas: dict[str, str] = {}
        counted: list[tuple[str, str, int]] = []  # (source key, fate or "rows_read", rows)
        quarantines: list[DataFrame] = []
        source_ranges: dict[str, dict] = {}
        new_dates: set[str] = set()
        parsed = valid = None
        actions = Actions(self.spark, self.timings)
        try:
            if raw is not None:
                parsed = clean.parse_rows(raw, c).persist(CACHE)
                quarantines.append(with_source(clean.quarantine_rows(parsed), files, batch_keys))
            rejected = [(o.key, o.etag, why["reason"], why.get("detail", "")) for o in self.plan.objects
                        if (why := self.plan.rejected.get(o.key))]
            if rejected:  # whole files that could not be read: one quarantine record each, reason "file:<why>"
                rejects = local_frame(self.spark, rejected, "_source_key string, _source_etag string, why string, "
                                                            "detail string")
                quarantines.append(rejects.select("_source_key", "_source_etag",
                                                  F.lit(None).cast("long").alias("_row_id"),
                                                  F.concat(F.lit("file:"), "why").alias("reason"),
                                                  F.concat(F.lit("file:"), "why").alias("reasons"),
                                                  F.col("detail").alias("raw_values")))
            if quarantines:
                quarantine = reduce(DataFrame.unionByName, quarantines).withColumn(
                    "source_id", F.substring(F.sha1("_source_key"), 1, 16))
                # written while the rows are counted below: both read the parsed rows (cached once, shared)
                actions.start("write_quarantine", self.write, quarantine, "quarantine")
                schemas["quarantine"] = quarantine.schema.json()
            if parsed is not None:
                # the partition column is a date inside the job (folder names read yyyy-MM-dd all the same): a
                # string formatted per row and sorted by its bytes, all alike in their first 8, cost several %
                day = clean.period_start(c).cast("date")
                reason = F.when(F.size(clean.REASONS) > 0, F.col(clean.REASONS)[0])  # the primary one; null: valid
                # one pass over the parsed rows counts each file's rows read and its rejects, and gives the dates
                # of its valid rows (an exact repeat has the date of the row it repeats)
                for r in actions.run("count_rows", lambda: parsed.groupBy(
                        clean.FILE, reason.alias("_q"), F.when(reason.isNull(), day).alias("_day")).count().collect()):
                    key, n = files.key(r[clean.FILE]), int(r["count"])
                    counted.append((key, "rows_read", n))
                    if r["_q"] is not None:
                        counted.append((key, "q:" + r["_q"], n))
                        continue
                    d = r["_day"].isoformat()
                    new_dates.add(d)
                    rng = source_ranges.setdefault(key, {"min": d, "max": d})
                    rng["min"], rng["max"] = min(rng["min"], d), max(rng["max"], d)
                valid = clean.valid_rows(parsed).withColumn(PARTITION_COLUMN, day)
            t0 = self._timed("parse", t0)

            # Dates an earlier version of these files contributed to must be recomputed too (corrections).
            old_dates = set()
            for key in batch_keys:
                prev = catalog.sources.get(key)
                if prev and prev.get("min"):
                    old_dates |= {p for p in catalog.partitions("clean") if prev["min"] <= p <= prev["max"]}
            clean_dates = sorted(new_dates | old_dates)
            features_ranges: list[list[str]] = []
            if clean_dates:
                lb = lookback_days(c)
                touched = [(date.fromisoformat(d), date.fromisoformat(d)) for d in clean_dates]
                extents = None
                if features.fills(c):
                    # a moved first or last period adds or removes filled rows away from the new rows
                    extents, moved = self.entity_extents(catalog, valid, published_in_batch)
                    touched += moved
                # features at t read t-lb … t: recompute each touched span and the lb days after it, reading the
                # lb days before it back from the published clean data; far-apart spans stay separate
                spans = merge_spans(touched)
                history = merge_spans([(a - timedelta(days=lb), b + timedelta(days=lb)) for a, b in spans])
                recompute = merge_spans([(a, b + timedelta(days=lb)) for a, b in spans])
                hist = self.read_clean_history(catalog, history)
                frame = valid
                in_frame = list(batch_keys)
                if hist is not None:
                    # the published rows of other files: their keys and ETags become file ids, as the batch's rows
                    hist_keys = files.published_within(history, exclude=batch_keys)
                    in_frame += hist_keys
                    hist = files.to_ids(hist.where(~published_in_batch), files.frame(self.spark, hist_keys))
                    frame = hist if frame is None else frame.unionByName(hist.select(*frame.columns))
                # partitioned by the entity keys once and sorted once (clean.mark_duplicates): the duplicate
                # windows, the roll-up and the feature windows need no shuffle of their own, the features often no
                # sort; cached with its marks, so that the clean write, the features and the accounting share them
                # (the first of them to reach a partition computes it, the others wait for it and read it)
                marked = clean.mark_duplicates(frame.repartition(*c.keys), c).persist(CACHE)
                kept = marked.where(~F.col("_exact_dup"))
                published = kept.drop("_exact_dup", "_key_dup")
                clean_written = actions.start(
                    "write_clean", self.write,
                    published.where(F.col(PARTITION_COLUMN).isin([date.fromisoformat(d) for d in clean_dates])),
                    "clean", files, in_frame)
                schemas["clean"] = published_schema(with_source(published, files, in_frame))

                winners = kept.where(~F.col("_key_dup")).drop("_exact_dup", "_key_dup")
                periods = clean.rollup_to_period(winners, c)
                if extents is not None:
                    periods = features.fill_missing_periods(periods, extents, c, history)
                features_ranges = [[a.isoformat(), b.isoformat()] for a, b in recompute]
                feats = features.finalize(features.build_features(periods, c), c)
                feats = feats.where(reduce(lambda x, y: x | y, [F.col(PARTITION_COLUMN).between(a, b)
                                                                for a, b in recompute]))
                actions.start("write_features", self.write, feats, "features")
                schemas["features"] = published_schema(feats)

                # one row per batch row that reached the marked frame: (file id, fate)
                fates = clean.row_fates(marked, c).where(in_batch)
                counted += [(files.key(r[clean.FILE]), r["fate"], int(r["count"])) for r in actions.run(
                    "count_fates", lambda: fates.groupBy(clean.FILE, "fate").count().collect())]
                clean_written.result()  # every partition of `marked` is cached now: the parsed rows are not needed
                if parsed is not None:
                    parsed.unpersist()
                maybe_fail("transform.between_writes")
            actions.wait()
        except BaseException:
            actions.cancel()
            raise
        finally:
            actions.join()
        if parsed is not None:
            parsed.unpersist()
        t0 = self._timed("writes", t0)

        accounting = {k: {"rows_read": 0, "rows_out": 0, "rows_quarantined": 0, "quarantine_reasons": {},
                          "duplicates_exact": 0, "duplicates_key": 0, "rows_merged": 0,
                          "file_rejected": self.plan.rejected.get(k)} for k in batch_keys}
        for key, fate, n in counted:
            if key not in accounting:
                raise RuntimeError(f"rows from a path that is not in the plan: {key!r}")
            acc = accounting[key]
            if fate.startswith("q:"):
                acc["rows_quarantined"] += n
                acc["quarantine_reasons"][fate[2:]] = acc["quarantine_reasons"].get(fate[2:], 0) + n
            elif fate == "out":
                acc["rows_out"] += n
            elif fate == "merged":
                acc["rows_merged"] += n
            else:
                acc[fate] += n
        self._timed("accounting", t0)
        for acc in accounting.values():
            acc["balanced"] = acc["rows_read"] == (acc["rows_out"] + acc["rows_quarantined"] + acc["duplicates_exact"]
                                                   + acc["duplicates_key"] + acc["rows_merged"])
        if not all(a["balanced"] for a in accounting.values()):
            raise RuntimeError(f"row accounting does not add up: {json.dumps(accounting)[:2000]}")
        result = {
            "batch_id": self.plan.batch_id,
            "status": "staged",
            "catalog_version": catalog.version,
            "clean_partitions": clean_dates,
            "features_ranges": features_ranges,
            # every source key owns one quarantine partition: replacing it drops an earlier version's rejects
            "quarantine_partitions": sorted(source_id(k) for k in batch_keys),
            "sources": {o.key: {"etag": o.etag, **source_ranges.get(o.key, {"min": None, "max": None})}
                        for o in self.plan.objects},
            "accounting": accounting,
            "schemas": schemas,
            "timings": self.timings,
            "spark_version": self.spark.version,
        }
        maybe_fail("transform.before_result")
        self.fs.write_text(self.uri(self.staging + RESULT_NAME), json.dumps(result, indent=1, sort_keys=True))
        return result


class Actions:
    """Spark actions run side by side, each from its own driver thread (PySpark's pinned threads: one JVM thread
    each): while the driver plans and compiles one job, another's tasks use the cores. A small batch is mostly
    such driver work (docs/performance.md). Each action's own seconds go to timings under its name."""

    def __init__(self, spark: SparkSession, timings: dict[str, float]) -> None:
        self.spark = spark
        self.timings = timings
        self.threads: list[InheritableThread] = []
        self.futures: list[Future] = []

    def run(self, name: str, fn, *args):
        """fn(*args) in this thread, timed."""
        t0 = time.monotonic()
        try:
            return fn(*args)
        finally:
            self.timings[name] = round(time.monotonic() - t0, 3)

    def start(self, name: str, fn, *args) -> Future:
        """fn(*args) in a new thread; its result (or exception) in the returned future."""
        future: Future = Future()

        def target() -> None:
            try:
                future.set_result(self.run(name, fn, *args))
            except BaseException as e:  # noqa: BLE001 (handed to whoever waits for the future)
                future.set_exception(e)

        thread = InheritableThread(target=target, name=f"nexgen-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)
        self.futures.append(future)
        return future

    def wait(self) -> None:
        """Every started action finished; the first failure (in start order) raised."""
        for future in self.futures:
            future.result()

    def cancel(self) -> None:
        """Stop the jobs still running (after a failure: their output would be discarded with the staging)."""
        if any(not f.done() for f in self.futures):
            self.spark.sparkContext.cancelAllJobs()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


class SourceFiles:
    """The raw files whose rows can meet in a batch's frame (the batch's and every published one), each numbered
    by the order of its key: the rows carry that int (clean.FILE), which sorts as the key does, through the caches,
    the shuffles and the sort instead of the key and ETag strings (~80 bytes a row); the writes put the strings
    back (with_source)."""

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

    def published_within(self, spans: list[tuple[date, date]], exclude: list[str]) -> list[str]:
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
                          *[c for c in published.columns if c not in (clean.FILE, "_source_key", "_source_etag")])


# Up to this many source files, with_source looks a row's key and ETag up in literals, above with a broadcast join
LITERAL_SOURCES = 8


def with_source(df: DataFrame, files: SourceFiles, keys: Sequence[str]) -> DataFrame:
    """df with `_source_key` and `_source_etag` first, in place of the file id (as published). Every row's file
    must be one of keys: another stops the job.

    A few files' keys and ETags are literals chosen per row (a small batch's rows mostly come from one file): no
    broadcast, whose job (planned, compiled and run on the driver) cost a small batch ~1 s. More files are joined
    from a broadcast table."""
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
    return df.select(key.cast("string").alias("_source_key"), etag.cast("string").alias("_source_etag"), *rest)


def merge_spans(spans: Iterable[tuple[date, date]]) -> list[tuple[date, date]]:
    """Closed day spans, sorted, with overlapping or adjacent ones merged."""
    out: list[tuple[date, date]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def in_spans(day: str, spans: list[tuple[date, date]]) -> bool:
    return any(a.isoformat() <= day <= b.isoformat() for a, b in spans)


def published_schema(df: DataFrame) -> str:
    """df's schema as published (JSON): the partition column as the yyyy-MM-dd string its folder names hold."""
    fields = [StructField(f.name, StringType(), f.nullable, f.metadata) if f.name == PARTITION_COLUMN else f
              for f in df.schema.fields]
    return StructType(fields).json()


def source_id(key: str) -> str:
    """The quarantine partition of a raw key (same as sha1 in Spark)."""
    import hashlib

    return hashlib.sha1(key.encode()).hexdigest()[:16]


def build_session(app_name: str = "nexgen-etl-transform") -> SparkSession:
    """The session spark-submit configured (master, S3A, jars all come from its --conf flags)."""
    return SparkSession.builder.appName(app_name).getOrCreate()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="transform.py", description="NexGen ETL Spark transform for one batch plan")
    ap.add_argument("--plan", required=True, help="URI of the frozen batch plan (s3a://… or file://…)")
    args = ap.parse_args(argv)
    spark = build_session()
    try:
        fs = HadoopFS(spark)
        text = fs.read_text(args.plan)
        if text is None:
            print(f"nexgen-etl: batch plan not found: {args.plan}", file=sys.stderr)
            return 2
        plan = BatchPlan.from_json(text)
        result = BatchJob(spark, plan).run()
        print(f"nexgen-etl: batch {plan.batch_id}: {result['status']}")
        return 0
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
