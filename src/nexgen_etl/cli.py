"""`nexgen-etl`: the command-line door into the pipeline (generate, run, step, state, batch, status, report, demo,
airflow)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

from nexgen_etl.core.settings import AwsCredentials, S3Settings, Secret, Settings

log = logging.getLogger("nexgen_etl")


def _settings(args) -> Settings:
    s = Settings.from_env(raw_url=getattr(args, "raw", None), output_url=getattr(args, "output", None),
                          state_url=getattr(args, "state", None), contract_path=getattr(args, "contract", None),
                          spark_master=getattr(args, "master", None))
    if getattr(args, "endpoint", None):
        s = dataclasses.replace(s, s3=S3Settings(endpoint_url=args.endpoint, region=s.s3.region, path_style=True))
    return s


def _credentials() -> AwsCredentials | None:
    """From boto3's default chain (environment, profile, instance role)."""
    import boto3

    creds = boto3.session.Session().get_credentials()
    if creds is None:
        return None
    f = creds.get_frozen_credentials()
    return AwsCredentials(f.access_key, Secret(f.secret_key), Secret(f.token) if f.token else None)


def _state_store(settings: Settings, credentials):
    from nexgen_etl.core.state import FileStateStore, ObjectStateStore
    from nexgen_etl.core.storage import S3Store, s3_client

    u = urlparse(settings.state_url)
    if u.scheme in {"s3", "s3a"}:
        return ObjectStateStore(S3Store(u.netloc, "", s3_client(settings.s3, credentials)), u.path.lstrip("/"))
    return FileStateStore(settings.state_url)


def cmd_generate(args) -> int:
    from nexgen_etl.dev.sample import SampleSpec, generate

    spec = SampleSpec(stores=args.stores, skus=args.skus, days=args.days, start=date.fromisoformat(args.start),
                      seed=args.seed, dirt=args.dirt, days_per_file=args.days_per_file, gzip=args.gzip)
    files = generate(args.out, spec)
    total = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} files, {total / 1e6:.1f} MB, under {args.out}")
    if args.upload:
        settings = _settings(args)
        from nexgen_etl.core.progress import Progress
        from nexgen_etl.core.storage import open_store, s3_client

        store = open_store(args.upload, lambda: s3_client(settings.s3, _credentials()))
        progress = Progress(log, f"upload to {store.url}: files", total=len(files))
        for f in files:
            store.upload_file(f, f.relative_to(args.out).as_posix())
            progress.update(amount=f.stat().st_size)
        progress.done()
        print(f"uploaded {len(files)} files to {store.url}")
    return 0


def cmd_run(args) -> int:
    from nexgen_etl.run.pipeline import build_pipeline
    from nexgen_etl.run.preflight import boto3_credential_source, preflight

    settings = _settings(args)
    creds = _credentials()
    source = boto3_credential_source()
    preflight(settings, creds, source=source)
    pipeline = build_pipeline(settings, _state_store(settings, creds), creds, credential_source=source)
    pipeline.console_progress = _console_progress()
    result = pipeline.run_once(creds)
    while args.until_empty and result["status"] == "committed" and result.get("deferred"):
        result = pipeline.run_once(creds)
    print(json.dumps(result, indent=1, default=str))
    return 0


def cmd_step(args) -> int:
    """Single steps, for the include/scripts shims and for operators who want to drive a batch by hand."""
    from nexgen_etl.core.publish import read_manifest
    from nexgen_etl.core.results import Manifest
    from nexgen_etl.run.pipeline import build_pipeline

    settings = _settings(args)
    creds = _credentials()
    p = build_pipeline(settings, _state_store(settings, creds), creds)
    p.console_progress = _console_progress()
    if args.step == "extract":
        found, wm = p.discover()
        if not found.new:
            print(json.dumps({"status": "nothing_new"}))
            return 0
        plan = p.extract(found.new, wm.version, found.timing)
        print(json.dumps({"batch_id": plan.batch_id, "files": len(plan.objects), "plan": p.plan_uri(plan.batch_id)}))
        return 0
    if not args.batch:
        raise SystemExit(f"step {args.step}: --batch is required")
    plan = p.read_plan(args.batch)
    if args.step == "transform":
        p.transform(plan, creds)
    elif args.step == "load":
        m = p.load(plan)
        print(json.dumps({"batch_id": plan.batch_id, "publish": m.publish, "totals": m.totals}))
    else:
        wm = p.commit(plan, read_manifest(p.out, plan.batch_id) or Manifest(plan.batch_id))
        print(json.dumps({"batch_id": plan.batch_id, "state_version": wm.version}))
    return 0


def cmd_state(args) -> int:
    """Show or change the watermark state; each change leaves a consistent state (see docs/operations.md)."""
    from datetime import datetime

    from nexgen_etl.run.pipeline import build_pipeline

    settings = _settings(args)
    creds = _credentials()
    store = _state_store(settings, creds)
    if args.op == "show":
        print(store.read().to_json())
        return 0
    if args.force and args.op not in ("reset", "rebuild"):
        raise SystemExit("state: --force goes with reset or rebuild only")
    if args.op == "unlock":
        cur = store.read()
        wm = cur.without_lease((cur.lease or {}).get("owner", ""))
        if wm is not cur:
            store.compare_and_set(cur.revision, wm)
    else:
        if args.op == "rewind" and not args.to:
            raise SystemExit("state rewind: --to BATCH is required")
        since = datetime.fromisoformat(args.since) if args.since else None
        pipeline = build_pipeline(settings, store, creds)
        if args.force:
            wm = pipeline.operations.repair(args.op)
        else:
            wm = pipeline.apply_operation(args.op, to_batch=args.to, key=args.key, prefix=args.prefix, since=since)
    mark = f"{wm.last_modified.isoformat()} {wm.key}" if wm.last_modified else "(empty)"
    print(f"state {args.op}: version {wm.version}, watermark {mark}, {len(wm.reprocess)} keys to reprocess")
    return 0


def cmd_status(args) -> int:
    from nexgen_etl.core.publish import read_catalog
    from nexgen_etl.core.storage import open_store, s3_client

    settings = _settings(args)
    creds = _credentials()
    wm = _state_store(settings, creds).read()
    out = open_store(settings.output_url, lambda: s3_client(settings.s3, creds))
    cat = read_catalog(out)
    print(f"state:      {settings.state_url} (version {wm.version})")
    print(f"watermark:  {wm.last_modified.isoformat() if wm.last_modified else '-'} {wm.key or ''}")
    print(f"band:       {len(wm.band)} keys within {wm.band_seconds}s of the mark")
    print(f"catalog:    {out.url}_catalog.json v{cat.version}, {len(cat.partitions('features'))} feature partitions, "
          f"{len(cat.sources)} source files")
    if wm.held:
        from nexgen_etl.core.state import held_summary

        print(f"held:       {held_summary(wm.held)}")
    print("recent batches:")
    for b in wm.recent_batches[-args.last:]:
        print(f"  {b['batch_id']}  files={b.get('files')} read={b.get('rows_read')} out={b.get('rows_out')} "
              f"quarantined={b.get('rows_quarantined')} "
              f"dups={b.get('duplicates_exact', 0) + b.get('duplicates_key', 0)}"
              f"  at {b.get('committed_at')}")
    return 0


def cmd_batch(args) -> int:
    """Approve (publish as staged, then commit) or reject (drop; its files not picked up again until they change) a
    batch held by the contract's quality gates (docs/operations.md)."""
    from nexgen_etl.run.pipeline import build_pipeline

    settings = _settings(args)
    creds = _credentials()
    pipeline = build_pipeline(settings, _state_store(settings, creds), creds)
    if args.action == "approve":
        print(json.dumps(pipeline.approve_batch(args.batch), indent=1, default=str))
    else:
        wm = pipeline.operations.apply("reject", to_batch=args.batch)
        print(f"batch {args.batch} rejected: state version {wm.version}, {len(wm.rejected)} rejected file versions")
    return 0


def cmd_report(args) -> int:
    """Print a batch's run report (or write its HTML locally); rebuilt from the manifest when none was stored."""
    from nexgen_etl.core import report as run_report
    from nexgen_etl.core.layout import report_key
    from nexgen_etl.core.publish import read_catalog
    from nexgen_etl.core.storage import open_store, s3_client

    settings = _settings(args)
    creds = _credentials()
    out = open_store(settings.output_url, lambda: s3_client(settings.s3, creds))
    batch_id = args.batch
    if batch_id == "latest":
        batches = read_catalog(out).batches
        if not batches:
            raise SystemExit(f"report: no published batch in {out.url}")
        batch_id = batches[-1]
    rep = run_report.read_report(out, batch_id)
    location = f"{out.url}{report_key(batch_id, 'html')}"
    if rep is None:
        log.warning("report: none stored for batch %s; building it from the manifest", batch_id)
        rep = run_report.collect_report(out, batch_id, "rebuilt")
        location = None
    if args.html:
        Path(args.html).write_text(run_report.render_html(rep), encoding="utf-8")
        print(f"wrote {args.html}")
    elif args.json:
        print(json.dumps(rep, indent=1, sort_keys=True))
    else:
        print(run_report.render_text(rep, location))
    return 0


def _console_progress() -> bool:
    """Spark's console progress bar only for a person at a terminal (never in task logs or pipes)."""
    from nexgen_etl.core.progress import interactive

    return interactive()


def cmd_contract(args) -> int:
    """Draft a contract from a CSV sample (infer), or show what a contract does to files' first rows (check)."""
    if args.contract_command == "infer":
        from nexgen_etl.core.infer import infer_contract

        print(infer_contract(args.file, rows=args.rows).yaml, end="")
        return 0
    from nexgen_etl.core.contract import load_contract
    from nexgen_etl.core.preview import preview, render

    p = preview(load_contract(args.contract), args.files, rows=args.rows or None)
    print(render(p))
    return 1 if any(f.rejected for f in p.files) else 0  # a file the pipeline would reject whole


def cmd_demo(args) -> int:
    from nexgen_etl.dev.demo import run_demo

    return run_demo(airflow=not args.no_airflow, keep=args.keep, days=args.days)


def cmd_airflow(args) -> int:
    from nexgen_etl.dev.airflow_local import DEFAULT_HOME, LocalAirflow, LocalAirflowConfig, db_choice
    from nexgen_etl.dev.sample import SampleSpec

    sample = SampleSpec(stores=args.stores, skus=args.skus, days=args.days) if args.days > 0 else None
    config = LocalAirflowConfig(home=Path(args.home) if args.home else DEFAULT_HOME, port=args.port, sample=sample,
                                spark_master=args.master, ready_timeout=args.ready_timeout, db=db_choice(args.db))
    return LocalAirflow(config).run()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nexgen-etl", description=__doc__)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    def locations(p):
        p.add_argument("--raw", help="raw CSV location: s3://bucket/prefix or a local folder (env NEXGEN_RAW_URL)")
        p.add_argument("--output", help="output location: s3://bucket/prefix or a local folder (NEXGEN_OUTPUT_URL)")
        p.add_argument("--state", help="watermark state: a local JSON file or s3://bucket/key (NEXGEN_STATE_URL)")
        p.add_argument("--endpoint", help="S3-compatible endpoint URL, e.g. http://127.0.0.1:5000 (NEXGEN_S3_ENDPOINT)")
        p.add_argument("--contract", help="dataset contract YAML (NEXGEN_CONTRACT; default: NexGen sales)")

    g = sub.add_parser("generate", help="write deterministic sample sales CSVs (dirt included)")
    g.add_argument("--out", required=True, help="local folder to write into")
    g.add_argument("--stores", type=int, default=5)
    g.add_argument("--skus", type=int, default=20)
    g.add_argument("--days", type=int, default=60)
    g.add_argument("--start", default="2024-01-01")
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--dirt", type=float, default=0.02, help="share of rows made dirty (0 for clean data)")
    g.add_argument("--days-per-file", type=int, default=1)
    g.add_argument("--gzip", action="store_true")
    g.add_argument("--upload", help="also upload to this s3:// location (keys relative to --out)")
    g.add_argument("--endpoint")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="one pass discover → extract → transform → load → commit, outside Airflow")
    locations(r)
    r.add_argument("--master", help="Spark master: local[2], spark://host:7077, yarn, k8s://… (NEXGEN_SPARK_MASTER)")
    r.add_argument("--until-empty", action="store_true", help="repeat while the batch cap deferred files")
    r.set_defaults(func=cmd_run)

    st = sub.add_parser("step", help="one step: extract (discover + freeze), transform, load or commit a batch")
    st.add_argument("step", choices=["extract", "transform", "load", "commit"])
    st.add_argument("--batch", help="batch id (transform, load, commit)")
    locations(st)
    st.add_argument("--master")
    st.set_defaults(func=cmd_step)

    so = sub.add_parser("state", help="show | reset | rewind --to BATCH | reprocess | rebuild | unlock the state")
    so.add_argument("op", choices=["show", "reset", "rewind", "reprocess", "rebuild", "unlock"])
    so.add_argument("--to", help="rewind: the batch id to go back to (state right after it committed)")
    so.add_argument("--force", action="store_true",
                    help="reset | rebuild: write the new state without reading the old one (repairs an unreadable "
                         "state; stop running pipelines first)")
    so.add_argument("--key", help="reprocess: one raw key")
    so.add_argument("--prefix", help="reprocess: every raw key under this prefix")
    so.add_argument("--since", help="reprocess: every raw object with LastModified at or after this ISO time")
    locations(so)
    so.set_defaults(func=cmd_state)

    s = sub.add_parser("status", help="watermark, catalog and recent batches")
    locations(s)
    s.add_argument("--last", type=int, default=10)
    s.set_defaults(func=cmd_status)

    bt = sub.add_parser("batch", help="approve | reject BATCH: a batch held by the contract's quality gates")
    bt.add_argument("action", choices=["approve", "reject"],
                    help="approve: publish it as staged and commit it; reject: drop it, and pass its files by until "
                         "they change")
    bt.add_argument("batch", help="the held batch's id (nexgen-etl status shows it)")
    locations(bt)
    bt.set_defaults(func=cmd_batch)

    rp = sub.add_parser("report", help="a batch's run report: files, rows, quarantine reasons, step times, chart")
    rp.add_argument("batch", help="batch id, or 'latest' (the last batch in the catalog)")
    rp.add_argument("--html", metavar="PATH", help="write the HTML report (with its charts) to this local file")
    rp.add_argument("--json", action="store_true", help="print the report's JSON instead of the text summary")
    locations(rp)
    rp.set_defaults(func=cmd_report)

    ct = sub.add_parser("contract", help="infer FILE: draft a contract from a CSV sample | check CONTRACT FILE…: "
                                         "preview it on the first rows (no Spark, no S3)")
    cs = ct.add_subparsers(dest="contract_command", required=True)
    ci = cs.add_parser("infer", help="print a draft contract (YAML; comments say what was guessed and why)")
    ci.add_argument("file", help="a local CSV or CSV.gz file")
    ci.add_argument("--rows", type=int, default=10_000, help="data rows to sample (default 10000)")
    ci.set_defaults(func=cmd_contract)
    cc = cs.add_parser("check", help="each row's parsed values or quarantine reasons, the duplicates, the roll-up "
                                     "and the header check, as the Spark job would decide them")
    cc.add_argument("contract", help="the contract YAML")
    cc.add_argument("files", nargs="+", metavar="FILE",
                    help="local CSV or CSV.gz files, in arrival order (a later file is newer)")
    cc.add_argument("--rows", type=int, default=20, help="data rows per file (default 20; 0: all)")
    cc.set_defaults(func=cmd_contract)

    d = sub.add_parser("demo", help="the whole pipeline on a local S3 endpoint with sample data, under Airflow")
    d.add_argument("--no-airflow", action="store_true", help="run the steps with `run` instead of Airflow")
    d.add_argument("--keep", action="store_true", help="keep the demo folder (.nexgen/demo) afterwards")
    d.add_argument("--days", type=int, default=35, help="days of sample data in the first drop")
    d.set_defaults(func=cmd_demo)

    a = sub.add_parser("airflow",
                       help="the Airflow UI on this machine (standalone, local S3, sample data); Ctrl-C stops")
    a.add_argument("--port", type=int, default=8080, help="API server / UI port (0: a free port)")
    a.add_argument("--home", help="AIRFLOW_HOME (default .nexgen/airflow)")
    a.add_argument("--days", type=int, default=35, help="days of sample data to upload (0: none)")
    a.add_argument("--stores", type=int, default=5)
    a.add_argument("--skus", type=int, default=20)
    a.add_argument("--master", default="local[2]", help="Spark master of the spark_default connection")
    a.add_argument("--ready-timeout", type=float, default=600, help="seconds to wait for Airflow to be healthy")
    a.add_argument("--db", choices=("sqlite", "postgres"),
                   help="metadata DB (default: env NEXGEN_AIRFLOW_DB, else sqlite); postgres: a throwaway local server")
    a.set_defaults(func=cmd_airflow)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - one clear line for the user, the trace with -v
        if args.verbose:
            raise
        print(f"nexgen-etl {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
