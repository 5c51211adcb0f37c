"""The watermark: which raw object versions are done, kept as versioned JSON with compare-and-set stores."""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from nexgen_etl.core.storage import ObjectInfo

STATE_SCHEMA = 1
DEFAULT_BAND_SECONDS = 3600
RECENT_BATCHES = 20


class StaleStateError(RuntimeError):
    """The state changed since it was read: another run committed first."""


class LeaseHeldError(RuntimeError):
    """Another run holds the lease: this one must not process anything now."""


LEASE_SECONDS = 2 * 3600


@dataclass(frozen=True)
class Watermark:
    """A high-water mark on (LastModified, key) plus the processed keys/ETags inside a band before it."""

    version: int = 0  # committed batches (and operations) so far; a plan is built on one version
    revision: int = 0  # every write (commit, lease, operation) bumps it; compare-and-set checks it
    last_modified: datetime | None = None
    key: str | None = None
    band_seconds: int = DEFAULT_BAND_SECONDS
    band: dict[str, str] = field(default_factory=dict)  # key -> ETag processed, LastModified inside the band
    band_times: dict[str, str] = field(default_factory=dict)  # key -> LastModified (ISO) of that version
    recent_batches: tuple[dict, ...] = ()
    reprocess: tuple[str, ...] = ()  # keys to process again whatever the mark says (operator's request)
    lease: dict | None = None  # {"owner", "acquired_at", "expires_at"}

    @property
    def mark(self) -> tuple[datetime, str] | None:
        return (self.last_modified, self.key) if self.last_modified is not None else None

    def is_new(self, obj: ObjectInfo) -> bool:
        """True when this object version has not been processed according to the watermark."""
        if self.last_modified is None or obj.key in self.reprocess:
            return True
        if (obj.last_modified, obj.key) > (self.last_modified, self.key or ""):
            return self.band.get(obj.key) != obj.etag
        if obj.last_modified >= self.last_modified - timedelta(seconds=self.band_seconds):
            return self.band.get(obj.key) != obj.etag
        return False

    def advance(self, objects: list[ObjectInfo], batch: dict) -> "Watermark":
        """The state after a batch with these objects is committed (version + 1)."""
        marks = [(o.last_modified, o.key) for o in objects]
        if self.mark:
            marks.append(self.mark)
        lm, key = max(marks)
        band = dict(self.band)
        times = dict(self.band_times)
        for o in objects:
            band[o.key] = o.etag
            times[o.key] = o.last_modified.isoformat()
        floor = lm - timedelta(seconds=self.band_seconds)
        keep = {k for k, t in times.items() if datetime.fromisoformat(t) >= floor}
        recent = (*self.recent_batches, batch)[-RECENT_BATCHES:]
        done = {o.key for o in objects}
        return replace(self, version=self.version + 1, revision=self.revision + 1, last_modified=lm, key=key,
                       band={k: band[k] for k in sorted(keep)}, band_times={k: times[k] for k in sorted(keep)},
                       recent_batches=recent, reprocess=tuple(k for k in self.reprocess if k not in done),
                       lease=None)

    # -- lease ------------------------------------------------------------------------------------------------
    def lease_holder(self, now: datetime) -> str | None:
        """The owner of a live lease, or None when there is none or it expired."""
        if not self.lease or datetime.fromisoformat(self.lease["expires_at"]) <= now:
            return None
        return self.lease["owner"]

    def with_lease(self, owner: str, now: datetime, seconds: int = LEASE_SECONDS) -> "Watermark":
        holder = self.lease_holder(now)
        if holder not in (None, owner):
            raise LeaseHeldError(f"run {holder!r} holds the pipeline lease until {self.lease['expires_at']}; "
                                 f"{owner!r} will not process anything now")
        lease = {"owner": owner, "acquired_at": (self.lease or {}).get("acquired_at") if holder == owner
                 else now.isoformat(), "expires_at": (now + timedelta(seconds=seconds)).isoformat()}
        return replace(self, revision=self.revision + 1, lease=lease)

    def without_lease(self, owner: str) -> "Watermark":
        if not self.lease or self.lease["owner"] != owner:
            return self
        return replace(self, revision=self.revision + 1, lease=None)

    # -- operations -------------------------------------------------------------------------------------------
    def operation(self, op: str, **changes) -> "Watermark":
        """A new state after an operator's action (reset, rewind, reprocess, rebuild): version moves forward so
        that a batch planned before it can no longer commit."""
        entry = {"batch_id": None, "operation": op, "at": utcnow().isoformat(),
                 **{k: v for k, v in changes.pop("_note", {}).items()}}
        return replace(self, version=self.version + 1, revision=self.revision + 1,
                       recent_batches=(*self.recent_batches, entry)[-RECENT_BATCHES:], **changes)

    def to_json(self) -> str:
        return json.dumps({
            "schema": STATE_SCHEMA,
            "version": self.version,
            "revision": self.revision,
            "watermark": None if self.last_modified is None else {
                "last_modified": self.last_modified.isoformat(), "key": self.key},
            "band_seconds": self.band_seconds,
            "band": {k: {"etag": self.band[k], "last_modified": self.band_times.get(k)} for k in self.band},
            "recent_batches": list(self.recent_batches),
            "reprocess": list(self.reprocess),
            "lease": self.lease,
        }, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "Watermark":
        if not text:
            return cls()
        d = json.loads(text)
        if d.get("schema") != STATE_SCHEMA:
            raise ValueError(f"state: unsupported schema {d.get('schema')!r} (expected {STATE_SCHEMA})")
        wm = d.get("watermark") or {}
        return cls(
            version=int(d["version"]),
            last_modified=datetime.fromisoformat(wm["last_modified"]) if wm else None,
            key=wm.get("key") if wm else None,
            band_seconds=int(d.get("band_seconds", DEFAULT_BAND_SECONDS)),
            band={k: v["etag"] for k, v in d.get("band", {}).items()},
            band_times={k: v["last_modified"] for k, v in d.get("band", {}).items()},
            recent_batches=tuple(d.get("recent_batches", ())),
            revision=int(d.get("revision", d["version"])),
            reprocess=tuple(d.get("reprocess", ())),
            lease=d.get("lease"),
        )


class StateStore(Protocol):
    def read(self) -> Watermark: ...
    def compare_and_set(self, expected_revision: int, new: Watermark) -> None: ...


class FileStateStore:
    """State in a local JSON file; compare-and-set under an exclusive lock, replaced atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> Watermark:
        return Watermark.from_json(self.path.read_text() if self.path.exists() else None)

    def compare_and_set(self, expected_revision: int, new: Watermark) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read()
            if current.revision != expected_revision:
                raise StaleStateError(f"state {self.path} is at revision {current.revision}, "
                                      f"expected {expected_revision}: another run wrote it first")
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(new.to_json())
            os.replace(tmp, self.path)


class ObjectStateStore:
    """State as one JSON object in an ObjectStore (S3 or local): read, check the revision, write."""

    def __init__(self, store, key: str) -> None:
        self.store, self.key = store, key

    def read(self) -> Watermark:
        return Watermark.from_json(self.store.get_bytes(self.key).decode() if self.store.head(self.key) else None)

    def compare_and_set(self, expected_revision: int, new: Watermark) -> None:
        current = self.read()
        if current.revision != expected_revision:
            raise StaleStateError(f"state {self.key} is at revision {current.revision}, expected {expected_revision}")
        self.store.put_bytes(self.key, new.to_json().encode())


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
