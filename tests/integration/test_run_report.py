"""The run report of real batches (local folders, the in-process Spark session, the pipeline's own steps): its
numbers against the batch manifest, the published quarantine rows and features; its HTML and charts; the CLI."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.publish import read_catalog, read_manifest
from nexgen_etl.core.report import STEPS, report_key
from nexgen_etl.core.settings import Settings
from nexgen_etl.core.state import FileStateStore
from nexgen_etl.core.storage import LocalStore
from nexgen_etl.dev.sample import SampleSpec, generate
from nexgen_etl.run.pipeline import Pipeline
from nexgen_etl.spark.job import BatchJob

CLI = str(Path(sys.executable).parent / "nexgen-etl")
COUNTS = ("rows_read", "rows_out", "rows_quarantined", "duplicates_exact", "duplicates_key", "rows_merged")


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    """Two batches: four dirty days, then two more days plus a file whose header is wrong."""
    tmp = tmp_path_factory.mktemp("report")
    raw, out = tmp / "raw", tmp / "out"
    p = Pipeline(settings=Settings(raw_url=str(raw), output_url=str(out)), contract=load_contract(),
                 raw=LocalStore(raw), out=LocalStore(out), state=FileStateStore(tmp / "state.json"))
    transform = lambda plan: BatchJob(spark, plan).run()  # noqa: E731
    t0 = time.monotonic()
    generate(raw, SampleSpec(stores=2, skus=2, days=4, dirt=0.15, seed=31))
    first = p.run_once(None, transform=transform)
    time.sleep(1.1)  # the second drop is strictly newer than the first (file mtimes)
    generate(raw, SampleSpec(stores=2, skus=2, days=2, start=date(2024, 1, 5), dirt=0.15, seed=32))
    (raw / "sales" / "bad_header.csv").write_text("when,where,what\n2024-01-05,S1,3\n")
    logger = logging.getLogger("nexgen_etl")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        second = p.run_once(None, transform=transform)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    print(f"run report: two batches in {time.monotonic() - t0:.1f}s")
    assert first["status"] == second["status"] == "committed"
    return {"p": p, "out": out, "first": first["batch_id"], "batch": second["batch_id"], "tmp": tmp,
            "log": [r.getMessage() for r in records], "state": FileStateStore(tmp / "state.json").read()}


def stored(world, ext: str):
    return (world["out"] / report_key(world["batch"], ext)).read_text()


def test_numbers_match_the_manifest(world):
    rep = json.loads(stored(world, "json"))
    m = read_manifest(LocalStore(world["out"]), world["batch"]).to_dict()
    assert rep["batch_id"] == world["batch"] and rep["stage"] == "commit"
    assert rep["state_version"] == world["state"].version
    assert {c: rep["totals"][c] for c in COUNTS} == m["totals"]
    assert rep["totals"]["files_in"] == len(m["inputs"]) == 3
    assert rep["totals"]["files_rejected"] == 1
    assert rep["totals"]["rows_quarantined"] > 0 and rep["totals"]["rows_read"] > rep["totals"]["rows_out"]
    for f in rep["files"]:
        acc = m["accounting"][f["key"]]
        assert {c: f[c] for c in COUNTS} == {c: acc[c] for c in COUNTS}
        assert f["quarantine_reasons"] == acc["quarantine_reasons"]
    assert [f["key"] for f in rep["files"] if f["file_rejected"]] == ["sales/bad_header.csv"]


def test_reasons_match_the_published_quarantine(world):
    """The reasons, counted independently from the quarantine Parquet the batch published."""
    out = world["out"]
    m = read_manifest(LocalStore(out), world["batch"]).to_dict()
    counted = Counter()
    for files in m["outputs"]["quarantine"].values():
        for f in files:
            counted.update(pq.read_table(out / f, columns=["reason"]).column("reason").to_pylist())
    assert json.loads(stored(world, "json"))["quarantine_reasons"] == dict(counted)


def test_target_series_matches_the_published_features(world):
    out = world["out"]
    rep = json.loads(stored(world, "json"))
    cat = read_catalog(LocalStore(out))
    want = {}
    for part in cat.partitions("features"):
        tables = [pq.read_table(out / f) for f in cat.files("features", [part])]
        want[part] = sum(pc.sum(t.column("units_sold")).as_py() for t in tables)
    series = rep["target"]["series"]
    assert [p["period"] for p in series] == sorted(want)  # six days: all history fits the window
    assert all(p["total"] == pytest.approx(want[p["period"]]) for p in series)
    batch_periods = [p["period"] for p in series if p["in_batch"]]
    assert batch_periods == rep["batch_periods"] == ["2024-01-05", "2024-01-06"]


def test_every_step_is_timed(world):
    rep = json.loads(stored(world, "json"))
    assert [s["step"] for s in rep["steps"]] == list(STEPS)
    assert all(s["seconds"] >= 0 for s in rep["steps"])
    transform = next(s for s in rep["steps"] if s["step"] == "transform")
    assert transform["seconds"] > 0.5  # a real Spark job
    # the job's phases and each of its actions (the writes run side by side, each timed on its own)
    timings = rep["transform_timings"]
    assert set(timings) >= {"parse", "writes", "count_rows", "write_quarantine", "write_clean", "write_features",
                            "count_fates"}
    assert timings["writes"] >= max(timings[k] for k in ("write_clean", "write_features", "count_fates")) > 0


class Svg(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.shapes: dict[str, list[tuple[str, dict]]] = {}

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.current = dict(attrs)["id"]
            self.shapes[self.current] = []
        elif self.current:
            self.shapes[self.current].append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "svg":
            self.current = None


def test_html_has_the_charts(world):
    rep = json.loads(stored(world, "json"))
    page = stored(world, "html")
    parsed = Svg()
    parsed.feed(page)
    parsed.close()
    points = [a for t, a in parsed.shapes["target-chart"] if t == "circle"]
    assert len(points) == len(rep["target"]["series"])
    assert sum("batch" in a["class"] for a in points) == len(rep["batch_periods"])
    bars = [t for t, _ in parsed.shapes["quarantine-chart"] if t == "rect"]
    assert len(bars) == len(rep["quarantine_reasons"]) >= 2
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "<script" not in page


def test_location_is_logged(world):
    want = f"{LocalStore(world['out']).url}{report_key(world['batch'], 'html')}"
    assert any(line.endswith(want) and line.startswith("report:") for line in world["log"])


def test_first_batch_has_its_own_report(world):
    first = json.loads((world["out"] / report_key(world["first"], "json")).read_text())
    assert first["stage"] == "commit" and all(p["in_batch"] for p in first["target"]["series"])


def test_cli_prints_the_same_totals(world, tmp_path):
    rep = json.loads(stored(world, "json"))
    t = rep["totals"]
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([CLI, "report", "latest", "--output", str(world["out"]), "--html", str(tmp_path / "r.html")],
                          env=env, text=True, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r.html").read_text().count("<circle") == len(rep["target"]["series"])
    proc = subprocess.run([CLI, "report", world["batch"], "--output", str(world["out"])], env=env, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"batch {world['batch']} (nexgen_sales): commit" in proc.stdout
    assert (f"rows: read {t['rows_read']}  out {t['rows_out']}  quarantined {t['rows_quarantined']}  duplicates "
            f"{t['duplicates']} (exact {t['duplicates_exact']}, key {t['duplicates_key']})  merged by roll-up "
            f"{t['rows_merged']}") in proc.stdout
    assert f"files in: {t['files_in']} " in proc.stdout
