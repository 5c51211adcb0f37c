"""Which raw objects are new or changed, given a listing and the watermark: a frozen batch plan."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from nexgen_etl.core.contract import Contract
from nexgen_etl.core.state import Watermark
from nexgen_etl.core.storage import ObjectInfo


@dataclass(frozen=True)
class Discovery:
    """What a listing held: the new objects (capped, oldest first) and what was left out and why."""

    new: list[ObjectInfo]
    listed: int
    ignored: list[str] = field(default_factory=list)  # keys that are not source files (wrong pattern, folder markers)
    deferred: int = 0  # new objects left for a later batch by the batch cap
    timing: dict | None = None  # the discover step's start and duration, for the run report


def discover_new_objects(listing: Iterable[ObjectInfo], watermark: Watermark, contract: Contract) -> Discovery:
    """Objects above the watermark (or changed inside its band), oldest first, within the contract's batch cap."""
    listed = 0
    ignored: list[str] = []
    candidates: list[ObjectInfo] = []
    for obj in listing:
        listed += 1
        if not contract.source.matches(obj.key):
            ignored.append(obj.key)
            continue
        if watermark.is_new(obj):
            candidates.append(obj)
    candidates.sort()
    chosen: list[ObjectInfo] = []
    total = 0
    for obj in candidates:
        if chosen and (len(chosen) >= contract.max_batch_files or total + obj.size > contract.max_batch_bytes):
            break
        chosen.append(obj)
        total += obj.size
    return Discovery(new=chosen, listed=listed, ignored=ignored, deferred=len(candidates) - len(chosen))


def listing_start_after(watermark: Watermark, contract: Contract) -> str | None:
    """Where listing may start (ListObjectsV2 StartAfter) when the contract says keys are ordered by date.

    The folder of the oldest key the watermark still cares about (the mark's key, the keys in its band, the keys to
    reprocess), without its trailing slash: every key in that folder and in later folders sorts after it, so a late
    file in the current folder is still listed; only earlier folders are skipped. None means list everything."""
    if not contract.source.keys_ordered_by_date or watermark.last_modified is None or not watermark.key:
        return None
    folders = []
    for key in (watermark.key, *watermark.band, *watermark.reprocess):
        if "/" not in key:
            return None  # a key at the top level: no folder to start from
        folders.append(key.rsplit("/", 1)[0])
    return min(folders)


def batch_id_for(objects: list[ObjectInfo], base_state_version: int = 0) -> str:
    """A deterministic id: the same object versions planned on the same state version make the same batch, so a
    retried or re-run batch is recognised; after an operation (reset, rewind, reprocess) they make a new one."""
    text = f"v{base_state_version}\n" + "\n".join(f"{o.key}\0{o.etag}" for o in sorted(objects, key=lambda o: o.key))
    digest = hashlib.sha256(text.encode())
    newest = max(o.last_modified for o in objects).astimezone(timezone.utc)
    return f"b{newest:%Y%m%dT%H%M%S}-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class BatchPlan:
    """Exactly which object versions a batch owns, with the contract frozen beside them."""

    batch_id: str
    objects: list[ObjectInfo]
    raw_url: str
    output_url: str
    contract: dict
    base_state_version: int
    created_at: str
    headers: dict[str, list[str]] = field(default_factory=dict)  # key -> header, for files Spark will read
    rejected: dict[str, dict] = field(default_factory=dict)  # key -> {reason, detail}: quarantined whole files

    @classmethod
    def build(cls, objects: list[ObjectInfo], raw_url: str, output_url: str, contract: Contract,
              base_state_version: int, headers: dict[str, list[str]] | None = None,
              rejected: dict[str, dict] | None = None) -> "BatchPlan":
        if not objects:
            raise ValueError("a batch plan needs at least one object")
        return cls(batch_id=batch_id_for(objects, base_state_version), objects=sorted(objects), raw_url=raw_url,
                   output_url=output_url, contract=contract.to_dict(), base_state_version=base_state_version,
                   created_at=datetime.now(timezone.utc).isoformat(), headers=headers or {},
                   rejected=rejected or {})

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)

    def to_json(self) -> str:
        return json.dumps({"batch_id": self.batch_id, "objects": [o.to_dict() for o in self.objects],
                           "raw_url": self.raw_url, "output_url": self.output_url, "contract": self.contract,
                           "base_state_version": self.base_state_version, "created_at": self.created_at,
                           "headers": self.headers, "rejected": self.rejected},
                          indent=1, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> "BatchPlan":
        d = json.loads(text)
        return cls(batch_id=d["batch_id"], objects=[ObjectInfo.from_dict(o) for o in d["objects"]],
                   raw_url=d["raw_url"], output_url=d["output_url"], contract=d["contract"],
                   base_state_version=int(d["base_state_version"]), created_at=d["created_at"],
                   headers=d.get("headers", {}), rejected=d.get("rejected", {}))
