"""The peak resident memory of a process tree, sampled from /proc (Linux; psutil is not a dependency).

Used by the benchmark (bench/measure.py: every measured run) and the big-file test and run (dev/bigfile.py).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

PAGE = os.sysconf("SC_PAGE_SIZE")
PF_FORKNOEXEC = 0x40  # /proc/<pid>/stat flags: forked, not yet exec'd


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                ppid, flags = int(fields[1]), int(fields[6])
            except (OSError, IndexError, ValueError):
                continue
            if flags & PF_FORKNOEXEC:  # a fork before its exec still shows all of its parent's pages
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def rss_bytes(pid: int) -> int:
    """Resident bytes of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree(pid: int) -> list[int]:
    """pid and its descendants now, leaving out children forked but not yet exec'd."""
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


@dataclass
class PeakRss:
    """Samples a process tree every `interval` s: peak of the sum over the tree and of the root alone.

        with PeakRss(proc.pid) as peak:
            proc.communicate()
        peak.tree_peak, peak.root_peak   # bytes
    """

    pid: int
    interval: float = 0.2
    tree_peak: int = 0
    root_peak: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        while not self._stop.is_set():
            root = rss_bytes(self.pid)
            total = sum(rss_bytes(p) for p in tree(self.pid))
            self.root_peak, self.tree_peak = max(self.root_peak, root), max(self.tree_peak, total)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
