"""The pipeline lease, kept in the state: at most one run processes a raw location at a time.

A lease ends when its run releases it, when it expires (LEASE_SECONDS after it was taken), or when a run on the
same host finds that the process named in it is gone (a killed CLI): that run takes it over and says so.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass

from nexgen_etl.core.state import UNLOCK_HINT, LeaseHeldError, StaleStateError, StateStore, Watermark, utcnow
from nexgen_etl.run.processes import process_alive

log = logging.getLogger("nexgen_etl")
CLI_PREFIX = "cli"


def cli_owner() -> str:
    """A lease owner naming this process: cli:<host>:<pid>:<random>."""
    return f"{CLI_PREFIX}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def dead_local_owner(owner: str) -> int | None:
    """The pid of a CLI owner on this host whose process no longer exists; None for any other owner (another host,
    Airflow, a process that is alive or that this user may not signal)."""
    parts = owner.split(":")
    if len(parts) < 3 or parts[0] != CLI_PREFIX or parts[1] != socket.gethostname() or not parts[2].isdigit():
        return None
    pid = int(parts[2])
    return None if process_alive(pid) else pid


@dataclass(frozen=True)
class Lease:
    state: StateStore
    owner: str

    def acquire(self) -> Watermark:
        """Take (or renew) the lease in the state with one compare-and-set; refuses while another live run holds
        it, and takes over the lease of a CLI process on this host that is gone."""
        wm = self.state.read()
        base = wm
        holder = wm.lease_holder(utcnow())
        if holder not in (None, self.owner) and (pid := dead_local_owner(holder)) is not None:
            log.warning("lease: run %r held the lease but its process %d on this host is gone; %r takes it over",
                        holder, pid, self.owner)
            base = wm.without_lease(holder)
        new = base.with_lease(self.owner, utcnow())
        try:
            self.state.compare_and_set(wm.revision, new)
        except StaleStateError as exc:
            raise LeaseHeldError(f"another run wrote the state while {self.owner!r} was taking the lease ({exc}); "
                                 f"this run stops here ({UNLOCK_HINT})") from None
        return new

    def release(self) -> None:
        wm = self.state.read()
        new = wm.without_lease(self.owner)
        if new is not wm:
            self.state.compare_and_set(wm.revision, new)

    def check(self) -> Watermark:
        """The state, after checking that no other run holds the lease."""
        wm = self.state.read()
        holder = wm.lease_holder(utcnow())
        if holder not in (None, self.owner):
            raise LeaseHeldError(f"run {holder!r} holds the pipeline lease; {self.owner!r} stops here "
                                 f"({UNLOCK_HINT})")
        return wm
