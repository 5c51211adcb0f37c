"""The state stores: unreadable state named with its repair, unknown fields kept, compare-and-set as a conditional
write (no lost update), and the lease of a dead process on this host taken over. Local folders, no JVM."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nexgen_etl.core.state import (
    FileStateStore,
    LeaseHeldError,
    ObjectStateStore,
    StaleStateError,
    StateCorruptError,
    Watermark,
    utcnow,
)
from nexgen_etl.core.storage import LocalStore
from nexgen_etl.run.lease import Lease
from tests.racing import CompetingWriter


@pytest.fixture(params=["file", "object"])
def state_path(request, tmp_path: Path):
    return request.param, tmp_path


def _store(kind: str, tmp_path: Path):
    if kind == "file":
        return FileStateStore(tmp_path / "state.json"), tmp_path / "state.json"
    return ObjectStateStore(LocalStore(tmp_path), "_state.json"), tmp_path / "_state.json"


def test_unreadable_state_is_named_with_its_repair(state_path) -> None:
    """Catches: json's bare `Expecting value: line 1 column 75 (char 74)`, naming neither the state nor a way out."""
    store, path = _store(*state_path)
    path.write_text('{"schema": 1, "version": 3, "revision": 4, "watermark": {"last_modified": "2026-01-01T00:0')
    with pytest.raises(StateCorruptError) as err:
        store.read()
    message = str(err.value)
    assert str(path) in message and "not valid JSON at line 1 column" in message
    assert "nexgen-etl state rebuild --force" in message


def test_unknown_fields_survive_a_rewrite(state_path) -> None:
    """Catches: a newer writer's fields dropped silently when this version rewrites the state."""
    store, path = _store(*state_path)
    store.compare_and_set(0, Watermark().with_lease("me", utcnow()))
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "quality_gates": {"held": ["b1"]}}))
    wm = store.read()
    store.compare_and_set(wm.revision, wm.without_lease("me"))
    assert json.loads(path.read_text())["quality_gates"] == {"held": ["b1"]}


def test_two_writers_of_one_version_cannot_both_succeed(tmp_path: Path) -> None:
    """The second writer's compare-and-set fails even when the first wrote between its read and its write (the file
    store reads and writes under one exclusive lock, so only the object store can be interleaved).

    Catches: read-check-write without a conditional write (tried: the object store's write without If-Match let
    both succeed, the first write lost)."""
    store = ObjectStateStore(LocalStore(tmp_path), "_state.json")
    store.compare_and_set(0, Watermark())
    base = store.read()
    first = Watermark(version=7, revision=base.revision + 1)
    racing = ObjectStateStore(CompetingWriter(store.store, lambda: store.compare_and_set(base.revision, first)),
                              store.key)
    with pytest.raises(StaleStateError, match="another run wrote it first"):
        racing.compare_and_set(base.revision, Watermark(version=9, revision=base.revision + 1))
    assert store.read().version == 7


def test_two_runs_taking_the_lease_at_once_one_wins_and_the_other_says_why(tmp_path: Path) -> None:
    """Catches: both runs taking the lease (two PUTs after two empty reads, seen on S3 before conditional writes)."""
    store = ObjectStateStore(LocalStore(tmp_path), "_state.json")
    winner = Lease(store, "cli:other-host:1:aaaaaa")
    loser = Lease(ObjectStateStore(CompetingWriter(store.store, winner.acquire), "_state.json"), "cli:x:2:bbbbbb")
    with pytest.raises(LeaseHeldError, match="nexgen-etl state unlock"):
        loser.acquire()
    assert store.read().lease["owner"] == winner.owner


def test_the_lease_of_a_dead_process_on_this_host_is_taken_over(tmp_path: Path, caplog) -> None:
    """Catches: a killed CLI's lease blocking every run until it expires (two hours)."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"cli:{socket.gethostname()}:{int(gone.stdout)}:abcdef"
    store = FileStateStore(tmp_path / "state.json")
    Lease(store, dead).acquire()
    with caplog.at_level(logging.WARNING, logger="nexgen_etl"):
        wm = Lease(store, "cli:me:1:cccccc").acquire()
    assert wm.lease["owner"] == "cli:me:1:cccccc"
    assert f"its process {int(gone.stdout)} on this host is gone" in caplog.text


@pytest.mark.parametrize("owner", [
    pytest.param(f"cli:{socket.gethostname()}:{os.getpid()}:abcdef", id="live-process-here"),
    pytest.param("cli:another-host:1:abcdef", id="other-host"),
    pytest.param("airflow:nexgen_etl_pipeline", id="airflow"),
])
def test_a_live_or_unknown_holder_keeps_the_lease(tmp_path: Path, owner: str) -> None:
    """Catches: taking over a lease whose process may still run (alive here, or on a host this run cannot see)."""
    store = FileStateStore(tmp_path / "state.json")
    Lease(store, owner).acquire()
    with pytest.raises(LeaseHeldError, match="nexgen-etl state unlock"):
        Lease(store, "cli:me:1:cccccc").acquire()
    with pytest.raises(LeaseHeldError, match="nexgen-etl state unlock"):
        Lease(store, "cli:me:1:cccccc").check()
