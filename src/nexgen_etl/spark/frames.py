"""Small DataFrames made from driver-side values (a batch's file list, day spans, rejected files)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StructType, _parse_datatype_string

# how _plain writes a datetime (isoformat), for Spark to read it back
TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS][XXX]"


def _plain(value):
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def local_frame(spark: SparkSession, rows: Sequence[Sequence], schema: StructType | str) -> DataFrame:
    """rows (tuples in schema order) as a DataFrame built inside the JVM from one JSON literal.

    `createDataFrame(list)` ships pickled rows that a Python worker must decode: a worker start-up (about 2 s
    cold) in every run, and Python on every executor. This needs neither; dates and timestamps go as ISO strings.
    """
    struct = schema if isinstance(schema, StructType) else _parse_datatype_string(schema)
    names = [f.name for f in struct.fields]
    text = json.dumps([{n: _plain(v) for n, v in zip(names, row)} for row in rows])
    parsed = F.from_json(F.lit(text), ArrayType(struct), {"timestampFormat": TIMESTAMP_FORMAT})
    return spark.range(1).select(F.inline(parsed)).select(*names)
