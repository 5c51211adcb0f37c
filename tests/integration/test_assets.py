"""The feed's Asset under a production-shaped Airflow 3: PostgreSQL (Debian's server, a throwaway cluster on
loopback: nexgen_etl.dev.postgres) as the metadata DB, and the real scheduler with the LocalExecutor (`airflow
scheduler`, `airflow dag-processor` and the API server its tasks call; no `airflow dags test`), against moto's S3
server and a real spark-submit.

Un-paused, `nexgen_etl_pipeline` gets the run of its last hourly interval from the scheduler (the sales contract's
`schedule`, catchup off): the batch it publishes leaves one asset event whose extra names the batch, the periods it
replaced and its row counts, and the scheduler creates the example consumer's run from that event, which reads
exactly those periods. A commit run again after its event (the task cleared), and a run that finds nothing new, add
no event."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nexgen_etl.core.publish import read_catalog, read_manifest
from nexgen_etl.core.storage import S3Store
from nexgen_etl.dev.airflow_local import standalone_env, stop_session
from nexgen_etl.dev.local_services import create_buckets, free_port
from nexgen_etl.dev.postgres import LocalPostgres
from nexgen_etl.dev.sample import SampleSpec, generate
from tests.conftest import TEST_ACCESS_KEY, TEST_SECRET
from tests.integration.test_airflow_dag import AIRFLOW, airflow

UPSTREAM = "nexgen_etl_pipeline"
ASSET_NAME = "nexgen://features/nexgen_sales"
CONSUMER = "forecaster_training"
COMPONENTS = ("scheduler", "dag-processor", "api-server")
BUCKETS = ("assets-raw", "assets-loading")
WAIT_SECONDS = 300  # bounded waits for the scheduler (typically 30-60 s each on an idle 2-core machine)
FINISHED = ("success", "failed")


class MetadataDB:
    """Read-only queries on the Airflow metadata DB in the throwaway Postgres cluster."""

    def __init__(self, pg: LocalPostgres) -> None:
        self.pg = pg

    def query(self, sql: str, *args) -> list[tuple]:
        conn = self.pg.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        finally:
            conn.close()

    def asset_events(self) -> list[dict]:
        rows = self.query("select e.id, e.extra, e.source_dag_id, e.source_task_id, e.source_run_id from asset_event e "
                          "join asset a on a.id = e.asset_id where a.name = %s order by e.id", ASSET_NAME)
        return [{"id": r[0], "extra": as_json(r[1]), "dag_id": r[2], "task_id": r[3], "run_id": r[4]} for r in rows]

    def runs(self, dag_id: str) -> list[dict]:
        rows = self.query("select id, run_id, run_type, state, data_interval_start, data_interval_end from dag_run "
                          "where dag_id = %s order by id", dag_id)
        return [dict(zip(("id", "run_id", "run_type", "state", "interval_start", "interval_end"), r)) for r in rows]

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        rows = self.query("select state from task_instance where dag_id = %s and run_id = %s and task_id = %s",
                          dag_id, run_id, task_id)
        return rows[0][0] if rows else None


def as_json(value):
    """A JSON column as psycopg2 hands it over: decoded already, or text (twice encoded for some XCom values)."""
    while isinstance(value, str):
        value = json.loads(value)
    return value


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


def run_airflow(env: dict, *args) -> None:
    done = airflow(env, *args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def drive(env: dict, home: Path, db: MetadataDB) -> dict:
    """Scheduler, DAG processor and API server up; the upstream un-paused, then its commit cleared and a run
    triggered with nothing new. Returns what the tests read, taken from the metadata DB before it goes away."""
    procs = start_components(env, home)
    try:
        unpaused_at = datetime.now(timezone.utc)
        run_airflow(env, "dags", "unpause", UPSTREAM)  # the scheduler creates the last hour's run
        upstream = wait_for("the scheduled upstream run finished",
                            lambda: [r for r in db.runs(UPSTREAM) if r["state"] in FINISHED], home)[0]
        consumer = wait_for("the consumer's run from the asset event",
                            lambda: [r for r in db.runs(CONSUMER) if r["state"] in FINISHED], home)[0]
        events_before_clear = db.asset_events()
        # `tasks clear -t` matches a substring of the task id in Airflow 3.3.2, not a regex: "commit" is commit only
        run_airflow(env, "tasks", "clear", UPSTREAM, "-t", "commit", "-y")
        wait_for("the cleared commit ran again", lambda: db.task_state(UPSTREAM, upstream["run_id"], "commit")
                 in ("success", "skipped", "failed"), home)
        run_airflow(env, "dags", "trigger", UPSTREAM)
        manual = wait_for("the triggered upstream run finished",
                          lambda: [r for r in db.runs(UPSTREAM) if r["run_type"] == "manual"
                                   and r["state"] in FINISHED], home)[0]
        time.sleep(6)  # a few scheduler loops: a consumer run from a second event would be created by now
    finally:
        stopped = {name: stop_session(proc, 60) for name, proc in procs.items()}
    tasks = db.query("select t.task_id, t.state, j.job_type, j.hostname from task_instance t "
                     "left join job j on j.id = t.queued_by_job_id where t.dag_id = %s and t.run_id = %s",
                     UPSTREAM, upstream["run_id"])
    xcom = db.query("select value from xcom where dag_id = %s and run_id = %s and task_id = %s and key = %s",
                    CONSUMER, consumer["run_id"], "train_on_new_features", "return_value")
    return {
        "unpaused_at": unpaused_at, "upstream": upstream, "consumer": consumer, "manual": manual, "stopped": stopped,
        "events_before_clear": events_before_clear, "events": db.asset_events(),
        "upstream_runs": db.runs(UPSTREAM), "consumer_runs": db.runs(CONSUMER),
        "upstream_tasks": {t[0]: {"state": t[1], "queued_by": t[2]} for t in tasks},
        "commit_after_clear": db.task_state(UPSTREAM, upstream["run_id"], "commit"),
        "manual_commit": db.task_state(UPSTREAM, manual["run_id"], "commit"),
        "asset_uri": db.query("select uri from asset where name = %s", ASSET_NAME),
        "consumed": db.query("select event_id from dagrun_asset_event where dag_run_id = %s", consumer["id"]),
        "consumer_summary": as_json(xcom[0][0]) if xcom else None,
        "db_url": db.query("select current_database(), host(inet_server_addr())"),
    }


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory, moto_server, credentials):
    from nexgen_etl.core.settings import S3Settings
    from nexgen_etl.core.storage import s3_client

    s3 = s3_client(S3Settings(endpoint_url=moto_server.url, path_style=True), credentials)
    create_buckets(s3, buckets=BUCKETS)  # its own: the moto server is shared with the other test modules
    home = tmp_path_factory.mktemp("airflow-assets")
    data = home / "data"
    generate(data, SampleSpec(stores=2, skus=3, days=6, seed=3))
    raw = S3Store(BUCKETS[0], "", s3)
    for p in sorted(data.rglob("*.csv")):
        raw.upload_file(p, p.relative_to(data).as_posix())
    pg = LocalPostgres(log_path=home / "postgres.log").start()
    try:
        env = standalone_env(home, free_port(), moto_server.url, TEST_ACCESS_KEY, TEST_SECRET, sql_alchemy_conn=pg.url)
        raw_url, out_url = (f"s3://{b}/" for b in BUCKETS)
        env.update({"NEXGEN_RAW_URL": raw_url, "NEXGEN_OUTPUT_URL": out_url,  # the Asset's URI (parse time)
                    "AIRFLOW_VAR_NEXGEN_RAW_URL": raw_url, "AIRFLOW_VAR_NEXGEN_OUTPUT_URL": out_url})  # the tasks'
        env.update({"NEXGEN_SHUFFLE_PARTITIONS": "4", "NEXGEN_RETRY_DELAY_SECONDS": "1",
                    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600"})  # parsed once: no re-parse competes
        db = MetadataDB(pg)
        run_airflow(env, "db", "migrate")
        assert db.query("select version_num from alembic_version")  # Airflow's schema is in Postgres
        for args in (("dags", "reserialize"), ("dags", "unpause", CONSUMER)):
            run_airflow(env, *args)
        seen = drive(env, home, db)
    finally:
        pg.stop()
    seen.update({"home": home, "out": S3Store(BUCKETS[1], "", s3), "pg": pg})
    return seen


def test_airflow_ran_on_postgres_with_the_scheduler_on_the_dags_schedule(scheduled):
    """Catches: the Postgres URL not reaching Airflow (it falls back to SQLite in AIRFLOW_HOME: no runs in Postgres,
    an airflow.db file), and runs made outside the scheduler (`dags test` queues no task through the scheduler job)
    or off the contract's hourly schedule, and another executor."""
    assert not (scheduled["home"] / "airflow.db").exists()
    assert scheduled["db_url"] == [("airflow", "127.0.0.1")]
    run = scheduled["upstream"]
    assert run["run_type"] == "scheduled" and run["state"] == "success", run
    # "@hourly" (include/contracts/nexgen_sales.yaml), a cron trigger in Airflow 3: the latest whole hour, un-paused
    fired = run["interval_end"]
    assert (fired.minute, fired.second) == (0, 0) and run["run_id"] == f"scheduled__{fired.isoformat()}"
    assert timedelta(0) <= scheduled["unpaused_at"] - fired <= timedelta(hours=1)
    tasks = scheduled["upstream_tasks"]
    assert set(tasks) == {"discover_files", "extract", "transform", "load", "commit"}
    assert all(t["queued_by"] == "SchedulerJob" for t in tasks.values()), tasks
    log = (scheduled["home"] / "scheduler.log").read_text(errors="replace")
    for task_id in tasks:  # the scheduler's own line for each finished task names its executor
        assert re.search(rf"TaskInstance Finished: dag_id={UPSTREAM}, task_id={task_id}, run_id={re.escape(run['run_id'])}"
                         r", .*executor=LocalExecutor\(", log), task_id


def test_the_scheduled_run_leaves_one_event_with_the_batch_periods_and_totals(scheduled):
    """Catches: no outlet on commit (no event), periods or totals missing from the extra, and an event from load
    (source task)."""
    events = scheduled["events_before_clear"]
    assert len(events) == 1
    ev = events[0]
    assert (ev["dag_id"], ev["task_id"], ev["run_id"]) == (UPSTREAM, "commit", scheduled["upstream"]["run_id"])
    out = scheduled["out"]
    batch = read_catalog(out).batches[0]
    manifest = read_manifest(out, batch)
    assert ev["extra"]["batch_id"] == batch and ev["extra"]["feed"] == "nexgen_sales"
    assert ev["extra"]["periods"]["features"] == sorted(manifest.outputs["features"])
    assert len(ev["extra"]["periods"]["features"]) == 6
    assert ev["extra"]["periods"]["clean"] == sorted(manifest.outputs["clean"])
    assert ev["extra"]["totals"] == manifest.totals
    assert ev["extra"]["output_url"] == f"s3://{BUCKETS[1]}/"
    assert scheduled["asset_uri"] == [(f"s3://{BUCKETS[1]}/features",)]


def test_the_scheduler_runs_the_consumer_from_the_event(scheduled):
    """Catches: the consumer not triggered (its schedule on another asset name), and a consumer that reads every
    published period, or none (its triggering events not read)."""
    run = scheduled["consumer"]
    assert run["run_type"] == "asset_triggered" and run["state"] == "success", run
    extra = scheduled["events_before_clear"][0]["extra"]
    assert scheduled["consumed"] == [(scheduled["events_before_clear"][0]["id"],)]
    summary = scheduled["consumer_summary"]
    assert summary["periods"] == extra["periods"]["features"] and summary["batches"] == [extra["batch_id"]]
    # every row of those periods: the features the batch published (one row per entity and day)
    assert summary["rows"] == extra["totals"]["rows_out"] == sum(summary["rows_per_period"].values())
    home = scheduled["home"]
    logs = "".join(p.read_text(errors="replace") for p in (home / "logs").rglob("*") if p.is_file()
                   and f"dag_id={CONSUMER}" in str(p))
    assert f"would train on {summary['rows']} rows of {len(summary['periods'])} periods" in logs


def test_a_commit_run_again_and_a_run_with_nothing_new_add_no_event(scheduled):
    """Catches: an event on every successful commit (the cleared commit would announce the batch again), and an
    event from a run that short-circuited."""
    assert scheduled["commit_after_clear"] == "skipped"
    assert scheduled["manual"]["state"] == "success" and scheduled["manual_commit"] == "skipped"
    assert scheduled["events"] == scheduled["events_before_clear"]
    assert [r["state"] for r in scheduled["consumer_runs"]] == ["success"]
    # a scheduled run of the next hour (when the test crosses one) also finds nothing new: no event from it either
    assert all(r["state"] == "success" for r in scheduled["upstream_runs"])


def test_the_components_and_postgres_stopped_cleanly(scheduled):
    """Catches: a component left running, and PostgreSQL killed instead of shut down (SIGKILL: return code -9) or
    its cluster's folder left behind."""
    assert scheduled["stopped"] == {name: [] for name in COMPONENTS}
    pg = scheduled["pg"]
    assert pg.proc.returncode == 0  # fast shutdown, not killed
    assert not pg.root.exists()
    assert "database system is shut down" in (scheduled["home"] / "postgres.log").read_text()


def test_without_the_server_setup_is_named_in_one_line(monkeypatch, tmp_path):
    """Catches: a machine without Debian's PostgreSQL getting a FileNotFoundError trace instead of the way out."""
    from nexgen_etl.dev import postgres

    monkeypatch.setattr(postgres, "DEBIAN_BIN", tmp_path / "absent")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"^PostgreSQL server not found .*scripts/setup.sh --with-postgres") as err:
        LocalPostgres().start()
    assert "\n" not in str(err.value)
