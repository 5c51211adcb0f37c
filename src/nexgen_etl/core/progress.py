"""Progress of long loops (uploads, listings) as log lines: often enough on a terminal, rarely in task logs."""

from __future__ import annotations

import logging
import sys
import time

TTY_INTERVAL = 2.0  # seconds between progress lines on a terminal
LOG_INTERVAL = 30.0  # … and when stderr is a file or a task log (Airflow), so logs stay short


def interactive() -> bool:
    """Whether a person is watching: stderr is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Counts for one long loop, logged at most every `interval` seconds, never once per item.

    `what` names the thing counted ("upload: files"); `total` is shown when known.
    """

    def __init__(self, log: logging.Logger, what: str, total: int | None = None, interval: float | None = None,
                 clock=time.monotonic) -> None:
        self.log, self.what, self.total = log, what, total
        self.interval = interval if interval is not None else (TTY_INTERVAL if interactive() else LOG_INTERVAL)
        self.clock = clock
        self.count = 0
        self.amount = 0
        self.started = self.last = clock()
        self.lines = 0

    def update(self, n: int = 1, amount: int = 0, note: str = "") -> None:
        self.count += n
        self.amount += amount
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._emit(note)

    def done(self, note: str = "") -> None:
        """A final line, only when progress lines were shown (a short loop says nothing extra)."""
        if self.lines:
            self._emit(note)

    def _emit(self, note: str) -> None:
        self.lines += 1
        of = f"/{self.total}" if self.total is not None else ""
        pct = f" ({100 * self.count / self.total:.0f}%)" if self.total else ""
        size = f", {self.amount / 1e6:.1f} MB" if self.amount else ""
        extra = f", {note}" if note else ""
        self.log.info("%s %d%s%s%s%s after %.0fs", self.what, self.count, of, pct, size, extra,
                      self.clock() - self.started)
