"""Operator actions on the watermark: reset, rewind, reprocess, rebuild, and approve or reject a batch held by the
quality gates (docs/operations.md). The CLI's `state` and `batch` commands and the DAG's params share them. Each is
one compare-and-set of the state, under the lease."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from nexgen_etl.core.contract import Contract
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.layout import PLAN_PREFIX
from nexgen_etl.core.publish import read_catalog, read_manifest
from nexgen_etl.core.state import StateStore, Watermark
from nexgen_etl.core.storage import ObjectInfo, ObjectStore
from nexgen_etl.run.gates import Gatekeeper
from nexgen_etl.run.lease import Lease

log = logging.getLogger("nexgen_etl")
OPERATIONS = ("run", "reset", "rewind", "reprocess", "rebuild", "approve", "reject")


@dataclass(frozen=True)
class StateOperations:
    state: StateStore
    lease: Lease
    raw: ObjectStore
    out: ObjectStore
    contract: Contract

    def apply(self, op: str, to_batch: str | None = None, key: str | None = None, prefix: str | None = None,
              since: datetime | None = None) -> Watermark | None:
        """One operator action by name; None for 'run'."""
        if op == "run":
            return None
        if op == "reset":
            return self.reset()
        if op == "rebuild":
            return self.rebuild_from_manifests()
        if op == "rewind":
            if not to_batch:
                raise ValueError("operation 'rewind' needs the batch to go back to")
            return self.rewind(to_batch)
        if op == "reprocess":
            return self.reprocess(key=key, prefix=prefix, since=since)
        if op in ("approve", "reject"):
            if not to_batch:
                raise ValueError(f"operation {op!r} needs the held batch (to_batch)")
            gates = Gatekeeper(self.state, self.lease, self.out)
            return gates.approve(to_batch) if op == "approve" else gates.reject(to_batch)
        raise ValueError(f"unknown operation {op!r}: use {', '.join(OPERATIONS[:-1])} or {OPERATIONS[-1]}")

    def _replace_state(self, build: Callable[[Watermark], Watermark]) -> Watermark:
        wm = self.lease.check()
        new = build(wm)
        self.state.compare_and_set(wm.revision, new)
        log.info("state: %s → version %d", new.recent_batches[-1].get("operation"), new.version)
        return new

    def reset(self) -> Watermark:
        """Forget every processed file: the next run processes the whole raw location again (outputs are
        replaced per source file, so nothing is duplicated)."""
        return self._replace_state(lambda wm: wm.operation(
            "reset", last_modified=None, key=None, band={}, band_times={}, reprocess=()))

    def rebuild_from_manifests(self, upto: str | None = None, op: str = "rebuild") -> Watermark:
        """The watermark as the published batches imply it (catalog order), e.g. after the Variable was lost."""
        folded = self._folded_manifests(Watermark(), upto)
        note = {"_note": {"to_batch": upto}} if upto else {}
        return self._replace_state(lambda wm: wm.operation(
            op, last_modified=folded.last_modified, key=folded.key, band=folded.band,
            band_times=folded.band_times, reprocess=(), **note))

    def repair(self, op: str) -> Watermark:
        """reset or rebuild without reading the state (`--force`): the repair of a state that cannot be read.

        The new state's version is above every plan's base version in the loading bucket, so that no batch planned
        on the lost state can commit on the repaired one; its lease is empty (stop running pipelines first)."""
        if op not in ("reset", "rebuild"):
            raise ValueError(f"only reset and rebuild can be forced, not {op!r}")
        version = read_catalog(self.out).version
        for obj in self.out.list(PLAN_PREFIX):
            version = max(version, BatchPlan.from_json(self.out.get_bytes(obj.key).decode()).base_state_version)
        fresh = Watermark(version=version, revision=version)
        if op == "rebuild":
            fresh = self._folded_manifests(fresh, None)
        new = fresh.operation(op, _note={"forced": True})
        self.state.force_write(new)
        log.warning("state: %s --force wrote version %d without reading the old state", op, new.version)
        return new

    def _folded_manifests(self, base: Watermark, upto: str | None) -> Watermark:
        """base advanced by the published batches' inputs in catalog order, up to and including `upto`."""
        cat = read_catalog(self.out)
        if upto is not None and upto not in cat.batches:
            raise ValueError(f"batch {upto!r} is not in the catalog of {self.out.url}")
        folded = base
        for batch_id in cat.batches:
            m = read_manifest(self.out, batch_id)
            if m is None:
                raise FileNotFoundError(f"manifest of batch {batch_id} is missing in {self.out.url}")
            folded = folded.advance([ObjectInfo.from_dict(o) for o in m.inputs], {"batch_id": batch_id})
            if batch_id == upto:
                break
        return replace(folded, version=base.version, revision=base.revision, recent_batches=base.recent_batches)

    def rewind(self, to_batch: str) -> Watermark:
        """Back to the state right after `to_batch` committed: later files are processed again."""
        return self.rebuild_from_manifests(upto=to_batch, op="rewind")

    def reprocess(self, key: str | None = None, prefix: str | None = None,
                  since: datetime | None = None) -> Watermark:
        """Mark raw objects (one key, a prefix, or LastModified ≥ since) to be processed again."""
        if not (key or prefix or since):
            raise ValueError("reprocess needs --key, --prefix or --since")
        chosen = []
        for obj in self.raw.list(prefix or (key or "")):
            if key and obj.key != key:
                continue
            if since and obj.last_modified < since:
                continue
            if self.contract.source.matches(obj.key):
                chosen.append(obj.key)
        if not chosen:
            raise ValueError(f"reprocess: no raw object matches key={key} prefix={prefix} since={since}")
        note = {"_note": {"keys": len(chosen), "key": key, "prefix": prefix,
                          "since": since.isoformat() if since else None}}
        return self._replace_state(lambda wm: wm.operation(
            "reprocess", reprocess=tuple(sorted(set(wm.reprocess) | set(chosen))), **note))
