"""The local driver JVM maps its classes from the class data sharing archive that setup made (nexgen_etl.spark.local.class_archive)."""

from __future__ import annotations

import dataclasses
import os
import subprocess

from nexgen_etl.core.settings import Settings
from nexgen_etl.spark.jars import spark_submit_binary
from nexgen_etl.spark.local.class_archive import archive_path
from nexgen_etl.spark.local.jvm import local_class_path
from nexgen_etl.spark.submit import submit_spec

APP = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
df = spark.read.option("header", "true").csv(sys.argv[1])
df.groupBy("k").count().write.parquet(sys.argv[2])
for name in ("org.apache.hadoop.fs.s3a.S3AFileSystem", "com.amazonaws.services.s3.AmazonS3Client",
             "org.codehaus.janino.ClassBodyEvaluator"):
    spark._jvm.java.lang.Class.forName(name)  # S3A and the AWS SDK, on the driver's class path; Janino
print("nexgen-test rows", spark.read.parquet(sys.argv[2]).count())
spark.stop()
"""


def test_local_submit_loads_spark_from_the_archive(tmp_path):
    settings = Settings.from_env(spark_master="local[2]")
    archive = archive_path(settings.jars_dir, local_class_path(settings))
    assert archive.exists(), f"no class archive at {archive}: setup makes it (python -m nexgen_etl.dev.class_archive)"
    spec = submit_spec(settings, batch_bytes=100)
    opts = spec.conf["spark.driver.extraJavaOptions"]
    assert f"-XX:SharedArchiveFile={archive}" in opts.split()
    (tmp_path / "in.csv").write_text("k,v\na,1\nb,2\na,3\n")
    (tmp_path / "app.py").write_text(APP)
    loads = tmp_path / "classes.log"
    spec = dataclasses.replace(spec, application=str(tmp_path / "app.py"), conf={
        **spec.conf, "spark.driver.extraJavaOptions": f"{opts} -Xlog:class+load=info:file={loads}"})
    proc = subprocess.run(spec.argv([str(tmp_path / "in.csv"), str(tmp_path / "out")],
                                    spark_submit=spark_submit_binary()),
                          env={**os.environ, **spec.env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "nexgen-test rows 2" in proc.stdout
    assert "[cds" not in proc.stdout + proc.stderr  # the JVM's warning when an archive does not fit
    lines = loads.read_text().splitlines()
    shared = [ln for ln in lines if "source: shared objects file (top)" in ln]
    session = [ln for ln in lines if " org.apache.spark.sql.SparkSession " in ln]
    assert session and "shared objects file (top)" in session[0], session
    # most of what the driver loaded came from the archive, not from jar files
    assert len(shared) > 0.6 * len(lines), (len(shared), len(lines))
    # S3A's and the AWS SDK's classes too: setup trained the archive with its output on S3 (moto); and Janino's,
    # from the unsigned copy of its jar (resolve_jars.sh; no class of a signed jar is archived)
    for name in ("org.apache.hadoop.fs.s3a.S3AFileSystem", "com.amazonaws.services.s3.AmazonS3Client",
                 "org.codehaus.janino.ClassBodyEvaluator"):
        loaded = [ln for ln in lines if f" {name} " in ln]
        assert loaded and "shared objects file (top)" in loaded[0], loaded
