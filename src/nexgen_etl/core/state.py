"""The watermark: which raw object versions are done, kept as versioned JSON with compare-and-set stores."""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from nexgen_etl.core.storage import ObjectInfo, PreconditionFailed

STATE_SCHEMA = 1
DEFAULT_BAND_SECONDS = 3600
RECENT_BATCHES = 20


class StaleStateError(RuntimeError):
    """The state changed since it was read: another run committed first."""


class LeaseHeldError(RuntimeError):
    """Another run holds the lease: this one must not process anything now."""


class StateCorruptError(ValueError):
    """The stored state cannot be read; the message names it and the command that repairs it."""


UNLOCK_HINT = "if that run is gone, `nexgen-etl state unlock` frees the lease"
REPAIR_HINT = "`nexgen-etl state rebuild --force` rebuilds it from the manifests (`state reset --force` empties it)"
# the top-level fields this version writes; others (a newer writer's) are kept as they are
KNOWN_FIELDS = {"schema", "version", "revision", "watermark", "band_seconds", "band", "recent_batches", "reprocess",
                "lease", "held", "rejected"}


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
    extra: dict = field(default_factory=dict)  # fields this version does not know, written back unchanged
    # the batch the contract's quality gates hold ({"batch_id", "held_at", "gates", "breaches"[, "approved_at"]}):
    # nothing else runs until it is approved or rejected (docs/operations.md, quality gates)
    held: dict | None = None
    rejected: dict[str, str] = field(default_factory=dict)  # key -> ETag rejected by an operator: not new until changed

    @property
    def mark(self) -> tuple[datetime, str] | None:
        return (self.last_modified, self.key) if self.last_modified is not None else None

    def is_new(self, obj: ObjectInfo) -> bool:
        """True when this object version has not been processed according to the watermark."""
        if obj.key in self.reprocess:
            return True
        if self.rejected.get(obj.key) == obj.etag:
            return False
        if self.last_modified is None:
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
        held = None if (self.held or {}).get("batch_id") == batch.get("batch_id") else self.held
        return replace(self, version=self.version + 1, revision=self.revision + 1, last_modified=lm, key=key,
                       band={k: band[k] for k in sorted(keep)}, band_times={k: times[k] for k in sorted(keep)},
                       recent_batches=recent, reprocess=tuple(k for k in self.reprocess if k not in done),
                       lease=None, held=held, rejected={k: v for k, v in self.rejected.items() if k not in done})

    # -- quality gates ----------------------------------------------------------------------------------------
    def holding(self, record: dict, owner: str) -> "Watermark":
        """The state with the batch of `record` held by the quality gates, and `owner`'s lease given back."""
        lease = None if (self.lease or {}).get("owner") == owner else self.lease
        return replace(self, revision=self.revision + 1, held=record, lease=lease)

    def approving(self, batch_id: str, at: datetime) -> "Watermark":
        """The held batch approved: the next pass publishes it as it is staged, whatever the gates say."""
        if (self.held or {}).get("batch_id") != batch_id:
            raise ValueError(f"batch {batch_id} is not held ({held_summary(self.held)})")
        return replace(self, revision=self.revision + 1, held={**self.held, "approved_at": at.isoformat()})

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
                                 f"{owner!r} will not process anything now ({UNLOCK_HINT})")
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
        changes.setdefault("held", None)  # a held batch was planned on the version this moves past: it is dropped
        return replace(self, version=self.version + 1, revision=self.revision + 1,
                       recent_batches=(*self.recent_batches, entry)[-RECENT_BATCHES:], **changes)

    def to_json(self) -> str:
        gates = {**({"held": self.held} if self.held else {}), **({"rejected": self.rejected} if self.rejected else {})}
        return json.dumps({
            **self.extra,
            **gates,
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
    def from_json(cls, text: str | bytes | None, where: str = "state") -> "Watermark":
        """The state stored at `where` (named in the error when it cannot be read)."""
        if not text:
            return cls()
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            at = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise StateCorruptError(f"state {where} is not valid JSON{at}; {REPAIR_HINT}") from None
        if not isinstance(d, dict):
            raise StateCorruptError(f"state {where} is not a JSON object; {REPAIR_HINT}")
        if d.get("schema") != STATE_SCHEMA:
            raise StateCorruptError(f"state {where}: unsupported schema {d.get('schema')!r} (this version reads "
                                    f"{STATE_SCHEMA}); a newer version wrote it, or {REPAIR_HINT}")
        try:
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
                extra={k: v for k, v in d.items() if k not in KNOWN_FIELDS},
                held=d.get("held"),
                rejected=dict(d.get("rejected") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateCorruptError(f"state {where} is not a valid state ({type(exc).__name__}: {exc}); "
                                    f"{REPAIR_HINT}") from None


class StateStore(Protocol):
    def read(self) -> Watermark: ...
    def compare_and_set(self, expected_revision: int, new: Watermark) -> None: ...
    def force_write(self, new: Watermark) -> None: ...


class FileStateStore:
    """State in a local JSON file; compare-and-set under an exclusive lock, replaced atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> Watermark:
        return Watermark.from_json(self.path.read_bytes() if self.path.exists() else None, where=str(self.path))

    def compare_and_set(self, expected_revision: int, new: Watermark) -> None:
        self._write(new, expected_revision)

    def force_write(self, new: Watermark) -> None:
        """Replace the state without reading it (the repair of an unreadable one)."""
        self._write(new, None)

    def _write(self, new: Watermark, expected_revision: int | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if expected_revision is not None:
                current = self.read()
                if current.revision != expected_revision:
                    raise StaleStateError(f"state {self.path} is at revision {current.revision}, "
                                          f"expected {expected_revision}: another run wrote it first")
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(new.to_json())
            os.replace(tmp, self.path)


class ObjectStateStore:
    """State as one JSON object in an ObjectStore (S3 or local). Compare-and-set is a conditional write: the new
    state is written only over the exact object version that was read (If-Match its ETag, or If-None-Match when
    there was none), so two writers that read the same version cannot both succeed."""

    def __init__(self, store, key: str) -> None:
        self.store, self.key = store, key

    @property
    def where(self) -> str:
        return f"{self.store.url}{self.key}"

    def _read_versioned(self) -> tuple[Watermark, str | None]:
        found = self.store.get_versioned(self.key)
        if found is None:
            return Watermark(), None
        return Watermark.from_json(found[0], where=self.where), found[1]

    def read(self) -> Watermark:
        return self._read_versioned()[0]

    def compare_and_set(self, expected_revision: int, new: Watermark) -> None:
        current, etag = self._read_versioned()
        if current.revision != expected_revision:
            raise StaleStateError(f"state {self.where} is at revision {current.revision}, "
                                  f"expected {expected_revision}: another run wrote it first")
        self._put(new, etag)

    def force_write(self, new: Watermark) -> None:
        """Replace the state without parsing it (the repair of an unreadable one), still over the version seen."""
        found = self.store.get_versioned(self.key)
        self._put(new, found[1] if found else None)

    def _put(self, new: Watermark, etag: str | None) -> None:
        try:
            if etag is None:
                self.store.put_bytes(self.key, new.to_json().encode(), if_none_match=True)
            else:
                self.store.put_bytes(self.key, new.to_json().encode(), if_match=etag)
        except PreconditionFailed:
            raise StaleStateError(f"state {self.where} changed while this run was writing it: another run wrote "
                                  "it first") from None


def held_summary(held: dict | None) -> str:
    """One phrase naming the held batch and the gates it broke, or saying that none is held."""
    if not held:
        return "no batch is held"
    state = "approved, to be published by the next pass" if held.get("approved_at") else "held"
    return f"batch {held['batch_id']} is {state} (quality gates broken: {', '.join(held.get('gates', [])) or '?'})"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
