"""The catalog: which Parquet files are live in each partition of each published dataset (the commit point)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from nexgen_etl.core.layout import DATASETS


@dataclass(frozen=True)
class Catalog:
    """Published state of the loading bucket. One JSON object, replaced in one PUT: readers see all or nothing."""

    version: int = 0
    datasets: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {d: {} for d in DATASETS})
    sources: dict[str, dict] = field(default_factory=dict)  # raw key -> {etag, min, max, batch}
    batches: tuple[str, ...] = ()
    schemas: dict[str, str] = field(default_factory=dict)

    def files(self, dataset: str, partitions: list[str] | None = None) -> list[str]:
        parts = self.datasets.get(dataset, {})
        keys = sorted(parts) if partitions is None else [p for p in partitions if p in parts]
        return [f for p in keys for f in parts[p]]

    def partitions(self, dataset: str) -> list[str]:
        return sorted(self.datasets.get(dataset, {}))

    def with_batch(self, batch_id: str, replaced: dict[str, dict[str, list[str]]], sources: dict[str, dict],
                   schemas: dict[str, str]) -> "Catalog":
        """A new version where each replaced partition holds exactly the given files (none: dropped)."""
        datasets = {d: dict(self.datasets.get(d, {})) for d in DATASETS}
        for ds, parts in replaced.items():
            for part, files in parts.items():
                if files:
                    datasets[ds][part] = sorted(files)
                else:
                    datasets[ds].pop(part, None)
        return replace(self, version=self.version + 1, datasets=datasets, sources={**self.sources, **sources},
                       batches=(*self.batches, batch_id), schemas={**self.schemas, **schemas})

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "datasets": self.datasets, "sources": self.sources,
                           "batches": list(self.batches), "schemas": self.schemas}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "Catalog":
        if not text:
            return cls()
        d = json.loads(text)
        datasets = {ds: d.get("datasets", {}).get(ds, {}) for ds in DATASETS}
        return cls(version=int(d["version"]), datasets=datasets, sources=d.get("sources", {}),
                   batches=tuple(d.get("batches", ())), schemas=d.get("schemas", {}))
