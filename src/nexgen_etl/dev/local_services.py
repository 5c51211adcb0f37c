"""Local stand-ins for the real services, used by the demo and the tests: moto's S3 server and an Airflow home."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from nexgen_etl.core.settings import PROJECT_ROOT

RAW_BUCKET = "nexgen-raw-data"
LOADING_BUCKET = "nexgen-loading-data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


class MotoServer:
    """moto's S3 server (a real HTTP endpoint) on a free localhost port, stopped on exit."""

    def __init__(self, port: int | None = None, log_path: str | Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "MotoServer":
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90  # a machine busy with Spark jobs can take a minute to start it
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with code {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not listen on {self.url} within 90s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def create_buckets(client, region: str = "us-east-1", buckets=(RAW_BUCKET, LOADING_BUCKET)) -> None:
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for b in buckets:
        if b in existing:
            continue
        if region == "us-east-1":
            client.create_bucket(Bucket=b)
        else:
            client.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": region})


def airflow_env(home: Path, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1",
                spark_master: str = "local[2]") -> dict[str, str]:
    """Environment for the Airflow CLI: project-local home, SQLite, the two connections as AIRFLOW_CONN_*."""
    home.mkdir(parents=True, exist_ok=True)
    aws = {"conn_type": "aws", "login": access_key, "password": secret_key,
           "extra": {"endpoint_url": endpoint, "region_name": region}}
    spark = {"conn_type": "spark", "host": spark_master}
    bin_dir = str(Path(sys.executable).parent)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRFLOW"))},
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(spark),
        "NEXGEN_HOME": str(PROJECT_ROOT),
    }
