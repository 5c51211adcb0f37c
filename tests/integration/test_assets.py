"""The feed's Asset under a real Airflow 3, against moto's S3 server and a real spark-submit: a batch of the sales
feed (`airflow dags test nexgen_etl_pipeline`, SQLite metadata DB) leaves one asset event whose extra names the
batch, the periods it replaced and its row counts; then the real scheduler (`airflow scheduler`, `airflow
dag-processor` and the API server the LocalExecutor's tasks call, as `airflow standalone` runs them) creates the
example consumer's run from that event, and the consumer reads exactly those periods. A commit run again after its
event (the task cleared), and a scheduled run that finds nothing new, add no event."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from nexgen_etl.core.publish import read_catalog, read_manifest
from nexgen_etl.core.storage import S3Store
from nexgen_etl.dev.airflow_local import standalone_env, stop_session
from nexgen_etl.dev.local_services import create_buckets, free_port
from nexgen_etl.dev.sample import SampleSpec, generate
from tests.conftest import TEST_ACCESS_KEY, TEST_SECRET
from tests.integration.test_airflow_dag import AIRFLOW, airflow

ASSET_NAME = "nexgen://features/nexgen_sales"
CONSUMER = "forecaster_training"
COMPONENTS = ("scheduler", "dag-processor", "api-server")
BUCKETS = ("assets-raw", "assets-loading")
WAIT_SECONDS = 300  # bounded waits for the scheduler (typically 30-60 s each on an idle 2-core machine)


def query(home: Path, sql: str, *args) -> list[tuple]:
    db = sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def asset_events(home: Path) -> list[dict]:
    rows = query(home, "select e.id, e.extra, e.source_dag_id, e.source_task_id, e.source_run_id from asset_event e "
                       "join asset a on a.id = e.asset_id where a.name = ? order by e.id", ASSET_NAME)
    return [{"id": r[0], "extra": json.loads(r[1]), "dag_id": r[2], "task_id": r[3], "run_id": r[4]} for r in rows]


def runs(home: Path, dag_id: str) -> list[dict]:
    rows = query(home, "select id, run_id, run_type, state from dag_run where dag_id = ? order by id", dag_id)
    return [{"id": r[0], "run_id": r[1], "run_type": r[2], "state": r[3]} for r in rows]


def wait_for(what: str, check, home: Path, seconds: float = WAIT_SECONDS):
    """Poll `check()` until it returns something truthy, at most `seconds`; fail with the components' log tails."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(2)
    logs = "".join(f"\n--- {c} ---\n" + (home / f"{c}.log").read_text(errors="replace")[-3000:] for c in COMPONENTS)
    raise AssertionError(f"not within {seconds}s: {what}{logs}")


def start_components(env: dict, home: Path) -> dict[str, subprocess.Popen]:
    procs = {}
    for name in COMPONENTS:
        with open(home / f"{name}.log", "ab") as log:
            procs[name] = subprocess.Popen([AIRFLOW, name], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
    return procs


def task_state(home: Path, dag_id: str, run_id: str, task_id: str) -> str | None:
    rows = query(home, "select state from task_instance where dag_id = ? and run_id = ? and task_id = ?",
                 dag_id, run_id, task_id)
    return rows[0][0] if rows else None


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory, moto_server, credentials):
    from nexgen_etl.core.settings import S3Settings
    from nexgen_etl.core.storage import s3_client

    s3 = s3_client(S3Settings(endpoint_url=moto_server.url, path_style=True), credentials)
    create_buckets(s3, buckets=BUCKETS)  # its own: the moto server is shared with the other test modules
    home = tmp_path_factory.mktemp("airflow-assets")
    env = standalone_env(home, free_port(), moto_server.url, TEST_ACCESS_KEY, TEST_SECRET)
    raw_url, out_url = (f"s3://{b}/" for b in BUCKETS)
    env.update({"NEXGEN_RAW_URL": raw_url, "NEXGEN_OUTPUT_URL": out_url,  # the Asset's URI (parse time)
                "AIRFLOW_VAR_NEXGEN_RAW_URL": raw_url, "AIRFLOW_VAR_NEXGEN_OUTPUT_URL": out_url})  # the tasks'
    env.update({"NEXGEN_SHUFFLE_PARTITIONS": "4", "NEXGEN_RETRY_DELAY_SECONDS": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600"})  # parsed once: no re-parse competes
    data = home / "data"
    generate(data, SampleSpec(stores=2, skus=3, days=6, seed=3))
    raw = S3Store(BUCKETS[0], "", s3)
    for p in sorted(data.rglob("*.csv")):
        raw.upload_file(p, p.relative_to(data).as_posix())
    out = S3Store(BUCKETS[1], "", s3)
    for args in (("db", "migrate"), ("dags", "reserialize"), ("dags", "unpause", CONSUMER)):
        done = airflow(env, *args)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    first = airflow(env, "dags", "test", "nexgen_etl_pipeline")
    after_test = {"events": asset_events(home), "consumer_runs": runs(home, CONSUMER),
                  "queued": query(home, "select target_dag_id from asset_dag_run_queue")}
    procs = start_components(env, home)
    try:
        consumer = wait_for("the consumer's run from the asset event",
                            lambda: [r for r in runs(home, CONSUMER) if r["state"] in ("success", "failed")], home)
        # the commit of the batch cleared after its event, and the upstream un-paused: the scheduler re-runs the
        # commit and also starts the DAG's latest hourly run, which finds nothing new (`tasks clear -t` matches a
        # substring of the task id in Airflow 3.3.2, not a regex: "commit" is the commit task only)
        upstream_run = runs(home, "nexgen_etl_pipeline")[0]["run_id"]
        for args in (("tasks", "clear", "nexgen_etl_pipeline", "-t", "commit", "-y"),
                     ("dags", "unpause", "nexgen_etl_pipeline")):
            done = airflow(env, *args)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        wait_for("the cleared commit ran again", lambda: task_state(home, "nexgen_etl_pipeline", upstream_run,
                                                                    "commit") in ("success", "skipped", "failed"),
                 home)
        wait_for("a scheduled upstream run finished", lambda: [r for r in runs(home, "nexgen_etl_pipeline")
                                                               if r["run_type"] == "scheduled"
                                                               and r["state"] in ("success", "failed")], home)
        time.sleep(6)  # a few scheduler loops: a consumer run from a second event would be created by now
    finally:
        stopped = {name: stop_session(proc, 60) for name, proc in procs.items()}
    return {"home": home, "env": env, "first": first, "after_test": after_test, "consumer": consumer[0],
            "upstream_run": upstream_run, "out": out, "stopped": stopped}


def test_dags_test_run_leaves_one_event_with_the_batch_periods_and_totals(scheduled):
    """Catches: no outlet on commit (no event), periods or totals missing from the extra, an event from load
    (source task), and the consumer not queued (its schedule on another asset name)."""
    first = scheduled["first"]
    assert first.returncode == 0, (first.stdout + first.stderr)[-5000:]
    events = scheduled["after_test"]["events"]
    assert len(events) == 1
    ev = events[0]
    assert (ev["dag_id"], ev["task_id"]) == ("nexgen_etl_pipeline", "commit")
    out = scheduled["out"]
    batch = read_catalog(out).batches[0]
    manifest = read_manifest(out, batch)
    assert ev["extra"]["batch_id"] == batch and ev["extra"]["feed"] == "nexgen_sales"
    assert ev["extra"]["periods"]["features"] == sorted(manifest.outputs["features"])
    assert len(ev["extra"]["periods"]["features"]) == 6
    assert ev["extra"]["periods"]["clean"] == sorted(manifest.outputs["clean"])
    assert ev["extra"]["totals"] == manifest.totals
    assert ev["extra"]["output_url"] == f"s3://{BUCKETS[1]}/"
    assert query(scheduled["home"], "select uri from asset where name = ?", ASSET_NAME) == [
        (f"s3://{BUCKETS[1]}/features",)]
    # the event queued the consumer (un-paused before the run) for the scheduler
    assert scheduled["after_test"]["queued"] == [(CONSUMER,)] and scheduled["after_test"]["consumer_runs"] == []


def test_the_scheduler_runs_the_consumer_from_the_event(scheduled):
    """Catches: a consumer that reads every published period, or none (its triggering events not read)."""
    home, run = scheduled["home"], scheduled["consumer"]
    assert run["run_type"] == "asset_triggered" and run["state"] == "success", run
    consumed = query(home, "select event_id from dagrun_asset_event where dag_run_id = ?", run["id"])
    assert consumed == [(scheduled["after_test"]["events"][0]["id"],)]
    xcom = query(home, "select value from xcom where dag_id = ? and run_id = ? and task_id = ? and key = ?", CONSUMER,
                 run["run_id"], "train_on_new_features", "return_value")
    summary = json.loads(xcom[0][0])
    if isinstance(summary, str):
        summary = json.loads(summary)
    extra = scheduled["after_test"]["events"][0]["extra"]
    assert summary["periods"] == extra["periods"]["features"] and summary["batches"] == [extra["batch_id"]]
    # every row of those periods: the features the batch published (one row per entity and day)
    assert summary["rows"] == extra["totals"]["rows_out"] == sum(summary["rows_per_period"].values())
    logs = "".join(p.read_text(errors="replace") for p in (home / "logs").rglob("*") if p.is_file()
                   and f"dag_id={CONSUMER}" in str(p))
    assert f"would train on {summary['rows']} rows of {len(summary['periods'])} periods" in logs


def test_a_commit_run_again_and_a_run_with_nothing_new_add_no_event(scheduled):
    """Catches: an event on every successful commit (the cleared commit would announce the batch again), and an
    event from a run that short-circuited."""
    home = scheduled["home"]
    assert task_state(home, "nexgen_etl_pipeline", scheduled["upstream_run"], "commit") == "skipped"
    assert len(asset_events(home)) == 1
    assert [r["state"] for r in runs(home, CONSUMER)] == ["success"]
    scheduled_runs = [r for r in runs(home, "nexgen_etl_pipeline") if r["run_type"] == "scheduled"]
    assert scheduled_runs and scheduled_runs[0]["state"] == "success"
    assert task_state(home, "nexgen_etl_pipeline", scheduled_runs[0]["run_id"], "commit") == "skipped"


def test_the_components_stopped_cleanly(scheduled):
    assert scheduled["stopped"] == {name: [] for name in COMPONENTS}
