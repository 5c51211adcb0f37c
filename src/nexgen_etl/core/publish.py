"""Publishing: make a batch's staged output visible all at once (catalog PUT), never twice; write its manifest;
then bring the plain view (what a reader of a dataset's prefix sees) to the new catalog, partition by partition.

Two kinds of readers, two copies of each live file:
* `_published/<dataset>/…` holds the files the catalog lists, under names of their batch, never overwritten. A reader
  of `_catalog.json` sees whole batches: before the PUT the new files are not listed, after it all are.
* `<dataset>/<partition>/part-NNNNN.snappy.parquet` is the plain view: each partition's live files under names that
  are the same for every batch, replaced in place after the PUT. A partition is one file (the job writes one per
  partition value), so its replacement is one PUT: a reader of the prefix sees the old file or the new one. A
  (key, period) lives in one partition, so such a reader never sees two versions of it, also while a publish runs
  and after a publisher died halfway; what it can see then is a partition that is still the previous batch's,
  until the next publish brings the view up (the partitions still to do are kept in `_views_pending/`).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from nexgen_etl import __version__
from nexgen_etl.core import layout
from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.faults import maybe_fail
from nexgen_etl.core.layout import CATALOG_KEY, DATASETS, PARTITION_OF
from nexgen_etl.core.results import Manifest, StagedResult, totals
from nexgen_etl.core.storage import ObjectStore, PreconditionFailed

# copies and deletes in flight at once while publishing (boto3 clients are thread-safe; S3 serves them in parallel)
PUBLISH_THREADS = 8


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
    """Copy staged files to their catalog names, write the manifest, replace the catalog in one PUT, then bring the
    plain view up to it and clean up.

    Safe to repeat after a crash at any point: catalog names are deterministic per batch, a batch already in the
    catalog only has its view and leftovers finished, and what a dead publisher left undone is recorded in
    `_views_pending/` before its first copy, so that any later publish finishes it.
    """
    catalog, catalog_etag = read_catalog_versioned(store)
    batch_id = plan.batch_id
    if batch_id in catalog.batches:
        manifest = read_manifest(store, batch_id) or Manifest(batch_id)
        _finish(store, batch_id, catalog, manifest.outputs)
        return manifest.with_publish("already_published")
    result = _staged_result(store, batch_id, catalog)
    replaced, copies = _final_names(store, batch_id, result, catalog)
    store.put_bytes(layout.view_pending_key(batch_id), json.dumps(replaced, sort_keys=True).encode())
    _copy(store, copies)
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
    _finish(store, batch_id, new_catalog, replaced)
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


def _final_names(store: ObjectStore, batch_id: str, result: StagedResult,
                 catalog: Catalog) -> tuple[dict[str, dict[str, list[str]]], list[tuple[str, str]]]:
    """dataset → partition → the batch's catalog file names, for every partition it replaces (empty: dropped); and
    the (staged, catalog name) copies that make them."""
    replaced: dict[str, dict[str, list[str]]] = {}
    copies: list[tuple[str, str]] = []
    for ds in DATASETS:
        staged = _staged_files(store, batch_id, ds)
        replaced[ds] = {}
        for part in result.affected_partitions(ds, catalog.partitions(ds), list(staged)):
            pairs = [(src, layout.published_file(ds, part, batch_id, i)) for i, src in enumerate(staged.get(part, []))]
            copies += pairs
            replaced[ds][part] = [dst for _, dst in pairs]
    return replaced, copies


def _copy(store: ObjectStore, copies: list[tuple[str, str]]) -> None:
    """The copies, PUBLISH_THREADS at a time; the fault point load.mid_copy after the first one."""
    _first_then_in_parallel(lambda pair: store.copy(*pair), copies, "load.mid_copy")


def _first_then_in_parallel(fn, items: list, fault_point: str) -> None:
    """fn of the first item, the fault point (a death there has done exactly one), then of the rest in parallel."""
    if items:
        fn(items[0])
        maybe_fail(fault_point)
        _in_parallel(fn, items[1:])


def _in_parallel(fn, items: list) -> None:
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(min(PUBLISH_THREADS, len(items))) as pool:
        for f in [pool.submit(fn, item) for item in items]:
            f.result()


def _finish(store: ObjectStore, batch_id: str, catalog: Catalog, touched: dict[str, dict[str, list[str]]]) -> None:
    """After the catalog PUT (or on finding the batch already in the catalog): the plain view of every partition
    this batch or an unfinished earlier publish touched brought to the catalog, the files the catalog no longer
    lists deleted there, the batch's staging folder removed, and only then the pending records. Safe to repeat."""
    pending = [o.key for o in store.list(layout.VIEW_PENDING_PREFIX)]
    parts = {ds: set(p) for ds, p in touched.items()}
    for key in pending:
        for ds, p in json.loads(store.get_bytes(key)).items():
            parts.setdefault(ds, set()).update(p)
    sync_view(store, catalog, {ds: sorted(p) for ds, p in parts.items()})
    _cleanup(store, batch_id, catalog, parts)
    store.delete(pending)


def sync_view(store: ObjectStore, catalog: Catalog, partitions: dict[str, list[str]]) -> None:
    """Make the plain view of the given partitions hold exactly the catalog's live files.

    Per partition, in this order: the view's files but the first removed, the first replaced by the catalog's
    first file (one PUT), then its other files added. A reader of the prefix sees, at any moment, a part of the old
    version or a part of the new one, never both; with one file per partition (the job's output), the old or the
    new. A partition whose catalog files are not under `_published/` (a bucket published by an earlier version,
    where the catalog's files were the view) is left as it is until a batch replaces it."""
    jobs = []
    for ds, parts in partitions.items():
        live = catalog.datasets.get(ds, {})
        for part in parts:
            files = live.get(part, [])
            if any(not f.startswith(layout.PUBLISHED_PREFIX) for f in files):
                continue
            jobs.append((ds, part, files))
    _first_then_in_parallel(lambda job: _replace_view_partition(store, *job), jobs, "load.mid_view")


def _replace_view_partition(store: ObjectStore, ds: str, part: str, files: list[str]) -> None:
    names = [layout.view_file(ds, part, i) for i in range(len(files))]
    first = names[0] if names else None
    store.delete([o.key for o in store.list(layout.view_dir(ds, part)) if o.key != first])
    for src, dst in zip(files, names):
        store.copy(src, dst)


def _cleanup(store: ObjectStore, batch_id: str, catalog: Catalog, touched: dict[str, set[str] | list[str]]) -> None:
    """Delete what the catalog no longer lists in the touched partitions' catalog folders (superseded files, and
    leftovers of an interrupted publish), then the batch's staging folder. Safe to repeat."""
    garbage = []
    for ds, parts in touched.items():
        for part in parts:
            live = set(catalog.datasets.get(ds, {}).get(part, []))
            garbage += [o.key for o in store.list(layout.partition_dir(ds, part)) if o.key not in live]
    store.delete(garbage)
    store.delete([o.key for o in store.list(layout.staging_dir(batch_id))])
