"""The contract's quality gates at load, and the operator's decision on a batch they hold.

Before publishing, `load` measures the staged batch against the gates frozen in its plan (core.quality). A batch
that breaks one is held: nothing is published, the watermark does not move, the hold is written into the state
together with giving the lease back (one compare-and-set), and nothing else of the feed runs until an operator
approves it (published as staged, then committed) or rejects it (dropped; its files not picked up again until they
change). docs/operations.md, "Quality gates: held batches".
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from nexgen_etl import __version__
from nexgen_etl.core import layout
from nexgen_etl.core import report as run_report
from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.publish import read_catalog
from nexgen_etl.core.quality import QualityGates, batch_periods, history_partitions, measure, summary
from nexgen_etl.core.results import Manifest, StagedResult, totals
from nexgen_etl.core.state import StateStore, Watermark, held_summary, utcnow
from nexgen_etl.core.storage import ObjectStore
from nexgen_etl.run.lease import Lease

log = logging.getLogger("nexgen_etl")


class QualityGateError(RuntimeError):
    """The batch broke a quality gate: it is staged and held, nothing is published."""


class BatchHeldError(RuntimeError):
    """A batch held by the quality gates blocks the feed until it is approved or rejected."""


def decide_hint(batch_id: str) -> str:
    return f"`nexgen-etl batch approve {batch_id}` publishes it, `nexgen-etl batch reject {batch_id}` drops it"


@dataclass(frozen=True)
class Gatekeeper:
    state: StateStore
    lease: Lease
    out: ObjectStore

    # -- at load ------------------------------------------------------------------------------------------------
    def check(self, plan: BatchPlan) -> None:
        """Measure the staged batch against its plan's gates; hold it (QualityGateError) when one breaks. No gates
        declared: returns at once, without a request. A batch already published, not transformed or transformed
        against another catalog is left to publish_batch (which finishes, or refuses, it)."""
        gates = QualityGates.from_dict(plan.contract.get("quality"))
        if not gates.declared:
            return
        batch_id = plan.batch_id
        catalog = read_catalog(self.out)
        if batch_id in catalog.batches or self.out.head(layout.result_key(batch_id)) is None:
            return
        result = StagedResult.from_json(self.out.get_bytes(layout.result_key(batch_id)))
        if result.catalog_version != catalog.version:
            return
        wm = self.lease.check()
        needed = history_partitions(gates, catalog.partitions("features"), batch_periods(result))
        history = {p["period"]: p["total"]
                   for p in run_report.partition_totals(self.out, catalog, plan.contract["target"], needed)}
        checks = measure(gates, result, history)
        evaluation = summary(checks)
        held = wm.held or {}
        approved = held.get("batch_id") == batch_id and held.get("approved_at")
        if approved and evaluation["breaches"]:
            evaluation = {**evaluation, "status": "approved", "approved_at": held["approved_at"]}
        self._record(batch_id, evaluation)
        breaches = [c for c in checks if c.breached]
        if not breaches:
            log.info("quality gates: batch %s passes (%d checks)", batch_id, len(checks))
            return
        if approved:
            log.warning("quality gates: batch %s breaks %s, approved at %s: publishing it", batch_id,
                        ", ".join(evaluation["gates_broken"]), held["approved_at"])
            return
        record = {"batch_id": batch_id, "held_at": held.get("held_at") if held.get("batch_id") == batch_id
                  else utcnow().isoformat(), "files": len(plan.objects), "gates": evaluation["gates_broken"],
                  "breaches": [c.message for c in breaches[:20]]}
        self.state.compare_and_set(wm.revision, wm.holding(record, self.lease.owner))
        where = self._report(plan, result, catalog, evaluation, "held")
        for c in breaches:
            log.error("quality gates: batch %s: %s", batch_id, c.message)
        others = ", ".join(sorted({c.gate for c in breaches[1:]}))
        more = f" (and {len(breaches) - 1} more: {others})" if len(breaches) > 1 else ""
        raise QualityGateError(f"batch {batch_id} held by quality gate {breaches[0].message}{more}; nothing "
                               f"published, watermark not moved; {decide_hint(batch_id)}"
                               + (f" (report: {where})" if where else ""))

    # -- while a batch is held ----------------------------------------------------------------------------------
    def held_plan(self, wm: Watermark) -> BatchPlan:
        """What discover runs while a batch is held: that batch once approved; else BatchHeldError."""
        batch_id = wm.held["batch_id"]
        if not wm.held.get("approved_at"):
            raise BatchHeldError(f"{held_summary(wm.held)}: nothing else runs until it is approved or rejected; "
                                 f"{decide_hint(batch_id)}")
        log.info("discover: %s", held_summary(wm.held))
        return self._plan(batch_id)

    def approve(self, batch_id: str) -> Watermark:
        """Mark the held batch approved (one compare-and-set): the next pass publishes it as it is staged and
        commits it; its gates are measured again for the report but hold it no more."""
        wm = self.lease.check()
        self._must_be_held(wm, batch_id)
        if self.out.head(layout.result_key(batch_id)) is None:
            raise FileNotFoundError(f"batch {batch_id}: its staged output is gone from {self.out.url}; reject it "
                                    f"(`nexgen-etl batch reject {batch_id}`), or drop the hold with a state operation")
        new = wm.approving(batch_id, utcnow())
        self.state.compare_and_set(wm.revision, new)
        log.info("batch %s approved: the next pass (or this command) publishes it as staged", batch_id)
        return new

    def reject(self, batch_id: str) -> Watermark:
        """Drop the held batch: its files (key + ETag) are marked rejected in the state, so that discovery passes
        them by until they change; then its staged output is deleted and its report says so."""
        wm = self.lease.check()
        self._must_be_held(wm, batch_id)
        plan = self._plan(batch_id)
        marks = {**wm.rejected, **{o.key: o.etag for o in plan.objects}}
        new = wm.operation("reject", held=None, rejected=marks,
                           _note={"rejected_batch": batch_id, "files": len(plan.objects)})
        self.state.compare_and_set(wm.revision, new)
        self.out.delete([o.key for o in self.out.list(layout.staging_dir(batch_id))])
        try:
            prev = run_report.read_report(self.out, batch_id)
            if prev is not None:
                run_report.write_report(self.out, run_report.finalise_report(
                    prev, run_report.read_steps(self.out, batch_id), "rejected", new.version))
        except Exception as exc:  # noqa: BLE001 - the report observes the batch (docs/operations.md, run reports)
            log.warning("report: could not mark the report of batch %s rejected: %s", batch_id, exc)
        log.info("batch %s rejected: %d files will not be picked up again until they change", batch_id,
                 len(plan.objects))
        return new

    # -- helpers ------------------------------------------------------------------------------------------------
    @staticmethod
    def _must_be_held(wm: Watermark, batch_id: str) -> None:
        if (wm.held or {}).get("batch_id") != batch_id:
            raise ValueError(f"batch {batch_id} is not held ({held_summary(wm.held)})")

    def _plan(self, batch_id: str) -> BatchPlan:
        return BatchPlan.from_json(self.out.get_bytes(layout.plan_key(batch_id)).decode())

    def _record(self, batch_id: str, evaluation: dict) -> None:
        """_reports/<batch>/quality.json: the run report's quality section (an observer, like the report)."""
        try:
            self.out.put_bytes(layout.quality_key(batch_id), json.dumps(evaluation, indent=1, sort_keys=True).encode())
        except Exception as exc:  # noqa: BLE001 - the state, not this record, decides what happens to the batch
            log.warning("report: could not record the quality gates of batch %s: %s", batch_id, exc)

    def _report(self, plan: BatchPlan, result: StagedResult, catalog: Catalog, evaluation: dict,
                stage: str) -> str | None:
        """The run report of an unpublished batch, from its staged result: its target totals in place of the
        published ones of its periods."""
        try:
            batch_id, target = plan.batch_id, plan.contract["target"]
            staged = {p: s for p, s in (result.quality or {}).get("periods", {}).items()}
            periods = sorted(staged) or list(result.clean_partitions)
            series = [p for p in run_report.target_series(self.out, catalog, target, periods)
                      if p["period"] not in periods] + [{"period": p, "total": round(s["total"], 6), "rows": s["rows"]}
                                                        for p, s in staged.items()]
            manifest = Manifest(batch_id=batch_id, catalog_version=result.catalog_version,
                                inputs=[o.to_dict() for o in plan.objects], outputs=staged_outputs(self.out, batch_id),
                                accounting=result.accounting, totals=totals(result.accounting), timings=result.timings,
                                code_version=__version__, spark_version=result.spark_version,
                                contract=plan.contract.get("name"))
            report = run_report.build_report(manifest, run_report.read_steps(self.out, batch_id),
                                             sorted(series, key=lambda p: p["period"]), target, stage,
                                             quality=evaluation)
            return run_report.write_report(self.out, report)
        except Exception as exc:  # noqa: BLE001 - see _record
            log.warning("report: could not write the report of held batch %s: %s", plan.batch_id, exc)
            return None


def staged_outputs(store: ObjectStore, batch_id: str) -> dict[str, dict[str, list[str]]]:
    """dataset → partition → the batch's staged files (what publishing it would replace them with)."""
    out: dict[str, dict[str, list[str]]] = {}
    for ds in layout.DATASETS:
        prefix = layout.staged_dataset_dir(batch_id, ds)
        pattern = re.compile(re.escape(prefix) + re.escape(layout.PARTITION_OF[ds]) + r"=([^/]+)/[^/]+\.parquet$")
        parts: dict[str, list[str]] = {}
        for obj in store.list(prefix):
            if m := pattern.match(obj.key):
                parts.setdefault(m.group(1), []).append(obj.key)
        out[ds] = {k: sorted(v) for k, v in sorted(parts.items())}
    return out
