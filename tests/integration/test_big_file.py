"""A big raw file keeps memory bounded: extract reads one range of a .csv and streams a .csv.gz through its check
(never the whole object in Python memory), and one batch over a big file runs through spark-submit with a capped
driver heap. The several-hundred-MB run is bench/bigfile.py (`make bigfile`), which prints the numbers."""

from __future__ import annotations

import tracemalloc
import uuid

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.headers import HEAD_BYTES
from nexgen_etl.core.settings import Settings
from nexgen_etl.core.state import FileStateStore
from nexgen_etl.core.storage import S3Store
from nexgen_etl.dev.bigfile import run_big_batch, write_big_csv
from nexgen_etl.dev.local_services import create_buckets
from nexgen_etl.run.pipeline import Pipeline
from tests.conftest import TEST_ACCESS_KEY, TEST_SECRET

MB = 1_000_000


def record_gets(client) -> list[dict]:
    """Every GetObject of this boto3 client: its key, requested Range and the bytes it answered with."""
    calls: list[dict] = []

    def before(params, **_):
        calls.append({"key": params["Key"], "range": params.get("Range"), "bytes": None})

    def after(http_response=None, parsed=None, **_):
        calls[-1]["bytes"] = int((parsed or {}).get("ContentLength") or 0)

    client.meta.events.register("provide-client-params.s3.GetObject", before)
    client.meta.events.register("after-call.s3.GetObject", after)
    return calls


def test_extract_reads_one_range_of_a_csv_and_streams_a_gzip(s3, tmp_path):
    """60 MB of CSV and 60 MB (uncompressed) of gzip: extract's header check fetches 64 KiB of the CSV, the gzip
    check streams the whole object in 1 MiB chunks; Python's allocations stay far below either file's size."""
    raw, out = f"bigx-raw-{uuid.uuid4().hex[:6]}", f"bigx-out-{uuid.uuid4().hex[:6]}"
    create_buckets(s3, buckets=(raw, out))
    for name, gz in (("sales/big.csv", False), ("sales/big.csv.gz", True)):
        write_big_csv(tmp_path / name, 60 * MB, gz=gz)
        s3.upload_file(str(tmp_path / name), raw, name)
        (tmp_path / name).unlink()
    p = Pipeline(settings=Settings(raw_url=f"s3://{raw}/", output_url=f"s3://{out}/"), contract=load_contract(),
                 raw=S3Store(raw, "", s3), out=S3Store(out, "", s3), state=FileStateStore(tmp_path / "state.json"))
    found, wm = p.discover()
    assert sorted(o.key for o in found.new) == ["sales/big.csv", "sales/big.csv.gz"]
    gets = record_gets(s3)
    tracemalloc.start()
    try:
        plan = p.extract(found.new, wm.version)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(plan.headers) == {"sales/big.csv", "sales/big.csv.gz"} and not plan.rejected
    csv_gets = [g for g in gets if g["key"] == "sales/big.csv"]
    assert csv_gets == [{"key": "sales/big.csv", "range": f"bytes=0-{HEAD_BYTES - 1}", "bytes": HEAD_BYTES}]
    gz_size = next(o.size for o in found.new if o.key.endswith(".gz"))
    gz_gets = [g for g in gets if g["key"] == "sales/big.csv.gz"]
    assert [g["range"] for g in gz_gets] == [f"bytes=0-{HEAD_BYTES - 1}", None]  # header, then the stream
    assert gz_gets[-1]["bytes"] == gz_size
    assert peak < 16 * MB, f"extract allocated {peak / MB:.1f} MB at its peak"


def test_one_big_file_batch_with_a_capped_driver_heap(moto_server, tmp_path):
    """One ~40 MB file (~1 M rows) as one batch through `nexgen-etl run`, the driver JVM capped at 512 MB: a job
    that collected the file into the driver would not fit. Every row is accounted for, and the resident memory
    of the whole process tree stays bounded."""
    m = run_big_batch(tmp_path, 40, "512m", moto_server.url, TEST_ACCESS_KEY, TEST_SECRET)
    print(f"big file: {m['bytes'] / MB:.0f} MB, {m['rows']} rows, {m['run_s']}s, peak RSS tree "
          f"{m['peak_rss_tree_mb']} MB, CLI {m['peak_rss_cli_mb']} MB")
    assert m["returncode"] == 0, m["stderr_tail"]
    assert m["totals"]["rows_read"] == m["rows"] and m["totals"]["rows_out"] == m["rows"]
    assert m["samples"] > 10
    # 512 MB heap + JVM overhead + the Python driver + the CLI; a whole-file read in Python or the driver would
    # add the file (and its object overhead, several times its size) on top
    assert m["peak_rss_tree_mb"] < 1600, m
    assert m["peak_rss_cli_mb"] < 250, m
