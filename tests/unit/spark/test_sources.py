"""with_source: the file ids of a frame's rows become their source key and ETag, as literals for a few files and
through a broadcast join for more, with the same rows and the same published schema either way."""

import json

import pytest
from pyspark.sql import functions as F

from nexgen_etl.spark import sources
from nexgen_etl.spark.job import published_schema
from nexgen_etl.spark.transform import clean


def files_and_rows(spark, n_files):
    keys = [f"raw/2024/01/{i:02d}/sales.csv" for i in range(n_files)]
    files = sources.SourceFiles({k: f'"etag-{i}"' for i, k in enumerate(keys)},
                                {"raw/old.csv": {"etag": None, "min": "2024-01-01", "max": "2024-01-01"}})
    ids = [files.ids[k] for k in keys]
    df = spark.createDataFrame([(fid, i, float(i)) for i, fid in enumerate(ids * 3)],
                               f"{clean.FILE} int, _row_id long, units double")
    return files, keys, df


@pytest.mark.parametrize("n_files", [1, 3, sources.LITERAL_SOURCES + 2])
def test_literal_and_broadcast_lookups_agree(spark, monkeypatch, n_files):
    files, keys, df = files_and_rows(spark, n_files)
    out = {}
    for mode, limit in (("literal", 10_000), ("broadcast", 0)):
        monkeypatch.setattr(sources, "LITERAL_SOURCES", limit)
        frame = sources.with_source(df, files, keys)
        plan = frame._jdf.queryExecution().executedPlan().toString()
        assert ("BroadcastHashJoin" in plan) == (mode == "broadcast")
        out[mode] = (sorted(tuple(r) for r in frame.collect()), published_schema(frame))
    assert out["literal"] == out["broadcast"]
    rows, _ = out["literal"]
    assert len(rows) == 3 * n_files
    assert all(key == keys[int(row_id) % n_files] and etag == f'"etag-{keys.index(key)}"'
               for key, etag, row_id, _ in rows)
    fields = json.loads(out["literal"][1])["fields"]
    assert [(f["name"], f["type"]) for f in fields[:2]] == [("_source_key", "string"), ("_source_etag", "string")]


def test_a_published_file_without_an_etag_gets_a_null_one(spark):
    files, keys, df = files_and_rows(spark, 1)
    old = spark.createDataFrame([(files.ids["raw/old.csv"], 7, 1.0)], df.schema)
    rows = sources.with_source(df.unionByName(old), files, [*keys, "raw/old.csv"]).where("_row_id = 7").collect()
    assert [(r["_source_key"], r["_source_etag"]) for r in rows] == [("raw/old.csv", None)]


@pytest.mark.parametrize("limit", [10_000, 0], ids=["literal", "broadcast"])
def test_a_row_from_another_file_stops_the_job(spark, monkeypatch, limit):
    monkeypatch.setattr(sources, "LITERAL_SOURCES", limit)
    files, keys, df = files_and_rows(spark, 2)
    with pytest.raises(Exception, match="file id is not among its sources"):
        sources.with_source(df, files, keys[:1]).collect()
    assert sources.with_source(df.where(F.col(clean.FILE) == files.ids[keys[0]]), files, keys[:1]).count() == 3
