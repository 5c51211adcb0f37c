"""What each task of a feed's DAG runs: plain functions of the plain values the DAG hands them (params, XCom dicts).

The DAG file only wires these to tasks. Each builds the feed's pipeline from the Airflow Connection and Variables
(`airflow_pipeline`) unless it is given one (`pipeline=`, for tests), calls one step of it, and returns a
JSON-serialisable dict for XCom. Nothing here runs at DAG parse time: imports of the pipeline are inside.
`feed` is the feed of the DAG (nexgen_etl.airflow.feeds); without one, the default feed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from nexgen_etl.airflow.connections import AWS_CONN_ID, aws_hook, credentials_from_connection, settings_from_airflow
from nexgen_etl.airflow.feeds import DEFAULT_DAG_ID, Feed, default_feed
from nexgen_etl.airflow.variable_store import VariableStateStore

if TYPE_CHECKING:
    from nexgen_etl.core.results import Manifest
    from nexgen_etl.run.pipeline import Pipeline

log = logging.getLogger("nexgen_etl")

AIRFLOW_OWNER = f"airflow:{DEFAULT_DAG_ID}"  # the default feed's lease owner (each feed has its own: Feed.owner)
# how far before a batch's publish time an earlier event for it is looked for (clock skew between the worker that
# published and the API server that stamps events)
ANNOUNCE_SKEW = timedelta(minutes=10)


def store_factory(conn_id: str = AWS_CONN_ID):
    """A boto3 S3 client factory from the Airflow Connection (refused credentials fail naming it)."""
    from nexgen_etl.run.preflight import name_credential_errors

    def factory():
        hook = aws_hook(conn_id)
        return name_credential_errors(hook.get_conn(), f"Airflow connection {conn_id!r}",
                                      hook.conn_config.aws_access_key_id)

    return factory


def airflow_pipeline(conn_id: str = AWS_CONN_ID, feed: Feed | None = None) -> Pipeline:
    """The pipeline of a task of the feed: settings from the Connection and the feed's Variables, the watermark in
    the feed's Variable, the lease owned by the feed's DAG."""
    from nexgen_etl.core.contract import load_contract
    from nexgen_etl.core.storage import open_store
    from nexgen_etl.run.pipeline import Pipeline

    feed = feed or default_feed()
    settings = settings_from_airflow(conn_id, feed)
    factory = store_factory(conn_id)
    return Pipeline(settings=settings, contract=load_contract(settings.contract_path),
                    raw=open_store(settings.raw_url, factory), out=open_store(settings.output_url, factory),
                    state=VariableStateStore(feed.state_variable), owner=feed.owner)


def checked_pipeline(conn_id: str = AWS_CONN_ID, feed: Feed | None = None) -> Pipeline:
    """The pipeline after the preflight checks: a missing, wrong or expired key of the connection fails the first
    task with one line naming the connection."""
    from nexgen_etl.run.preflight import preflight

    pipeline = airflow_pipeline(conn_id, feed)
    preflight(pipeline.settings, credentials_from_connection(conn_id), source=f"Airflow connection {conn_id!r}")
    return pipeline


def apply_operation(pipeline: Pipeline, params: dict | None) -> str | None:
    """The DAG params' state operation (reset, rewind, reprocess, rebuild; approve or reject the batch `to_batch`
    held by the quality gates) before the pass; None for 'run'."""
    params = params or {}
    op = params.get("operation") or "run"
    since = datetime.fromisoformat(params["since"]) if params.get("since") else None
    if pipeline.apply_operation(op, to_batch=params.get("to_batch") or None, key=params.get("key") or None,
                                prefix=params.get("prefix") or None, since=since) is None:
        return None
    return op


def discover(params: dict | None, *, pipeline: Pipeline | None = None, feed: Feed | None = None) -> dict | bool:
    """discover_files: apply the params' state operation, then list the raw location above the watermark. The
    new objects (XCom), or False when nothing is new (the DAG's short-circuit skips the rest)."""
    p = pipeline or checked_pipeline(feed=feed)
    if op := apply_operation(p, params):
        print(f"Applied state operation {op!r}; continuing with a normal pass.")
    with no_retry_when_held():
        found, wm = p.discover()
    if not found.new:
        mark = f"{wm.last_modified.isoformat()} {wm.key}" if wm.last_modified else "(empty)"
        print(f"No new files above the watermark {mark}; nothing to do.")
        return False
    return {"objects": [o.to_dict() for o in found.new], "state_version": wm.version,
            "deferred": found.deferred, "timing": found.timing}


def extract(discovered: dict, *, pipeline: Pipeline | None = None, feed: Feed | None = None) -> dict:
    """extract: validate and freeze the batch (the exact object versions it owns). `plan_uri` is what the transform
    passes to the job as `--plan` (the operator's templated application_args)."""
    from nexgen_etl.core.storage import ObjectInfo

    p = pipeline or airflow_pipeline(feed=feed)
    plan = p.extract([ObjectInfo.from_dict(o) for o in discovered["objects"]], discovered["state_version"],
                     discovered.get("timing"))
    return {"batch_id": plan.batch_id, "plan_uri": p.plan_uri(plan.batch_id), "files": len(plan.objects),
            "bytes": plan.total_bytes}


def load(batch: dict, *, pipeline: Pipeline | None = None, feed: Feed | None = None) -> dict:
    """load: publish the staged output and the manifest (all at once, never twice); write the run report."""
    p = pipeline or airflow_pipeline(feed=feed)
    with no_retry_when_held():
        manifest = p.load(p.read_plan(batch["batch_id"]))
    return {"batch_id": manifest.batch_id, "publish": manifest.publish, "totals": dict(manifest.totals)}


@contextlib.contextmanager
def no_retry_when_held() -> Iterator[None]:
    """A batch held by the quality gates fails the task without retries: only an operator's approve or reject (the
    params operation=approve|reject, to_batch=BATCH, or the CLI's `batch` command) moves it on."""
    from airflow.sdk.exceptions import AirflowFailException

    from nexgen_etl.run.gates import BatchHeldError, QualityGateError

    try:
        yield
    except (BatchHeldError, QualityGateError) as exc:
        raise AirflowFailException(str(exc)) from None


def commit(batch: dict, loaded: dict, *, pipeline: Pipeline | None = None, feed: Feed | None = None) -> dict:
    """commit: advance the watermark (compare-and-set), only after load published; finalise the report.

    The manifest comes from the output location, where load wrote it (`loaded` is load's XCom summary, not a
    Manifest: it only has to name the same batch)."""
    p = pipeline or airflow_pipeline(feed=feed)
    return commit_batch(p, batch, loaded)[0]


def commit_batch(p: Pipeline, batch: dict, loaded: dict) -> tuple[dict, Manifest]:
    """commit's XCom, and the manifest it committed."""
    manifest = published_manifest(p, batch, loaded)
    wm = p.commit(p.read_plan(batch["batch_id"]), manifest)
    return {"batch_id": batch["batch_id"], "state_version": wm.version}, manifest


def published_manifest(p: Pipeline, batch: dict, loaded: dict) -> Manifest:
    """The manifest load published for the batch; refuses a load result of another batch, or no manifest."""
    from nexgen_etl.core.layout import manifest_key
    from nexgen_etl.core.publish import read_manifest

    batch_id = batch["batch_id"]
    if (loaded or {}).get("batch_id") != batch_id:
        raise ValueError(f"commit of batch {batch_id}: load reported batch {(loaded or {}).get('batch_id')!r}")
    manifest = read_manifest(p.out, batch_id)
    if manifest is None:
        raise FileNotFoundError(f"batch {batch_id}: no manifest at {p.out.url}{manifest_key(batch_id)}; "
                                "the load task has not published it")
    return manifest


# -- the feed's Asset ------------------------------------------------------------------------------------------------

def event_extra(manifest: Manifest, output_url: str, feed: str) -> dict[str, Any]:
    """The extra of a batch's asset event: which batch, where, the periods it replaced (the manifest's features and
    clean partitions, a period that lost all its rows included) and its row counts (the manifest's totals)."""
    outputs = manifest.outputs or {}
    return {"feed": feed, "batch_id": manifest.batch_id, "output_url": output_url,
            "catalog_version": manifest.catalog_version, "published_at": manifest.published_at,
            "periods": {"features": sorted(outputs.get("features", {})), "clean": sorted(outputs.get("clean", {}))},
            "totals": dict(manifest.totals)}


def earlier_event(events, batch_id: str):
    """The first of `events` (asset events, with .extra) that announced the batch, or None."""
    return next((e for e in events if (e.extra or {}).get("batch_id") == batch_id), None)


def commit_and_announce(batch: dict, loaded: dict, *, asset, outlet_events, inlet_events,
                        pipeline: Pipeline | None = None, feed: Feed | None = None) -> dict:
    """commit, then the feed's asset event: "new features of this batch are published and committed".

    The event goes out with the commit task's success (Airflow records a task's outlet events when it succeeds), in
    `outlet_events[asset].extra` (`event_extra`). There is none when the batch replaced no features partition, or
    when an event already announced this batch (`inlet_events[asset]`, the asset's events since shortly before the
    batch was published): a commit that runs again after it succeeded once (its task or run cleared) advances
    nothing and announces nothing twice. A commit *retried* after a failed try still announces: a failed try
    records no event, even when it got as far as the watermark or load's retry found the batch already published.
    No event: AirflowSkipException saying why (the task is marked skipped; the watermark is committed)."""
    from airflow.sdk.exceptions import AirflowSkipException

    feed = feed or default_feed()
    p = pipeline or airflow_pipeline(feed=feed)
    committed, manifest = commit_batch(p, batch, loaded)
    extra = event_extra(manifest, p.out.url, feed.name)
    batch_id = committed["batch_id"]
    if not extra["periods"]["features"]:
        raise AirflowSkipException(f"batch {batch_id} is committed; it replaced no features partition, so there is "
                                   f"no {asset.name} event")
    since = datetime.fromisoformat(manifest.published_at) - ANNOUNCE_SKEW if manifest.published_at else None
    events = inlet_events[asset].after(since) if since else inlet_events[asset]
    if (earlier := earlier_event(events, batch_id)) is not None:
        raise AirflowSkipException(f"batch {batch_id} is committed and asset event {getattr(earlier, 'id', '?')} "
                                   f"already announced it; no second {asset.name} event")
    outlet_events[asset].extra = extra
    log.info("commit: %s event for batch %s: periods %s … %s (%d), totals %s", asset.name, batch_id,
             extra["periods"]["features"][0], extra["periods"]["features"][-1], len(extra["periods"]["features"]),
             extra["totals"])
    return {**committed, "asset": asset.name, "periods": len(extra["periods"]["features"])}
