"""The benchmark's data: nexgen_etl.dev.sample's day-by-day generator (`generate_days`) at the bench's size.

50 stores × 200 SKUs × 730 days by default (≈ 7.4M rows with the duplicates, ≈ 270 MB), one CSV a day under
sales/YYYY/MM/DD/, 2 % dirty rows of the sample's kinds plus 1 % exact repeats and 1 % key duplicates.
Deterministic per seed; day i depends only on (seed, i), so the bench's "next day" is the day after the full set.

    BENCH_STORES=2 BENCH_SKUS=5 BENCH_DAYS=30 .venv/bin/python bench/gen.py OUT_DIR    (bench/run.py calls generate)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nexgen_etl.dev.sample import SampleSpec, generate_days


@dataclass(frozen=True)
class BenchSpec(SampleSpec):
    """SampleSpec with the bench's defaults."""

    stores: int = 50
    skus: int = 200
    days: int = 730
    seed: int = 42

    def tag(self) -> str:
        return f"{self.stores}x{self.skus}x{self.days}-s{self.seed}"


def generate(out_dir: str | Path, spec: BenchSpec, days: Iterable[int] | None = None) -> list[Path]:
    """Write days (default: all of spec.days) as out_dir/sales/YYYY/MM/DD/sales_YYYY-MM-DD.csv."""
    return generate_days(out_dir, spec, days)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--stores", type=int, default=int(os.environ.get("BENCH_STORES", 50)))
    ap.add_argument("--skus", type=int, default=int(os.environ.get("BENCH_SKUS", 200)))
    ap.add_argument("--days", type=int, default=int(os.environ.get("BENCH_DAYS", 730)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_SEED", 42)))
    args = ap.parse_args()
    spec = BenchSpec(stores=args.stores, skus=args.skus, days=args.days, seed=args.seed)
    t0 = time.monotonic()
    files = generate(args.out_dir, spec)
    seconds = time.monotonic() - t0
    rows = sum(sum(1 for _ in open(p, "rb")) - 1 for p in files)
    mb = sum(p.stat().st_size for p in files) / 1e6
    print(f"{spec.tag()}: {len(files)} files, {rows} rows, {mb:.1f} MB in {seconds:.2f} s under {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
