"""DAG integrity (as in the Astro template): imports cleanly in a fresh Airflow home, with no Variable,
Connection, database or network at parse time; retries on; one run at a time; the task chain and params are right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, socket
def no_network(*a, **k):
    raise RuntimeError("network access at DAG parse time")
socket.socket.connect = no_network
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=%r)
dag = bag.dags.get("nexgen_etl_pipeline")
print(json.dumps({
    "errors": {k: str(v)[:500] for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "tasks": sorted(dag.task_dict) if dag else [],
    "downstream": {t: sorted(dag.task_dict[t].downstream_task_ids) for t in dag.task_dict} if dag else {},
    "retries": {t: dag.task_dict[t].retries for t in dag.task_dict} if dag else {},
    "max_active_runs": dag.max_active_runs if dag else None,
    "tags": sorted(dag.tags) if dag else [],
    "params": sorted(dag.params) if dag else [],
    "plan_args": dag.task_dict["transform"].application_args if dag and "transform" in dag.task_dict else None,
}))
"""


def parse_dags(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    env.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                # a database that does not exist: any Variable/Connection lookup at parse time would fail
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/missing/none.db"})
    proc = subprocess.run([sys.executable, "-c", PROBE % str(ROOT / "dags")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_dag_parses_with_no_services(tmp_path):
    info = parse_dags(tmp_path)
    assert info["errors"] == {}
    assert info["dags"] == ["nexgen_etl_pipeline"]
    assert info["tasks"] == ["commit", "discover_files", "extract", "load", "transform"]
    down = info["downstream"]
    assert down["discover_files"] == ["extract"]
    assert "transform" in down["extract"] and down["transform"] == ["load"] and down["load"] == ["commit"]
    assert all(r >= 1 for r in info["retries"].values())
    assert info["max_active_runs"] == 1
    assert "nexgen" in info["tags"]
    assert info["params"] == ["key", "operation", "prefix", "since", "to_batch"]
    # the transform's --plan is extract's XCom, rendered at run time (nothing resolved at parse time)
    assert info["plan_args"] == ["--plan", "{{ ti.xcom_pull(task_ids='extract')['plan_uri'] }}"]
