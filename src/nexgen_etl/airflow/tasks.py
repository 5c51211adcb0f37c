"""What each task of the DAG runs: plain functions of the plain values the DAG hands them (params, XCom dicts).

The DAG file only wires these to tasks. Each builds the pipeline from the Airflow Connection and Variables
(`airflow_pipeline`) unless it is given one (`pipeline=`, for tests), calls one step of it, and returns a
JSON-serialisable dict for XCom. Nothing here runs at DAG parse time: imports of the pipeline are inside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nexgen_etl.airflow.connections import AWS_CONN_ID, aws_hook, credentials_from_connection, settings_from_airflow
from nexgen_etl.airflow.variable_store import VariableStateStore

if TYPE_CHECKING:
    from nexgen_etl.run.pipeline import Pipeline

AIRFLOW_OWNER = "airflow:nexgen_etl_pipeline"  # one owner for all runs: max_active_runs=1 orders them


def airflow_pipeline(conn_id: str = AWS_CONN_ID) -> Pipeline:
    """The pipeline of a task: settings from the Connection and Variables, the watermark in a Variable."""
    from nexgen_etl.core.contract import load_contract
    from nexgen_etl.core.storage import open_store
    from nexgen_etl.run.pipeline import Pipeline
    from nexgen_etl.run.preflight import name_credential_errors

    settings = settings_from_airflow(conn_id)

    def factory():
        hook = aws_hook(conn_id)
        return name_credential_errors(hook.get_conn(), f"Airflow connection {conn_id!r}",
                                      hook.conn_config.aws_access_key_id)

    return Pipeline(settings=settings, contract=load_contract(settings.contract_path),
                    raw=open_store(settings.raw_url, factory), out=open_store(settings.output_url, factory),
                    state=VariableStateStore(), owner=AIRFLOW_OWNER)


def checked_pipeline(conn_id: str = AWS_CONN_ID) -> Pipeline:
    """The pipeline after the preflight checks: a missing, wrong or expired key of the connection fails the first
    task with one line naming the connection."""
    from nexgen_etl.run.preflight import preflight

    pipeline = airflow_pipeline(conn_id)
    preflight(pipeline.settings, credentials_from_connection(conn_id), source=f"Airflow connection {conn_id!r}")
    return pipeline


def apply_operation(pipeline: Pipeline, params: dict | None) -> str | None:
    """The DAG params' state operation (reset, rewind, reprocess, rebuild) before the pass; None for 'run'."""
    from datetime import datetime

    params = params or {}
    op = params.get("operation") or "run"
    since = datetime.fromisoformat(params["since"]) if params.get("since") else None
    if pipeline.apply_operation(op, to_batch=params.get("to_batch") or None, key=params.get("key") or None,
                                prefix=params.get("prefix") or None, since=since) is None:
        return None
    return op


def discover(params: dict | None, *, pipeline: Pipeline | None = None) -> dict | bool:
    """discover_files: apply the params' state operation, then list the raw location above the watermark. The
    new objects (XCom), or False when nothing is new (the DAG's short-circuit skips the rest)."""
    p = pipeline or checked_pipeline()
    if op := apply_operation(p, params):
        print(f"Applied state operation {op!r}; continuing with a normal pass.")
    found, wm = p.discover()
    if not found.new:
        mark = f"{wm.last_modified.isoformat()} {wm.key}" if wm.last_modified else "(empty)"
        print(f"No new files above the watermark {mark}; nothing to do.")
        return False
    return {"objects": [o.to_dict() for o in found.new], "state_version": wm.version,
            "deferred": found.deferred, "timing": found.timing}


def extract(discovered: dict, *, pipeline: Pipeline | None = None) -> dict:
    """extract: validate and freeze the batch (the exact object versions it owns). `plan_uri` is what the transform
    passes to the job as `--plan` (the operator's templated application_args)."""
    from nexgen_etl.core.storage import ObjectInfo

    p = pipeline or airflow_pipeline()
    plan = p.extract([ObjectInfo.from_dict(o) for o in discovered["objects"]], discovered["state_version"],
                     discovered.get("timing"))
    return {"batch_id": plan.batch_id, "plan_uri": p.plan_uri(plan.batch_id), "files": len(plan.objects),
            "bytes": plan.total_bytes}


def load(batch: dict, *, pipeline: Pipeline | None = None) -> dict:
    """load: publish the staged output and the manifest (all at once, never twice); write the run report."""
    p = pipeline or airflow_pipeline()
    manifest = p.load(p.read_plan(batch["batch_id"]))
    return {"batch_id": manifest.batch_id, "publish": manifest.publish, "totals": dict(manifest.totals)}


def commit(batch: dict, loaded: dict, *, pipeline: Pipeline | None = None) -> dict:
    """commit: advance the watermark (compare-and-set), only after load published; finalise the report.

    The manifest comes from the output location, where load wrote it (`loaded` is load's XCom summary, not a
    Manifest: it only has to name the same batch)."""
    from nexgen_etl.core.layout import manifest_key
    from nexgen_etl.core.publish import read_manifest

    p = pipeline or airflow_pipeline()
    batch_id = batch["batch_id"]
    if (loaded or {}).get("batch_id") != batch_id:
        raise ValueError(f"commit of batch {batch_id}: load reported batch {(loaded or {}).get('batch_id')!r}")
    manifest = read_manifest(p.out, batch_id)
    if manifest is None:
        raise FileNotFoundError(f"batch {batch_id}: no manifest at {p.out.url}{manifest_key(batch_id)}; "
                                "the load task has not published it")
    wm = p.commit(p.read_plan(batch_id), manifest)
    return {"batch_id": batch_id, "state_version": wm.version}
