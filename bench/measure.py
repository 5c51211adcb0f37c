"""Measuring one subprocess: wall time, CPU of the child process tree, and peak RSS of the tree (from /proc, by
nexgen_etl.dev.measure.PeakRss)."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import asdict, dataclass, field

from nexgen_etl.dev.measure import PeakRss  # the one process-tree sampler, shared with the big-file test


@dataclass
class Sample:
    wall_s: float
    cpu_s: float  # user + sys of the whole (reaped) child process tree
    peak_rss_mb: float  # max over time of the summed RSS of the tree
    returncode: int
    output: str = field(default="", repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("output")
        return d


def run_measured(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
                 interval: float = 0.2, timeout: float = 3600) -> Sample:
    """Run argv to completion, polling the RSS of its process tree; CPU from RUSAGE_CHILDREN deltas. What earlier
    runs wrote is flushed to disk first: the kernel's write-back of it (a full run writes its whole output) would
    otherwise take the cores during the next run."""
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with PeakRss(proc.pid, interval=interval) as peak:
        out, _ = proc.communicate(timeout=timeout)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(wall_s=round(wall, 3), cpu_s=round(cpu, 3), peak_rss_mb=round(peak.tree_peak / 2**20, 1),
                  returncode=proc.returncode, output=out.decode("utf-8", "replace"))
