"""An unreadable state through the CLI: every command names it and the repair, and `state rebuild --force` repairs
it above every planned batch's version (local folders: no Spark, no S3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.discovery import BatchPlan
from nexgen_etl.core.layout import plan_key
from nexgen_etl.core.storage import LocalStore, ObjectInfo

CLI = [sys.executable, "-m", "nexgen_etl.cli"]


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "NEXGEN_STATE_URL": str(tmp_path / "state.json"),
                               "NEXGEN_OUTPUT_URL": str(tmp_path / "out"), "NEXGEN_RAW_URL": str(tmp_path / "raw")})


def test_corrupt_state_is_named_and_repaired_by_rebuild_force(tmp_path: Path) -> None:
    """Catches: `error: Expecting value: line 1 column 75 (char 74)` from every command with no way out but a hand
    repair (tried: the old Watermark.from_json gave exactly that for status, state show and state unlock)."""
    (tmp_path / "raw").mkdir()
    out = LocalStore(tmp_path / "out")
    obj = ObjectInfo(datetime(2024, 1, 2, tzinfo=timezone.utc), "sales/a.csv", "e1", 10)
    plan = BatchPlan.build([obj], str(tmp_path / "raw"), out.url, load_contract(), 41, {obj.key: ["date"]}, {})
    out.put_bytes(plan_key(plan.batch_id), plan.to_json().encode())
    state = tmp_path / "state.json"
    state.write_text('{"schema": 1, "version": 41, "revision": 50, "watermark": {"last_modified": "2026-01-0')

    for args in (["status"], ["state", "show"], ["state", "unlock"], ["state", "reset"]):
        failed = _cli(*args, tmp_path=tmp_path)
        assert failed.returncode != 0, args
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1, failed.stderr
        assert f"state {state} is not valid JSON at line 1 column" in lines[0]
        assert "nexgen-etl state rebuild --force" in lines[0]

    repaired = _cli("state", "rebuild", "--force", tmp_path=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    wm = json.loads(state.read_text())
    assert wm["version"] == 42  # above the plan's base version 41: that batch can no longer commit
    assert wm["recent_batches"][-1]["operation"] == "rebuild" and wm["recent_batches"][-1]["forced"] is True
    assert _cli("state", "show", tmp_path=tmp_path).returncode == 0

    refused = _cli("state", "rewind", "--to", "x", "--force", tmp_path=tmp_path)
    assert refused.returncode != 0 and "--force goes with reset or rebuild only" in refused.stderr
