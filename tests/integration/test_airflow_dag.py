"""The DAG under a real Airflow 3 (`airflow dags test`, SQLite metadata DB) against moto's S3 server and a real
spark-submit: it publishes, advances the watermark Variable, announces the batch on the feed's Asset once,
short-circuits when nothing is new, and never prints the secret."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nexgen_etl.core import layout
from nexgen_etl.core.publish import read_catalog
from nexgen_etl.core.storage import S3Store
from nexgen_etl.dev.local_services import airflow_env, create_buckets
from nexgen_etl.dev.sample import SampleSpec, generate
from tests.conftest import TEST_ACCESS_KEY, TEST_SECRET

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def airflow(env, *args, timeout=900):
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout)


def process_table() -> list[str]:
    """The command line of every process on the machine, right now."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                out.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return out


def airflow_sampled(env, *args, timeout=900):
    """Run the Airflow CLI while sampling the process table every 0.2 s (to catch spark-submit's argv)."""
    import time

    proc = subprocess.Popen([AIRFLOW, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[str] = []
    import threading

    out: dict[str, str] = {}
    reader = threading.Thread(target=lambda: out.update(zip(("stdout", "stderr"), proc.communicate(timeout=timeout))))
    reader.start()
    while reader.is_alive():
        samples.extend(c for c in process_table() if "spark" in c.lower())
        time.sleep(0.2)
    reader.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.get("stdout", ""), out.get("stderr", "")), samples


@pytest.fixture(scope="module")
def dag_runs(tmp_path_factory, moto_server, credentials):
    from nexgen_etl.core.settings import S3Settings
    from nexgen_etl.core.storage import s3_client

    s3 = s3_client(S3Settings(endpoint_url=moto_server.url, path_style=True), credentials)
    create_buckets(s3)  # the DAG's default buckets, on this test's own moto server
    home = tmp_path_factory.mktemp("airflow")
    env = airflow_env(home, moto_server.url, TEST_ACCESS_KEY, TEST_SECRET)
    env["NEXGEN_SHUFFLE_PARTITIONS"] = "4"
    env["NEXGEN_SPARK_EVENT_LOG_DIR"] = str(home / "spark-events")  # scanned by the leak tests below
    # the first load dies once after writing its manifest (before the catalog): Airflow retries the task
    env.update({"NEXGEN_FAULT": "load.after_manifest", "NEXGEN_FAULT_ONCE": str(home / "fault-fired"),
                "NEXGEN_RETRY_DELAY_SECONDS": "1"})
    data = home / "data"
    generate(data, SampleSpec(stores=2, skus=3, days=10, seed=5))
    raw = S3Store("nexgen-raw-data", "", s3)
    for p in sorted(data.rglob("*.csv")):
        raw.upload_file(p, p.relative_to(data).as_posix())
    migrate = airflow(env, "db", "migrate")
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    first, samples = airflow_sampled(env, "dags", "test", "nexgen_etl_pipeline")
    second = airflow(env, "dags", "test", "nexgen_etl_pipeline")
    variable = airflow(env, "variables", "get", "nexgen_etl_state")
    return {"s3": s3, "env": env, "home": home, "endpoint": moto_server.url, "first": first, "second": second,
            "variable": variable, "process_samples": samples}


def test_first_run_succeeds_and_publishes(dag_runs):
    first = dag_runs["first"]
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-5000:]
    assert "state=success" in out and "state=failed" not in out
    cat = read_catalog(S3Store("nexgen-loading-data", "", dag_runs["s3"]))
    assert len(cat.batches) == 1 and len(cat.partitions("features")) == 10


def test_failed_load_is_retried_by_airflow_and_publishes_once(dag_runs):
    out = dag_runs["first"].stdout + dag_runs["first"].stderr
    assert (dag_runs["home"] / "fault-fired").read_text() == "load.after_manifest"
    assert "injected fault at load.after_manifest" in out
    assert out.count("running task <TaskInstance: nexgen_etl_pipeline.load") == 2
    store = S3Store("nexgen-loading-data", "", dag_runs["s3"])
    cat = read_catalog(store)
    assert len(cat.batches) == 1 and len(list(store.list("_manifests/"))) == 1
    live = set(cat.files("features"))
    on_disk = {o.key for o in store.list("features/") if o.key.endswith(".parquet")}
    view = {layout.view_file("features", p, i) for p, fs in cat.datasets["features"].items() for i in range(len(fs))}
    assert on_disk == view and len(live) == 10  # the plain view holds the live files, nothing stale beside them
    import io
    import json

    import pyarrow.parquet as pq

    rows = sum(pq.read_metadata(io.BytesIO(store.get_bytes(k))).num_rows for k in live)
    manifest = json.loads(store.get_bytes(f"_manifests/{cat.batches[0]}.json"))
    assert rows == manifest["totals"]["rows_out"] and 50 <= rows <= 2 * 3 * 10


def test_run_report_is_written_and_linked_from_the_task_log(dag_runs):
    """The load task writes the report after publishing, commit finalises it; timings come from every task
    (discover's through XCom, transform's from the Spark operator)."""
    from nexgen_etl.core.report import STEPS, read_report, report_key

    store = S3Store("nexgen-loading-data", "", dag_runs["s3"])
    batch = read_catalog(store).batches[0]
    rep = read_report(store, batch)
    manifest = json.loads(store.get_bytes(f"_manifests/{batch}.json"))
    assert rep["stage"] == "commit" and rep["state_version"] == 1
    assert {k: rep["totals"][k] for k in manifest["totals"]} == manifest["totals"]
    assert [s["step"] for s in rep["steps"]] == list(STEPS)
    assert store.head(report_key(batch, "html")) is not None
    logs = dag_runs["first"].stdout + dag_runs["first"].stderr + "".join(
        p.read_text(errors="replace") for p in (dag_runs["home"] / "logs").rglob("*") if p.is_file())
    assert f"s3://nexgen-loading-data/{report_key(batch, 'html')}" in logs


def test_watermark_variable_advanced_by_commit(dag_runs):
    v = dag_runs["variable"]
    assert v.returncode == 0, v.stderr[-2000:]
    state = json.loads(v.stdout[v.stdout.index("{"):v.stdout.rindex("}") + 1])
    assert state["version"] == 1
    assert state["watermark"]["key"] == "sales/2024/01/10/sales_2024-01-10.csv"
    assert state["recent_batches"][0]["files"] == 10


def test_second_run_short_circuits(dag_runs):
    second = dag_runs["second"]
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-5000:]
    assert "No new files above the watermark" in out
    cat = read_catalog(S3Store("nexgen-loading-data", "", dag_runs["s3"]))
    assert len(cat.batches) == 1


def test_one_asset_event_for_the_batch_despite_the_retried_load(dag_runs):
    """The load retried after its fault, then commit announced the batch: one event of the feed's Asset, from commit,
    naming the batch and its 10 periods; the second run (nothing new) added none."""
    import sqlite3

    db = sqlite3.connect(dag_runs["home"] / "airflow.db")
    rows = db.execute("select e.extra, e.source_task_id from asset_event e join asset a on a.id = e.asset_id "
                      "where a.name = 'nexgen://features/nexgen_sales'").fetchall()
    batch = read_catalog(S3Store("nexgen-loading-data", "", dag_runs["s3"])).batches[0]
    assert [(json.loads(extra)["batch_id"], task) for extra, task in rows] == [(batch, "commit")]
    assert len(json.loads(rows[0][0])["periods"]["features"]) == 10


def test_secret_never_in_output_logs_or_xcom(dag_runs):
    texts = [dag_runs["first"].stdout, dag_runs["first"].stderr, dag_runs["second"].stdout]
    logs = list((dag_runs["home"] / "logs").rglob("*")) if (dag_runs["home"] / "logs").exists() else []
    texts += [p.read_text(errors="replace") for p in logs if p.is_file()]
    assert sum(t.count(TEST_SECRET) for t in texts) == 0
    import sqlite3

    db = sqlite3.connect(dag_runs["home"] / "airflow.db")
    rows = db.execute("select value from xcom").fetchall()
    assert rows, "expected XCom rows from the run"
    assert not any(TEST_SECRET in str(r[0]) for r in rows)


def event_logs(dag_runs) -> list[Path]:
    logs = sorted(p for p in (dag_runs["home"] / "spark-events").rglob("*") if p.is_file())
    assert logs, "the transform wrote no Spark event log"
    return logs


def environment_update(log: Path) -> dict:
    """The SparkListenerEnvironmentUpdate event: the data the Spark UI's Environment page shows."""
    for line in log.read_text(errors="replace").splitlines():
        event = json.loads(line)
        if event.get("Event") == "SparkListenerEnvironmentUpdate":
            return event
    raise AssertionError(f"no SparkListenerEnvironmentUpdate in {log}")


def test_secret_not_in_spark_event_log_or_environment_page(dag_runs):
    logs = event_logs(dag_runs)
    texts = [p.read_text(errors="replace") for p in logs]
    assert sum(t.count(TEST_SECRET) for t in texts) == 0
    assert not any(TEST_ACCESS_KEY in t for t in texts)
    env = environment_update(logs[0])
    spark_props = dict(env["Spark Properties"])
    hadoop_props = dict(env["Hadoop Properties"])
    # the page is really there: the S3A endpoint of the run, the env-var credentials provider, our redaction rule
    assert spark_props["spark.hadoop.fs.s3a.endpoint"] == dag_runs["endpoint"]
    provider = spark_props["spark.hadoop.fs.s3a.aws.credentials.provider"]
    assert provider.endswith("EnvironmentVariableCredentialsProvider")
    assert "spark.redaction.regex" in spark_props
    # and no credential travels through the Spark conf or system properties at all (Hadoop Properties list
    # core-default's empty fs.s3a.access.key/secret.key placeholders, shown redacted)
    keys = set(spark_props) | set(env.get("System Properties", {}))
    assert not {k for k in keys if k.endswith(("s3a.secret.key", "s3a.access.key", "s3a.session.token"))
                or "AWS_SECRET" in k or "AWS_ACCESS" in k}
    assert all(v == "*********(redacted)" for k, v in hadoop_props.items() if k.endswith(("s3a.secret.key",
                                                                                         "s3a.access.key")))
    assert TEST_SECRET not in json.dumps(env)


def test_secret_not_in_spark_submit_argv(dag_runs):
    samples = dag_runs["process_samples"]
    submits = [c for c in samples if "org.apache.spark.deploy.SparkSubmit" in c]
    assert submits, "the process table was never sampled while spark-submit ran"
    assert any("--plan" in c and "s3a://nexgen-loading-data/_plans/" in c for c in submits)
    assert not any(TEST_SECRET in c or TEST_ACCESS_KEY in c for c in samples)
    logged = [ln for ln in dag_runs["first"].stdout.splitlines() if "Spark-Submit cmd:" in ln]
    assert logged, "the operator did not log the command it built"
    assert not any(TEST_SECRET in ln or TEST_ACCESS_KEY in ln for ln in logged)


def test_airflow_secret_masker_knows_the_secret(dag_runs):
    """In a process that took the credentials from the connection (as every task does), anything logged with the
    secret or the session token in it is redacted by Airflow's masker."""
    env = dict(dag_runs["env"])
    conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    conn["extra"]["aws_session_token"] = "nexgen-Session-Token-5a1e"
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(conn)
    probe = ("from airflow.sdk.log import redact\n"
             "from nexgen_etl.airflow.connections import credentials_from_connection\n"
             "c = credentials_from_connection('aws_default')\n"
             "line = f'connection: key={c.secret_access_key.reveal()} token={c.session_token.reveal()}'\n"
             "print(redact(line))\n")
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "connection: key=*** token=***" in proc.stdout
    assert TEST_SECRET not in proc.stdout + proc.stderr and "nexgen-Session-Token-5a1e" not in proc.stdout


def test_spark_ui_environment_page_shows_no_secret(dag_runs, tmp_path):
    """The Environment page as Spark's own UI serves it (JSON API and HTML), from a history server replaying the
    run's event log."""
    import os
    import time
    import urllib.request

    from nexgen_etl.dev.local_services import free_port
    from nexgen_etl.spark.jars import pyspark_home

    port = free_port()
    opts = (f"-Dspark.history.fs.logDirectory={(dag_runs['home'] / 'spark-events').as_uri()} "
            f"-Dspark.history.ui.port={port} -Dspark.history.fs.update.interval=1s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"SPARK_HOME": pyspark_home(), "SPARK_HISTORY_OPTS": opts, "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_LOG_DIR": str(tmp_path)})
    server = subprocess.Popen([str(Path(sys.executable).parent / "spark-class"),
                               "org.apache.spark.deploy.history.HistoryServer"], env=env,
                              stdout=open(tmp_path / "history.log", "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> str:
        with urllib.request.urlopen(base + path, timeout=10) as resp:
            return resp.read().decode(errors="replace")

    try:
        apps, deadline = [], time.monotonic() + 120
        while not apps and time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "history.log").read_text()[-3000:]
            try:
                apps = json.loads(get("/api/v1/applications"))
            except OSError:
                pass
            time.sleep(1)
        assert apps, "the history server listed no application"
        app = apps[0]["id"]
        api = get(f"/api/v1/applications/{app}/environment")
        html = get(f"/history/{app}/environment/")
    finally:
        server.terminate()
        server.wait(30)
    environment = json.loads(api)
    props = dict(environment["sparkProperties"])
    assert props["spark.hadoop.fs.s3a.endpoint"] == dag_runs["endpoint"]  # the page of this run
    assert "spark.hadoop.fs.s3a.endpoint" in html
    for text in (api, html):
        assert TEST_SECRET not in text and TEST_ACCESS_KEY not in text
