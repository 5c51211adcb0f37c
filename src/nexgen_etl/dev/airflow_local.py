"""`nexgen-etl airflow` (`make airflow`): the Airflow UI on this machine, as `astro dev start` gives it elsewhere.

`airflow standalone` (LocalExecutor, sized for 2 cores) with a project-local AIRFLOW_HOME, moto's S3 server with
sample data as the local S3 endpoint, and the connections and variables the DAG reads. The metadata DB is SQLite
in AIRFLOW_HOME, or with `db="postgres"` (NEXGEN_AIRFLOW_DB=postgres) a throwaway PostgreSQL server on loopback
(nexgen_etl.dev.postgres) started before Airflow and stopped after it. Standalone shuts its components down
cleanly only on SIGINT, so the launcher runs it in a session of its own, forwards SIGINT/SIGTERM to it, waits, and
checks that nothing of that session is left (killing leftovers only as a last resort).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from nexgen_etl.core.settings import PROJECT_ROOT
from nexgen_etl.dev.local_services import MotoServer, airflow_env, create_buckets, free_port, venv_bin
from nexgen_etl.dev.postgres import LocalPostgres
from nexgen_etl.dev.sample import SampleSpec, generate

DEFAULT_HOME = PROJECT_ROOT / ".nexgen" / "airflow"
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"  # SimpleAuthManager's default name in AIRFLOW_HOME
USERNAME = "admin"
# moto accepts any credentials; these are the demo's placeholders unless the caller's environment names others
LOCAL_KEY_ENV, LOCAL_SECRET_ENV = "NEXGEN_LOCAL_ACCESS_KEY", "NEXGEN_LOCAL_SECRET_KEY"
DB_ENV = "NEXGEN_AIRFLOW_DB"  # the metadata DB of `make airflow`: one of DB_CHOICES
DB_CHOICES = ("sqlite", "postgres")


def db_choice(value: str | None = None) -> str:
    """The metadata DB: `value` (--db), else NEXGEN_AIRFLOW_DB, else sqlite; one of DB_CHOICES."""
    value = value if value is not None else os.environ.get(DB_ENV)
    db = (value or "sqlite").strip().lower()
    if db not in DB_CHOICES:
        raise ValueError(f"{DB_ENV}={value!r}: the metadata DB is one of {', '.join(DB_CHOICES)}")
    return db


@dataclass(frozen=True)
class LocalAirflowConfig:
    home: Path = DEFAULT_HOME
    port: int = 8080  # 0: a free port
    sample: SampleSpec | None = SampleSpec(days=35)
    spark_master: str = "local[2]"
    db: str = "sqlite"  # one of DB_CHOICES
    ready_timeout: float = 600.0  # generous: on a busy 2-core machine standalone takes minutes to be ready
    stop_timeout: float = 90.0


def settings_variables(path: Path = PROJECT_ROOT / "airflow_settings.yaml") -> dict[str, str]:
    """The Variables of airflow_settings.yaml (what `astro dev start` loads), as AIRFLOW_VAR_* entries."""
    doc = yaml.safe_load(path.read_text()) or {}
    variables = (doc.get("airflow") or {}).get("variables") or []
    return {f"AIRFLOW_VAR_{v['variable_name'].upper()}": str(v["variable_value"]) for v in variables}


def standalone_env(home: Path, port: int, endpoint: str, access_key: str, secret_key: str,
                   spark_master: str = "local[2]", sql_alchemy_conn: str | None = None) -> dict[str, str]:
    """airflow_env (home, SQLite, connections) plus what standalone (or its components started one by one) needs: the
    API port, the execution API at that port (tasks call back into it), the LocalExecutor with parallelism for a
    2-core machine; `sql_alchemy_conn` (a Postgres URL) replaces SQLite as the metadata DB."""
    env = airflow_env(home, endpoint, access_key, secret_key, spark_master=spark_master)
    env.update(settings_variables())
    if sql_alchemy_conn:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = sql_alchemy_conn
    env.update({
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # a busy 2-core machine answers task → API calls slower than the 5 s default (seen failing a task try)
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        # the worker and triggerer log servers default to fixed ports (8793, 8794): free ones, so two instances
        # (or another project's Airflow) do not collide
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",  # standalone.log follows live
    })
    env.setdefault("NEXGEN_SHUFFLE_PARTITIONS", "4")
    return env


def session_processes(sid: int) -> list[int]:
    """PIDs of live (non-zombie) processes in session `sid`: everything standalone started, however deep."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(d.name))
    return found


def stop_session(proc: subprocess.Popen, timeout: float, grace: float = 15.0) -> list[int]:
    """SIGINT to the session leader (standalone), wait for it; then any process left in its session gets SIGTERM
    and, still there after `grace` seconds, SIGKILL. Returns the PIDs that had to be killed (empty: clean)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    left = _wait_gone(proc.pid, grace)
    killed = list(left)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if proc.poll() is None and sig is signal.SIGKILL:
            proc.wait()
        left = _wait_gone(proc.pid, grace)
        if not left:
            break
    proc.poll()
    return killed


def _wait_gone(sid: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def _check_port_free(port: int) -> None:
    """Standalone keeps running when its API server cannot bind: say so at once instead of timing out."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise RuntimeError(f"port {port} is in use; pick another: AIRFLOW_PORT=8090 make airflow "
                               f"(or nexgen-etl airflow --port 8090)") from None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as r:
            body = json.load(r)
    except (OSError, ValueError):
        return False
    return all((body.get(k) or {}).get("status") == "healthy" for k in ("metadatabase", "scheduler"))


def read_password(home: Path, username: str = USERNAME) -> str | None:
    try:
        return json.loads((home / PASSWORDS_FILE).read_text()).get(username)
    except (OSError, ValueError):
        return None


def upload_sample(client, spec: SampleSpec) -> int:
    """Generate the sample in a scratch folder and upload it to the raw bucket (the demo's upload)."""
    from nexgen_etl.dev.demo import _upload

    with tempfile.TemporaryDirectory(prefix="nexgen-sample-") as tmp:
        generate(tmp, spec)
        return _upload(client, Path(tmp))


class LocalAirflow:
    """moto + sample data (+ PostgreSQL) + `airflow standalone`, started in order and stopped in reverse, on signal
    or error."""

    def __init__(self, config: LocalAirflowConfig = LocalAirflowConfig()) -> None:
        db_choice(config.db)
        self.config = config
        self.port = config.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stopping = threading.Event()
        self.moto: MotoServer | None = None
        self.postgres: LocalPostgres | None = None
        self.standalone: subprocess.Popen | None = None

    def _on_signal(self, signum, _frame) -> None:
        if not self.stopping.is_set():
            print(f"\nairflow: {signal.Signals(signum).name} received, stopping Airflow (this takes a few seconds)…",
                  flush=True)
        self.stopping.set()

    def _fresh_home(self) -> Path:
        """moto keeps S3 in memory, so each start has empty buckets: the metadata DB (runs, the watermark Variable)
        and task logs go too. The generated login (password file) and airflow.cfg are kept."""
        home = self.config.home
        home.mkdir(parents=True, exist_ok=True)
        for p in home.glob("airflow.db*"):
            p.unlink()
        shutil.rmtree(home / "logs", ignore_errors=True)
        return home

    def start(self) -> None:
        from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret
        from nexgen_etl.core.storage import s3_client
        from nexgen_etl.dev.demo import DEMO_KEY, DEMO_SECRET

        _check_port_free(self.port)
        home = self._fresh_home()
        key = os.environ.get(LOCAL_KEY_ENV) or DEMO_KEY
        secret = os.environ.get(LOCAL_SECRET_ENV) or DEMO_SECRET
        self.moto = MotoServer(log_path=home / "moto.log").start()
        client = s3_client(S3Settings(endpoint_url=self.moto.url, path_style=True), AwsCredentials(key, Secret(secret)))
        create_buckets(client)
        if self.config.sample:
            n = upload_sample(client, self.config.sample)
            print(f"airflow: local S3 endpoint {self.moto.url} (moto) with {n} sample files in s3://nexgen-raw-data/",
                  flush=True)
        if self.stopping.is_set():  # Ctrl-C while the sample was uploading: do not start Airflow at all
            return
        db_url = None
        if self.config.db == "postgres":
            self.postgres = LocalPostgres(log_path=home / "postgres.log").start()
            db_url = self.postgres.url
            print(f"airflow: metadata DB PostgreSQL on 127.0.0.1:{self.postgres.port} (a fresh cluster, log "
                  f"{home / 'postgres.log'})", flush=True)
        env = standalone_env(home, self.port, self.moto.url, key, secret, self.config.spark_master, db_url)
        log = open(home / "standalone.log", "ab")
        self.standalone = subprocess.Popen([venv_bin("airflow"), "standalone"], env=env, stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        print(f"airflow: standalone started (pid {self.standalone.pid}), log {home / 'standalone.log'}", flush=True)

    def wait_ready(self) -> bool:
        deadline = time.monotonic() + self.config.ready_timeout
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if self.standalone.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with code {self.standalone.returncode}; "
                                   f"see {self.config.home / 'standalone.log'}")
            if _healthy(self.url) and read_password(self.config.home):
                return True
            self.stopping.wait(1)
        if not self.stopping.is_set():
            raise RuntimeError(f"Airflow was not healthy at {self.url} within {self.config.ready_timeout:.0f}s")
        return False

    def write_state(self) -> Path:
        """What a caller (the browser test) needs: URL, login file, and the PIDs whose end it can check."""
        path = self.config.home / "launcher.json"
        path.write_text(json.dumps({"url": self.url, "username": USERNAME,
                                    "passwords_file": str(self.config.home / PASSWORDS_FILE),
                                    "launcher_pid": os.getpid(), "standalone_pid": self.standalone.pid,
                                    "moto_pid": self.moto.proc.pid, "moto_url": self.moto.url, "db": self.config.db,
                                    "postgres_pid": self.postgres.proc.pid if self.postgres else None}))
        return path

    def stop(self) -> list[int]:
        killed: list[int] = []
        if self.standalone is not None:
            killed = stop_session(self.standalone, self.config.stop_timeout)
        if self.postgres is not None:  # after Airflow, whose components hold connections to it until they exit
            self.postgres.stop()
        if self.moto is not None:
            self.moto.stop()
        (self.config.home / "launcher.json").unlink(missing_ok=True)
        return killed

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            if self.standalone is not None and self.wait_ready():
                self.write_state()
                print(f"\nAirflow is ready: {self.url.replace('127.0.0.1', 'localhost')}\n"
                      f"  login: {USERNAME} / {read_password(self.config.home)}   "
                      f"(from {self.config.home / PASSWORDS_FILE})\n"
                      f"  DAG nexgen_etl_pipeline starts paused: un-pause it, or trigger it, in the UI.\n"
                      f"  metadata DB: {'PostgreSQL (thrown away at stop)' if self.postgres else 'SQLite'}\n"
                      f"  Ctrl-C stops Airflow{', PostgreSQL' if self.postgres else ''} and the local S3 endpoint.\n",
                      flush=True)
                while not self.stopping.wait(1):
                    if self.standalone.poll() is not None:
                        raise RuntimeError(f"airflow standalone exited with code {self.standalone.returncode}")
        finally:
            killed = self.stop()
            for s, h in previous.items():
                signal.signal(s, h)
        if killed:
            print(f"airflow: stopped; had to kill leftover processes {killed}", flush=True)
            return 1
        print("airflow: stopped cleanly, no process left", flush=True)
        return 0
