"""The spark-submit entry: read a frozen batch plan, clean and build features, write the batch's staging output.

Reads and writes through Hadoop paths (s3a:// or file://) only; credentials come from the process environment.
Publishing the staged output is the `load` step's job (nexgen_etl.core.publish), not this one's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import operator
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from nexgen_etl.core import layout
from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.contract import Unpivot, contract_from_dict
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.faults import fault_active, maybe_fail
from nexgen_etl.core.results import QUARANTINED, FileAccounting, StagedResult
from nexgen_etl.core.storage import spark_uri
from nexgen_etl.spark.actions import Actions
from nexgen_etl.spark.frames import TIMESTAMP_FORMAT, local_frame
from nexgen_etl.spark.io import HadoopFS, read_csv_group
from nexgen_etl.spark.sources import SourceFiles, with_source
from nexgen_etl.spark.spans import (
    IncrementalSpans,
    Span,
    earlier_version_dates,
    in_spans,
    incremental_spans,
    lookback_partitions,
    merge_spans,
    partition_unit,
)
from nexgen_etl.spark.transform import clean, features
from nexgen_etl.spark.transform.features import PARTITION_COLUMN

# The two large caches (the parsed rows, the marked frame) go to local disk uncompressed (DISK_ONLY with
# spark.sql.inMemoryColumnarStorage.compressed off): the in-memory columnar compression chose an encoding value by
# value, and uncompressed they do not fit a 1g heap. The OS's page cache holds them (docs/performance.md).
CACHE = StorageLevel.DISK_ONLY
FEATURE_ENGINE_CONF = "spark.nexgen.features.engine"  # auto (the default), kernel or sql: features.ENGINES


@dataclass
class Gathered:
    """What a run gathers on its way to the StagedResult: each batch file's rows by fate, its valid rows' days."""

    counted: list[tuple[str, str, int]] = field(default_factory=list)  # (source key, fate or "rows_read", rows)
    source_ranges: dict[str, dict] = field(default_factory=dict)  # source key -> {"min", "max"} of its valid days
    new_dates: set[str] = field(default_factory=set)  # the days of the batch's valid rows
    clean_dates: list[str] = field(default_factory=list)  # the clean partitions restaged
    features_ranges: list[list[str]] = field(default_factory=list)  # [first, last] days of features recomputed
    schemas: dict[str, str] = field(default_factory=dict)  # dataset -> its schema as published
    quality: dict = field(default_factory=dict)  # the quality gates' numbers (BatchJob.quality_stats)

    def read(self, key: str, reason: str | None, day: date | None, n: int) -> None:
        """n rows read from key: rejected for reason, or valid on day."""
        self.counted.append((key, "rows_read", n))
        if reason is not None:
            self.counted.append((key, QUARANTINED + reason, n))
            return
        d = day.isoformat()
        self.new_dates.add(d)
        rng = self.source_ranges.setdefault(key, {"min": d, "max": d})
        rng["min"], rng["max"] = min(rng["min"], d), max(rng["max"], d)

    def accounting(self, plan: BatchPlan) -> dict[str, FileAccounting]:
        """Each plan file's rows by fate; rows of a file outside the plan stop the job."""
        out = {o.key: FileAccounting(file_rejected=plan.rejected.get(o.key)) for o in plan.objects}
        for key, fate, n in self.counted:
            if key not in out:
                raise RuntimeError(f"rows from a path that is not in the plan: {key!r}")
            out[key].add(fate, n)
        return out


class BatchJob:
    """One batch: everything between the frozen plan and the staged output + result file."""

    def __init__(self, spark: SparkSession, plan: BatchPlan) -> None:
        self.spark = spark
        self.plan = plan
        self.contract = contract_from_dict(plan.contract)
        self.fs = HadoopFS(spark)
        self.timings: dict[str, float] = {}
        self.batch_keys = [o.key for o in plan.objects]
        spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")
        # a line with more or fewer fields than the header is `malformed_row` whichever columns the contract reads:
        # with column pruning, the CSV parser fills a short line's missing fields with nulls if they are unread
        spark.conf.set("spark.sql.csv.parser.columnPruning.enabled", "false")

    def uri(self, key: str) -> str:
        return spark_uri(self.plan.output_url, key)

    def _timed(self, name: str, t0: float) -> float:
        now = time.monotonic()
        self.timings[name] = round(now - t0, 3)
        return now

    def run(self) -> StagedResult:
        """Stage the batch: its quarantine, the clean dates it touches and the features those change, written side
        by side; then each file's row accounting, and the StagedResult beside the staged files."""
        t0 = time.monotonic()
        catalog = Catalog.from_json(self.fs.read_text(self.uri(layout.CATALOG_KEY)))
        if self.plan.batch_id in catalog.batches:
            return StagedResult(self.plan.batch_id, catalog.version, status="already_published")
        files = SourceFiles({o.key: o.etag for o in self.plan.objects}, catalog.sources)
        gathered = Gathered()
        with Actions(self.spark, self.timings) as actions:
            parsed, valid = self.parse(files, actions, gathered)
            t0 = self._timed("parse", t0)
            # dates an earlier version of these files contributed to must be recomputed too (corrections)
            gathered.clean_dates = sorted(gathered.new_dates | earlier_version_dates(
                self.batch_keys, catalog.sources, catalog.partitions("clean")))
            if gathered.clean_dates:
                self.restage(catalog, files, parsed, valid, actions, gathered)
        if parsed is not None:
            parsed.unpersist()
        t0 = self._timed("writes", t0)
        accounting = gathered.accounting(self.plan)
        if fault_active("transform.lose_a_row") and accounting:
            next(iter(accounting.values())).rows_out -= 1
        self._timed("accounting", t0)
        refuse_unbalanced(accounting)
        result = self.result(catalog, gathered, accounting)
        maybe_fail("transform.before_result")
        self.fs.write_text(self.uri(layout.result_key(self.plan.batch_id)), result.to_json())
        return result

    # -- parse: the batch's rows, its quarantine, each file's rows counted ----------------------------------------
    def parse(self, files: SourceFiles, actions: Actions,
              gathered: Gathered) -> tuple[DataFrame | None, DataFrame | None]:
        """The batch's rows parsed (cached) and their valid ones, None for both when no file could be read. Starts
        the quarantine write, and counts each file's rows meanwhile: both read the parsed rows (cached once)."""
        raw = self.read_raw(files)
        parsed = None if raw is None else clean.parse_rows(raw, self.contract).persist(CACHE)
        quarantine = self.quarantine(parsed, files)
        if quarantine is not None:
            actions.start("write_quarantine", self.write, quarantine, "quarantine")
            gathered.schemas["quarantine"] = quarantine.schema.json()
        if parsed is None:
            return None, None
        # the partition column is a date inside the job (folder names read yyyy-MM-dd all the same): no string
        # formatted per row and sorted by its bytes, all alike in their first 8 (docs/performance.md)
        day = clean.period_start(self.contract).cast("date")
        self.count_rows(parsed, day, files, actions, gathered)
        return parsed, clean.valid_rows(parsed).withColumn(PARTITION_COLUMN, day)

    def quarantine(self, parsed: DataFrame | None, files: SourceFiles) -> DataFrame | None:
        """The batch's rejected rows and one record per whole file that could not be read, reason "file:<why>"
        (decided at extract), with their partition column; None when there are none."""
        parts = [] if parsed is None else [with_source(clean.quarantine_rows(parsed), files, self.batch_keys)]
        rejected = [(o.key, o.etag, why["reason"], why.get("detail", "")) for o in self.plan.objects
                    if (why := self.plan.rejected.get(o.key))]
        if rejected:
            rejects = local_frame(self.spark, rejected, "_source_key string, _source_etag string, why string, "
                                                        "detail string")
            parts.append(rejects.select("_source_key", "_source_etag", F.lit(None).cast("long").alias("_row_id"),
                                        F.concat(F.lit("file:"), "why").alias("reason"),
                                        F.concat(F.lit("file:"), "why").alias("reasons"),
                                        F.col("detail").alias("raw_values")))
        if not parts:
            return None
        return reduce(DataFrame.unionByName, parts).withColumn(
            layout.PARTITION_OF["quarantine"], F.substring(F.sha1("_source_key"), 1, 16))

    def count_rows(self, parsed: DataFrame, day: SparkColumn, files: SourceFiles, actions: Actions,
                   gathered: Gathered) -> None:
        """One pass over the parsed rows counts each file's rows read and its rejects, and gives the dates of its
        valid rows (an exact repeat has the date of the row it repeats)."""
        reason = F.when(F.size(clean.REASONS) > 0, F.col(clean.REASONS)[0])  # the primary one; null: valid
        rows = actions.run("count_rows", lambda: parsed.groupBy(
            clean.FILE, reason.alias("_q"), F.when(reason.isNull(), day).alias("_day")).count().collect())
        for r in rows:
            gathered.read(files.key(r[clean.FILE]), r["_q"], r["_day"], int(r["count"]))

    # -- restage: the clean dates touched and the features they change --------------------------------------------
    def restage(self, catalog: Catalog, files: SourceFiles, parsed: DataFrame | None, valid: DataFrame | None,
                actions: Actions, gathered: Gathered) -> None:
        """Writes the clean rows of the touched dates and the features they change, side by side, while the
        batch's rows are counted by fate."""
        c = self.contract
        extents, moved = None, []
        if features.fills(c):
            # a moved first or last period adds or removes filled rows away from the new rows
            extents, moved = self.entity_extents(catalog, valid)
        spans = incremental_spans(gathered.clean_dates, moved, lookback_partitions(c), partition_unit(c))
        # only the restaged partitions' published clean rows compete with the batch's (a duplicate group and a
        # period never span two partitions); the other partitions the features read back come as they were
        # published, one row per period (settled_periods)
        touched = merge_spans([(d, d) for d in map(date.fromisoformat, gathered.clean_dates)], partition_unit(c))
        frame, in_frame = self.frame(catalog, files, valid, touched)
        # partitioned by the entity keys once and sorted once (clean.mark_duplicates): the duplicate windows, the
        # roll-up and the feature windows need no shuffle of their own, the features often no sort; cached with
        # its marks, so that the clean write, the features and the accounting share them (the first of them to
        # reach a partition computes it, the others wait for it and read it)
        # (a single series, `keys: []`, is one partition: its windows partition by nothing)
        by_entity = frame.repartition(*clean.entity(c)) if c.keys else frame.repartition(1)
        marked = clean.mark_duplicates(by_entity, c).persist(CACHE)
        kept = marked.where(~F.col("_exact_dup"))
        clean_written = self.write_clean(kept, files, in_frame, actions, gathered)
        self.write_features(catalog, kept, extents, spans, actions, gathered)
        if c.quality.needs_stats:  # only a contract whose quality gates need them (core/quality.py): one action
            actions.start("quality_stats", self.quality_stats, marked, files, gathered)
        self.count_fates(marked, files, len(in_frame) > len(self.batch_keys), actions, gathered)
        clean_written.result()  # every partition of `marked` is cached now: the parsed rows are not needed
        if parsed is not None:
            parsed.unpersist()
        maybe_fail("transform.between_writes")

    def frame(self, catalog: Catalog, files: SourceFiles, valid: DataFrame | None,
              restaged: list[Span]) -> tuple[DataFrame, list[str]]:
        """The batch's valid rows with the published clean rows of other files inside the restaged partitions'
        spans, and the keys of the files whose rows it holds."""
        hist = self.read_clean_history(catalog, restaged)
        frame, in_frame = valid, list(self.batch_keys)
        if hist is not None:
            # the published rows of other files: their keys and ETags become file ids, as the batch's rows
            hist_keys = files.published_within(restaged, exclude=self.batch_keys)
            in_frame += hist_keys
            hist = files.to_ids(hist.where(~self.published_in_batch()), files.frame(self.spark, hist_keys))
            frame = hist if frame is None else frame.unionByName(hist.select(*[clean.col(n) for n in frame.columns]))
        return frame, in_frame

    def write_clean(self, kept: DataFrame, files: SourceFiles, in_frame: list[str], actions: Actions,
                    gathered: Gathered) -> Future:
        """Starts the write of the touched dates' clean rows (exact repeats dropped); its future."""
        published = kept.drop("_exact_dup", "_key_dup")
        days = [date.fromisoformat(d) for d in gathered.clean_dates]
        written = actions.start("write_clean", self.write, published.where(F.col(PARTITION_COLUMN).isin(days)),
                                "clean", files, in_frame)
        gathered.schemas["clean"] = published_schema(with_source(published, files, in_frame))
        return written

    def write_features(self, catalog: Catalog, kept: DataFrame, extents: DataFrame | None, spans: IncrementalSpans,
                       actions: Actions, gathered: Gathered) -> None:
        """Starts the write of the features of the recomputed spans, from each (key, time)'s winner and the
        periods published in the other partitions the features read back."""
        c = self.contract
        winners = kept.where(~F.col("_key_dup")).drop("_exact_dup", "_key_dup")
        periods = clean.rollup_to_period(winners, c)
        settled = self.settled_periods(catalog, spans.history, gathered.clean_dates, periods)
        if settled is not None:
            periods = periods.select(*[clean.col(n) for n in settled.columns]).unionByName(settled)
        if extents is not None:
            periods = features.fill_missing_periods(periods, extents, c, spans.history)
        gathered.features_ranges = [[a.isoformat(), b.isoformat()] for a, b in spans.recompute]
        # `sql`: Spark's own windows in place of the kernel, to compare the two on a real batch
        engine = self.spark.conf.get(FEATURE_ENGINE_CONF, "auto")
        feats = features.finalize(features.build_features(periods, c, engine), c)
        feats = feats.where(reduce(operator.or_, [F.col(PARTITION_COLUMN).between(a, b) for a, b in spans.recompute]))
        actions.start("write_features", self.write, feats, "features")
        gathered.schemas["features"] = published_schema(feats)

    def count_fates(self, marked: DataFrame, files: SourceFiles, history: bool, actions: Actions,
                    gathered: Gathered) -> None:
        """Counts each batch row that reached the marked frame by (file, fate), and the `out` rows that took over a
        period published before (history: the frame holds published rows of other files)."""
        in_batch = F.col(clean.FILE).isin([files.ids[k] for k in self.batch_keys])
        fates = clean.row_fates(marked, self.contract, ~in_batch if history else None).where(in_batch)
        for r in actions.run("count_fates", lambda: fates.groupBy(clean.FILE, "fate", "_took").count().collect()):
            gathered.counted.append((files.key(r[clean.FILE]), r["fate"], int(r["count"])))
            if r["_took"]:
                gathered.counted.append((files.key(r[clean.FILE]), "periods_taken_over", int(r["count"])))

    def quality_stats(self, marked: DataFrame, files: SourceFiles, gathered: Gathered) -> None:
        """What the contract's quality gates measure beyond the accounting, in one action over the cached marked
        frame: the batch's valid rows and how many of them hold each gated column; each restaged partition's target
        total and rows (after the roll-up, before any filled row), as the features hold them."""
        c, gates = self.contract, self.contract.quality
        cols = [name for name, _ in gates.min_non_null_share]
        parts = []
        if gates.needs_non_null:
            in_batch = F.col(clean.FILE).isin([files.ids[k] for k in self.batch_keys])
            parts.append(marked.where(in_batch).agg(
                F.lit(None).cast("date").alias("_p"), F.count(F.lit(1)).alias("_n"), F.lit(None).cast("double").alias(
                    "_t"), *[F.count(clean.col(n)).alias(f"_c{i}") for i, n in enumerate(cols)]))
        if gates.needs_periods:
            winners = marked.where(~F.col("_exact_dup") & ~F.col("_key_dup")).drop("_exact_dup", "_key_dup")
            part = F.col(features.PERIOD).cast("date")  # the features partition, as features.finalize makes it
            days = [date.fromisoformat(d) for d in gathered.clean_dates]
            parts.append(clean.rollup_to_period(winners, c).where(part.isin(days)).groupBy(part.alias("_p")).agg(
                F.count(F.lit(1)).alias("_n"), F.coalesce(F.sum(clean.col(c.target)).cast("double"), F.lit(0.0)).alias(
                    "_t"), *[F.lit(None).cast("long").alias(f"_c{i}") for i in range(len(cols))]))
        stats: dict = {"valid_rows": 0, "non_null": {}, "periods": {}}
        for r in reduce(DataFrame.unionByName, parts).collect():
            if r["_p"] is None:
                stats.update(valid_rows=int(r["_n"]), non_null={n: int(r[f"_c{i}"]) for i, n in enumerate(cols)})
            else:
                stats["periods"][r["_p"].isoformat()] = {"total": float(r["_t"]), "rows": int(r["_n"])}
        gathered.quality = stats

    def result(self, catalog: Catalog, gathered: Gathered, accounting: dict[str, FileAccounting]) -> StagedResult:
        return StagedResult(
            batch_id=self.plan.batch_id,
            catalog_version=catalog.version,
            clean_partitions=gathered.clean_dates,
            features_ranges=gathered.features_ranges,
            # every source key owns one quarantine partition: replacing it drops an earlier version's rejects
            quarantine_partitions=sorted(source_id(k) for k in self.batch_keys),
            sources={o.key: {"etag": o.etag, **gathered.source_ranges.get(o.key, {"min": None, "max": None})}
                     for o in self.plan.objects},
            accounting=accounting,
            schemas=gathered.schemas,
            timings=self.timings,
            spark_version=self.spark.version,
            quality=gathered.quality,
        )

    # -- reading and writing --------------------------------------------------------------------------------------
    def published_in_batch(self) -> SparkColumn:
        """A published row (which holds its key) of one of the batch's files: an earlier version of it."""
        return F.col("_source_key").isin(self.batch_keys)

    def read_raw(self, files: SourceFiles) -> DataFrame | None:
        """All readable plan files as string rows with their source columns, grouped by header so that columns
        are matched by name (reordered or extra columns are fine); a wide file unpivoted to a row per cell.
        Whole-file rejects were decided at extract."""
        c = self.contract
        expected = c.raw_inputs
        groups: dict[tuple[str, ...], list] = {}
        for obj in self.plan.objects:
            if obj.key in self.plan.headers:
                groups.setdefault(tuple(self.plan.headers[obj.key]), []).append(obj)
        frames = []
        for header, members in groups.items():
            uris = [spark_uri(self.plan.raw_url, o.key) for o in members]
            df = read_csv_group(self.spark, uris, c, list(header))
            if c.unpivot is not None:
                df = unpivot(df, c.unpivot, list(header))
            for name in expected:
                if name not in df.columns:
                    df = df.withColumn(name, F.lit(None).cast("string"))
            df = df.select(*[clean.col(n) for n in expected], clean.CORRUPT)
            if len(members) == 1:  # the file is known: no file name per row, no join (nor its broadcast job)
                o = members[0]
                df = df.select("*", F.lit(files.ids[o.key]).alias(clean.FILE),
                               F.to_timestamp(F.lit(o.last_modified.isoformat()), TIMESTAMP_FORMAT).alias("_source_lm"))
            else:
                # map each file's path (as input_file_name() reports it) to its plan entry with a broadcast hash
                # join: a literal map looked up per row scans all of its keys, which costs rows × files string
                # comparisons. The plan's times are timestamps already: none is parsed per row.
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
        return raw.select(*[clean.col(n) for n in expected], clean.CORRUPT, "_row_id", clean.FILE, "_source_lm")

    def read_clean(self, files: list[str]) -> DataFrame | None:
        """Published clean files (catalog keys), with the partition column; None when there are none."""
        df = self.read_published(files)  # the partition column a date, as in the job
        return None if df is None else df.withColumn(PARTITION_COLUMN, F.col(PARTITION_COLUMN).cast("date"))

    def read_published(self, files: list[str]) -> DataFrame | None:
        """Published files of one dataset (catalog keys), with the partition column as its folders name it; None
        when there are none."""
        if not files:
            return None
        by_base: dict[str, list[str]] = {}  # the catalog's folder; a bucket published by an earlier version has two
        for f in files:
            by_base.setdefault(f[:f.index(f"{PARTITION_COLUMN}=")], []).append(self.uri(f))
        return reduce(DataFrame.unionByName, [self.spark.read.option("basePath", self.uri(base)).parquet(*paths)
                                              for base, paths in sorted(by_base.items())])

    def read_clean_history(self, catalog: Catalog, spans: list[Span]) -> DataFrame | None:
        return self.read_clean(catalog.files("clean", [p for p in catalog.partitions("clean") if in_spans(p, spans)]))

    def settled_periods(self, catalog: Catalog, history: list[Span], restaged: list[str],
                        periods: DataFrame) -> DataFrame | None:
        """The published periods of the history's partitions that the batch does not restage, as the features hold
        them (one row per entity and period: the winners, rolled up), in the columns of `periods` the features
        read and publish (entity keys, `_period`, the other declared columns); filled rows left out, as the fills
        are made again. None when there are none.

        Such a partition's clean rows are the ones its features were computed from: a batch that changes a
        partition's clean rows restages it and recomputes its features."""
        c = self.contract
        skip = set(restaged)
        parts = [p for p in catalog.partitions("features") if in_spans(p, history) and p not in skip]
        published = self.read_published(catalog.files("features", parts))
        if published is None:
            return None
        if features.fills(c):
            published = published.where(~F.col(features.FILLED))
        types = dict(periods.dtypes)
        declared = [n for n in c.column_names if n not in c.keys and n != c.time_column]
        return published.select(*[clean.col(k) for k in c.keys],
                                clean.col(c.time_column).cast(types[features.PERIOD]).alias(features.PERIOD),
                                *[clean.col(n).cast(types[n]).alias(n) for n in declared])

    def entity_extents(self, catalog: Catalog, batch_rows: DataFrame | None) -> tuple[DataFrame, list[Span]]:
        """Each entity's first and last period over all clean rows once this batch is in, and the calendar days
        where a first or last period moved (the filled rows there appear or vanish).

        Reads only the key and time columns of the whole published clean dataset: a gap can open or close far
        from the batch's own dates (a new day months after an entity's last one, or a correction that removes
        its last row)."""
        c = self.contract
        keys = clean.entity(c)
        p = clean.period_start(c).alias("_p")
        kept = []
        old = None
        pub = self.read_clean(catalog.files("clean"))
        if pub is not None:
            pub = pub.select(*keys, clean.col(c.time_column), "_source_key")
            old = pub.groupBy(*keys).agg(F.min(p).alias("_of"), F.max(p).alias("_ol"))
            kept.append(pub.where(~self.published_in_batch()).select(*keys, p))
        if batch_rows is not None:
            kept.append(batch_rows.select(*keys, p))
        if not kept:
            return local_frame(self.spark, [], "_first date, _last date"), []
        new = (reduce(DataFrame.unionByName, kept).groupBy(*keys)
               .agg(F.min("_p").alias("_first"), F.max("_p").alias("_last"))
               .persist(StorageLevel.MEMORY_AND_DISK))
        if old is None:
            old = new.where(F.lit(False)).select(*keys, F.col("_first").alias("_of"), F.col("_last").alias("_ol"))
        of, ol, nf, nl = (F.col(x) for x in ("_of", "_ol", "_first", "_last"))
        # where filled rows can appear or vanish: between an old and a new first (or last) period, all of a new
        # entity's span (its gaps may lie further than the lookback from any of its rows), all of a gone one's.
        # A single series (no keys) is at most one row on each side, joined on nothing
        both = old.join(new, list(c.keys) if c.keys else F.lit(True), "full_outer")
        moved = both.select(
            F.least(F.when(of != nf, F.least(of, nf)), F.when(ol != nl, F.least(ol, nl)),
                    F.when(nf.isNull(), of), F.when(of.isNull(), nf)).alias("lo"),
            F.greatest(F.when(of != nf, F.greatest(of, nf)), F.when(ol != nl, F.greatest(ol, nl)),
                       F.when(nf.isNull(), ol), F.when(of.isNull(), nl)).alias("hi"))
        spans = moved.where(F.col("lo").isNotNull()).select(F.to_date("lo").alias("lo"), F.to_date("hi").alias("hi"))
        return new, merge_spans(((r["lo"], r["hi"]) for r in spans.distinct().collect()), partition_unit(c))

    def write(self, df: DataFrame, dataset: str, files: SourceFiles | None = None, keys: Sequence[str] = ()) -> None:
        """df into the batch's staging folder, one file per partition value. files and keys: the source key and
        ETag to put in place of the file ids (with_source), after the shuffle (which they would only make larger)."""
        part = layout.PARTITION_OF[dataset]
        df = df.repartition(part)
        if files is not None:
            df = with_source(df, files, keys)
        (df.write.mode("overwrite").option("compression", "snappy")
         .partitionBy(part).parquet(self.uri(layout.staged_dataset_dir(self.plan.batch_id, dataset))))


def unpivot(df: DataFrame, u: Unpivot, header: list[str]) -> DataFrame:
    """One row per (row, value column): the ids, the value column's name as `key` and its cell as `value`, in the
    file's row order, then its column order (so that `_row_id` orders the cells as they were written). A
    malformed line's corrupt record goes with each of its cells."""
    ids = [clean.col(i) for i in u.ids if i in header]
    cells = F.explode(F.array(*[F.struct(F.lit(v).alias("k"), clean.col(v).alias("v"))
                                for v in u.value_columns(header)])).alias("_cell")
    long = df.select(*ids, clean.CORRUPT, cells)
    return long.select(*ids, clean.CORRUPT, F.col("_cell.k").alias(u.key), F.col("_cell.v").alias(u.value))


def refuse_unbalanced(accounting: dict[str, FileAccounting]) -> None:
    """Every file's rows read are accounted for exactly once, or the job stops before its result is written."""
    if not all(a.balanced for a in accounting.values()):
        detail = json.dumps({k: a.to_dict() for k, a in accounting.items()})
        raise RuntimeError(f"row accounting does not add up: {detail[:2000]}")


def published_schema(df: DataFrame) -> str:
    """df's schema as published (JSON): the partition column as the yyyy-MM-dd string its folder names hold."""
    fields = [StructField(f.name, StringType(), f.nullable, f.metadata) if f.name == PARTITION_COLUMN else f
              for f in df.schema.fields]
    return StructType(fields).json()


def source_id(key: str) -> str:
    """The quarantine partition of a raw key (same as sha1 in Spark)."""
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
        print(f"nexgen-etl: batch {plan.batch_id}: {result.status}")
        return 0
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
