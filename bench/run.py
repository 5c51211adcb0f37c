"""`make bench`: the transform job against DuckDB and Polars yardsticks, a small end-to-end batch, an incremental day.

Sections, interleaved and repeated (medians reported):
  a  full      the Spark transform job (spark-submit, local[2], as the pipeline submits it) on the whole set, read
               from local disk through LocalStore (no S3 in the way: this isolates the engine; (c) covers S3)
  b  duckdb    bench/duckdb_ref.py on the same CSVs (the yardstick), then bench/polars_ref.py (b_polars, the same
               rules in Polars' lazy API, 2 threads)
  c  small     `nexgen-etl run` on one 100k-row file through a fresh moto S3 server: discover → commit, JVM start
               included (moto start and upload are not timed)
  d  inc       one new day file on top of the published full history (its transform job)
     alone     that same day file on an empty history (its transform job)
  (b_small, b_small_polars: DuckDB and Polars on the 100k-row file, the yardsticks for c.)
  floor        after the job in a and e-g (a_floor, e_log_floor, …): bench/spark_floor.py under the same
               spark-submit and conf, reading the same CSVs as strings and writing them once as Parquet by day: the
               floor under the job on this machine
  e  log       the transform job on a point-of-sale log (bench/shapes.py "log": ≥1M lines at the minute, several
               per store, product and day, `keep`, rolled up to days), then e_log_duckdb and e_log_polars
  f  sensors   the job on 15-minute readings of 200 sensors over 60 days with gaps, rolled up to hours, `fill_null`
  g  monthly   the job on 5,000 monthly series × 120 months, the time from Year/Month columns, lags [1, 3, 12]
  h  tiny      `nexgen-etl run --contract` on one file of a few hundred sensor readings through a fresh moto S3
               server, like c; h_tiny_duckdb and h_tiny_polars on the same file
  (e-h: the shapes' yardsticks are bench/shapes.py's DuckDB and Polars implementations of their contracts.)
After b in every repetition the outputs are checked (check_outputs): Polars' and, when a ran in the same
repetition, the job's against DuckDB's: row counts of clean (the job's less its key duplicates, which its clean
keeps), features and quarantine, the quarantine by first reason, the day partitions, and a checksum of every feature
column (nulls and NaNs exactly; sum and sum of magnitudes within 1e-6 relative). After c, Polars' small run against
DuckDB's. After each of e-h, the job's output (for h: as published to moto) and Polars' against DuckDB's
(shapes.compare: rows of features, clean and quarantine, the quarantine by first reason, the partitions, the job's
rows read and out, and per feature column its nulls and sum). A mismatch stops the bench with the differences (the
JSON written so far keeps them under "checks"). Every run of e-h records the load averages (1, 5, 15 min) at its
start and end (load_avg_start, load_avg_end), the JSON the machine's at the bench's start and end: it may be shared.
Then, unless BENCH_DISCOVERY_OBJECTS=0, bench/discovery.py (listing 100k objects against a watermark).

Size: BENCH_STORES × BENCH_SKUS × BENCH_DAYS (default 50 × 200 × 730 ≈ 7.3M rows), BENCH_REPS (default 3);
the shapes' sizes by SHAPE_SIZE_ENV below (e.g. BENCH_LOG_STORES). BENCH_SECTIONS (default a,b,c,d) selects the
sections, e.g. e,f,g,h for the shapes alone (the full set is then not generated).
Writes the table to stdout and the same as JSON to bench/results/<date>-<host>.json (BENCH_RESULT overrides).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import statistics
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import shapes  # noqa: E402
from gen import BenchSpec, generate  # noqa: E402
from measure import Sample, run_measured  # noqa: E402
from nexgen_etl.core.contract import load_contract  # noqa: E402
from nexgen_etl.core.layout import DATASETS, result_key, staged_dataset_dir  # noqa: E402
from nexgen_etl.core.settings import Settings  # noqa: E402
from nexgen_etl.core.state import FileStateStore  # noqa: E402
from nexgen_etl.core.storage import LocalStore  # noqa: E402
from nexgen_etl.run.pipeline import Pipeline  # noqa: E402
from nexgen_etl.spark.jars import spark_submit_binary  # noqa: E402
from nexgen_etl.spark.submit import input_bytes, submit_spec  # noqa: E402

PY = sys.executable
LOAD_AT_START = os.getloadavg()  # the machine may be shared: its load when the bench started
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
def pipeline_for(raw: Path, out: Path, contract: Path | None = None) -> Pipeline:
    settings = Settings(raw_url=str(raw) + "/", output_url=str(out) + "/", state_url=str(out) + ".state.json",
                        spark_master=os.environ.get("BENCH_MASTER", "local[2]"), spark_conf=extra_conf())
    return Pipeline(settings=settings, contract=load_contract(contract), raw=LocalStore(raw), out=LocalStore(out),
                    state=FileStateStore(settings.state_url))


def extra_conf() -> dict[str, str]:
    """Spark conf added to the product's for a bench run: BENCH_CONF (a JSON object), BENCH_EVENT_LOG (a folder)."""
    conf = dict(json.loads(os.environ.get("BENCH_CONF") or "{}"))
    if os.environ.get("BENCH_EVENT_LOG"):
        d = Path(os.environ["BENCH_EVENT_LOG"]).resolve()
        d.mkdir(parents=True, exist_ok=True)
        conf |= {"spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{d}"}
    return conf


def submit_measured(p: Pipeline, plan, args: list[str], application: str | None = None) -> Sample:
    """spark-submit with the conf the product gives the plan's files (sized to them), measured; application (a
    script) in place of the transform job's. A failed submit stops the bench with its output's tail."""
    spec = submit_spec(p.settings, batch_bytes=input_bytes(plan.objects))
    if application is not None:
        spec = dataclasses.replace(spec, application=application)
    s = run_measured(spec.argv(args, spark_submit=spark_submit_binary()), env={**os.environ, **spec.env})
    if s.returncode != 0:
        raise RuntimeError(f"spark-submit of {spec.application} failed ({s.returncode}):\n{s.output[-4000:]}")
    return s


def transform(p: Pipeline, plan) -> tuple[Sample, dict]:
    """spark-submit of the job on a frozen plan (what Pipeline.transform runs), measured."""
    s = submit_measured(p, plan, ["--plan", p.plan_uri(plan.batch_id)])
    result_path = Path(p.out.root) / result_key(plan.batch_id)
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    totals = {}
    for acc in result.get("accounting", {}).values():
        for k in ("rows_read", "rows_out", "rows_quarantined", "duplicates_exact", "duplicates_key", "rows_merged"):
            totals[k] = totals.get(k, 0) + acc[k]
    return s, {"job_timings": result.get("timings"), "status": result.get("status"), **totals}


def spark_floor(p: Pipeline, plan, out: Path, rows: int) -> tuple[Sample, dict]:
    """bench/spark_floor.py under the spark-submit and conf the job gets for the plan's files: its CSVs read
    as strings and written once as Parquet, by day of the time column when it is one raw column (else unpartitioned).
    What Spark pays to read these files and write their rows once by day: the floor under the job on this machine.
    Checks (untimed) that it wrote the files' rows."""
    files = [str(Path(p.raw.root) / o.key) for o in plan.objects]
    raw_time = p.contract.column(p.contract.time_column).raw_names
    shutil.rmtree(out, ignore_errors=True)
    day = raw_time[0] if len(raw_time) == 1 else "-"
    s = submit_measured(p, plan, [out.as_uri(), day, p.contract.csv.delimiter, *files],
                        application=str(HERE / "spark_floor.py"))
    written = sum(pq.ParquetFile(f).metadata.num_rows for f in out.rglob("*.parquet"))  # not timed
    if written != rows:
        raise RuntimeError(f"spark_floor.py wrote {written} rows of the files' {rows}")
    return s, {"by_day_of": None if day == "-" else day, "rows_written": written}


# -- the CLI end to end through moto ------------------------------------------------------------------------------
def small_e2e(meta: dict, work: Path) -> tuple[Sample, dict]:
    return cli_e2e([(Path(meta["small"]["path"]), meta["small"]["key"])], work)


def cli_e2e(files: list[tuple[Path, str]], work: Path, contract: str | None = None,
            fetch_to: Path | None = None) -> tuple[Sample, dict]:
    """`nexgen-etl run` (with --contract when given) on files uploaded as (path, key) to a fresh moto S3 server.
    fetch_to: a folder to download the published Parquet files (features/, clean/, quarantine/) to before moto
    stops; the batch's manifest then gives the step timings."""
    from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret
    from nexgen_etl.core.storage import S3Store, s3_client
    from nexgen_etl.dev.local_services import MotoServer, create_buckets

    work.mkdir(parents=True, exist_ok=True)
    extra: dict = {}
    with MotoServer(log_path=work / "moto.log") as moto:
        creds = AwsCredentials(BENCH_KEY, Secret(BENCH_SECRET))
        s3 = s3_client(S3Settings(endpoint_url=moto.url, path_style=True), creds)
        create_buckets(s3)
        for path, key in files:
            S3Store("nexgen-raw-data", "", s3).upload_file(path, key)
        state = work / f"state-{time.time_ns()}.json"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
               "AWS_ACCESS_KEY_ID": BENCH_KEY, "AWS_SECRET_ACCESS_KEY": BENCH_SECRET,
               "AWS_DEFAULT_REGION": "us-east-1", "NEXGEN_S3_ENDPOINT": moto.url, "NEXGEN_HOME": str(ROOT)}
        argv = [str(Path(PY).parent / "nexgen-etl"), "run", "--raw", "s3://nexgen-raw-data/",
                "--output", "s3://nexgen-loading-data/", "--state", str(state),
                *(["--contract", contract] if contract else [])]
        s = run_measured(argv, env=env)
        if s.returncode == 0 and fetch_to is not None:
            out = S3Store("nexgen-loading-data", "", s3)
            shutil.rmtree(fetch_to, ignore_errors=True)
            for ds in DATASETS:
                for o in out.list(f"{ds}/"):
                    if o.key.endswith(".parquet"):
                        (fetch_to / o.key).parent.mkdir(parents=True, exist_ok=True)
                        (fetch_to / o.key).write_bytes(out.get_bytes(o.key))
            manifests = [json.loads(out.get_bytes(o.key)) for o in out.list("_manifests/")]
            extra["job_timings"] = manifests[0].get("timings") if len(manifests) == 1 else None
    if s.returncode != 0:
        raise RuntimeError(f"nexgen-etl run failed ({s.returncode}):\n{s.output[-4000:]}")
    # the CLI prints its result as indented JSON last; log lines before it may hold braces too
    text = s.output if s.output.startswith("{\n") else s.output[s.output.rindex("\n{\n") + 1:]
    out = json.loads(text)
    if out.get("status") != "committed":
        raise RuntimeError(f"the batch did not commit: {out}")
    return s, {"totals": out.get("totals"), **extra}


def yardstick(engine: str, raw: Path, out: Path) -> tuple[Sample, dict]:
    """bench/<engine>_ref.py (duckdb or polars) on the CSVs under raw, 2 threads, its output under out."""
    s = run_measured([PY, str(HERE / f"{engine}_ref.py"), str(raw), str(out), "--threads", "2"])
    if s.returncode != 0:
        raise RuntimeError(f"{engine} reference failed:\n{s.output[-4000:]}")
    info = json.loads(s.output.strip().splitlines()[-1])
    return s, {"rows_read": info["rows_read"], "rows_out": info["rows_out"], f"{engine}_timings": info["timings"]}


# -- are the outputs the same? ------------------------------------------------------------------------------------
REL_TOL = 1e-6  # sums of doubles added in another order, and the last bits of means and standard deviations


def output_summary(features: Path, clean: Path, quarantine: Path) -> dict:
    """What check_outputs compares of one run's output: the row counts of features, clean and quarantine (a folder
    of Parquet files or one file), the day partitions of features and clean, the quarantine's rows by first reason,
    and per feature column (all but the partition column) its nulls and: for a number, date (days since
    1970-01-01) or boolean (0/1) the sum and the sum of magnitudes of its values (NaNs counted apart); for a
    string its distinct values and the sum of their rows' hashes."""
    import duckdb

    def scan(path: Path) -> str:
        return f"read_parquet('{path if path.suffix == '.parquet' else path / '**' / '*.parquet'}')"

    def partitions(root: Path) -> list[str]:
        return sorted(d.name for d in root.iterdir() if d.is_dir() and d.name.startswith("period_date="))

    with duckdb.connect(config={"threads": 2}) as con:
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {scan(features)}").fetchall()}
        columns = [c for c in types if c != "period_date"]
        exprs: dict[tuple[str, str], str] = {}
        for c in columns:
            q, t = f'"{c}"', types[c]
            exprs[c, "nulls"] = f"count(*) - count({q})"
            if t == "VARCHAR":
                exprs[c, "distinct"] = f"count(DISTINCT {q})"
                exprs[c, "hash_sum"] = f"sum(hash({q}))"
                continue
            if t in ("FLOAT", "DOUBLE"):
                exprs[c, "nans"] = f"count(*) FILTER (WHERE isnan({q}))"
                v = f"CASE WHEN NOT isnan({q}) THEN {q} END"
            else:
                v = f"date_diff('day', DATE '1970-01-01', {q})" if t == "DATE" else f"{q}::DOUBLE"
            exprs[c, "sum"], exprs[c, "abs"] = f"sum({v})::DOUBLE", f"sum(abs({v}))::DOUBLE"
        row = con.execute(f"SELECT count(*), {', '.join(exprs.values())} FROM {scan(features)}").fetchone()
        stats: dict[str, dict] = {c: {} for c in columns}
        for (c, k), v in zip(exprs, row[1:]):
            stats[c][k] = int(v) if k == "hash_sum" else v
        rows = {"features": row[0]}
        for name, path in (("clean", clean), ("quarantine", quarantine)):
            rows[name] = con.execute(f"SELECT count(*) FROM {scan(path)}").fetchone()[0]
        reasons = con.execute(f"SELECT reason, count(*) FROM {scan(quarantine)} GROUP BY ALL ORDER BY 1").fetchall()
    return {"rows": rows, "partitions": {"features": partitions(features), "clean": partitions(clean)},
            "quarantine_reasons": dict(reasons), "features": stats}


def yardstick_output(out: Path) -> dict:
    return output_summary(out / "features", out / "clean", out / "quarantine.parquet")


def job_output(p: Pipeline, plan, info: dict) -> dict:
    """The job's staged output. Its clean dataset keeps the key duplicates (they are left out of the features
    only, docs/contract.md), the yardsticks' keeps the newest row per key and day: the job's clean rows are compared
    less its duplicates_key."""
    staged = Path(p.out.root)
    summary = output_summary(*(staged / staged_dataset_dir(plan.batch_id, ds) for ds in DATASETS))
    summary["rows"]["clean"] -= info.get("duplicates_key", 0)
    return summary


def close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= REL_TOL * scale + 1e-9


def compare_outputs(ref_name: str, ref: dict, name: str, other: dict) -> list[str]:
    """How `other`'s output differs from `ref`'s (empty: the same)."""
    diffs = []
    for ds, n in ref["rows"].items():
        if other["rows"][ds] != n:
            diffs.append(f"{name}: {ds} has {other['rows'][ds]} rows, {ref_name} {n}")
    for ds, parts in ref["partitions"].items():
        if other["partitions"][ds] != parts:
            only = sorted(set(parts) ^ set(other["partitions"][ds]))
            diffs.append(f"{name}: {ds} partitions differ from {ref_name}'s ({len(only)} in one only: {only[:3]}…)")
    if other["quarantine_reasons"] != ref["quarantine_reasons"]:
        diffs.append(f"{name}: quarantine by reason {other['quarantine_reasons']}, {ref_name} "
                     f"{ref['quarantine_reasons']}")
    for c, r in ref["features"].items():
        o = other["features"].get(c)
        if o is None:
            diffs.append(f"{name}: no feature column {c}")
            continue
        for k in r.keys() - {"sum", "abs"}:  # nulls, NaNs, a string's distinct values and hashes: exactly
            if o.get(k) != r[k]:
                diffs.append(f"{name}: {c} {k} {o.get(k)!r}, {ref_name} {r[k]!r}")
        if "sum" in r:
            scale = max(abs(r["abs"] or 0), abs(o.get("abs") or 0))
            for k in ("sum", "abs"):
                if (o.get(k) is None) != (r[k] is None) or (r[k] is not None and not close(o[k], r[k], scale)):
                    diffs.append(f"{name}: {c} {k} {o.get(k)!r}, {ref_name} {r[k]!r}")
    return diffs


class OutputMismatch(RuntimeError):
    pass


def check_outputs(section: str, rep: int, outputs: dict[str, dict], checks: list[dict]) -> None:
    """Every run's output against the first one's (DuckDB's); a difference is logged, kept in `checks` and raised
    after the caller has saved the JSON."""
    (ref_name, ref), *others = outputs.items()
    diffs = [d for name, o in others for d in compare_outputs(ref_name, ref, name, o)]
    checks.append({"repetition": rep + 1, "section": section, "reference": ref_name, "ok": not diffs,
                   "differences": diffs,
                   "outputs": {name: {**o, "partitions": {ds: len(v) for ds, v in o["partitions"].items()}}
                               for name, o in outputs.items()}})
    if diffs:
        for d in diffs:
            log(f"CHECK FAILED ({section}): {d}")
    else:
        log(f"outputs of {', '.join(outputs)} agree: {ref['rows']}, {len(ref['features'])} feature columns")


# -- the shapes of real feeds (e-h) -------------------------------------------------------------------------------
SHAPE_SECTIONS = {"e": "log", "f": "sensors", "g": "monthly"}  # and h: the tiny feed end to end through moto
SHAPE_SIZE_ENV = {
    "log": {"stores": "BENCH_LOG_STORES", "products": "BENCH_LOG_PRODUCTS", "days": "BENCH_LOG_DAYS"},
    "sensors": {"sensors": "BENCH_SENSORS", "days": "BENCH_SENSOR_DAYS"},
    "monthly": {"series": "BENCH_SERIES", "months": "BENCH_MONTHS"},
    "tiny": {"sensors": "BENCH_TINY_SENSORS", "days": "BENCH_TINY_DAYS"},
}


def shape_dataset(shape: str, seed: int) -> dict:
    """Generate (once per shape, size and seed) a shape's CSVs and contract under BENCH_DATA/shapes/."""
    size = {k: env_int(var, shapes.SIZES[shape][k]) for k, var in SHAPE_SIZE_ENV[shape].items()}
    root = Path(os.environ.get("BENCH_DATA", HERE / "data")) / "shapes" / \
        f"{shape}-{'x'.join(str(v) for v in size.values())}-s{seed}"
    meta_path = root / "meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    meta = shapes.generate(shape, root, size, seed)
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def loaded(fn, *args) -> tuple[Sample, dict]:
    """fn(*args) (a measured run), with the load averages (1, 5, 15 min) at its start and end."""
    start = [round(x, 2) for x in os.getloadavg()]
    s, info = fn(*args)
    return s, {**info, "load_avg_start": start, "load_avg_end": [round(x, 2) for x in os.getloadavg()]}


def shape_yardstick(engine: str, meta: dict, out: Path) -> tuple[Sample, dict]:
    """bench/shapes.py's `engine` yardstick on a shape's CSVs with its contract, 2 threads, its output under out."""
    s = run_measured([PY, str(HERE / "shapes.py"), engine, meta["contract"], meta["raw"], str(out), "--threads", "2"])
    if s.returncode != 0:
        raise RuntimeError(f"shapes.py {engine} failed:\n{s.output[-4000:]}")
    info = json.loads(s.output.strip().splitlines()[-1])
    return s, {"rows_read": info["rows_read"], "rows_out": info["rows_out"], f"{engine}_timings": info["timings"]}


def shape_output(features: Path, clean: Path, quarantine: Path, info: dict) -> dict:
    """shapes.summary of one run's output, with its rows read and rows out (the job's from its accounting)."""
    rows_read = info["totals"]["rows_read"] if "totals" in info else info["rows_read"]
    rows_out = info["totals"]["rows_out"] if "totals" in info else info["rows_out"]
    return {**shapes.summary(features, clean, quarantine), "accounting": {"rows_read": rows_read,
                                                                          "rows_out": rows_out}}


def staged_output(p: Pipeline, plan, info: dict) -> dict:
    staged = Path(p.out.root)
    return shape_output(*(staged / staged_dataset_dir(plan.batch_id, ds) for ds in DATASETS), info)


def check_shape(section: str, rep: int, outputs: dict[str, dict], checks: list[dict]) -> None:
    """Every run's summary against the first one's (DuckDB's); like check_outputs, the caller raises."""
    (ref_name, ref), *others = outputs.items()
    diffs = [d for name, o in others for d in shapes.compare(ref_name, ref, name, o)]
    diffs += [f"{name}: accounting {o['accounting']}, {ref_name} {ref['accounting']}" for name, o in others
              if o["accounting"] != ref["accounting"]]
    checks.append({"repetition": rep + 1, "section": section, "reference": ref_name, "ok": not diffs,
                   "differences": diffs, "outputs": outputs})
    for d in diffs:
        log(f"CHECK FAILED ({section}): {d}")
    if not diffs:
        log(f"outputs of {', '.join(outputs)} agree: {ref['rows']}, {ref['partitions']} partitions, "
            f"{len(ref['columns'])} feature columns")


# -- the run ------------------------------------------------------------------------------------------------------
def main() -> int:
    spec = BenchSpec(stores=env_int("BENCH_STORES", 50), skus=env_int("BENCH_SKUS", 200),
                     days=env_int("BENCH_DAYS", 730), seed=env_int("BENCH_SEED", 42))
    reps = env_int("BENCH_REPS", 3)
    sections = set(os.environ.get("BENCH_SECTIONS", "a,b,c,d").split(","))
    if sections - set("abcdefgh"):
        raise SystemExit(f"BENCH_SECTIONS: unknown section(s) {sorted(sections - set('abcdefgh'))}; known: a-h")
    results: dict[str, list[dict]] = {k: [] for k in ("a_full", "a_floor", "b_duckdb", "b_polars", "b_small",
                                                      "b_small_polars", "c_small_e2e", "d_incremental", "d_alone")}
    checks: list[dict] = []
    meta, p_hist = None, None
    if sections & set("abcd"):
        data_root = Path(os.environ.get("BENCH_DATA", HERE / "data")) / spec.tag()
        log(f"data set {spec.tag()} under {data_root}")
        meta = dataset(spec, data_root)
        log(f"data: {meta['full']['rows']} rows, {meta['full']['bytes'] / 1e6:.1f} MB in {meta['spec']['files']} "
            f"files (generated in {meta.get('generate_s')} s)")
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

    # e-g: one batch of all of a shape's files, on a local output like a; h: the tiny feed through the CLI
    shape_runs: dict[str, tuple[dict, Pipeline, object]] = {}
    shape_meta: dict[str, dict] = {}
    for sec, shape in [*SHAPE_SECTIONS.items(), ("h", "tiny")]:
        if sec not in sections:
            continue
        m = shape_dataset(shape, spec.seed)
        log(f"shape {shape}: {m['rows']} rows, {m['bytes'] / 1e6:.1f} MB in {m['files']} files under {m['raw']} "
            f"(generated in {m['generate_s']} s)")
        work = Path(m["raw"]).parent / "runs"
        shutil.rmtree(work, ignore_errors=True)
        p = pipeline_for(Path(m["raw"]), work / "job", Path(m["contract"]))
        shape_meta[sec] = {**m, "spark": spark_spec(p, m["bytes"])}
        if sec != "h":
            shape_runs[sec] = (m, p, p.extract(list(p.raw.list()), 0))
        results |= {f"{sec}_{shape}" + ("_e2e" if sec == "h" else ""): [], f"{sec}_{shape}_duckdb": [],
                    f"{sec}_{shape}_polars": []} | ({} if sec == "h" else {f"{sec}_{shape}_floor": []})

    def persist(discovery: dict | None = None) -> dict:
        return save(spec, meta, reps, p_hist, results, discovery, checks=checks, shape_meta=shape_meta)

    def record(name: str, sample: Sample, info: dict) -> None:
        results[name].append({**sample.to_dict(), **info})
        log(f"{name}: wall {sample.wall_s:.1f}s cpu {sample.cpu_s:.1f}s peak {sample.peak_rss_mb:.0f} MB {info}")

    def check(section: str, rep: int, outputs: dict[str, dict], shape: bool = False) -> None:
        (check_shape if shape else check_outputs)(section, rep, outputs, checks)
        if not checks[-1]["ok"]:
            persist()
            raise OutputMismatch(f"{section}: the outputs differ (above, and under \"checks\" in {result_path()})")

    def yardsticks(name: str, m: dict, work: Path) -> dict[str, dict]:
        outputs = {}
        for engine in ("duckdb", "polars"):
            s, info = loaded(shape_yardstick, engine, m, work / engine)
            record(f"{name}_{engine}", s, info)
            o = work / engine
            outputs[f"{name}_{engine}"] = shape_output(o / "features", o / "clean", o / "quarantine.parquet", info)
        return outputs

    plan_inc = None
    for rep in range(reps):
        log(f"--- repetition {rep + 1}/{reps}")
        job_out = None
        if "a" in sections or ("d" in sections and plan_inc is None):
            # the first full run builds the history that (d) runs on; later ones go to a never-published output
            p, plan = (p_hist, plan_hist) if plan_inc is None else (p_a, plan_a)
            s, info = transform(p, plan)
            if "a" in sections:
                record("a_full", s, info)
                if "b" in sections:  # before (d) publishes the staged output
                    job_out = job_output(p, plan, info)
                record("a_floor", *spark_floor(p, plan, runs / "floor", meta["full"]["rows"]))
            if plan_inc is None and "d" in sections:
                t0 = time.monotonic()
                p_hist.load(plan_hist)
                log(f"published the full history in {time.monotonic() - t0:.1f}s")
                plan_inc = p_inc.extract([new_obj], 1)
        if "b" in sections:
            record("b_duckdb", *yardstick("duckdb", raw, runs / "duck"))
            record("b_polars", *yardstick("polars", raw, runs / "polars"))
            outputs = {"b_duckdb": yardstick_output(runs / "duck"), "b_polars": yardstick_output(runs / "polars")}
            check("full", rep, outputs | ({"a_full": job_out} if job_out else {}))
        if "d" in sections:
            record("d_incremental", *transform(p_inc, plan_inc))
            record("d_alone", *transform(p_alone, plan_alone))
        if "c" in sections:
            record("c_small_e2e", *small_e2e(meta, runs / "small"))
            small_raw = Path(meta["small"]["path"]).parent
            record("b_small", *yardstick("duckdb", small_raw, runs / "duck_small"))
            record("b_small_polars", *yardstick("polars", small_raw, runs / "polars_small"))
            check("small", rep, {"b_small": yardstick_output(runs / "duck_small"),
                                 "b_small_polars": yardstick_output(runs / "polars_small")})
        for sec, (m, p, plan) in shape_runs.items():
            name = f"{sec}_{m['shape']}"
            s, info = loaded(transform, p, plan)
            record(name, s, info)
            job_out = staged_output(p, plan, info)
            record(f"{name}_floor", *loaded(spark_floor, p, plan, Path(p.out.root).parent / "floor", m["rows"]))
            outputs = yardsticks(name, m, Path(p.out.root).parent)
            check(m["shape"], rep, outputs | {name: job_out}, shape=True)
        if "h" in sections:
            m = shape_meta["h"]
            work = Path(m["raw"]).parent / "runs"
            files = [(f, f.relative_to(m["raw"]).as_posix()) for f in sorted(Path(m["raw"]).rglob("*.csv"))]
            s, info = loaded(cli_e2e, files, work / "e2e", m["contract"], work / "published")
            record("h_tiny_e2e", s, info)
            job_out = shape_output(*(work / "published" / ds for ds in DATASETS), info)
            check("tiny", rep, yardsticks("h_tiny", m, work) | {"h_tiny_e2e": job_out}, shape=True)

        persist()  # after every repetition: a stopped run keeps it

    doc = persist()
    print_table(doc["summary"], meta)
    n_disc = env_int("BENCH_DISCOVERY_OBJECTS", 100_000)
    if n_disc > 0:
        import discovery as disc

        doc["discovery"] = disc.run(n_disc)
        disc.print_report(doc["discovery"])
        persist(doc["discovery"])
    return 0


def spark_spec(p: Pipeline, batch_bytes: int) -> dict:
    spec = submit_spec(p.settings, batch_bytes=batch_bytes)
    return {"driver_memory": spec.driver_memory, "conf": {k: v for k, v in spec.conf.items() if "s3a" not in k}}


def result_path() -> Path:
    return Path(os.environ.get("BENCH_RESULT") or
                HERE / "results" / f"{date.today():%Y-%m-%d}-{socket.gethostname().split('.')[0][:20]}.json")


def save(spec: BenchSpec, meta: dict | None, reps: int, p_hist: Pipeline | None, results: dict,
         discovery: dict | None = None, checks: list[dict] | None = None, shape_meta: dict | None = None) -> dict:
    summary = summarise(results, meta, shape_meta or {})
    doc = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": LOAD_AT_START, "load_avg_at_end": os.getloadavg(),
                    "shared": os.environ.get("BENCH_SHARED", "unknown"),
                    "note": os.environ.get("BENCH_NOTE", "")},
        "size": meta,
        # e-h: each shape's data, contract and the Spark conf its batch is submitted with (sized to its bytes)
        **({"shapes": shape_meta} if shape_meta else {}),
        "reps": reps,
        # as submitted for the full set (sized to its bytes); the small and one-day batches get their own sizing
        **({"spark": {"master": p_hist.settings.spark_master, **spark_spec(p_hist, meta["full"]["bytes"])}}
           if p_hist else {}),
        "summary": summary,
        "runs": results,
        # the outputs compared after each repetition's b and c (check_outputs)
        "checks": checks or [],
        **({"discovery": discovery} if discovery else {}),
    }
    out = result_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    log(f"wrote {out}")
    return doc


def summarise(results: dict[str, list[dict]], meta: dict | None, shape_meta: dict[str, dict]) -> dict:
    volume = {"a_full": meta["full"], "b_duckdb": meta["full"], "b_polars": meta["full"], "c_small_e2e": meta["small"],
              "b_small": meta["small"], "b_small_polars": meta["small"], "d_incremental": meta["new_day"],
              "d_alone": meta["new_day"], "a_floor": meta["full"]} if meta else {}
    # a floor run (spark_floor) beside its job: the job's ratio to it, and its own to the yardsticks
    ratios = {"a_full": ("b_duckdb", "b_polars", "a_floor"), "a_floor": ("b_duckdb", "b_polars"),
              "c_small_e2e": ("b_small", "b_small_polars"), "d_incremental": ("d_alone",)}
    for sec, m in shape_meta.items():
        name = f"{sec}_{m['shape']}"
        job = name + ("_e2e" if sec == "h" else "")
        volume |= {job: m, f"{name}_duckdb": m, f"{name}_polars": m, f"{name}_floor": m}
        ratios[job] = (f"{name}_duckdb", f"{name}_polars") + (() if sec == "h" else (f"{name}_floor",))
        ratios[f"{name}_floor"] = (f"{name}_duckdb", f"{name}_polars")
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
    # each run's yardsticks: the first one's ratio also under the keys ratio, ratio_to, ratio_paired(_median)
    for name, refs in ratios.items():
        for ref in refs:
            if name not in summary or ref not in summary:
                continue
            r = {"ratio": round(summary[name]["wall_s"] / summary[ref]["wall_s"], 2)}
            if len(results[name]) == len(results[ref]):
                # the runs of one repetition are neighbours in time: their ratio is not moved by the machine
                # getting slower or faster between repetitions, which the ratio of the medians is
                paired = [round(a["wall_s"] / b["wall_s"], 2) for a, b in zip(results[name], results[ref])]
                r |= {"paired": paired, "paired_median": round(statistics.median(paired), 2)}
            summary[name].setdefault("ratios", {})[ref] = r
            if "ratio" not in summary[name]:
                summary[name] |= {"ratio": r["ratio"], "ratio_to": ref}
                if "paired" in r:
                    summary[name] |= {"ratio_paired": r["paired"], "ratio_paired_median": r["paired_median"]}
    return summary


TARGETS = {"a_full": "≤3× b_polars, peak ≤2 GiB", "c_small_e2e": "≤12 s", "d_incremental": "≤1.5× d_alone",
           "e_log": "≤3× e_log_polars", "h_tiny_e2e": "≤10 s"}  # docs/performance.md, "Targets"


def print_table(summary: dict, meta: dict | None) -> None:
    if meta:
        s = meta["spec"]
        print(f"\nNexGen ETL bench: {s['stores']} stores × {s['skus']} SKUs × {s['days']} days = "
              f"{meta['full']['rows']} rows, "
              f"{meta['full']['bytes'] / 1e6:.0f} MB CSV in {s['files']} files; medians")
    else:
        print("\nNexGen ETL bench: the shapes of real feeds; medians")
    head = f"{'run':<18}{'n':>3}{'wall s':>9}{'cpu s':>9}{'peak MB':>9}{'rows':>10}{'rows/s':>10}{'MB/s':>8}  ratio"
    print(head)
    print("-" * (len(head) + 56))
    for name, r in summary.items():
        ratio = "; ".join(f"{x['ratio']:.2f}× {ref}" + (f" (per repetition: median {x['paired_median']:.2f}×)"
                                                         if "paired_median" in x else "")
                          for ref, x in r.get("ratios", {}).items())
        target = TARGETS.get(name, "")
        print(f"{name:<18}{r['n']:>3}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{r['peak_rss_mb']:>9.0f}{r['rows']:>10}"
              f"{r['rows_per_s']:>10}{r['mb_per_s']:>8.1f}  {ratio}{'  (target ' + target + ')' if target else ''}")
    print()


if __name__ == "__main__":
    sys.exit(main())
