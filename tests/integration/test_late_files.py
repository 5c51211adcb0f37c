"""A late S3 object, end to end through the CLI: an object whose LastModified (as the listing shows it) is older
than the mark is transformed and published when it lies inside the band, and needs `state reprocess` outside it.

S3 sets LastModified when an upload completes, so the late object is uploaded now and its listed LastModified moved
back by the fault proxy between the pipeline and moto (every call of the run, Spark's included, goes through it)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import pandas as pd

from nexgen_etl.core.state import DEFAULT_BAND_SECONDS
from nexgen_etl.core.storage import S3Store
from nexgen_etl.dev.local_services import create_buckets
from nexgen_etl.dev.sample import SampleSpec, generate
from tests.faultproxy import FaultProxy, FaultRule
from tests.integration.test_pipeline_cli import published, upload

CLI = [sys.executable, "-m", "nexgen_etl.cli"]


def _cli(env: dict, *args: str) -> dict:
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else {}


def test_late_objects_inside_and_outside_the_band(s3, moto_server, aws_env, tmp_path: Path) -> None:
    """Catches: a late object inside the band skipped (discovery comparing with the mark only), or one outside it
    processed without being asked (the band not bounding the look-back); tried: with `is_new` reduced to the mark
    comparison the late object inside the band was never published."""
    sfx = uuid.uuid4().hex[:6]
    raw, inc, full = f"late-raw-{sfx}", f"late-inc-{sfx}", f"late-full-{sfx}"
    create_buckets(s3, buckets=(raw, inc, full))
    generate(tmp_path / "a", SampleSpec(stores=2, skus=3, days=4, start=date(2024, 3, 5), dirt=0.0, seed=41))
    upload(s3, raw, tmp_path / "a")
    inside, outside = "late/inside_2024-03-02.csv", "late/outside_2024-03-01.csv"
    proxy = FaultProxy(moto_server.url, [
        FaultRule("age", ("GET",), every=1, path_contains="list-type=2", key=inside,
                  seconds=DEFAULT_BAND_SECONDS // 2),
        FaultRule("age", ("GET",), every=1, path_contains="list-type=2", key=outside,
                  seconds=DEFAULT_BAND_SECONDS * 2),
    ]).start()
    try:
        env = {**aws_env, "NEXGEN_S3_ENDPOINT": proxy.url, "NEXGEN_SPARK_MASTER": "local[2]"}
        env.pop("NEXGEN_FAULT", None)
        state = str(tmp_path / "inc.json")
        run = ["run", "--raw", f"s3://{raw}/", "--output", f"s3://{inc}/", "--state", state]
        assert _cli(env, *run)["status"] == "committed"
        for key, day, seed in ((inside, date(2024, 3, 2), 42), (outside, date(2024, 3, 1), 43)):
            generate(tmp_path / key, SampleSpec(stores=2, skus=3, days=1, start=day, dirt=0.0, seed=seed))
            only = next((tmp_path / key).rglob("*.csv"))
            S3Store(raw, "", s3).upload_file(only, key)
        second = _cli(env, *run)
        assert second["status"] == "committed"
        days = set(published(s3, inc)["date"].astype(str))
        assert "2024-03-02" in days and "2024-03-01" not in days
        listed = {o.key: o.last_modified for o in S3Store(raw, "", s3).list()}
        assert listed[inside] and proxy.rules[0].injected > 0 and proxy.rules[1].injected > 0

        assert _cli(env, *run)["status"] == "nothing_new"  # outside the band: not seen without being asked
        _cli(env, "state", "reprocess", "--key", outside, "--raw", f"s3://{raw}/", "--output", f"s3://{inc}/",
             "--state", state)
        assert _cli(env, *run)["status"] == "committed"
        full_run = ["run", "--raw", f"s3://{raw}/", "--output", f"s3://{full}/", "--state", str(tmp_path / "f.json")]
        assert _cli(env, *full_run)["status"] == "committed"
        pd.testing.assert_frame_equal(published(s3, inc), published(s3, full))
    finally:
        proxy.stop()
