"""DAG integrity (as in the Astro template): the DAGs folder imports cleanly in a fresh Airflow home, with no Variable,
Connection, database or network at parse time; one DAG per feed contract in include/contracts/, each with retries,
one run at a time, a time-zone aware start date, an execution_timeout on every task (the transform's inside the
lease), its own Asset on commit; and the example consumer scheduled on the sales feed's Asset itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nexgen_etl.core.state import LEASE_SECONDS

ROOT = Path(__file__).resolve().parents[2]
ETL_TASKS = ["commit", "discover_files", "extract", "load", "transform"]

PROBE = r"""
import json, socket
def no_network(*a, **k):
    raise RuntimeError("network access at DAG parse time")
socket.socket.connect = no_network
import airflow.sdk
def no_lookup(*a, **k):
    raise RuntimeError("Variable or Connection lookup at DAG parse time")
airflow.sdk.Variable.get = no_lookup
airflow.sdk.BaseHook.get_connection = classmethod(no_lookup)
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import Asset

def assets(objs):
    return [[type(o).__name__, getattr(o, "name", None), getattr(o, "uri", None)] for o in objs]

def describe(dag):
    tasks = dag.task_dict
    timetable = dag.timetable
    condition = getattr(timetable, "asset_condition", None)
    return {
        "tasks": sorted(tasks),
        "downstream": {t: sorted(tasks[t].downstream_task_ids) for t in tasks},
        "retries": {t: tasks[t].retries for t in tasks},
        "timeouts": {t: tasks[t].execution_timeout.total_seconds() if tasks[t].execution_timeout else None
                     for t in tasks},
        "outlets": {t: assets(tasks[t].outlets) for t in tasks if tasks[t].outlets},
        "inlets": {t: assets(tasks[t].inlets) for t in tasks if tasks[t].inlets},
        "max_active_runs": dag.max_active_runs,
        "tags": sorted(dag.tags),
        "params": sorted(dag.params),
        "schedule": dag.schedule if isinstance(dag.schedule, str) else type(dag.schedule).__name__,
        "schedule_asset": assets([condition])[0] if condition is not None else None,
        "start_date": dag.start_date.isoformat() if dag.start_date else None,
        "start_date_tz": dag.start_date.utcoffset() is not None if dag.start_date else None,
        "plan_args": tasks["transform"].application_args if "transform" in tasks else None,
    }

bag = DagBag(dag_folder=%r)
print(json.dumps({
    "errors": {k: str(v)[:500] for k, v in bag.import_errors.items()},
    "dags": {dag_id: describe(dag) for dag_id, dag in bag.dags.items()},
}))
"""


def parse_dags(tmp_path, env_extra: dict[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "NEXGEN_"))}
    env.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                # a database that does not exist, and Variable.get / get_connection failing (PROBE): no lookup at
                # parse time
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/missing/none.db",
                # a naive start date would be read in this zone: the DAGs' must not depend on it
                "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Asia/Tokyo", **(env_extra or {})})
    proc = subprocess.run([sys.executable, "-c", PROBE % str(ROOT / "dags")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    """The DAGs folder as a fresh Airflow home parses it (once for the tests that need no other environment)."""
    return parse_dags(tmp_path_factory.mktemp("airflow-home"))


def test_dags_parse_with_no_services(parsed):
    """Catches: a Variable read at parse time (`Variable.get(..., default=None)` answers None without touching the
    missing database; the probe makes the lookup itself fail)."""
    info = parsed
    assert info["errors"] == {}
    assert sorted(info["dags"]) == ["forecaster_training", "nexgen_etl_pipeline"]
    dag = info["dags"]["nexgen_etl_pipeline"]
    assert dag["tasks"] == ETL_TASKS
    down = dag["downstream"]
    assert down["discover_files"] == ["extract"]
    assert "transform" in down["extract"] and down["transform"] == ["load"] and down["load"] == ["commit"]
    assert all(r >= 1 for r in dag["retries"].values())
    assert dag["max_active_runs"] == 1
    assert "nexgen" in dag["tags"] and "feed:nexgen_sales" in dag["tags"]
    assert dag["params"] == ["key", "operation", "prefix", "since", "to_batch"]
    assert dag["schedule"] == "@hourly"
    # the transform's --plan is extract's XCom, rendered at run time (nothing resolved at parse time)
    assert dag["plan_args"] == ["--plan", "{{ ti.xcom_pull(task_ids='extract')['plan_uri'] }}"]


def test_every_dag_starts_time_zone_aware_and_every_task_has_a_timeout(parsed):
    """Catches: `datetime(2026, 1, 1)` (naive: Airflow reads it in the configured default time zone, here
    Asia/Tokyo, so the DAG would start nine hours early), a task without execution_timeout (a hung listing or
    spark-submit holds the run, and the lease, for ever), a transform timeout at or beyond the 2 h lease."""
    info = parsed
    for dag_id, dag in info["dags"].items():
        assert dag["start_date_tz"] is True, (dag_id, dag["start_date"])
        assert dag["start_date"] == "2026-01-01T00:00:00+00:00", (dag_id, dag["start_date"])
        assert all(t is not None and t > 0 for t in dag["timeouts"].values()), (dag_id, dag["timeouts"])
    for dag_id, dag in info["dags"].items():
        if "transform" in dag["tasks"]:
            assert dag["timeouts"]["transform"] < LEASE_SECONDS, dag_id
            assert dag["timeouts"]["transform"] == max(dag["timeouts"].values()), dag_id


def test_commit_emits_the_feed_asset_and_the_consumer_is_scheduled_on_it(parsed):
    """The commit task, and only it, has the feed's Asset as outlet (and as inlet: it reads the asset's events to
    announce a batch once); the example consumer is scheduled on exactly that Asset (name and URI). Catches: the
    outlet on load (an event before the watermark moved), a consumer on `Asset.ref(name=…)` (Airflow 3.3.2 gives
    such a run no events), an asset URI that differs between producer and consumer."""
    info = parsed
    features = ["Asset", "nexgen://features/nexgen_sales", "s3://nexgen-loading-data/features"]
    etl = info["dags"]["nexgen_etl_pipeline"]
    assert etl["outlets"] == {"commit": [features]}
    assert etl["inlets"] == {"commit": [features]}
    consumer = info["dags"]["forecaster_training"]
    assert consumer["schedule_asset"] == features
    assert consumer["max_active_runs"] == 1 and "example" in consumer["tags"]


def test_the_asset_uri_follows_the_output_location_of_the_environment(tmp_path):
    """NEXGEN_OUTPUT_URL (environment, read at parse time) moves the Asset's URI, for producer and consumer alike."""
    info = parse_dags(tmp_path, {"NEXGEN_OUTPUT_URL": "s3://acme-features/nexgen/"})
    features = ["Asset", "nexgen://features/nexgen_sales", "s3://acme-features/nexgen/features"]
    assert info["dags"]["nexgen_etl_pipeline"]["outlets"] == {"commit": [features]}
    assert info["dags"]["forecaster_training"]["schedule_asset"] == features


def feed_contracts(folder: Path, sensors_schedule: str | None = "*/15 * * * *") -> Path:
    """A contracts folder with the shipped sales feed and the packaged sensor contract as a second feed."""
    import yaml

    from nexgen_etl.core.contract import DEFAULT_CONTRACT

    folder.mkdir()
    (folder / "nexgen_sales.yaml").write_text((ROOT / "include" / "contracts" / "nexgen_sales.yaml").read_text())
    sensors = yaml.safe_load(Path(DEFAULT_CONTRACT).with_name("sensor_readings.yaml").read_text())
    if sensors_schedule:
        sensors["schedule"] = sensors_schedule
    (folder / "sensor_readings.yaml").write_text(yaml.safe_dump(sensors))
    return folder


def test_one_dag_per_contract_file_each_with_its_own_names(tmp_path):
    """A contract file is a feed: its DAG (the same tasks, params and guards as the sales feed's), its schedule from
    the contract, its own Asset on commit. Catches: a generated DAG on the default feed's Asset or schedule, a feed
    missing from the folder's DAGs, and any Variable read at parse time (the database does not exist)."""
    contracts = feed_contracts(tmp_path / "contracts")
    info = parse_dags(tmp_path / "home", {"NEXGEN_CONTRACTS_DIR": str(contracts)})
    assert info["errors"] == {}
    assert sorted(info["dags"]) == ["forecaster_training", "nexgen_etl__sensor_readings", "nexgen_etl_pipeline"]
    sales, sensors = info["dags"]["nexgen_etl_pipeline"], info["dags"]["nexgen_etl__sensor_readings"]
    assert (sales["schedule"], sensors["schedule"]) == ("@hourly", "*/15 * * * *")
    for dag in (sales, sensors):
        assert dag["tasks"] == ETL_TASKS and dag["max_active_runs"] == 1 and dag["start_date_tz"] is True
        assert all(t for t in dag["timeouts"].values()) and dag["timeouts"]["transform"] < LEASE_SECONDS
        assert dag["params"] == ["key", "operation", "prefix", "since", "to_batch"]
    assert sensors["outlets"] == {"commit": [["Asset", "nexgen://features/sensor_readings",
                                              "s3://nexgen-loading-data/sensor_readings/features"]]}
    assert sales["outlets"]["commit"][0][1] == "nexgen://features/nexgen_sales"
    assert "feed:sensor_readings" in sensors["tags"]


def test_a_contract_that_does_not_load_is_an_import_error_naming_it(tmp_path):
    """A broken contract fails the DAG file's import with the file and the field named (the UI's import errors; this
    test in CI), rather than a feed silently missing."""
    contracts = feed_contracts(tmp_path / "contracts")
    (contracts / "sensor_readings.yaml").write_text((contracts / "sensor_readings.yaml").read_text()
                                                    .replace("period: hour", "period: fortnight"))
    info = parse_dags(tmp_path / "home", {"NEXGEN_CONTRACTS_DIR": str(contracts)})
    errors = " ".join(info["errors"].values())
    assert "sensor_readings.yaml" in errors and "time.period" in errors
    assert "nexgen_etl_pipeline" not in info["dags"]
