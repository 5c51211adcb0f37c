"""The loading bucket's layout: every key the pipeline writes there, named in one place.

```
_published/features/period_date=…/part-<batch>-NNNNN.snappy.parquet   the files the catalog lists (immutable)
_published/clean/period_date=…/…   _published/quarantine/source_id=…/…
features/period_date=…/part-NNNNN.snappy.parquet   the plain view: each partition's live files under fixed names,
clean/period_date=…/…   quarantine/source_id=…/…    replaced in place after the catalog PUT (publish.sync_view)
<dataset>/_schema.json             the published Spark schema of a dataset
_catalog.json                      the live file list of every partition (the commit point)
_plans/<batch>.json                the frozen batch plan (extract)
_staging/<batch>/<dataset>/…       the transform's output, before publication
_staging/<batch>/_result.json      the transform's StagedResult
_views_pending/<batch>.json        the partitions a publish touches, until its plain view and cleanup are done
_manifests/<batch>.json            the published batch's Manifest
_reports/<batch>/report.{json,html}, _reports/<batch>/steps/<step>.json
_reports/<batch>/quality.json      the batch measured against the contract's quality gates (run.gates)
```
"""

from __future__ import annotations

DATASETS = ("features", "clean", "quarantine")
PARTITION_OF = {"features": "period_date", "clean": "period_date", "quarantine": "source_id"}

CATALOG_KEY = "_catalog.json"
PUBLISHED_PREFIX = "_published/"
PLAN_PREFIX = "_plans/"
STAGING_PREFIX = "_staging/"
RESULT_NAME = "_result.json"
MANIFEST_PREFIX = "_manifests/"
VIEW_PENDING_PREFIX = "_views_pending/"
REPORT_PREFIX = "_reports/"


def published_dir(dataset: str) -> str:
    """The folder of the files the catalog lists for a dataset (the base path of its partition folders)."""
    return f"{PUBLISHED_PREFIX}{dataset}/"


def partition_dir(dataset: str, value: str) -> str:
    """The folder of a partition's catalog files."""
    return f"{published_dir(dataset)}{PARTITION_OF[dataset]}={value}/"


def published_file(dataset: str, value: str, batch_id: str, index: int) -> str:
    """The catalog name of a batch's index-th file in a partition: deterministic, so a retried publish rewrites it."""
    return f"{partition_dir(dataset, value)}part-{batch_id}-{index:05d}.snappy.parquet"


def view_dir(dataset: str, value: str) -> str:
    """The folder of a partition in the plain view (what a reader of the dataset's prefix sees)."""
    return f"{dataset}/{PARTITION_OF[dataset]}={value}/"


def view_file(dataset: str, value: str, index: int) -> str:
    """The plain view's name of a partition's index-th live file: the same for every batch, so that replacing a
    partition of one file is one PUT (readers see the old file or the new one, never both)."""
    return f"{view_dir(dataset, value)}part-{index:05d}.snappy.parquet"


def schema_key(dataset: str) -> str:
    return f"{dataset}/_schema.json"


def plan_key(batch_id: str) -> str:
    return f"{PLAN_PREFIX}{batch_id}.json"


def staging_dir(batch_id: str) -> str:
    return f"{STAGING_PREFIX}{batch_id}/"


def staged_dataset_dir(batch_id: str, dataset: str) -> str:
    return f"{staging_dir(batch_id)}{dataset}/"


def result_key(batch_id: str) -> str:
    return f"{staging_dir(batch_id)}{RESULT_NAME}"


def view_pending_key(batch_id: str) -> str:
    return f"{VIEW_PENDING_PREFIX}{batch_id}.json"


def manifest_key(batch_id: str) -> str:
    return f"{MANIFEST_PREFIX}{batch_id}.json"


def report_dir(batch_id: str) -> str:
    return f"{REPORT_PREFIX}{batch_id}/"


def report_key(batch_id: str, ext: str) -> str:
    return f"{report_dir(batch_id)}report.{ext}"


def steps_dir(batch_id: str) -> str:
    return f"{report_dir(batch_id)}steps/"


def step_key(batch_id: str, step: str) -> str:
    return f"{steps_dir(batch_id)}{step}.json"


def quality_key(batch_id: str) -> str:
    return f"{report_dir(batch_id)}quality.json"
