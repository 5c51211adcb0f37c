"""Publishing: make a batch's staged output visible all at once (catalog PUT), never twice; write its manifest."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from nexgen_etl import __version__
from nexgen_etl.catalog import CATALOG_KEY, DATASETS, MANIFEST_PREFIX, PARTITION_OF, STAGING_PREFIX, Catalog, partition_dir
from nexgen_etl.discovery import BatchPlan
from nexgen_etl.faults import maybe_fail
from nexgen_etl.storage import ObjectStore

RESULT_KEY = "_result.json"


class StaleCatalogError(RuntimeError):
    """The catalog moved on since the transform read it; the batch must be transformed again."""


class TransformMissingError(RuntimeError):
    """load ran before transform finished for this batch."""


def read_catalog(store: ObjectStore) -> Catalog:
    return Catalog.from_json(store.get_bytes(CATALOG_KEY).decode() if store.head(CATALOG_KEY) else None)


def manifest_key(batch_id: str) -> str:
    return f"{MANIFEST_PREFIX}{batch_id}.json"


def read_manifest(store: ObjectStore, batch_id: str) -> dict | None:
    return json.loads(store.get_bytes(manifest_key(batch_id))) if store.head(manifest_key(batch_id)) else None


def _staged_files(store: ObjectStore, batch_id: str, dataset: str) -> dict[str, list[str]]:
    """partition value → staged parquet keys, from a listing of the batch's staging folder."""
    prefix = f"{STAGING_PREFIX}{batch_id}/{dataset}/"
    pattern = re.compile(re.escape(prefix) + re.escape(PARTITION_OF[dataset]) + r"=([^/]+)/([^/]+\.parquet)$")
    out: dict[str, list[str]] = {}
    for obj in store.list(prefix):
        m = pattern.match(obj.key)
        if m:
            out.setdefault(m.group(1), []).append(obj.key)
    return {k: sorted(v) for k, v in out.items()}


def affected_partitions(dataset: str, result: dict, catalog: Catalog, staged: dict[str, list[str]]) -> list[str]:
    """Partitions this batch replaces: for features, every partition in the recomputed range, whether it now has
    rows (staged) or lost them all (dropped)."""
    if dataset == "clean":
        return result["clean_partitions"]
    if dataset == "quarantine":
        return result["quarantine_partitions"]
    spans = result.get("features_ranges") or []
    inside = lambda p: any(a <= p <= b for a, b in spans)  # noqa: E731
    return sorted({p for p in catalog.partitions(dataset) if inside(p)} | {p for p in staged if inside(p)})


def publish_batch(store: ObjectStore, plan: BatchPlan) -> dict:
    """Copy staged files to their final names, write the manifest, then replace the catalog in one PUT.

    Safe to repeat after a crash at any point: final names are deterministic per batch, and a batch already in
    the catalog only has its leftovers cleaned up.
    """
    catalog = read_catalog(store)
    batch_id = plan.batch_id
    if batch_id in catalog.batches:
        manifest = read_manifest(store, batch_id) or {"batch_id": batch_id, "outputs": {}}
        _cleanup(store, batch_id, catalog, manifest["outputs"])
        return {**manifest, "publish": "already_published"}
    result_key = f"{STAGING_PREFIX}{batch_id}/{RESULT_KEY}"
    if not store.head(result_key):
        raise TransformMissingError(f"batch {batch_id}: no transform result at {store.url}{result_key}; "
                                    "run the transform step first")
    result = json.loads(store.get_bytes(result_key))
    if result["catalog_version"] != catalog.version:
        raise StaleCatalogError(f"batch {batch_id} was transformed against catalog v{result['catalog_version']}, "
                                f"the catalog is now v{catalog.version}: transform it again")
    replaced: dict[str, dict[str, list[str]]] = {}
    for ds in DATASETS:
        staged = _staged_files(store, batch_id, ds)
        replaced[ds] = {}
        for part in affected_partitions(ds, result, catalog, staged):
            finals = []
            for i, src in enumerate(staged.get(part, [])):
                dst = f"{partition_dir(ds, part)}part-{batch_id}-{i:05d}.snappy.parquet"
                store.copy(src, dst)
                finals.append(dst)
                if ds == "features" and len(finals) == 1:
                    maybe_fail("load.mid_copy")
            replaced[ds][part] = finals
    sources = {k: {**v, "batch": batch_id} for k, v in result["sources"].items()}
    new_catalog = catalog.with_batch(batch_id, replaced, sources, result.get("schemas", {}))
    totals = {f: sum(a[f] for a in result["accounting"].values())
              for f in ("rows_read", "rows_out", "rows_quarantined", "duplicates_exact", "duplicates_key",
                        "rows_merged")}
    manifest = {
        "batch_id": batch_id,
        "published_at": datetime.now(timezone.utc).isoformat(),
        "catalog_version": new_catalog.version,
        "inputs": [o.to_dict() for o in plan.objects],
        "outputs": {ds: {p: files for p, files in parts.items()} for ds, parts in replaced.items()},
        "accounting": result["accounting"],
        "totals": totals,
        "timings": result.get("timings", {}),
        "code_version": __version__,
        "spark_version": result.get("spark_version"),
        "contract": plan.contract.get("name"),
    }
    store.put_bytes(manifest_key(batch_id), json.dumps(manifest, indent=1, sort_keys=True).encode())
    maybe_fail("load.after_manifest")
    for ds in ("features", "clean"):
        if ds in result.get("schemas", {}):
            store.put_bytes(f"{ds}/_schema.json", result["schemas"][ds].encode())
    if read_catalog(store).version != catalog.version:
        raise StaleCatalogError(f"batch {batch_id}: another batch published while this one was publishing")
    store.put_bytes(CATALOG_KEY, new_catalog.to_json().encode())  # the commit point
    maybe_fail("load.after_catalog")
    _cleanup(store, batch_id, new_catalog, replaced)
    return {**manifest, "publish": "published"}


def _cleanup(store: ObjectStore, batch_id: str, catalog: Catalog, touched: dict[str, dict[str, list[str]]]) -> None:
    """Delete what the catalog no longer lists in the partitions this batch touched (superseded files, and
    leftovers of an interrupted publish), then the batch's staging folder. Safe to repeat."""
    garbage = []
    for ds, parts in touched.items():
        for part in parts:
            live = set(catalog.datasets.get(ds, {}).get(part, []))
            garbage += [o.key for o in store.list(partition_dir(ds, part)) if o.key not in live]
    store.delete(garbage)
    store.delete([o.key for o in store.list(f"{STAGING_PREFIX}{batch_id}/")])
