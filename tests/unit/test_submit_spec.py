"""The spark-submit description is sized to the batch: JIT mode and shuffle partitions follow the input bytes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from nexgen_etl.settings import Settings
from nexgen_etl.spark_submit import QUICK_JIT_BYTES, input_bytes, sized_conf, submit_spec
from nexgen_etl.storage import ObjectInfo

MB = 1024 * 1024
QUICK = "-XX:TieredStopAtLevel=1"


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    monkeypatch.delenv("NEXGEN_SHUFFLE_PARTITIONS", raising=False)
    monkeypatch.delenv("NEXGEN_QUICK_JIT_BYTES", raising=False)


def obj(key: str, size: int) -> ObjectInfo:
    return ObjectInfo(last_modified=datetime(2026, 1, 1, tzinfo=timezone.utc), key=key, etag="e", size=size)


def test_small_batch_gets_the_quick_jit_and_the_default_partitions():
    conf, opts = sized_conf(100_000)
    assert QUICK in opts and "-Dlog4j2.level=WARN" in opts
    assert conf["spark.sql.shuffle.partitions"] == "16"


def test_large_batch_keeps_the_optimising_jit_and_scales_partitions():
    conf, opts = sized_conf(QUICK_JIT_BYTES + 1)
    assert QUICK not in opts
    assert sized_conf(3000 * MB)[0]["spark.sql.shuffle.partitions"] == str(-(-3000 // 64))  # 47
    assert sized_conf(64 * 16 * MB + 1)[0]["spark.sql.shuffle.partitions"] == "17"


def test_unknown_size_changes_nothing():
    conf, opts = sized_conf(None)
    assert QUICK not in opts and conf["spark.sql.shuffle.partitions"] == "16"


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("NEXGEN_SHUFFLE_PARTITIONS", "4")
    monkeypatch.setenv("NEXGEN_QUICK_JIT_BYTES", "0")
    conf, opts = sized_conf(3000 * MB)
    assert conf["spark.sql.shuffle.partitions"] == "4"
    assert QUICK not in sized_conf(10)[1]


def test_gzip_counts_four_times_its_size():
    assert input_bytes([obj("a.csv", 10), obj("b.csv.gz", 10)]) == 50


def test_submit_spec_puts_the_sizing_into_argv(monkeypatch, tmp_path):
    (tmp_path / "hadoop-aws-3.3.4.jar").write_bytes(b"")
    settings = Settings.from_env(spark_master="local[2]", jars_dir=tmp_path)
    small = submit_spec(settings, batch_bytes=10).argv(["--plan", "x"])
    big = submit_spec(settings, batch_bytes=900 * MB).argv(["--plan", "x"])
    assert any(QUICK in a for a in small) and not any(QUICK in a for a in big)
    assert "spark.sql.shuffle.partitions=16" in small and "spark.sql.shuffle.partitions=16" in big
