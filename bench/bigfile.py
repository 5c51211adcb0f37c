"""One batch over one big raw CSV (default 300 MB) through `nexgen-etl run` — spark-submit, local[2], the driver
heap capped (default 1g) — against a local moto S3 server. Prints the file size, rows, run time and the peak
resident memory of the whole process tree (CLI + spark-submit JVM + Python driver) and of the CLI process alone.

    .venv/bin/python bench/bigfile.py [--mb 300] [--driver-memory 1g] [--gzip]     (or: make bigfile)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from nexgen_etl.dev.bigfile import run_big_batch
from nexgen_etl.dev.local_services import MotoServer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=300, help="size of the CSV in MB (uncompressed)")
    ap.add_argument("--driver-memory", default="1g")
    ap.add_argument("--gzip", action="store_true", help="upload it as .csv.gz (verified by streaming at extract)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nexgen-bigfile-") as tmp, \
            MotoServer(log_path=Path(tmp) / "moto.log") as moto:
        m = run_big_batch(Path(tmp), args.mb, args.driver_memory, moto.url, "AKIABIGFILEBENCH", "bench-secret-x")
    print(json.dumps(m, indent=1))
    return 0 if m["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
