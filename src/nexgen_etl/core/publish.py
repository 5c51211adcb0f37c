"""Publishing: make a batch's staged output visible all at once (catalog PUT), never twice; write its manifest."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from nexgen_etl import __version__
from nexgen_etl.core import layout
from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.faults import maybe_fail
from nexgen_etl.core.layout import CATALOG_KEY, DATASETS, PARTITION_OF
from nexgen_etl.core.results import Manifest, StagedResult, totals
from nexgen_etl.core.storage import ObjectStore, PreconditionFailed


class StaleCatalogError(RuntimeError):
    """The catalog moved on since the transform read it; the batch must be transformed again."""


class TransformMissingError(RuntimeError):
    """load ran before transform finished for this batch."""


def read_catalog(store: ObjectStore) -> Catalog:
    return read_catalog_versioned(store)[0]


def read_catalog_versioned(store: ObjectStore) -> tuple[Catalog, str | None]:
    """The catalog and the ETag of the object it was read from (None: there is none yet)."""
    found = store.get_versioned(CATALOG_KEY)
    return (Catalog.from_json(found[0].decode()), found[1]) if found else (Catalog(), None)


def read_manifest(store: ObjectStore, batch_id: str) -> Manifest | None:
    key = layout.manifest_key(batch_id)
    return Manifest.from_json(store.get_bytes(key)) if store.head(key) else None


def _staged_files(store: ObjectStore, batch_id: str, dataset: str) -> dict[str, list[str]]:
    """partition value → staged parquet keys, from a listing of the batch's staging folder."""
    prefix = layout.staged_dataset_dir(batch_id, dataset)
    pattern = re.compile(re.escape(prefix) + re.escape(PARTITION_OF[dataset]) + r"=([^/]+)/([^/]+\.parquet)$")
    out: dict[str, list[str]] = {}
    for obj in store.list(prefix):
        m = pattern.match(obj.key)
        if m:
            out.setdefault(m.group(1), []).append(obj.key)
    return {k: sorted(v) for k, v in out.items()}


def publish_batch(store: ObjectStore, plan: BatchPlan) -> Manifest:
    """Copy staged files to their final names, write the manifest, then replace the catalog in one PUT.

    Safe to repeat after a crash at any point: final names are deterministic per batch, and a batch already in
    the catalog only has its leftovers cleaned up.
    """
    catalog, catalog_etag = read_catalog_versioned(store)
    batch_id = plan.batch_id
    if batch_id in catalog.batches:
        manifest = read_manifest(store, batch_id) or Manifest(batch_id)
        _cleanup(store, batch_id, catalog, manifest.outputs)
        return manifest.with_publish("already_published")
    result = _staged_result(store, batch_id, catalog)
    replaced = _copy_to_final_names(store, batch_id, result, catalog)
    sources = {k: {**v, "batch": batch_id} for k, v in result.sources.items()}
    new_catalog = catalog.with_batch(batch_id, replaced, sources, result.schemas)
    manifest = Manifest(
        batch_id=batch_id,
        published_at=datetime.now(timezone.utc).isoformat(),
        catalog_version=new_catalog.version,
        inputs=[o.to_dict() for o in plan.objects],
        outputs=replaced,
        accounting=result.accounting,
        totals=totals(result.accounting),
        timings=result.timings,
        code_version=__version__,
        spark_version=result.spark_version,
        contract=plan.contract.get("name"),
    )
    store.put_bytes(layout.manifest_key(batch_id), manifest.to_json().encode())
    maybe_fail("load.after_manifest")
    for ds in ("features", "clean"):
        if ds in result.schemas:
            store.put_bytes(layout.schema_key(ds), result.schemas[ds].encode())
    try:  # the commit point: over exactly the catalog this publish started from
        store.put_bytes(CATALOG_KEY, new_catalog.to_json().encode(), if_match=catalog_etag,
                        if_none_match=catalog_etag is None)
    except PreconditionFailed:
        raise StaleCatalogError(f"batch {batch_id}: another batch published while this one was publishing") from None
    maybe_fail("load.after_catalog")
    _cleanup(store, batch_id, new_catalog, replaced)
    return manifest.with_publish("published")


def _staged_result(store: ObjectStore, batch_id: str, catalog: Catalog) -> StagedResult:
    """The transform's result of the batch, refused when it was computed against another catalog version."""
    result_key = layout.result_key(batch_id)
    if not store.head(result_key):
        raise TransformMissingError(f"batch {batch_id}: no transform result at {store.url}{result_key}; "
                                    "run the transform step first")
    result = StagedResult.from_json(store.get_bytes(result_key))
    if result.catalog_version != catalog.version:
        raise StaleCatalogError(f"batch {batch_id} was transformed against catalog v{result.catalog_version}, "
                                f"the catalog is now v{catalog.version}: transform it again")
    return result


def _copy_to_final_names(store: ObjectStore, batch_id: str, result: StagedResult,
                         catalog: Catalog) -> dict[str, dict[str, list[str]]]:
    """dataset → partition → the batch's final file names, for every partition it replaces (empty: dropped)."""
    replaced: dict[str, dict[str, list[str]]] = {}
    for ds in DATASETS:
        staged = _staged_files(store, batch_id, ds)
        replaced[ds] = {}
        for part in result.affected_partitions(ds, catalog.partitions(ds), list(staged)):
            finals = []
            for i, src in enumerate(staged.get(part, [])):
                dst = layout.published_file(ds, part, batch_id, i)
                store.copy(src, dst)
                finals.append(dst)
                if ds == "features" and len(finals) == 1:
                    maybe_fail("load.mid_copy")
            replaced[ds][part] = finals
    return replaced


def _cleanup(store: ObjectStore, batch_id: str, catalog: Catalog, touched: dict[str, dict[str, list[str]]]) -> None:
    """Delete what the catalog no longer lists in the partitions this batch touched (superseded files, and
    leftovers of an interrupted publish), then the batch's staging folder. Safe to repeat."""
    garbage = []
    for ds, parts in touched.items():
        for part in parts:
            live = set(catalog.datasets.get(ds, {}).get(part, []))
            garbage += [o.key for o in store.list(layout.partition_dir(ds, part)) if o.key not in live]
    store.delete(garbage)
    store.delete([o.key for o in store.list(layout.staging_dir(batch_id))])
