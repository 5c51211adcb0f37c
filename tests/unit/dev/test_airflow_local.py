"""The `make airflow` launcher's pieces that need no Airflow: its environment, and stopping a process session
(SIGINT first, leftovers found through the session id and killed only as a last resort)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from nexgen_etl.dev.airflow_local import session_processes, settings_variables, standalone_env, stop_session

# a leader that exits on SIGINT (Python's default KeyboardInterrupt) after starting a child that stays or goes
ORPHAN = "import subprocess, signal, sys; subprocess.Popen(['sleep', '60']); signal.pause()"
STUBBORN = "import signal, subprocess; signal.signal(signal.SIGINT, signal.SIG_IGN); subprocess.Popen(['sleep', '60']); signal.pause()"
CLEAN_TREE = ("import signal, subprocess, sys\n"
              "p = subprocess.Popen(['sleep', '60'])\n"
              "def stop(*_):\n    p.terminate(); p.wait(); sys.exit(0)\n"
              "signal.signal(signal.SIGINT, stop)\nsignal.pause()\n")


def _session(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 20
    while len(session_processes(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(session_processes(proc.pid)) == 2
    return proc


@pytest.mark.parametrize(("code", "n_killed"), [
    pytest.param(CLEAN_TREE, 0, id="leader-stops-its-child-on-sigint"),
    pytest.param(ORPHAN, 1, id="leader-exits-leaving-a-child"),
    pytest.param(STUBBORN, 2, id="leader-ignores-sigint"),
])
def test_stop_session_leaves_nothing_and_reports_what_it_killed(code, n_killed):
    proc = _session(code)
    before = session_processes(proc.pid)
    killed = stop_session(proc, timeout=3, grace=2)
    assert len(killed) == n_killed and set(killed) <= set(before)
    assert session_processes(proc.pid) == []
    assert proc.returncode is not None


def test_standalone_env_points_tasks_at_its_own_port_and_reads_the_settings_variables(tmp_path):
    env = standalone_env(tmp_path, 45678, "http://127.0.0.1:1234", "AKIA-local", "local-secret")
    assert env["AIRFLOW__API__PORT"] == "45678"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:45678/execution/"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "2" and env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW_HOME"] == str(tmp_path) and env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("/dags")
    assert '"endpoint_url": "http://127.0.0.1:1234"' in env["AIRFLOW_CONN_AWS_DEFAULT"]
    assert {env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"], env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]} \
        .isdisjoint({"8793", "8794"})
    assert env["AIRFLOW_VAR_NEXGEN_RAW_URL"] == "s3://nexgen-raw-data/"
    assert settings_variables() == {"AIRFLOW_VAR_NEXGEN_RAW_URL": "s3://nexgen-raw-data/",
                                    "AIRFLOW_VAR_NEXGEN_OUTPUT_URL": "s3://nexgen-loading-data/"}


def test_a_port_in_use_is_refused_at_once_with_the_way_out():
    import socket

    from nexgen_etl.dev.airflow_local import LocalAirflow, LocalAirflowConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port} is in use.*AIRFLOW_PORT="):
            LocalAirflow(LocalAirflowConfig(port=port)).start()
