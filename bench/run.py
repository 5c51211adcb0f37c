"""`make bench`: the transform job against a DuckDB yardstick, a small end-to-end batch, an incremental day.

Sections, interleaved and repeated (medians reported):
  a  full      the Spark transform job (spark-submit, local[2], as the pipeline submits it) on the whole set, read
               from local disk through LocalStore (no S3 in the way: this isolates the engine; (c) covers S3)
  b  duckdb    bench/duckdb_ref.py on the same CSVs (the yardstick)
  c  small     `nexgen-etl run` on one 100k-row file through a fresh moto S3 server: discover → commit, JVM start
               included (moto start and upload are not timed)
  d  inc       one new day file on top of the published full history (its transform job)
     alone     that same day file on an empty history (its transform job)
  (b_small: DuckDB on the 100k-row file, the yardstick for c.)
Then, unless BENCH_DISCOVERY_OBJECTS=0, bench/discovery.py (listing 100k objects against a watermark).

Size: BENCH_STORES × BENCH_SKUS × BENCH_DAYS (default 50 × 200 × 730 ≈ 7.3M rows), BENCH_REPS (default 3).
Writes the table to stdout and the same as JSON to bench/results/<date>-<host>.json (BENCH_RESULT overrides).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from gen import BenchSpec, generate  # noqa: E402
from measure import Sample, run_measured  # noqa: E402
from nexgen_etl.core.contract import load_contract  # noqa: E402
from nexgen_etl.core.layout import result_key  # noqa: E402
from nexgen_etl.core.settings import Settings  # noqa: E402
from nexgen_etl.core.state import FileStateStore  # noqa: E402
from nexgen_etl.core.storage import LocalStore  # noqa: E402
from nexgen_etl.run.pipeline import Pipeline  # noqa: E402
from nexgen_etl.spark.jars import spark_submit_binary  # noqa: E402
from nexgen_etl.spark.submit import input_bytes, submit_spec  # noqa: E402

PY = sys.executable
BENCH_KEY = "AKIABENCH0000000001"  # moto accepts any credentials; these are not real
BENCH_SECRET = "bench-not-a-real-secret"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def log(msg: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {msg}", flush=True)


# -- data ---------------------------------------------------------------------------------------------------------
def dataset(spec: BenchSpec, root: Path) -> dict:
    """Generate (once per size and seed) the full set plus the next day, and count rows and bytes."""
    meta_path = root / "meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.monotonic()
    raw = root / "raw"
    files = generate(raw, spec)
    # the incremental day, in its own root so that the full set (and DuckDB's glob) does not include it
    new_day = generate(root / "next", spec, days=range(spec.days, spec.days + 1))[0]
    small_spec = BenchSpec(stores=500, skus=200, days=1, seed=spec.seed + 1, start=date(2023, 6, 1))
    small = generate(root / "small", small_spec)[0]

    def rows(paths):
        return sum(sum(1 for _ in open(p, "rb")) - 1 for p in paths)

    meta = {
        "spec": {"stores": spec.stores, "skus": spec.skus, "days": spec.days, "seed": spec.seed, "dirt": spec.dirt,
                 "files": len(files), "layout": "one CSV per day: sales/YYYY/MM/DD/sales_YYYY-MM-DD.csv"},
        "full": {"rows": rows(files), "bytes": sum(p.stat().st_size for p in files)},
        "new_day": {"key": new_day.relative_to(root / "next").as_posix(), "rows": rows([new_day]),
                    "bytes": new_day.stat().st_size},
        "small": {"path": str(small), "key": small.relative_to(root / "small").as_posix(), "rows": rows([small]),
                  "bytes": small.stat().st_size},
        "generate_s": round(time.monotonic() - t0, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


# -- the Spark job as the pipeline submits it ---------------------------------------------------------------------
def pipeline_for(raw: Path, out: Path) -> Pipeline:
    settings = Settings(raw_url=str(raw) + "/", output_url=str(out) + "/", state_url=str(out) + ".state.json",
                        spark_master=os.environ.get("BENCH_MASTER", "local[2]"), spark_conf=extra_conf())
    return Pipeline(settings=settings, contract=load_contract(), raw=LocalStore(raw), out=LocalStore(out),
                    state=FileStateStore(settings.state_url))


def extra_conf() -> dict[str, str]:
    """Spark conf added to the product's for a bench run: BENCH_CONF (a JSON object), BENCH_EVENT_LOG (a folder)."""
    conf = dict(json.loads(os.environ.get("BENCH_CONF") or "{}"))
    if os.environ.get("BENCH_EVENT_LOG"):
        d = Path(os.environ["BENCH_EVENT_LOG"]).resolve()
        d.mkdir(parents=True, exist_ok=True)
        conf |= {"spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{d}"}
    return conf


def transform(p: Pipeline, plan) -> tuple[Sample, dict]:
    """spark-submit of the job on a frozen plan (what Pipeline.transform runs), measured."""
    spec = submit_spec(p.settings, batch_bytes=input_bytes(plan.objects))
    argv = spec.argv(["--plan", p.plan_uri(plan.batch_id)], spark_submit=spark_submit_binary())
    s = run_measured(argv, env={**os.environ, **spec.env})
    if s.returncode != 0:
        raise RuntimeError(f"spark-submit failed ({s.returncode}):\n{s.output[-4000:]}")
    result_path = Path(p.out.root) / result_key(plan.batch_id)
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    totals = {}
    for acc in result.get("accounting", {}).values():
        for k in ("rows_read", "rows_out", "rows_quarantined"):
            totals[k] = totals.get(k, 0) + acc[k]
    return s, {"job_timings": result.get("timings"), "status": result.get("status"), **totals}


# -- the CLI end to end through moto ------------------------------------------------------------------------------
def small_e2e(meta: dict, work: Path) -> tuple[Sample, dict]:
    from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret
    from nexgen_etl.core.storage import S3Store, s3_client
    from nexgen_etl.dev.local_services import MotoServer, create_buckets

    work.mkdir(parents=True, exist_ok=True)
    with MotoServer(log_path=work / "moto.log") as moto:
        creds = AwsCredentials(BENCH_KEY, Secret(BENCH_SECRET))
        s3 = s3_client(S3Settings(endpoint_url=moto.url, path_style=True), creds)
        create_buckets(s3)
        S3Store("nexgen-raw-data", "", s3).upload_file(meta["small"]["path"], meta["small"]["key"])
        state = work / f"state-{time.time_ns()}.json"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
               "AWS_ACCESS_KEY_ID": BENCH_KEY, "AWS_SECRET_ACCESS_KEY": BENCH_SECRET,
               "AWS_DEFAULT_REGION": "us-east-1", "NEXGEN_S3_ENDPOINT": moto.url, "NEXGEN_HOME": str(ROOT)}
        argv = [str(Path(PY).parent / "nexgen-etl"), "run", "--raw", "s3://nexgen-raw-data/",
                "--output", "s3://nexgen-loading-data/", "--state", str(state)]
        s = run_measured(argv, env=env)
    if s.returncode != 0:
        raise RuntimeError(f"nexgen-etl run failed ({s.returncode}):\n{s.output[-4000:]}")
    # the CLI prints its result as indented JSON last; log lines before it may hold braces too
    text = s.output if s.output.startswith("{\n") else s.output[s.output.rindex("\n{\n") + 1:]
    out = json.loads(text)
    if out.get("status") != "committed":
        raise RuntimeError(f"small batch did not commit: {out}")
    return s, {"totals": out.get("totals")}


def duckdb(raw: Path, out: Path) -> tuple[Sample, dict]:
    s = run_measured([PY, str(HERE / "duckdb_ref.py"), str(raw), str(out), "--threads", "2"])
    if s.returncode != 0:
        raise RuntimeError(f"duckdb reference failed:\n{s.output[-4000:]}")
    info = json.loads(s.output.strip().splitlines()[-1])
    return s, {"rows_read": info["rows_read"], "rows_out": info["rows_out"], "duckdb_timings": info["timings"]}


# -- the run ------------------------------------------------------------------------------------------------------
def main() -> int:
    spec = BenchSpec(stores=env_int("BENCH_STORES", 50), skus=env_int("BENCH_SKUS", 200),
                     days=env_int("BENCH_DAYS", 730), seed=env_int("BENCH_SEED", 42))
    reps = env_int("BENCH_REPS", 3)
    sections = set(os.environ.get("BENCH_SECTIONS", "a,b,c,d").split(","))
    data_root = Path(os.environ.get("BENCH_DATA", HERE / "data")) / spec.tag()
    log(f"data set {spec.tag()} under {data_root}")
    meta = dataset(spec, data_root)
    log(f"data: {meta['full']['rows']} rows, {meta['full']['bytes'] / 1e6:.1f} MB in {meta['spec']['files']} files "
        f"(generated in {meta.get('generate_s')} s)")
    raw = data_root / "raw"
    runs = data_root / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    out_hist, out_a, out_alone = runs / "hist", runs / "full", runs / "alone"
    p_hist = pipeline_for(raw, out_hist)
    full_objs = list(p_hist.raw.list())
    plan_hist = p_hist.extract(full_objs, 0)
    p_a = pipeline_for(raw, out_a)
    plan_a = p_a.extract(full_objs, 0)
    # the new day file comes from its own raw root; a plan names its raw location, the catalog is the output's
    p_inc = pipeline_for(data_root / "next", out_hist)
    new_obj = p_inc.raw.head(meta["new_day"]["key"])
    p_alone = pipeline_for(data_root / "next", out_alone)
    plan_alone = p_alone.extract([new_obj], 0)
    results: dict[str, list[dict]] = {k: [] for k in ("a_full", "b_duckdb", "b_small", "c_small_e2e",
                                                      "d_incremental", "d_alone")}

    def record(name: str, sample: Sample, info: dict) -> None:
        results[name].append({**sample.to_dict(), **info})
        log(f"{name}: wall {sample.wall_s:.1f}s cpu {sample.cpu_s:.1f}s peak {sample.peak_rss_mb:.0f} MB {info}")

    plan_inc = None
    for rep in range(reps):
        log(f"--- repetition {rep + 1}/{reps}")
        if "a" in sections or ("d" in sections and plan_inc is None):
            # the first full run builds the history that (d) runs on; later ones go to a never-published output
            p, plan = (p_hist, plan_hist) if plan_inc is None else (p_a, plan_a)
            s, info = transform(p, plan)
            if "a" in sections:
                record("a_full", s, info)
            if plan_inc is None and "d" in sections:
                t0 = time.monotonic()
                p_hist.load(plan_hist)
                log(f"published the full history in {time.monotonic() - t0:.1f}s")
                plan_inc = p_inc.extract([new_obj], 1)
        if "b" in sections:
            record("b_duckdb", *duckdb(raw, runs / "duck"))
        if "d" in sections:
            record("d_incremental", *transform(p_inc, plan_inc))
            record("d_alone", *transform(p_alone, plan_alone))
        if "c" in sections:
            record("c_small_e2e", *small_e2e(meta, runs / "small"))
            record("b_small", *duckdb(Path(meta["small"]["path"]).parent, runs / "duck_small"))

        save(spec, meta, reps, p_hist, results)  # after every repetition, so a stopped run keeps what it has

    doc = save(spec, meta, reps, p_hist, results)
    print_table(doc["summary"], meta)
    n_disc = env_int("BENCH_DISCOVERY_OBJECTS", 100_000)
    if n_disc > 0:
        import discovery as disc

        doc["discovery"] = disc.run(n_disc)
        disc.print_report(doc["discovery"])
        save(spec, meta, reps, p_hist, results, doc["discovery"])
    return 0


def spark_spec(p: Pipeline, batch_bytes: int) -> dict:
    spec = submit_spec(p.settings, batch_bytes=batch_bytes)
    return {"driver_memory": spec.driver_memory, "conf": {k: v for k, v in spec.conf.items() if "s3a" not in k}}


def result_path() -> Path:
    return Path(os.environ.get("BENCH_RESULT") or
                HERE / "results" / f"{date.today():%Y-%m-%d}-{socket.gethostname().split('.')[0][:20]}.json")


def save(spec: BenchSpec, meta: dict, reps: int, p_hist: Pipeline, results: dict, discovery: dict | None = None
         ) -> dict:
    summary = summarise(results, meta)
    doc = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(),
                    "shared": os.environ.get("BENCH_SHARED", "unknown"),
                    "note": os.environ.get("BENCH_NOTE", "")},
        "size": meta,
        "reps": reps,
        # as submitted for the full set (sized to its bytes); the small and one-day batches get their own sizing
        "spark": {"master": p_hist.settings.spark_master, **spark_spec(p_hist, meta["full"]["bytes"])},
        "summary": summary,
        "runs": results,
        **({"discovery": discovery} if discovery else {}),
    }
    out = result_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    log(f"wrote {out}")
    return doc


def summarise(results: dict[str, list[dict]], meta: dict) -> dict:
    volume = {"a_full": meta["full"], "b_duckdb": meta["full"], "c_small_e2e": meta["small"],
              "b_small": meta["small"], "d_incremental": meta["new_day"], "d_alone": meta["new_day"]}
    summary = {}
    for name, rs in results.items():
        if not rs:
            continue
        wall = statistics.median(r["wall_s"] for r in rs)
        summary[name] = {
            "n": len(rs),
            "wall_s": round(wall, 2),
            "wall_s_all": [r["wall_s"] for r in rs],
            "cpu_s": round(statistics.median(r["cpu_s"] for r in rs), 2),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rs), 0),
            "rows": volume[name]["rows"],
            "mb": round(volume[name]["bytes"] / 1e6, 2),
            "rows_per_s": round(volume[name]["rows"] / wall),
            "mb_per_s": round(volume[name]["bytes"] / 1e6 / wall, 2),
        }
    ratios = {"a_full": "b_duckdb", "c_small_e2e": "b_small", "d_incremental": "d_alone"}
    for name, ref in ratios.items():
        if name in summary and ref in summary:
            summary[name]["ratio"] = round(summary[name]["wall_s"] / summary[ref]["wall_s"], 2)
            summary[name]["ratio_to"] = ref
            if len(results[name]) == len(results[ref]):
                # the runs of one repetition are neighbours in time: their ratio is not moved by the machine
                # getting slower or faster between repetitions, which the ratio of the medians is
                paired = [round(a["wall_s"] / b["wall_s"], 2) for a, b in zip(results[name], results[ref])]
                summary[name]["ratio_paired"] = paired
                summary[name]["ratio_paired_median"] = round(statistics.median(paired), 2)
    return summary


TARGETS = {"a_full": "≤3.0× duckdb", "c_small_e2e": "≤20 s", "d_incremental": "≤2× alone"}


def print_table(summary: dict, meta: dict) -> None:
    s = meta["spec"]
    print(f"\nNexGen ETL bench: {s['stores']} stores × {s['skus']} SKUs × {s['days']} days = "
          f"{meta['full']['rows']} rows, "
          f"{meta['full']['bytes'] / 1e6:.0f} MB CSV in {s['files']} files; medians")
    head = f"{'run':<15}{'n':>3}{'wall s':>9}{'cpu s':>9}{'peak MB':>9}{'rows':>10}{'rows/s':>10}{'MB/s':>8}  ratio"
    print(head)
    print("-" * (len(head) + 56))
    for name, r in summary.items():
        ratio = f"{r['ratio']:.2f}× {r['ratio_to']}" if "ratio" in r else ""
        if "ratio_paired_median" in r:
            ratio += f" (per repetition: median {r['ratio_paired_median']:.2f}×)"
        target = TARGETS.get(name, "")
        print(f"{name:<15}{r['n']:>3}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{r['peak_rss_mb']:>9.0f}{r['rows']:>10}"
              f"{r['rows_per_s']:>10}{r['mb_per_s']:>8.1f}  {ratio}{'  (target ' + target + ')' if target else ''}")
    print()


if __name__ == "__main__":
    sys.exit(main())
