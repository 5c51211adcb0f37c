"""The local scratch space of one spark-submit.

A local driver's temporary folders (`spark-*`, `blockmgr-*`: shuffle files and the batch's disk caches) go into
a folder of their own per submit, removed when the submit ends; a folder left by a process that was killed is
removed by the next submit on this host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from nexgen_etl.run.processes import process_alive

log = logging.getLogger("nexgen_etl")


def scratch_root() -> Path:
    return Path(os.environ.get("NEXGEN_SCRATCH_DIR") or Path(tempfile.gettempdir()) / "nexgen-spark")


def sweep_stale(root: Path) -> list[Path]:
    """Remove the scratch folders of processes that no longer exist (named <pid>-<random>)."""
    removed = []
    for folder in root.glob("*-*") if root.is_dir() else []:
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("transform: removed %d scratch folder(s) of killed runs under %s", len(removed), root)
    return removed


def local_scratch(master: str, conf: Mapping[str, str], scratch: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The conf and the environment that put a local driver's temporary folders into the scratch folder: none for a
    cluster master (its executors have their own disks), nor when the conf names `spark.local.dir` itself."""
    if not master.startswith("local") or "spark.local.dir" in conf:
        return {}, {}
    return {"spark.local.dir": str(scratch)}, {"SPARK_LOCAL_DIRS": str(scratch)}


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A fresh scratch folder for one submit (and the stale ones of dead processes removed first)."""
    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    sweep_stale(root)
    folder = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)

