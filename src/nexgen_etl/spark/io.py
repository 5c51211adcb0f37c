"""Spark-side I/O: small files through Hadoop's FileSystem (so s3a:// and file:// work alike) and CSV reading."""

from __future__ import annotations

from urllib.parse import urlsplit

from pyspark.sql import DataFrame, SparkSession

from nexgen_etl.core.contract import Contract
from nexgen_etl.spark.transform.clean import CORRUPT, raw_schema_ddl


class HadoopFS:
    """qualified / read_text / write_text for any Hadoop path (s3a://, file://, hdfs://)."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self.jvm = spark._jvm
        self.conf = spark._jsc.hadoopConfiguration()
        # each attribute step of jvm.org.apache.… is a round trip to the JVM: look the class and the file
        # systems up once (a batch qualifies each of its paths: docs/performance.md)
        self._path_class = self.jvm.org.apache.hadoop.fs.Path
        self._file_systems: dict[tuple[str, str], object] = {}

    def _path(self, uri: str):
        p = self._path_class(uri)
        where = urlsplit(uri)[:2]
        fs = self._file_systems.get(where)
        if fs is None:
            fs = self._file_systems[where] = p.getFileSystem(self.conf)
        return p, fs

    def qualified(self, uri: str) -> str:
        """The string Spark's input_file_name() gives for this path."""
        p, fs = self._path(uri)
        return fs.makeQualified(p).toUri().toString()

    def read_text(self, uri: str) -> str | None:
        p, fs = self._path(uri)
        if not fs.exists(p):
            return None
        stream = fs.open(p)
        try:
            return bytes(self.jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode("utf-8")
        finally:
            stream.close()

    def write_text(self, uri: str, text: str) -> None:
        p, fs = self._path(uri)
        out = fs.create(p, True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()


def read_csv_group(spark: SparkSession, paths: list[str], contract: Contract, header: list[str] | None) -> DataFrame:
    """Read files that share one header with an explicit all-string schema (no inference)."""
    c = contract.csv
    reader = (spark.read.schema(raw_schema_ddl(contract, header))
              .option("header", "false" if c.header is False else "true")  # positional: a line to skip
              .option("sep", c.delimiter).option("quote", c.quote).option("escape", c.escape)
              .option("encoding", c.encoding).option("multiLine", str(c.multiline).lower())
              .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
              .option("enforceSchema", "true"))
    return reader.csv(paths)
