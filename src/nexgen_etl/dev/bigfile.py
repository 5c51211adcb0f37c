"""A big raw CSV made fast (one block of rows, repeated with a new store id each time) and one batch over it with
the peak resident memory of the process tree (nexgen_etl.dev.measure.PeakRss): shared by
tests/integration/test_big_file.py (CI size) and bench/bigfile.py (several hundred MB)."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np

from nexgen_etl.dev.measure import PeakRss

HEADER = b"date,store_id,sku,units_sold,unit_price,promo\n"


def make_block(days: int = 30, skus: int = 1000, seed: int = 1) -> bytes:
    """days x skus rows of one store (its id is the placeholder `@STORE@`), vectorized."""
    rng = np.random.default_rng(seed)
    dates = np.datetime_as_string(np.datetime64("2024-01-01") + np.arange(days), unit="D")
    d = np.repeat(dates, skus)
    sku = np.tile(np.char.add("SKU-", np.char.zfill(np.arange(1, skus + 1).astype(str), 5)), days)
    units = rng.poisson(12, days * skus).astype(str)
    price = np.char.mod("%.2f", np.round(rng.uniform(1.5, 60.0, days * skus), 2))
    promo = (rng.random(days * skus) < 0.08).astype(int).astype(str)
    cols = [d, np.full(d.shape, "@STORE@"), sku, units, price, promo]
    lines = cols[0]
    for c in cols[1:]:
        lines = np.char.add(np.char.add(lines, ","), c)
    return ("\n".join(lines.tolist()) + "\n").encode()


def write_big_csv(path: Path, target_bytes: int, days: int = 30, skus: int = 1000, gz: bool = False) -> int:
    """A CSV of about target_bytes (uncompressed) with unique (store, sku, date) rows; returns the row count."""
    block = make_block(days, skus)
    per_block = days * skus
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = (lambda p: gzip.open(p, "wb", compresslevel=1)) if gz else (lambda p: open(p, "wb"))
    rows = 0
    with opener(path) as fh:
        fh.write(HEADER)
        written, store = len(HEADER), 0
        while written < target_bytes:
            store += 1
            chunk = block.replace(b"@STORE@", b"S%05d" % store)
            fh.write(chunk)
            written += len(chunk)
            rows += per_block
    return rows


def run_sampled(argv: list[str], env: dict[str, str],
                timeout: float) -> tuple[subprocess.CompletedProcess, PeakRss, float]:
    """Run a command while sampling its process tree's memory; (result, peaks, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRss(proc.pid) as peak:
        out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), peak, time.monotonic() - t0


def run_big_batch(workdir: Path, size_mb: float, driver_memory: str, endpoint: str, access_key: str,
                  secret: str, gz: bool = False) -> dict:
    """Write one big CSV, upload it to fresh buckets at `endpoint`, run `nexgen-etl run` (spark-submit, local[2],
    the given driver memory) over it, and return what was measured."""
    import json
    import sys
    import uuid

    from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret
    from nexgen_etl.core.storage import s3_client
    from nexgen_etl.dev.local_services import create_buckets

    name = "sales/big/big.csv" + (".gz" if gz else "")
    path = workdir / name
    t0 = time.monotonic()
    rows = write_big_csv(path, int(size_mb * 1e6), gz=gz)
    made = time.monotonic() - t0
    s3 = s3_client(S3Settings(endpoint_url=endpoint, path_style=True), AwsCredentials(access_key, Secret(secret)))
    raw, out = f"big-raw-{uuid.uuid4().hex[:6]}", f"big-out-{uuid.uuid4().hex[:6]}"
    create_buckets(s3, buckets=(raw, out))
    s3.upload_file(str(path), raw, name)
    size = path.stat().st_size
    path.unlink()  # the bucket holds it now
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1",
                "NEXGEN_S3_ENDPOINT": endpoint, "NEXGEN_DRIVER_MEMORY": driver_memory,
                "NEXGEN_STATE_URL": str(workdir / "state.json")})
    cli = str(Path(sys.executable).parent / "nexgen-etl")
    proc, peak, seconds = run_sampled([cli, "run", "--raw", f"s3://{raw}/", "--output", f"s3://{out}/"], env,
                                      timeout=3600)
    result = {}
    if proc.returncode == 0:
        result = json.loads(proc.stdout[proc.stdout.index("{"):])
    return {"file": name, "bytes": size, "rows": rows, "generate_s": round(made, 1), "run_s": round(seconds, 1),
            "driver_memory": driver_memory, "peak_rss_tree_mb": round(peak.tree_peak / 1e6),
            "peak_rss_cli_mb": round(peak.root_peak / 1e6), "samples": peak.samples, "returncode": proc.returncode,
            "totals": result.get("totals"), "stderr_tail": proc.stderr[-3000:] if proc.returncode else "",
            # the cause is usually far above the tail (Spark logs the failed task, then pages of retries)
            "error_lines": [ln for ln in proc.stderr.splitlines() if re.search(r"Exception|Error:", ln)][:15]
            if proc.returncode else [],
            "raw_bucket": raw, "output_bucket": out}
