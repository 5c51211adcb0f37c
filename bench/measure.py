"""Measuring one subprocess: wall time, CPU of the child process tree, and peak RSS of the tree (from /proc)."""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field


PF_FORKNOEXEC = 0x40  # /proc/<pid>/stat flags: forked, not yet exec'd


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


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: ppid is the 2nd field after the last ')'
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[6]) & PF_FORKNOEXEC:
            continue  # a fork before its exec (the JVM spawning chmod, say) shows all its parent's pages again
        ppid = int(fields[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(root: int) -> float:
    kids = _children_map()
    todo, total = [root], 0
    while todo:
        pid = todo.pop()
        total += _rss_kb(pid)
        todo.extend(kids.get(pid, []))
    return total / 1024


def run_measured(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
                 interval: float = 0.2, timeout: float = 3600) -> Sample:
    """Run argv to completion, polling the RSS of its process tree; CPU from RUSAGE_CHILDREN deltas."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0.0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            done.wait(interval)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        done.set()
        poller.join()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(wall_s=round(wall, 3), cpu_s=round(cpu, 3), peak_rss_mb=round(peak[0], 1),
                  returncode=proc.returncode, output=out.decode("utf-8", "replace"))
