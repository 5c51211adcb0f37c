"""`nexgen-etl demo`: the whole pipeline on this machine — moto's S3 server, sample data, Airflow on SQLite.

Three runs of the DAG: the first drop of files, a second drop (new days plus a late file), and a run with nothing
new. Everything it starts, it stops.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

from nexgen_etl.core.settings import PROJECT_ROOT, AwsCredentials, S3Settings, Secret
from nexgen_etl.core.storage import S3Store, s3_client
from nexgen_etl.dev.local_services import LOADING_BUCKET, RAW_BUCKET, MotoServer, airflow_env, create_buckets, venv_bin
from nexgen_etl.dev.sample import SampleSpec, generate

DEMO_KEY = "demo-access-key"
DEMO_SECRET = "demo-secret-key-not-a-real-one"


def _upload(client, folder: Path) -> int:
    import logging

    from nexgen_etl.core.progress import Progress

    store = S3Store(RAW_BUCKET, "", client)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    progress = Progress(logging.getLogger("nexgen_etl"), f"upload to {store.url}: files", total=len(files))
    for p in files:
        store.upload_file(p, p.relative_to(folder).as_posix())
        progress.update(amount=p.stat().st_size)
    progress.done()
    return len(files)


def _airflow(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([venv_bin("airflow"), *args], env=env, check=check, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _dag_test(env: dict, label: str) -> None:
    print(f"\n== DAG run: {label} ==", flush=True)
    proc = _airflow(env, "dags", "test", "nexgen_etl_pipeline", check=False)
    interesting = [ln for ln in proc.stdout.splitlines()
                   if any(s in ln for s in ("nexgen_etl", "Marking task as", "state=", "No new files", "nothing to do",
                                            "Error", "error", "Traceback"))]
    print("\n".join(interesting[-25:]))
    if proc.returncode != 0 or "state=failed" in proc.stdout:
        print(proc.stdout[-6000:])
        raise SystemExit(f"demo: the DAG run '{label}' failed")


def run_demo(airflow: bool = True, keep: bool = False, days: int = 35) -> int:
    work = PROJECT_ROOT / ".nexgen" / "demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with MotoServer(log_path=work / "moto.log") as moto:
        print(f"local S3 endpoint (moto server): {moto.url}")
        s3 = S3Settings(endpoint_url=moto.url, region="us-east-1", path_style=True)
        creds = AwsCredentials(DEMO_KEY, Secret(DEMO_SECRET))
        client = s3_client(s3, creds)
        create_buckets(client)
        first = SampleSpec(days=days)
        generate(work / "drop1", first)
        print(f"uploaded {_upload(client, work / 'drop1')} raw files ({days} days) to s3://{RAW_BUCKET}/")
        env = airflow_env(work / "airflow", moto.url, DEMO_KEY, DEMO_SECRET)
        if airflow:
            print("airflow: migrating the metadata database (SQLite)…", flush=True)
            _airflow(env, "db", "migrate")
            _dag_test(env, "first drop")
        else:
            _cli_run(env)
        # second drop: 5 new days, plus a late, corrected file for a day already processed
        later = SampleSpec(days=5, start=first.start + timedelta(days=days), seed=8)
        generate(work / "drop2", later)
        late = SampleSpec(days=1, start=first.start + timedelta(days=3), seed=99, dirt=0)
        generate(work / "drop2", late)
        print(f"\nuploaded {_upload(client, work / 'drop2')} more raw files (5 new days + 1 corrected day)")
        if airflow:
            _dag_test(env, "second drop")
            _dag_test(env, "nothing new")
            out = _airflow(env, "variables", "get", "nexgen_etl_state").stdout
            wm = json.loads(out[out.index("{"):out.rindex("}") + 1])
            print(f"\nwatermark Variable nexgen_etl_state: version {wm['version']}, mark {wm['watermark']}")
        else:
            _cli_run(env)
            _cli_run(env)
        _show_output(client, work)
    if not keep:
        shutil.rmtree(work / "drop1", ignore_errors=True)
        shutil.rmtree(work / "drop2", ignore_errors=True)
    print("\ndemo finished; the local S3 endpoint is stopped.")
    return 0


def _cli_run(env: dict) -> None:
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    cli_env = {**env, "AWS_ACCESS_KEY_ID": aws["login"], "AWS_SECRET_ACCESS_KEY": aws["password"],
               "NEXGEN_S3_ENDPOINT": aws["extra"]["endpoint_url"],
               "NEXGEN_STATE_URL": str(Path(env["AIRFLOW_HOME"]).parent / "state.json")}
    subprocess.run([venv_bin("nexgen-etl"), "run"], env=cli_env, check=True)


def _show_output(client, work: Path) -> None:
    import io

    import pyarrow.parquet as pq

    from nexgen_etl.core import report as run_report
    from nexgen_etl.core.layout import report_key
    from nexgen_etl.core.publish import read_catalog, read_manifest
    from nexgen_etl.core.results import Manifest

    out = S3Store(LOADING_BUCKET, "", client)
    cat = read_catalog(out)
    files = cat.files("features")
    rows = sum(pq.read_metadata(io.BytesIO(out.get_bytes(f))).num_rows for f in files)
    print(f"\npublished: s3://{LOADING_BUCKET}/features/ — {len(cat.partitions('features'))} daily partitions, "
          f"{rows} feature rows, catalog v{cat.version}, {len(cat.batches)} batches")
    for b in cat.batches:
        m = read_manifest(out, b) or Manifest(b)
        print(f"  batch {b}: {len(m.inputs)} files, totals {m.totals}")
        print(f"    report: {out.url}{report_key(b, 'html')}")
    last = run_report.read_report(out, cat.batches[-1])
    if last is not None:
        page = work / "report-latest.html"
        page.write_text(run_report.render_html(last), encoding="utf-8")
        print(f"\nrun report of the last batch (open {page} in a browser for the charts):")
        print(run_report.render_text(last))
    sample = pq.read_table(io.BytesIO(out.get_bytes(files[-1]))).slice(0, 3).to_pylist()
    print("sample rows:")
    for r in sample:
        print("  ", {k: r[k] for k in list(r)[:12]})
