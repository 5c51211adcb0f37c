"""The same transform on a real Spark standalone cluster (a master and a worker on localhost, started with the
installed PySpark's spark-class): `nexgen-etl run --master spark://127.0.0.1:PORT` against the moto S3 server
gives the same output as a local[2] run."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from nexgen_etl.core.publish import read_catalog
from nexgen_etl.core.storage import S3Store
from nexgen_etl.dev.local_services import create_buckets, free_port
from nexgen_etl.dev.sample import SampleSpec, generate

BIN = Path(sys.executable).parent


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not listen on {port}")


@pytest.fixture()
def cluster(tmp_path_factory, aws_env):
    """Master + one worker (2 cores, 2 GiB). The worker's environment holds the S3 credentials, as a cluster
    node's instance identity would; executors inherit it. Nothing secret is passed through Spark conf."""
    logs = tmp_path_factory.mktemp("spark-cluster")
    port, web, wweb = free_port(), free_port(), free_port()
    from nexgen_etl.spark.jars import pyspark_home

    env = {**aws_env, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(logs), "SPARK_WORKER_DIR": str(logs / "work"),
           "SPARK_HOME": pyspark_home(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    master = subprocess.Popen([str(BIN / "spark-class"), "org.apache.spark.deploy.master.Master", "--host",
                               "127.0.0.1", "--port", str(port), "--webui-port", str(web)],
                              env=env, stdout=open(logs / "master.log", "wb"), stderr=subprocess.STDOUT)
    worker = None
    try:
        wait_port(port, master, "spark master")
        url = f"spark://127.0.0.1:{port}"
        worker = subprocess.Popen([str(BIN / "spark-class"), "org.apache.spark.deploy.worker.Worker", url,
                                   "--host", "127.0.0.1", "--cores", "2", "--memory", "2g", "--webui-port", str(wweb)],
                                  env=env, stdout=open(logs / "worker.log", "wb"), stderr=subprocess.STDOUT)
        wait_port(wweb, worker, "spark worker")
        time.sleep(2)  # registration with the master
        yield {"url": url, "logs": logs}
    finally:
        for p in (worker, master):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()


def run_cli(env, master, raw, out, state):
    proc = subprocess.run([str(BIN / "nexgen-etl"), "run", "--raw", f"s3://{raw}/", "--output", f"s3://{out}/",
                           "--state", str(state), "--master", master], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def features(s3, bucket) -> pd.DataFrame:
    store = S3Store(bucket, "", s3)
    files = read_catalog(store).files("features")
    df = pd.concat([pq.read_table(io.BytesIO(store.get_bytes(f))).to_pandas() for f in files])
    return df.sort_values(["store_id", "sku", "date"]).reset_index(drop=True)


def test_cluster_run_equals_local_run(cluster, s3, aws_env, tmp_path):
    sfx = uuid.uuid4().hex[:6]
    raw, local_out, cluster_out = f"sc-raw-{sfx}", f"sc-local-{sfx}", f"sc-cluster-{sfx}"
    create_buckets(s3, buckets=(raw, local_out, cluster_out))
    generate(tmp_path / "d", SampleSpec(stores=2, skus=3, days=12, seed=41))
    store = S3Store(raw, "", s3)
    for p in sorted((tmp_path / "d").rglob("*.csv")):
        store.upload_file(p, p.relative_to(tmp_path / "d").as_posix())
    env = {**aws_env, "SPARK_LOCAL_IP": "127.0.0.1", "NEXGEN_SHUFFLE_PARTITIONS": "4"}
    on_cluster = run_cli(env, cluster["url"], raw, cluster_out, tmp_path / "cluster.json")
    local = run_cli(env, "local[2]", raw, local_out, tmp_path / "local.json")
    assert on_cluster["status"] == local["status"] == "committed"
    # the application really ran on the cluster: the worker launched executors for it
    work = cluster["logs"] / "work"
    apps = [d for d in work.iterdir() if d.name.startswith("app-")] if work.exists() else []
    assert apps, "no application ran on the standalone worker"
    pd.testing.assert_frame_equal(features(s3, cluster_out), features(s3, local_out))
    assert on_cluster["totals"] == local["totals"]
