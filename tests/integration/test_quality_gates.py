"""The contract's quality gates on the real stack: moto's S3 server, the real Spark job (in-process session over
S3A), the pipeline's steps, the `nexgen-etl` CLI for the operator's commands and the Airflow task bodies.

One raw bucket feeds two outputs: `plain` (the sales contract) and `gated` (the same contract with every gate,
GATES). Both take 20 days, then 5 more (every gate passes); then a bad batch of three days built by hand, each
breaking gates with numbers known in advance (BAD): `plain` publishes it, `gated` holds it until
`nexgen-etl batch approve`. Then a file with most rows quarantined is held and `nexgen-etl batch reject`ed, and its
corrected version passes; last, a held batch is approved through the DAG's params and task bodies. Every expected
number is computed here from the files (tests/reference.py for the published history), not read from the product.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from nexgen_etl.core import layout
from nexgen_etl.core.contract import DEFAULT_CONTRACT, load_contract
from nexgen_etl.core.publish import read_catalog, read_manifest
from nexgen_etl.core.quality import (
    MIN_ROWS,
    NON_NULL,
    PER_BATCH,
    PER_FILE,
    TARGET_BAND,
    QualityGates,
    evaluate,
    history_partitions,
)
from nexgen_etl.core.report import read_report, render_text
from nexgen_etl.core.results import StagedResult
from nexgen_etl.core.settings import S3Settings
from nexgen_etl.core.state import FileStateStore
from nexgen_etl.core.storage import S3Store, s3_client
from nexgen_etl.dev.local_services import create_buckets
from nexgen_etl.dev.sample import SampleSpec, file_key, generate_days
from nexgen_etl.run.gates import QualityGateError
from nexgen_etl.spark.job import BatchJob
from tests import reference
from tests.integration.test_exactly_once import dataset, make_pipeline
from tests.integration.test_pipeline_cli import CLI

GATES = {"max_quarantined_share": {"per_file": 0.2, "per_batch": 0.1}, "min_non_null_share": {"unit_price": 0.9},
         "target_band": {"periods": 28, "mads": 10, "min_history": 7}, "min_rows_per_period": 50}
SPEC = SampleSpec(stores=4, skus=25, dirt=0.02, seed=5)  # 100 entities a day
CLEAN = SampleSpec(stores=4, skus=25, dirt=0.0, seed=5)  # the same entities and units, without dirt
START = SPEC.start
# the bad batch: day 25 in thousands (its band), day 26 with 60 of its 100 targets blank (its file's share, the
# batch's share, its rows and its band), day 27 with 70 of its 100 prices "NA" (the batch's non-null share)
BAD = {25: "thousands", 26: "blank_targets", 27: "na_prices"}


def day(i: int) -> str:
    return (START + timedelta(days=i)).isoformat()


def key(i: int) -> str:
    return file_key(SPEC, START + timedelta(days=i))


def bad_file(folder: Path, i: int, kind: str) -> tuple[str, pd.DataFrame]:
    """Day i without dirt, then broken as `kind` says; the frame as written (strings)."""
    path = generate_days(folder, CLEAN, days=[i])[0]
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if kind == "thousands":
        df["units_sold"] = (df["units_sold"].astype(int) * 1000).astype(str)
    elif kind == "blank_targets":
        df.loc[df.index[:60], "units_sold"] = ""
    elif kind == "na_prices":
        df.loc[df.index[:70], "unit_price"] = "NA"
    path.write_text(df.to_csv(index=False, lineterminator="\n"))
    return path.relative_to(folder).as_posix(), df


def upload_days(w, days: list[int], spec: SampleSpec = SPEC) -> None:
    folder = w["tmp"] / f"days-{uuid.uuid4().hex[:6]}"
    for path in generate_days(folder, spec, days=days):
        w["raw_store"].upload_file(path, path.relative_to(folder).as_posix())


def cli(w, *args) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args, "--raw", f"s3://{w['raw']}/", "--output", f"s3://{w['gated']}/",
                           "--state", str(w["tmp"] / "gated.json"), "--contract", str(w["tmp"] / "gated.yaml")],
                          env=w["env"], text=True, capture_output=True, timeout=300)


def published(w, bucket: str) -> dict[str, pd.DataFrame]:
    return {ds: dataset(w["s3"], bucket, ds) for ds in layout.DATASETS}


def raw_files(w) -> list[tuple[str, object, bytes]]:
    return [(o.key, o.last_modified, w["raw_store"].get_bytes(o.key)) for o in w["raw_store"].list()]


@pytest.fixture(scope="module")
def world(s3a_spark, moto_server, credentials, tmp_path_factory):
    t0 = time.monotonic()
    s3 = s3_client(S3Settings(endpoint_url=moto_server.url, path_style=True), credentials)
    sfx = uuid.uuid4().hex[:6]
    raw, plain_out, gated_out = f"qg-raw-{sfx}", f"qg-plain-{sfx}", f"qg-gated-{sfx}"
    create_buckets(s3, buckets=(raw, plain_out, gated_out))
    tmp = tmp_path_factory.mktemp("quality")
    spec = yaml.safe_load(DEFAULT_CONTRACT.read_text())
    (tmp / "gated.yaml").write_text(yaml.safe_dump({**spec, "quality": GATES}))
    results: dict[tuple[str, str], StagedResult] = {}  # (output, batch) -> what the job returned

    def transform(plan):
        results[plan.output_url, plan.batch_id] = BatchJob(s3a_spark, plan).run()

    plain = make_pipeline(s3, raw, plain_out, tmp / "plain.json")
    gated = make_pipeline(s3, raw, gated_out, tmp / "gated.json", contract=load_contract(tmp / "gated.yaml"))
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp),
           "AWS_ACCESS_KEY_ID": credentials.access_key_id,
           "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key.reveal(), "AWS_DEFAULT_REGION": "us-east-1",
           "NEXGEN_S3_ENDPOINT": moto_server.url}
    w = {"s3": s3, "raw": raw, "plain": plain_out, "gated": gated_out, "tmp": tmp, "env": env, "results": results,
         "raw_store": S3Store(raw, "", s3), "out": S3Store(gated_out, "", s3), "state": FileStateStore(tmp / "gated.json"),
         "pipeline": gated, "transform": transform, "runs": {}}

    # two passing batches through both outputs
    for name, days in (("b1", list(range(20))), ("b2", list(range(20, 25)))):
        upload_days(w, days)
        w["runs"][name] = [p.run_once(None, transform=transform) for p in (plain, gated)]
    w["after_passing"] = {"plain": published(w, plain_out), "gated": published(w, gated_out)}
    w["history_files"] = raw_files(w)

    # the bad batch: published by plain, held by gated
    folder = tmp / "bad"
    w["bad"] = {i: bad_file(folder, i, kind) for i, kind in BAD.items()}
    for k, _ in w["bad"].values():
        w["raw_store"].upload_file(folder / k, k)
    w["runs"]["b3_plain"] = plain.run_once(None, transform=transform)
    state_before, catalog_before = w["state"].read(), read_catalog(w["out"])
    with pytest.raises(QualityGateError) as held:
        gated.run_once(None, transform=transform)
    w["b3"] = w["runs"]["b3_plain"]["batch_id"]
    w["held"] = {"error": str(held.value), "state_before": state_before, "catalog_before": catalog_before,
                 "state": w["state"].read(), "catalog": read_catalog(w["out"]),
                 "manifest": read_manifest(w["out"], w["b3"]),
                 "result": StagedResult.from_json(w["out"].get_bytes(layout.result_key(w["b3"]))),
                 "report": read_report(w["out"], w["b3"]),
                 "html": w["out"].get_bytes(layout.report_key(w["b3"], "html")).decode()}
    w["run_while_held"] = cli(w, "run")
    w["approve"] = cli(w, "batch", "approve", w["b3"])
    w["after_approve"] = {"plain": published(w, plain_out), "gated": published(w, gated_out),
                          "state": w["state"].read()}
    print(f"quality gates: {len(results)} transforms, 2 CLI calls in {time.monotonic() - t0:.1f}s")
    return w


def b2_history(w) -> dict[str, float]:
    """Published target totals per day after b1 and b2, from the reference (not the product)."""
    ref = reference.clean_rows(w["history_files"])
    return {d.isoformat(): float(t) for d, t in ref.groupby("date")["units_sold"].sum().items()}


def band_of(history: dict[str, float], period: str, n: int = 28, k: float = 10) -> tuple[float, float]:
    before = [history[p] for p in sorted(history) if p < period][-n:]
    m = statistics.median(before)
    mad = statistics.median(abs(v - m) for v in before)
    return m - k * mad, m + k * mad


# -- passing batches --------------------------------------------------------------------------------------------------
def test_gates_that_pass_change_nothing_that_is_published(world):
    """Two batches through the same contract with and without gates: the same features, clean rows, quarantine,
    catalog (files, batches, sources) and batch ids, while the gates were measured (the second batch's band against
    20 published days). Catches a gate hook that changes what the job writes (a filter, a cache dropped early) or a
    batch held although every gate passes."""
    w = world
    for name in ("b1", "b2"):
        plain_run, gated_run = w["runs"][name]
        assert plain_run["status"] == gated_run["status"] == "committed"
        assert plain_run["batch_id"] == gated_run["batch_id"]
    for ds in layout.DATASETS:
        pd.testing.assert_frame_equal(w["after_passing"]["gated"][ds], w["after_passing"]["plain"][ds], obj=ds)
    cats = [read_catalog(S3Store(b, "", w["s3"])) for b in (w["plain"], w["gated"])]
    b2 = w["runs"]["b2"][0]["batch_id"]
    measured = json.loads(w["out"].get_bytes(layout.quality_key(b2)))
    assert measured["status"] == "passed" and measured["breaches"] == 0
    bands = [c for c in measured["checks"] if c["gate"] == TARGET_BAND]
    assert [c["subject"] for c in bands] == [day(i) for i in range(20, 25)]
    assert all(c["status"] == "pass" for c in bands)
    first = json.loads(w["out"].get_bytes(layout.quality_key(w["runs"]["b1"][0]["batch_id"])))
    assert {c["status"] for c in first["checks"] if c["gate"] == TARGET_BAND} == {"skipped"}  # no history yet
    assert cats[0].datasets == cats[1].datasets and cats[0].batches == cats[1].batches


def test_a_contract_without_gates_runs_no_extra_spark_action(world):
    """Catches the gates' aggregate run (or written into the result) for a contract that declares none."""
    results = world["results"]
    plain = [r for (out, _), r in results.items() if out == f"s3://{world['plain']}/"]
    gated = [r for (out, _), r in results.items() if out == f"s3://{world['gated']}/"]
    assert len(plain) >= 3 and len(gated) >= 3
    assert all("quality_stats" not in r.timings and not r.quality for r in plain)
    assert all("quality_stats" in r.timings and r.quality["periods"] for r in gated)
    stored = json.loads(world["out"].get_bytes(layout.manifest_key(world["runs"]["b1"][0]["batch_id"])))
    assert "quality" not in stored  # the manifest is as before


# -- the bad batch: each gate, with its numbers ------------------------------------------------------------------------
def expected_breach(w, gate: str) -> tuple[str, float, object]:
    """(subject, value, limit) of the breach BAD was built to cause, computed from the files."""
    bad = {i: df for i, (_, df) in w["bad"].items()}
    if gate == PER_FILE:
        return key(26), 60 / 100, 0.2
    if gate == PER_BATCH:
        return "batch", 60 / 300, 0.1
    if gate == NON_NULL:
        return "unit_price", (240 - 70) / 240, 0.9
    if gate == MIN_ROWS:
        return day(26), 40, 50
    lo, hi = band_of(b2_history(w), day(25))
    return day(25), float(bad[25]["units_sold"].astype(int).sum()), [lo, hi]


GATE_IDS = {PER_FILE: "per-file", PER_BATCH: "per-batch", NON_NULL: "non-null", TARGET_BAND: "band",
            MIN_ROWS: "min-rows"}


@pytest.mark.parametrize("gate", list(GATE_IDS), ids=list(GATE_IDS.values()))
def test_each_gate_holds_the_bad_batch_with_its_numbers(world, gate):
    """The held batch's measured checks hold this gate's breach with the numbers computed from the files; the gate
    alone (evaluated on the same staged result and history) holds it, and passes the second, good batch. Catches a
    gate that is not measured, a share computed over the wrong rows (rows read vs valid rows, the whole frame vs the
    batch's files), a band learned from the wrong periods, and a comparison the wrong way round."""
    w = world
    subject, value, limit = expected_breach(w, gate)
    checks = [c for c in w["held"]["report"]["quality"]["checks"] if c["gate"] == gate and c["status"] == "breach"]
    hit = [c for c in checks if c["subject"] == subject]
    assert len(hit) == 1, checks
    assert hit[0]["value"] == pytest.approx(value, rel=1e-9)
    assert hit[0]["limit"] == pytest.approx(limit, rel=1e-9)
    assert gate in w["held"]["state"].held["gates"]
    assert any(m.startswith(gate) and subject in m for m in w["held"]["state"].held["breaches"])
    # the gate on its own: holds the bad batch, passes the good one
    gates = w["pipeline"].contract.quality
    only = QualityGates(**{f: getattr(gates, f) for f in gates.__dataclass_fields__ if GATE_FIELD[gate] == f})
    result = w["held"]["result"]
    history = {p: v for p, v in b2_history(w).items()}
    assert {b.gate for b in evaluate(only, result, history)} == {gate}
    good = w["results"][f"s3://{w['gated']}/", w["runs"]["b2"][1]["batch_id"]]
    before_b2 = {p: v for p, v in history.items() if p < day(20)}
    assert set(history_partitions(only, sorted(before_b2), sorted(good.quality["periods"]))) <= set(before_b2)
    assert evaluate(only, good, before_b2) == []


GATE_FIELD = {PER_FILE: "max_quarantined_share_per_file", PER_BATCH: "max_quarantined_share_per_batch",
              NON_NULL: "min_non_null_share", TARGET_BAND: "target_band", MIN_ROWS: "min_rows_per_period"}


def test_a_held_batch_publishes_nothing_keeps_the_watermark_and_frees_the_lease(world):
    """Catches a held batch published (catalog, manifest), the watermark moved, the lease kept (the next run would
    wait 2 h), the staged output dropped (approve would have nothing to publish), and an error that is not one line
    naming the gate and its numbers."""
    h = world["held"]
    b3 = world["b3"]
    assert h["catalog"] == h["catalog_before"] and h["manifest"] is None
    before, state = h["state_before"], h["state"]
    assert (state.version, state.last_modified, state.key, state.band) == (
        before.version, before.last_modified, before.key, before.band)
    assert state.lease is None and state.held["batch_id"] == b3 and "approved_at" not in state.held
    assert h["result"].batch_id == b3 and h["result"].quality["periods"][day(26)]["rows"] == 40
    error = h["error"]
    assert "\n" not in error and error.startswith(f"batch {b3} held by quality gate {PER_FILE}: ")
    assert f"{key(26)}: 60.0% of its rows quarantined (60 of 100), maximum 20.0% (and " in error
    assert f" more: {PER_BATCH}, {NON_NULL}, {MIN_ROWS}, {TARGET_BAND}); nothing published" in error
    assert f"nexgen-etl batch approve {b3}" in error and f"nexgen-etl batch reject {b3}" in error


def test_the_held_batch_report_shows_the_gates_numbers_and_band_chart(world):
    """Catches a held batch without a report (it has no manifest), a report that hides which gate broke, and a
    target chart without the band or with the published (old) totals in place of the batch's."""
    rep, page = world["held"]["report"], world["held"]["html"]
    assert rep["stage"] == "held" and rep["quality"]["status"] == "held"
    assert rep["quality"]["gates_broken"] == sorted([PER_FILE, PER_BATCH, NON_NULL, TARGET_BAND, MIN_ROWS])
    series = {p["period"]: p for p in rep["target"]["series"]}
    assert series[day(25)]["in_batch"] and series[day(25)]["total"] == pytest.approx(expected_breach(
        world, TARGET_BAND)[1])
    assert rep["totals"]["rows_quarantined"] == 60 and rep["totals"]["rows_read"] == 300
    assert 'class="band"' in page and "Held by the quality gates" in page and "min_rows_per_period" in page
    text = render_text(rep)
    assert "not published" in text and f"BROKEN {MIN_ROWS}: {day(26)} has 40 rows, minimum 50" in text


def test_nothing_runs_while_a_batch_is_held(world):
    """`nexgen-etl run` while the batch is held: one line naming it and the commands, exit 1, no new batch."""
    proc = world["run_while_held"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith(f"nexgen-etl run: error: batch {world['b3']} is held (quality gates broken: ")
    assert f"nexgen-etl batch approve {world['b3']}" in err[-1]


# -- approve, reject ----------------------------------------------------------------------------------------------------
def test_approve_publishes_the_held_batch_as_a_run_without_gates_does(world):
    """`nexgen-etl batch approve`: the held batch published as staged and committed; the output equals the plain
    run's, which published the same files without gates. Catches approve re-checking the gates (held again), a
    publish without commit (the next run would plan it again) and a hold left in the state."""
    w = world
    proc = w["approve"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert out["status"] == "committed" and out["batch_id"] == w["b3"]
    for ds in layout.DATASETS:
        pd.testing.assert_frame_equal(w["after_approve"]["gated"][ds], w["after_approve"]["plain"][ds], obj=ds)
    state = w["after_approve"]["state"]
    assert state.held is None and state.lease is None and state.version == w["held"]["state"].version + 1
    assert state.recent_batches[-1]["batch_id"] == w["b3"] and state.recent_batches[-1]["approved_at"]
    rep = read_report(w["out"], w["b3"])
    assert rep["stage"] == "commit" and rep["quality"]["status"] == "approved"


def test_reject_drops_the_batch_and_passes_its_files_by_until_they_change(world):
    """A file with 60 of its 100 targets blank is held; `nexgen-etl batch reject` drops it: the next run finds
    nothing new; its corrected upload (same key, new ETag) is discovered, passes and is committed. While held, the
    Airflow task bodies fail without retries. Catches discovery ignoring the rejected marks (the same file held
    again), marks by key only (the corrected file never processed), staging left behind, and a held batch that the
    load task would retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from nexgen_etl.airflow import tasks

    w, p = world, world["pipeline"]
    folder = w["tmp"] / "reject"
    k, _ = bad_file(folder, 28, "blank_targets")
    w["raw_store"].upload_file(folder / k, k)
    with pytest.raises(QualityGateError, match=PER_FILE):
        p.run_once(None, transform=w["transform"])
    b4 = p.state.read().held["batch_id"]
    etag = w["raw_store"].head(k).etag
    with pytest.raises(AirflowFailException, match=f"batch {b4} is held"):
        tasks.discover(None, pipeline=p)
    with pytest.raises(AirflowFailException, match=f"batch {b4} held by quality gate"):
        tasks.load({"batch_id": b4}, pipeline=p)  # a retried load task holds it again
    proc = cli(w, "batch", "reject", b4)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = p.state.read()
    assert state.held is None and state.rejected == {k: etag}
    assert not list(w["out"].list(layout.staging_dir(b4)))
    assert read_report(w["out"], b4)["stage"] == "rejected"
    assert p.run_once(None, transform=w["transform"])["status"] == "nothing_new"
    # the corrected version: same key, new content
    upload_days(w, [28])
    assert w["raw_store"].head(k).etag != etag
    r = p.run_once(None, transform=w["transform"])
    assert r["status"] == "committed"
    assert [i["key"] for i in read_manifest(w["out"], r["batch_id"]).inputs] == [k]
    assert p.state.read().rejected == {}  # the committed version supersedes the rejected one


def test_approve_through_the_dag_params_publishes_and_commits(world):
    """The DAG's path: trigger with operation=approve, to_batch=BATCH; discover_files returns the held batch (not
    new files), extract freezes the same plan, load publishes it, commit commits it. Catches a discover that lists
    past a held batch, or one that plans the approved batch under a new id (its staged output lost)."""
    from nexgen_etl.airflow import tasks

    w, p = world, world["pipeline"]
    folder = w["tmp"] / "dag"
    k, df = bad_file(folder, 29, "thousands")
    w["raw_store"].upload_file(folder / k, k)
    with pytest.raises(QualityGateError, match=TARGET_BAND):
        p.run_once(None, transform=w["transform"])
    b6 = p.state.read().held["batch_id"]
    upload_days(w, [30])  # a new file while held: not part of the approved batch
    discovered = tasks.discover({"operation": "approve", "to_batch": b6}, pipeline=p)
    assert [o["key"] for o in discovered["objects"]] == [k]
    batch = tasks.extract(discovered, pipeline=p)
    assert batch["batch_id"] == b6
    # (the DAG's transform runs the job again here: the same result against the same catalog)
    loaded = tasks.load(batch, pipeline=p)
    assert loaded["publish"] == "published"
    assert tasks.commit(batch, loaded, pipeline=p)["state_version"] == p.state.read().version
    assert p.state.read().held is None
    assert b6 in read_catalog(w["out"]).batches
    feats = dataset(w["s3"], w["gated"], "features")
    assert feats[feats["date"].astype(str) == day(29)]["units_sold"].sum() == df["units_sold"].astype(int).sum()
    # the new file waits for the next pass
    found, _ = p.discover()
    p.lease.release()
    assert [o.key for o in found.new] == [key(30)]
