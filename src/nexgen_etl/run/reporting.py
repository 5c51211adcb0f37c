"""Step timings and the run report of a batch, as the pipeline's steps record them.

The report observes a batch, it is not part of it: a failure to record or write it is a warning, never a reason
for a step to fail (docs/operations.md, run reports).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from nexgen_etl.core import report as run_report
from nexgen_etl.core.storage import ObjectStore

log = logging.getLogger("nexgen_etl")


@dataclass
class Stopwatch:
    """The wall time of one step: when it started and, once stopped, how long it took."""

    step: str
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    t0: float = field(default_factory=time.monotonic)
    seconds: float | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0 if self.seconds is None else self.seconds

    def stop(self) -> dict:
        """The step's record for the report (run_report.step_record)."""
        self.seconds = time.monotonic() - self.t0
        return run_report.step_record(self.step, self.started, self.seconds)


@dataclass(frozen=True)
class RunReports:
    """The run reports in the loading bucket."""

    out: ObjectStore

    def record(self, batch_id: str, record: dict) -> None:
        """Keep a step's timing for the report."""
        try:
            run_report.record_step(self.out, batch_id, record)
        except Exception as exc:  # noqa: BLE001 - the report is an observer of the batch, not part of it
            log.warning("report: could not record the %s timing of batch %s: %s", record["step"], batch_id, exc)

    @contextlib.contextmanager
    def timed(self, batch_id: str, step: str) -> Iterator[Stopwatch]:
        """Record the wall time of a step that succeeds (a failed attempt leaves the earlier record alone)."""
        watch = Stopwatch(step)
        yield watch
        self.record(batch_id, watch.stop())

    def stage(self, batch_id: str) -> str | None:
        """The stage the stored report reached (load, commit), None when there is none or it is unreadable."""
        try:
            return (run_report.read_report(self.out, batch_id) or {}).get("stage")
        except Exception:  # noqa: BLE001 - unreadable: write it again
            return None

    def write(self, batch_id: str, stage: str, state_version: int | None = None) -> str | None:
        """Write _reports/<batch>/report.{json,html} and log where the HTML is. Runs after the catalog PUT, so it
        can neither publish nor un-publish anything; a failure is a warning, and the next step or retry (or
        `nexgen-etl report BATCH`) writes it again."""
        try:
            prev = run_report.read_report(self.out, batch_id) if stage == "commit" else None
            if prev is not None:
                rep = run_report.finalise_report(prev, run_report.read_steps(self.out, batch_id), stage, state_version)
            else:
                rep = run_report.collect_report(self.out, batch_id, stage, state_version)
            uri = run_report.write_report(self.out, rep)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("report: could not write the run report of batch %s (%s: %s); the batch itself is not "
                        "affected", batch_id, type(exc).__name__, exc)
            return None
        log.info("report: run report of batch %s at %s", batch_id, uri)
        return uri
