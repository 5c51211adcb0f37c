"""Fault injection for tests: `NEXGEN_FAULT=<point>[:kill]` makes the named point raise (or kill the process).

With NEXGEN_FAULT_ONCE=<path>, the fault fires only while that file does not exist (it is created when the
fault fires), so a retry of the same step succeeds. Unset in production: maybe_fail() is then a dict lookup.
"""

from __future__ import annotations

import os
from pathlib import Path

POINTS = (
    "discover.after_lease",
    "extract.after_plan",
    "transform.between_writes",
    "transform.before_result",
    "load.mid_copy",
    "load.after_manifest",
    "load.after_catalog",
    "load.mid_view",
    "commit.before_write",
)


# faults that change a value instead of raising (fault_active): one row goes missing from the job's accounting
VALUE_POINTS = ("transform.lose_a_row",)


class InjectedFault(RuntimeError):
    """A failure injected by NEXGEN_FAULT (tests only)."""


def fault_active(point: str) -> bool:
    """Whether NEXGEN_FAULT names this point (for faults that change a value instead of raising)."""
    spec = os.environ.get("NEXGEN_FAULT")
    return bool(spec) and spec.partition(":")[0] == point


def maybe_fail(point: str) -> None:
    spec = os.environ.get("NEXGEN_FAULT")
    if not spec:
        return
    name, _, mode = spec.partition(":")
    if name != point:
        return
    once = os.environ.get("NEXGEN_FAULT_ONCE")
    if once:
        marker = Path(once)
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(point)
    if mode == "kill":
        os._exit(137)  # like SIGKILL: no cleanup, no finally blocks
    raise InjectedFault(f"injected fault at {point}")
