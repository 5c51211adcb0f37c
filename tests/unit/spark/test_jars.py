"""The installed PySpark is one piece (no pyspark-client files over it), and the S3A jars match its Hadoop."""

import glob
import importlib.metadata as md
import os
import re

import pyspark

from nexgen_etl.core.settings import Settings
from nexgen_etl.spark.jars import resolved_jars

JARS = os.path.join(os.path.dirname(pyspark.__file__), "jars")


def version_of(pattern: str, folder: str) -> list[str]:
    return [re.search(pattern, os.path.basename(j)).group(1) for j in glob.glob(os.path.join(folder, "*.jar"))
            if re.search(pattern, os.path.basename(j))]


def test_pyspark_python_and_jars_agree():
    assert version_of(r"^spark-core_2\.\d+-(.+)\.jar$", JARS) == [pyspark.__version__]
    assert md.version("pyspark") == pyspark.__version__


def test_no_pyspark_client_installed_over_pyspark():
    names = {d.metadata["Name"].lower() for d in md.distributions()}
    assert "pyspark-client" not in names and "pyspark-connect" not in names


def test_hadoop_aws_matches_the_hadoop_inside_pyspark():
    hadoop = version_of(r"^hadoop-client-api-(.+)\.jar$", JARS)
    assert len(hadoop) == 1
    jars = resolved_jars(Settings.from_env())
    names = [os.path.basename(j) for j in jars]
    assert f"hadoop-aws-{hadoop[0]}.jar" in names
    # Hadoop 3.3.x S3A is built on the AWS SDK v1 bundle, 3.4+ on the SDK v2 bundle
    sdk = "aws-java-sdk-bundle-" if hadoop[0].startswith("3.3") else "bundle-2"
    assert any(n.startswith(sdk) for n in names), names
