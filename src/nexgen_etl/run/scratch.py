"""The local scratch space of one spark-submit, and the child's life tied to its parent's.

A local driver's temporary folders (`spark-*`, `blockmgr-*`: shuffle files and the batch's disk caches) go into
a folder of their own per submit, removed when the submit ends; a folder left by a process that was killed is
removed by the next submit on this host. The spark-submit child is killed with its parent (Linux's parent-death
signal), so a killed CLI leaves no driver writing into a batch's staging folder behind it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("nexgen_etl")
PR_SET_PDEATHSIG = 1


def scratch_root() -> Path:
    return Path(os.environ.get("NEXGEN_SCRATCH_DIR") or Path(tempfile.gettempdir()) / "nexgen-spark")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(root: Path) -> list[Path]:
    """Remove the scratch folders of processes that no longer exist (named <pid>-<random>)."""
    removed = []
    for folder in root.glob("*-*") if root.is_dir() else []:
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("transform: removed %d scratch folder(s) of killed runs under %s", len(removed), root)
    return removed


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


def die_with_parent() -> None:
    """preexec_fn of the spark-submit child: SIGKILL when the parent dies (Linux; elsewhere nothing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
