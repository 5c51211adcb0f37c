"""What the stages hand each other, typed: a file's row accounting, the transform's `StagedResult` and the
published batch's `Manifest`. Their JSON is what the loading bucket holds (`layout.result_key`,
`layout.manifest_key`); `from_json` reads what earlier versions wrote too (absent fields take their defaults).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# a row's fate as the job counts it: "out", "merged", "duplicates_exact", "duplicates_key" or "q:<reason>"
QUARANTINED = "q:"


def _dumps(obj: dict) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)


@dataclass
class FileAccounting:
    """One source file's rows: rows_read = rows_out + rows_quarantined + duplicates + rows_merged."""

    rows_read: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    duplicates_exact: int = 0
    duplicates_key: int = 0
    rows_merged: int = 0
    # of rows_out: rows that took over a period another file's rows had already published (docs/contract.md,
    # "Accounting across batches"); not a fate of its own, so not in the balance
    periods_taken_over: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    file_rejected: dict | None = None  # {"reason", "detail"} when the whole file could not be read

    def add(self, fate: str, n: int) -> None:
        """Count n rows of one fate ("rows_read" counts them in)."""
        if fate.startswith(QUARANTINED):
            reason = fate[len(QUARANTINED):]
            self.rows_quarantined += n
            self.quarantine_reasons[reason] = self.quarantine_reasons.get(reason, 0) + n
        elif fate == "out":
            self.rows_out += n
        elif fate == "merged":
            self.rows_merged += n
        elif fate in ("rows_read", "duplicates_exact", "duplicates_key", "periods_taken_over"):
            setattr(self, fate, getattr(self, fate) + n)
        else:
            raise ValueError(f"unknown row fate {fate!r}")

    @property
    def balanced(self) -> bool:
        return self.rows_read == (self.rows_out + self.rows_quarantined + self.duplicates_exact
                                  + self.duplicates_key + self.rows_merged)

    def to_dict(self) -> dict:
        return {**asdict(self), "balanced": self.balanced}

    @classmethod
    def from_dict(cls, d: dict) -> "FileAccounting":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# rows read, then where each row read ends up, exactly one of these per row (docs/guarantees.md, "every row
# accounted for"): FileAccounting's counts, in its order
COUNTS = tuple(f.name for f in fields(FileAccounting) if f.name.startswith(("rows_", "duplicates_")))


def totals(accounting: dict[str, FileAccounting]) -> dict[str, int]:
    return {c: sum(getattr(a, c) for a in accounting.values()) for c in COUNTS}


def _accounting_from(d: dict) -> dict[str, FileAccounting]:
    return {k: FileAccounting.from_dict(v) for k, v in (d or {}).items()}


@dataclass(frozen=True)
class StagedResult:
    """The transform's output of one batch, beside its staged files: what publishing it replaces, and why."""

    batch_id: str
    catalog_version: int  # the catalog the transform read: publishing against another one is refused
    clean_partitions: list[str] = field(default_factory=list)
    features_ranges: list[list[str]] = field(default_factory=list)  # [first, last] periods recomputed
    quarantine_partitions: list[str] = field(default_factory=list)  # one per source key (layout: source_id)
    sources: dict[str, dict] = field(default_factory=dict)  # raw key -> {etag, min, max}
    accounting: dict[str, FileAccounting] = field(default_factory=dict)
    schemas: dict[str, str] = field(default_factory=dict)  # dataset -> Spark schema JSON as published
    timings: dict[str, float] = field(default_factory=dict)
    spark_version: str | None = None
    status: str = "staged"
    # what the contract's quality gates measure beyond the accounting (core/quality.py), when it declares them:
    # {"valid_rows", "non_null": {column: rows}, "periods": {partition: {"total", "rows"}}}
    quality: dict[str, Any] = field(default_factory=dict)

    def affected_partitions(self, dataset: str, published: list[str], staged: list[str]) -> list[str]:
        """Partitions of dataset this batch replaces. Features: every partition in a recomputed range, whether it
        now has rows (staged) or lost them all (published before, nothing staged)."""
        if dataset == "clean":
            return list(self.clean_partitions)
        if dataset == "quarantine":
            return list(self.quarantine_partitions)
        inside = [p for p in set(published) | set(staged) if any(a <= p <= b for a, b in self.features_ranges)]
        return sorted(inside)

    def to_json(self) -> str:
        d = asdict(self)
        d["accounting"] = {k: a.to_dict() for k, a in self.accounting.items()}
        if not d["quality"]:  # written only for a contract with quality gates: other results stay as they were
            del d["quality"]
        return _dumps(d)

    @classmethod
    def from_json(cls, text: str | bytes) -> "StagedResult":
        d = json.loads(text)
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        return cls(**{**d, "accounting": _accounting_from(d.get("accounting"))})


@dataclass(frozen=True)
class Manifest:
    """A published batch: its inputs (exact object versions), outputs per partition, row accounting and timings.

    `publish` says what this load did ("published", "already_published"); it is not part of the stored JSON."""

    batch_id: str
    published_at: str | None = None
    catalog_version: int | None = None
    inputs: list[dict] = field(default_factory=list)  # ObjectInfo.to_dict() of each input
    outputs: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # dataset -> partition -> files
    accounting: dict[str, FileAccounting] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    code_version: str | None = None
    spark_version: str | None = None
    contract: str | None = None
    publish: str | None = None

    def with_publish(self, publish: str) -> "Manifest":
        return replace(self, publish=publish)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("publish")
        d["accounting"] = {k: a.to_dict() for k, a in self.accounting.items()}
        return d

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        d = json.loads(text)
        names = {f.name for f in fields(cls)} - {"publish"}
        d = {k: v for k, v in d.items() if k in names}
        return cls(**{**d, "accounting": _accounting_from(d.get("accounting"))})
