"""One pass of the pipeline, step by step: discover → extract → transform → load → commit.

The CLI runs all steps in one process; each Airflow task calls exactly one of them. No Airflow imports here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import subprocess
import sys
import time
import socket
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from nexgen_etl.core import report as run_report
from nexgen_etl.core.contract import Contract, load_contract
from nexgen_etl.core.discovery import BatchPlan, Discovery, discover_new_objects, listing_start_after
from nexgen_etl.core.layout import plan_key
from nexgen_etl.core.results import Manifest
from nexgen_etl.core.headers import HEAD_BYTES, inspect_header, verify_gzip
from nexgen_etl.core.publish import publish_batch
from nexgen_etl.core.settings import AwsCredentials, Settings
from nexgen_etl.spark.submit import input_bytes, spark_submit_binary, submit_spec
from nexgen_etl.core.faults import maybe_fail
from nexgen_etl.core.progress import Progress
from nexgen_etl.core.state import LeaseHeldError, StaleStateError, StateStore, Watermark, utcnow
from nexgen_etl.core.storage import ObjectInfo, ObjectStore, open_store, s3_client, spark_uri

log = logging.getLogger("nexgen_etl")


class BatchChangedError(RuntimeError):
    """An object of the batch changed or vanished between discovery and extract."""


@dataclass
class Pipeline:
    settings: Settings
    contract: Contract
    raw: ObjectStore
    out: ObjectStore
    state: StateStore
    owner: str = field(default_factory=lambda: f"cli:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    console_progress: bool = False  # Spark's console progress bar on stderr (the CLI on a terminal only)

    # -- lease ------------------------------------------------------------------------------------------------
    def acquire_lease(self) -> Watermark:
        """Take (or renew) the lease in the state; refuses while another live run holds it."""
        wm = self.state.read()
        new = wm.with_lease(self.owner, utcnow())
        self.state.compare_and_set(wm.revision, new)
        return new

    def release_lease(self) -> None:
        wm = self.state.read()
        new = wm.without_lease(self.owner)
        if new is not wm:
            self.state.compare_and_set(wm.revision, new)

    def check_lease(self) -> Watermark:
        wm = self.state.read()
        holder = wm.lease_holder(utcnow())
        if holder not in (None, self.owner):
            raise LeaseHeldError(f"run {holder!r} holds the pipeline lease; {self.owner!r} stops here")
        return wm

    # -- discover ---------------------------------------------------------------------------------------------
    def discover(self) -> tuple[Discovery, Watermark]:
        """Take the lease, then list the raw location against the watermark. Releases the lease when nothing is
        new (the run ends there)."""
        started, t0 = datetime.now(timezone.utc), time.monotonic()
        wm = self.acquire_lease()
        maybe_fail("discover.after_lease")
        try:
            listing = self._listing(self.contract.source.prefix, listing_start_after(wm, self.contract))
            found = discover_new_objects(listing, wm, self.contract)
        except Exception:
            self.release_lease()  # e.g. credentials refused: the fixed re-run must not wait for the lease to expire
            raise
        found = dataclasses.replace(found, timing=run_report.step_record("discover", started, time.monotonic() - t0))
        log.info("discover: listed %d objects in %s in %.2fs; %d new (%d bytes), %d deferred by the batch cap, "
                 "%d ignored (not matching %s)", found.listed, self.raw.url, time.monotonic() - t0, len(found.new),
                 sum(o.size for o in found.new), found.deferred, len(found.ignored), list(self.contract.source.patterns))
        if not found.new:
            self.release_lease()
        return found, wm

    def _listing(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """The raw listing, with progress (objects so far, pages) for listings long enough to wait for."""
        pages0 = getattr(self.raw, "list_calls", None)
        progress = Progress(log, "discover: objects listed")

        def pages() -> str:
            return "" if pages0 is None else f"{self.raw.list_calls - pages0} pages"

        for obj in self.raw.list(prefix, start_after=start_after):
            yield obj
            progress.update(note=pages())
        progress.done(note=pages())

    # -- extract ----------------------------------------------------------------------------------------------
    def extract(self, objects: list[ObjectInfo], state_version: int, discover_timing: dict | None = None) -> BatchPlan:
        """Check every object is still the version listed and inspect its header (one ranged GET each), then
        freeze the plan (idempotent: the same object versions give the same id and plan). `discover_timing` (from
        Discovery.timing) is recorded for the run report once the batch has an id."""
        started, t0 = datetime.now(timezone.utc), time.monotonic()
        headers: dict[str, list[str]] = {}
        rejected: dict[str, dict] = {}
        for obj in objects:
            now = self.raw.head(obj.key)
            if now is None or now.etag != obj.etag:
                raise BatchChangedError(f"{obj.key} changed or vanished since discovery; the next run will pick "
                                        "up its current version")
            data = self.raw.get_head_bytes(obj.key, HEAD_BYTES) if obj.size else b""
            header, why = inspect_header(data, obj.key, self.contract)
            if header is not None and obj.key.endswith(".gz"):
                why = verify_gzip(self.raw.iter_bytes(obj.key))
                header = None if why else header
            if header is None:
                rejected[obj.key] = why
                log.warning("extract: %s quarantined as a whole file: %s (%s)", obj.key, why["reason"], why["detail"])
            else:
                headers[obj.key] = header
        plan = BatchPlan.build(objects, self.raw.url, self.out.url, self.contract, state_version, headers, rejected)
        self.check_lease()
        existing = self.out.head(plan_key(plan.batch_id))
        if existing is None:
            self.out.put_bytes(plan_key(plan.batch_id), plan.to_json().encode())
        else:
            plan = BatchPlan.from_json(self.out.get_bytes(plan_key(plan.batch_id)).decode())
        log.info("extract: batch %s frozen with %d files, %d bytes", plan.batch_id, len(plan.objects),
                 plan.total_bytes)
        if discover_timing:
            self._record(plan.batch_id, discover_timing)
        self._record(plan.batch_id, run_report.step_record("extract", started, time.monotonic() - t0))
        maybe_fail("extract.after_plan")
        return plan

    def plan_uri(self, batch_id: str) -> str:
        return spark_uri(self.out.url, plan_key(batch_id))

    def read_plan(self, batch_id: str) -> BatchPlan:
        return BatchPlan.from_json(self.out.get_bytes(plan_key(batch_id)).decode())

    # -- transform --------------------------------------------------------------------------------------------
    def transform(self, plan: BatchPlan, credentials: AwsCredentials | None) -> None:
        """spark-submit the job; credentials reach it only through the child's environment. Its output is
        relayed as it comes: the lines that matter to the log, Spark's progress bar to a terminal."""
        spec = submit_spec(self.settings, batch_bytes=input_bytes(plan.objects))
        if self.console_progress:
            spec = dataclasses.replace(spec, conf={**spec.conf, "spark.ui.showConsoleProgress": "true"})
        argv = spec.argv(["--plan", self.plan_uri(plan.batch_id)], spark_submit=spark_submit_binary())
        env = {**os.environ, **spec.env}
        if credentials is not None:
            env.update(credentials.as_env())
        log.info("transform: %s", " ".join(argv[:3] + ["…", spec.application]))
        t0 = time.monotonic()
        with self.timed_step(plan.batch_id, "transform"):
            with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
                try:
                    tail = relay_spark_output(proc.stdout, sys.stderr if self.console_progress else None)
                except BaseException:  # e.g. Ctrl-C: leave no spark-submit behind
                    proc.kill()
                    raise
            if proc.returncode != 0:
                raise RuntimeError(f"spark-submit failed with exit code {proc.returncode}:\n" + "\n".join(tail))
        log.info("transform: done in %.1fs", time.monotonic() - t0)

    # -- load -------------------------------------------------------------------------------------------------
    def load(self, plan: BatchPlan) -> Manifest:
        """Publish the batch, then write its run report (after the commit point; see docs/operations.md)."""
        with self.timed_step(plan.batch_id, "load"):
            self.check_lease()
            manifest = publish_batch(self.out, plan)
            log.info("load: batch %s %s: %s", plan.batch_id, manifest.publish, manifest.totals)
        self.write_report(plan.batch_id, "load")
        return manifest

    # -- commit -----------------------------------------------------------------------------------------------
    def commit(self, plan: BatchPlan, manifest: Manifest) -> Watermark:
        """Advance the watermark past the batch (and drop the lease), with compare-and-set; idempotent. The run
        report is finalised afterwards with the commit's timing."""
        started, t0 = datetime.now(timezone.utc), time.monotonic()
        wm = self.check_lease()
        if any(b.get("batch_id") == plan.batch_id for b in wm.recent_batches):
            log.info("commit: batch %s already committed (state v%d)", plan.batch_id, wm.version)
            self.release_lease()
            if self._report_stage(plan.batch_id) != "commit":
                self._record(plan.batch_id, run_report.step_record("commit", started, time.monotonic() - t0))
                self.write_report(plan.batch_id, "commit")
            return self.state.read()
        if wm.version != plan.base_state_version:
            raise StaleStateError(f"batch {plan.batch_id} was planned on state v{plan.base_state_version}, "
                                  f"state is now v{wm.version}")
        summary = {"batch_id": plan.batch_id, "files": len(plan.objects),
                   "committed_at": datetime.now(timezone.utc).isoformat(), **manifest.totals}
        new = wm.advance(plan.objects, summary)
        maybe_fail("commit.before_write")
        self.state.compare_and_set(wm.revision, new)
        log.info("commit: watermark → %s %s (state v%d)", new.last_modified, new.key, new.version)
        self._record(plan.batch_id, run_report.step_record("commit", started, time.monotonic() - t0))
        self.write_report(plan.batch_id, "commit", state_version=new.version)
        return new

    # -- run report -------------------------------------------------------------------------------------------
    def _record(self, batch_id: str, record: dict) -> None:
        """Keep a step's timing for the report; never a reason for the step to fail."""
        try:
            run_report.record_step(self.out, batch_id, record)
        except Exception as exc:  # noqa: BLE001 - the report is an observer of the batch, not part of it
            log.warning("report: could not record the %s timing of batch %s: %s", record["step"], batch_id, exc)

    def _report_stage(self, batch_id: str) -> str | None:
        try:
            return (run_report.read_report(self.out, batch_id) or {}).get("stage")
        except Exception:  # noqa: BLE001 - unreadable: write it again
            return None

    @contextlib.contextmanager
    def timed_step(self, batch_id: str, step: str):
        """Record the wall time of a step that succeeds (a failed attempt leaves the earlier record alone)."""
        started, t0 = datetime.now(timezone.utc), time.monotonic()
        yield
        self._record(batch_id, run_report.step_record(step, started, time.monotonic() - t0))

    def write_report(self, batch_id: str, stage: str, state_version: int | None = None) -> str | None:
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

    # -- all steps --------------------------------------------------------------------------------------------
    def run_once(self, credentials: AwsCredentials | None, transform=None) -> dict:
        """discover → extract → transform → load → commit. `transform(plan)` replaces spark-submit (tests)."""
        found, wm = self.discover()
        if not found.new:
            log.info("nothing new above the watermark (%s); nothing to do", wm.mark)
            return {"status": "nothing_new", "listed": found.listed}
        try:
            plan = self.extract(found.new, wm.version, found.timing)
            if transform is None:
                self.transform(plan, credentials)
            else:
                with self.timed_step(plan.batch_id, "transform"):
                    transform(plan)
            manifest = self.load(plan)
            self.commit(plan, manifest)
        except BaseException:
            # a failed pass gives the lease back (every step is safe to redo); a killed one leaves it to expire
            try:
                self.release_lease()
            except Exception as exc:  # noqa: BLE001 - the original failure matters more
                log.warning("could not release the lease after a failure: %s", exc)
            raise
        return {"status": "committed", "batch_id": plan.batch_id, "deferred": found.deferred,
                "totals": manifest.totals}

    # -- operations -------------------------------------------------------------------------------------------
    def apply_operation(self, op: str, to_batch: str | None = None, key: str | None = None,
                        prefix: str | None = None, since: datetime | None = None) -> Watermark | None:
        """One operator action by name (the CLI's `state` command and the DAG params share it); None for 'run'."""
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
        raise ValueError(f"unknown operation {op!r}: use run, reset, rewind, reprocess or rebuild")

    def _replace_state(self, build) -> Watermark:
        wm = self.check_lease()
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
        from nexgen_etl.core.publish import read_catalog, read_manifest

        cat = read_catalog(self.out)
        if upto is not None and upto not in cat.batches:
            raise ValueError(f"batch {upto!r} is not in the catalog of {self.out.url}")
        folded = Watermark()
        for batch_id in cat.batches:
            m = read_manifest(self.out, batch_id)
            if m is None:
                raise FileNotFoundError(f"manifest of batch {batch_id} is missing in {self.out.url}")
            folded = folded.advance([ObjectInfo.from_dict(o) for o in m.inputs], {"batch_id": batch_id})
            if batch_id == upto:
                break
        note = {"_note": {"to_batch": upto}} if upto else {}
        return self._replace_state(lambda wm: wm.operation(
            op, last_modified=folded.last_modified, key=folded.key, band=folded.band,
            band_times=folded.band_times, reprocess=(), **note))

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


def relay_spark_output(stream, console=None, keep: int = 40) -> list[str]:
    """Read spark-submit's merged output as it comes. Lines that matter (the job's own, errors) go to the log
    at once; carriage-return frames (Spark's console progress bar) go to `console` when given, else nowhere.
    Returns the last `keep` lines, for the error message of a failed submit."""
    tail: deque[str] = deque(maxlen=keep)
    buf = b""

    def line(text: str) -> None:
        tail.append(text)
        if "nexgen-etl" in text or "ERROR" in text or "Error" in text or "Traceback" in text:
            log.info("spark: %s", text)

    while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
        buf += chunk
        while True:
            cut = min((i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0), default=-1)
            if cut < 0:
                break
            piece, sep, buf = buf[:cut].decode(errors="replace"), buf[cut:cut + 1], buf[cut + 1:]
            if sep == b"\r" and (piece.startswith("[Stage") or not piece.strip()):
                if console is not None:  # a progress frame, or the blank that clears it
                    console.write("\r" + piece + ("" if piece.strip() else "\r"))
                    console.flush()
                continue
            if piece.startswith("[Stage"):  # a frame the next line was printed straight after
                piece = piece.split("]", 1)[-1]
                if not piece.strip():
                    continue
            line(piece)
    if buf:
        line(buf.decode(errors="replace"))
    return list(tail)


def build_pipeline(settings: Settings, state: StateStore, credentials: AwsCredentials | None = None,
                   contract: Contract | None = None, credential_source: str | None = None) -> Pipeline:
    """With `credential_source`, S3 refusing the credentials mid-run fails with one line naming that source."""
    from nexgen_etl.run.preflight import name_credential_errors

    def factory():
        client = s3_client(settings.s3, credentials)
        if credential_source:
            name_credential_errors(client, credential_source, credentials.access_key_id if credentials else None)
        return client

    return Pipeline(settings=settings, contract=contract or load_contract(settings.contract_path),
                    raw=open_store(settings.raw_url, factory), out=open_store(settings.output_url, factory),
                    state=state)
