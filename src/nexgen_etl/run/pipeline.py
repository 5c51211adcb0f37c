"""One pass of the pipeline, step by step: discover → extract → transform → load → commit.

The CLI runs all steps in one process; each Airflow task calls exactly one of them. No Airflow imports here, and no
PySpark: the transform is a spark-submit of the job (nexgen_etl.spark.job) in a process of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from nexgen_etl.core.contract import Contract, load_contract
from nexgen_etl.core.discovery import BatchPlan, Discovery, discover_new_objects, listing_start_after
from nexgen_etl.core.faults import maybe_fail
from nexgen_etl.core.headers import HEAD_BYTES, inspect_header, verify_gzip
from nexgen_etl.core.layout import plan_key
from nexgen_etl.core.progress import Progress
from nexgen_etl.core.publish import publish_batch
from nexgen_etl.core.results import Manifest
from nexgen_etl.core.settings import AwsCredentials, Settings
from nexgen_etl.core.state import StaleStateError, StateStore, Watermark
from nexgen_etl.core.storage import ObjectInfo, ObjectStore, open_store, s3_client, spark_uri
from nexgen_etl.run.gates import Gatekeeper
from nexgen_etl.run.lease import Lease, cli_owner
from nexgen_etl.run.operations import StateOperations
from nexgen_etl.run.processes import die_with_parent
from nexgen_etl.run.reporting import RunReports, Stopwatch
from nexgen_etl.run.scratch import local_scratch, scratch_dir
from nexgen_etl.run.spark_output import relay_spark_output
from nexgen_etl.spark.jars import spark_submit_binary
from nexgen_etl.spark.submit import input_bytes, submit_spec

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
    owner: str = field(default_factory=cli_owner)
    console_progress: bool = False  # Spark's console progress bar on stderr (the CLI on a terminal only)

    @property
    def lease(self) -> Lease:
        return Lease(self.state, self.owner)

    @property
    def reports(self) -> RunReports:
        return RunReports(self.out)

    @property
    def gates(self) -> Gatekeeper:
        return Gatekeeper(self.state, self.lease, self.out)

    @property
    def operations(self) -> StateOperations:
        return StateOperations(self.state, self.lease, self.raw, self.out, self.contract)

    # -- discover ---------------------------------------------------------------------------------------------
    def discover(self) -> tuple[Discovery, Watermark]:
        """Take the lease, then list the raw location against the watermark. Releases the lease when nothing is
        new (the run ends there). While the quality gates hold a batch, the batch once approved is all there is
        (else BatchHeldError: nothing runs until an operator decides; run.gates)."""
        watch = Stopwatch("discover")
        wm = self.lease.acquire()
        maybe_fail("discover.after_lease")
        try:
            if wm.held:
                found = Discovery(new=self.gates.held_plan(wm).objects, listed=0)
            else:
                listing = self._listing(self.contract.source.prefix, listing_start_after(wm, self.contract))
                found = discover_new_objects(listing, wm, self.contract)
        except Exception:
            self.lease.release()  # e.g. credentials refused: the fixed re-run must not wait for the lease to expire
            raise
        found = dataclasses.replace(found, timing=watch.stop())
        log.info("discover: listed %d objects in %s in %.2fs; %d new (%d bytes), %d deferred by the batch cap, "
                 "%d ignored (not matching %s)", found.listed, self.raw.url, watch.elapsed(), len(found.new),
                 sum(o.size for o in found.new), found.deferred, len(found.ignored),
                 list(self.contract.source.patterns))
        if not found.new:
            self.lease.release()
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
        watch = Stopwatch("extract")
        headers, rejected = self._inspect(objects)
        plan = BatchPlan.build(objects, self.raw.url, self.out.url, self.contract, state_version, headers, rejected)
        self.lease.check()
        if self.out.head(plan_key(plan.batch_id)) is None:
            self.out.put_bytes(plan_key(plan.batch_id), plan.to_json().encode())
        else:
            plan = self.read_plan(plan.batch_id)
        log.info("extract: batch %s frozen with %d files, %d bytes", plan.batch_id, len(plan.objects),
                 plan.total_bytes)
        if discover_timing:
            self.reports.record(plan.batch_id, discover_timing)
        self.reports.record(plan.batch_id, watch.stop())
        maybe_fail("extract.after_plan")
        return plan

    def _inspect(self, objects: list[ObjectInfo]) -> tuple[dict[str, list[str]], dict[str, dict]]:
        """Each object's header (when readable) or the reason the whole file is rejected."""
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
        return headers, rejected

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
        with scratch_dir() as scratch, self.reports.timed(plan.batch_id, "transform") as watch:
            # a local driver's temporary folders in this submit's scratch folder, unless the settings name one
            local_conf, local_env = local_scratch(self.settings.spark_master, spec.conf, scratch)
            spec = dataclasses.replace(spec, conf={**spec.conf, **local_conf})
            argv = spec.argv(["--plan", self.plan_uri(plan.batch_id)], spark_submit=spark_submit_binary())
            env = {**os.environ, **spec.env, **local_env}
            if credentials is not None:
                env.update(credentials.as_env())
            log.info("transform: %s", " ".join(argv[:3] + ["…", spec.application]))
            with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  preexec_fn=die_with_parent) as proc:
                try:
                    tail = relay_spark_output(proc.stdout, sys.stderr if self.console_progress else None)
                except BaseException:  # e.g. Ctrl-C: leave no spark-submit behind
                    proc.kill()
                    raise
            if proc.returncode != 0:
                raise RuntimeError(f"spark-submit failed with exit code {proc.returncode}:\n" + "\n".join(tail))
        log.info("transform: done in %.1fs", watch.elapsed())

    # -- load -------------------------------------------------------------------------------------------------
    def load(self, plan: BatchPlan) -> Manifest:
        """Publish the batch, then write its run report (after the commit point; see docs/operations.md). A batch
        that breaks its contract's quality gates is held instead (QualityGateError; run.gates)."""
        with self.reports.timed(plan.batch_id, "load"):
            self.lease.check()
            self.gates.check(plan)
            manifest = publish_batch(self.out, plan)
            log.info("load: batch %s %s: %s", plan.batch_id, manifest.publish, manifest.totals)
        self.reports.write(plan.batch_id, "load")
        return manifest

    # -- commit -----------------------------------------------------------------------------------------------
    def commit(self, plan: BatchPlan, manifest: Manifest) -> Watermark:
        """Advance the watermark past the batch (and drop the lease), with compare-and-set; idempotent. The run
        report is finalised afterwards with the commit's timing."""
        watch = Stopwatch("commit")
        wm = self.lease.check()
        if any(b.get("batch_id") == plan.batch_id for b in wm.recent_batches):
            log.info("commit: batch %s already committed (state v%d)", plan.batch_id, wm.version)
            self.lease.release()
            if self.reports.stage(plan.batch_id) != "commit":
                self.reports.record(plan.batch_id, watch.stop())
                self.reports.write(plan.batch_id, "commit")
            return self.state.read()
        if wm.version != plan.base_state_version:
            raise StaleStateError(f"batch {plan.batch_id} was planned on state v{plan.base_state_version}, "
                                  f"state is now v{wm.version}")
        summary = {"batch_id": plan.batch_id, "files": len(plan.objects),
                   "committed_at": datetime.now(timezone.utc).isoformat(), **manifest.totals}
        if (wm.held or {}).get("batch_id") == plan.batch_id:  # published against its quality gates
            summary["approved_at"] = wm.held.get("approved_at")
        new = wm.advance(plan.objects, summary)
        maybe_fail("commit.before_write")
        self.state.compare_and_set(wm.revision, new)
        log.info("commit: watermark → %s %s (state v%d)", new.last_modified, new.key, new.version)
        self.reports.record(plan.batch_id, watch.stop())
        self.reports.write(plan.batch_id, "commit", state_version=new.version)
        return new

    # -- all steps --------------------------------------------------------------------------------------------
    def run_once(self, credentials: AwsCredentials | None,
                 transform: Callable[[BatchPlan], None] | None = None) -> dict:
        """discover → extract → transform → load → commit. `transform(plan)` replaces spark-submit (tests)."""
        found, wm = self.discover()
        if not found.new:
            log.info("nothing new above the watermark (%s); nothing to do", wm.mark)
            return {"status": "nothing_new", "listed": found.listed}
        with self._lease_given_back_on_failure():
            plan = self.extract(found.new, wm.version, found.timing)
            if transform is None:
                self.transform(plan, credentials)
            else:
                with self.reports.timed(plan.batch_id, "transform"):
                    transform(plan)
            manifest = self.load(plan)
            self.commit(plan, manifest)
        return {"status": "committed", "batch_id": plan.batch_id, "deferred": found.deferred,
                "totals": manifest.totals}

    @contextlib.contextmanager
    def _lease_given_back_on_failure(self) -> Iterator[None]:
        """A failed pass gives the lease back (every step is safe to redo); a killed one leaves it to expire."""
        try:
            yield
        except BaseException:
            try:
                self.lease.release()
            except Exception as exc:  # noqa: BLE001 - the original failure matters more
                log.warning("could not release the lease after a failure: %s", exc)
            raise

    def approve_batch(self, batch_id: str) -> dict:
        """`nexgen-etl batch approve`: mark the held batch approved, then publish it as it is staged and commit it
        (a pass would do the same after transforming it again)."""
        self.gates.approve(batch_id)
        self.lease.acquire()
        with self._lease_given_back_on_failure():
            plan = self.read_plan(batch_id)
            manifest = self.load(plan)
            wm = self.commit(plan, manifest)
        return {"status": "committed", "batch_id": batch_id, "state_version": wm.version, "totals": manifest.totals}

    def apply_operation(self, op: str, to_batch: str | None = None, key: str | None = None,
                        prefix: str | None = None, since: datetime | None = None) -> Watermark | None:
        """A state operation by name (StateOperations.apply); None for 'run'."""
        return self.operations.apply(op, to_batch=to_batch, key=key, prefix=prefix, since=since)


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
