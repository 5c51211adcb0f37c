"""What a warm Spark would buy: the same transform jobs run cold (one spark-submit each, as the pipeline runs them)
and warm (one spark-submit, one session, the jobs one after the other: bench/warm_job.py). A measurement for
docs/performance.md, not a product path.

Sets (BENCH_WARM_SETS, default day,log):
  day  BENCH_WARM_RUNS (default 4) single days of the bench's full set (10,200 rows each), each its own batch on an
       empty output: different files and dates, the same shape (an hourly or daily schedule of one feed)
  log  the point-of-sale log of section e (1.18M lines) BENCH_WARM_RUNS times, each on its own empty output: the
       same files, so its warm runs also meet Spark's cache of generated code for identical plans
The cold runs are sized by the product (submit_spec with each batch's bytes); the warm driver is sized for the first
plan of its set, as a long-lived driver would be sized once. Per run: wall, CPU (driver JVM and Python), and the
warm driver's peak RSS. Writes bench/results/<date>-warm.json (BENCH_RESULT overrides).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402
from gen import BenchSpec  # noqa: E402
from measure import run_measured  # noqa: E402
from nexgen_etl.spark.jars import spark_submit_binary  # noqa: E402
from nexgen_etl.spark.submit import input_bytes, submit_spec  # noqa: E402


def day_plans(n: int, work: Path) -> list:
    """n single-day batches of the full set, each from its own raw folder (the day's file alone) to its own output."""
    spec = BenchSpec(stores=50, skus=200, days=730, seed=42)
    root = Path(os.environ.get("BENCH_DATA", HERE / "data")) / spec.tag()
    bench.dataset(spec, root)
    plans = []
    for i in range(n):
        day = date(2024, 1, 1 + i)
        key = f"sales/{day:%Y/%m/%d}/sales_{day}.csv"
        raw = work / f"day{i}" / "raw"
        (raw / key).parent.mkdir(parents=True)
        os.link(root / "raw" / key, raw / key)
        p = bench.pipeline_for(raw, work / f"day{i}" / "out")
        plans.append((p, p.extract(list(p.raw.list()), 0)))
    return plans


def log_plans(n: int, work: Path) -> list:
    m = bench.shape_dataset("log", 42)
    plans = []
    for i in range(n):
        p = bench.pipeline_for(Path(m["raw"]), work / f"log{i}" / "out", Path(m["contract"]))
        plans.append((p, p.extract(list(p.raw.list()), 0)))
    return plans


def cold(p, plan) -> dict:
    s, info = bench.transform(p, plan)
    return {"wall_s": s.wall_s, "cpu_s": s.cpu_s, "peak_rss_mb": s.peak_rss_mb, "status": info.get("status")}


def warm(plans: list) -> dict:
    p0, plan0 = plans[0]
    spec = submit_spec(p0.settings, batch_bytes=input_bytes(plan0.objects))
    spec = dataclasses.replace(spec, application=str(HERE / "warm_job.py"))
    argv = spec.argv([p.plan_uri(plan.batch_id) for p, plan in plans], spark_submit=spark_submit_binary())
    s = run_measured(argv, env={**os.environ, **spec.env})
    if s.returncode != 0:
        raise RuntimeError(f"warm driver failed ({s.returncode}):\n{s.output[-4000:]}")
    lines = [json.loads(x) for x in s.output.splitlines() if x.startswith("{")]
    return {"process": {"wall_s": s.wall_s, "cpu_s": s.cpu_s, "peak_rss_mb": s.peak_rss_mb},
            "session": lines[0], "runs": lines[1:]}


def main() -> int:
    n = int(os.environ.get("BENCH_WARM_RUNS", "4"))
    work = Path(os.environ.get("BENCH_DATA", HERE / "data")) / "warm"
    doc: dict = {"date": date.today().isoformat(), "load_avg_start": os.getloadavg(), "sets": {}}
    for name in os.environ.get("BENCH_WARM_SETS", "day,log").split(","):
        shutil.rmtree(work, ignore_errors=True)
        make_plans = {"day": day_plans, "log": log_plans}[name]
        cold_runs = [cold(p, plan) for p, plan in make_plans(n, work / "cold")]
        w = warm(make_plans(n, work / "warm"))
        statuses = {r["status"] for r in cold_runs} | {r["status"] for r in w["runs"]}
        if statuses != {"staged"}:
            raise RuntimeError(f"{name}: runs ended {statuses}")
        later = w["runs"][1:]
        doc["sets"][name] = {
            "cold": cold_runs, "warm": w,
            "cold_wall_median": statistics.median(r["wall_s"] for r in cold_runs),
            "cold_cpu_median": statistics.median(r["cpu_s"] for r in cold_runs),
            "warm_later_wall_median": statistics.median(r["wall_s"] for r in later) if later else None,
            "warm_later_cpu_median": statistics.median(r["cpu_s"] for r in later) if later else None,
        }
        s = doc["sets"][name]
        print(f"{name}: cold {s['cold_wall_median']:.1f} s ({s['cold_cpu_median']:.1f} CPU s) each; warm driver "
              f"start {w['session']['session_s']:.1f} s, first job {w['runs'][0]['wall_s']:.1f} s, later jobs "
              f"{s['warm_later_wall_median']:.1f} s ({s['warm_later_cpu_median']:.1f} CPU s), driver peak "
              f"{w['process']['peak_rss_mb']:.0f} MB", flush=True)
    doc["load_avg_end"] = os.getloadavg()
    out = Path(os.environ.get("BENCH_RESULT") or HERE / "results" / f"{date.today().isoformat()}-warm.json")
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
