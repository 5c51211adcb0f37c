"""The CLI pipeline on the real stack: moto's S3 server, spark-submit with S3A, incremental runs vs a full run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from nexgen_etl.core.storage import S3Store
from nexgen_etl.dev.sample import SampleSpec, generate
from tests import reference

CLI = str(Path(sys.executable).parent / "nexgen-etl")
KEYS = ["store_id", "sku", "date"]


def cli(env, *args) -> dict | str:
    proc = subprocess.run([CLI, *args], env=env, text=True, capture_output=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def run(env, raw, out, state):
    proc = cli(env, "run", "--raw", f"s3://{raw}/", "--output", f"s3://{out}/", "--state", str(state))
    return json.loads(proc.stdout[proc.stdout.index("{"):]), proc


def upload(s3, bucket, folder: Path):
    store = S3Store(bucket, "", s3)
    for p in sorted(folder.rglob("*.csv")):
        store.upload_file(p, p.relative_to(folder).as_posix())


def published(s3, bucket) -> pd.DataFrame:
    from nexgen_etl.core.publish import read_catalog

    store = S3Store(bucket, "", s3)
    cat = read_catalog(store)
    tables = [pq.read_table(io.BytesIO(store.get_bytes(f))).to_pandas() for f in cat.files("features")]
    return pd.concat(tables, ignore_index=True).sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, moto_server, credentials):
    """drop 1 → run, run again (nothing new), drop 2 with new days + a late file + an overwritten file → run;
    then one full run of all files into a second output bucket."""
    import uuid

    from nexgen_etl.core.settings import S3Settings
    from nexgen_etl.core.storage import s3_client
    from nexgen_etl.dev.local_services import create_buckets

    s3 = s3_client(S3Settings(endpoint_url=moto_server.url, path_style=True), credentials)
    sfx = uuid.uuid4().hex[:6]
    raw, inc, full = f"raw-{sfx}", f"inc-{sfx}", f"full-{sfx}"
    create_buckets(s3, buckets=(raw, inc, full))
    tmp = tmp_path_factory.mktemp("scenario")
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp),
           "AWS_ACCESS_KEY_ID": credentials.access_key_id, "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key.reveal(),
           "AWS_DEFAULT_REGION": "us-east-1", "NEXGEN_S3_ENDPOINT": moto_server.url, "NEXGEN_SHUFFLE_PARTITIONS": "4"}
    generate(tmp / "d1", SampleSpec(stores=6, skus=10, days=45, dirt=0.05, seed=11))  # ~3000 rows with d2
    upload(s3, raw, tmp / "d1")
    r1, _ = run(env, raw, inc, tmp / "inc.json")
    r2, _ = run(env, raw, inc, tmp / "inc.json")
    generate(tmp / "d2", SampleSpec(stores=6, skus=10, days=4, start=date(2024, 2, 15), dirt=0.05, seed=12))
    # a corrected version of an already processed day (same key, new content) ...
    generate(tmp / "d2", SampleSpec(stores=6, skus=10, days=1, start=date(2024, 1, 5), dirt=0.0, seed=13))
    # ... and a late file for an earlier day under a new key
    generate(tmp / "late", SampleSpec(stores=6, skus=10, days=1, start=date(2024, 1, 3), dirt=0.0, seed=14,
                                      prefix="late"))
    upload(s3, raw, tmp / "d2")
    upload(s3, raw, tmp / "late")
    r3, _ = run(env, raw, inc, tmp / "inc.json")
    r4, _ = run(env, raw, full, tmp / "full.json")
    return {"s3": s3, "raw": raw, "inc": inc, "full": full, "runs": [r1, r2, r3, r4], "tmp": tmp, "env": env}


def test_runs_commit_then_report_nothing_new(scenario):
    r1, r2, r3, r4 = scenario["runs"]
    assert r1["status"] == "committed" and r3["status"] == "committed" and r4["status"] == "committed"
    assert r2["status"] == "nothing_new"


def test_incremental_output_equals_full_recompute(scenario):
    inc = published(scenario["s3"], scenario["inc"])
    full = published(scenario["s3"], scenario["full"])
    assert len(inc) > 0
    pd.testing.assert_frame_equal(inc, full)


def _dataset(s3, bucket, name) -> pd.DataFrame:
    from nexgen_etl.core.publish import read_catalog

    store = S3Store(bucket, "", s3)
    frames = [pq.read_table(io.BytesIO(store.get_bytes(f))).to_pandas() for f in read_catalog(store).files(name)]
    df = pd.concat(frames, ignore_index=True)
    df = df.drop(columns=[c for c in ("_row_id",) if c in df.columns])  # a row's id within its batch's read
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def test_a_correction_replaces_clean_and_quarantine_rows_too(scenario):
    """The corrected day's first version had rejected rows; after the correction, clean and quarantine (not only the
    features) equal a full run over the latest versions.

    Catches: a correction that leaves its old version's quarantine rows (or clean rows) behind (tried: publishing the
    quarantine without replacing the file's partition left the first version's rejects)."""
    s3 = scenario["s3"]
    key = "sales/2024/01/05/sales_2024-01-05.csv"
    out = S3Store(scenario["inc"], "", s3)
    manifests = sorted((json.loads(out.get_bytes(o.key)) for o in out.list("_manifests/")),
                       key=lambda m: m["published_at"])
    assert manifests[0]["accounting"][key]["rows_quarantined"] > 0, "the first version must have had rejects"
    assert manifests[1]["accounting"][key]["rows_quarantined"] == 0
    for name in ("clean", "quarantine"):
        pd.testing.assert_frame_equal(_dataset(s3, scenario["inc"], name), _dataset(s3, scenario["full"], name),
                                      obj=name)


def test_published_schemas_name_every_column_and_the_partition_as_a_string(scenario):
    from nexgen_etl.core.contract import load_contract
    from nexgen_etl.core.publish import read_catalog
    from nexgen_etl.spark.transform.features import output_columns

    store = S3Store(scenario["inc"], "", scenario["s3"])
    feats = json.loads(store.get_bytes("features/_schema.json"))
    assert [f["name"] for f in feats["fields"]] == output_columns(load_contract())
    types = {f["name"]: f["type"] for f in feats["fields"]}
    assert types["period_date"] == "string" and types["date"] == "date" and types["units_sold_lag_7"] == "double"
    clean = {f["name"]: f["type"] for f in json.loads(store.get_bytes("clean/_schema.json"))["fields"]}
    assert clean["period_date"] == "string" and clean["_source_lm"] == "timestamp"
    # what the folders hold: the date as yyyy-MM-dd
    assert any(f.startswith("_published/features/period_date=2024-02-18/") for f in read_catalog(store).files("features"))


def test_one_row_per_entity_and_day(scenario):
    df = published(scenario["s3"], scenario["inc"])
    assert not df.duplicated(KEYS).any()


def test_features_match_independent_reference(scenario):
    s3, raw = scenario["s3"], scenario["raw"]
    store = S3Store(raw, "", s3)
    files = [(o.key, o.last_modified, store.get_bytes(o.key)) for o in store.list()]
    ref = reference.features(reference.clean_rows(files)).sort_values(KEYS).reset_index(drop=True)
    got = published(s3, scenario["inc"])
    assert len(got) == len(ref) and len(ref) > 2500
    assert (got[["store_id", "sku"]].to_numpy() == ref[["store_id", "sku"]].to_numpy()).all()
    for col in [c for c in ref.columns if c.startswith(("units_sold_", "unit_price_"))] + ["units_sold"]:
        a, b = got[col].astype(float).to_numpy(), ref[col].astype(float).to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        assert np.allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=0, atol=1e-9), col


def test_every_row_is_accounted_for(scenario):
    s3 = scenario["s3"]
    out = S3Store(scenario["inc"], "", s3)
    raw = S3Store(scenario["raw"], "", s3)
    manifests = [json.loads(out.get_bytes(o.key)) for o in out.list("_manifests/")]
    assert len(manifests) == 2
    for m in manifests:
        for inp in m["inputs"]:
            acc = m["accounting"][inp["key"]]
            assert acc["balanced"]
            assert acc["rows_read"] == acc["rows_out"] + acc["rows_quarantined"] + acc["duplicates_exact"] + \
                acc["duplicates_key"] + acc["rows_merged"]
    # rows read of the latest version of every key = data lines in that file
    latest = {}
    for m in sorted(manifests, key=lambda m: m["published_at"]):
        for inp in m["inputs"]:
            latest[inp["key"]] = m["accounting"][inp["key"]]["rows_read"]
    for key, n in latest.items():
        lines = raw.get_bytes(key).decode().strip("\n").split("\n")
        assert n == len(lines) - 1, key
    assert sum(m["totals"]["rows_quarantined"] for m in manifests) > 0


def test_status_shows_the_watermark(scenario):
    env, tmp = scenario["env"], scenario["tmp"]
    proc = cli(env, "status", "--raw", f"s3://{scenario['raw']}/", "--output", f"s3://{scenario['inc']}/",
               "--state", str(tmp / "inc.json"))
    assert "version 2" in proc.stdout and "recent batches" in proc.stdout
