"""Real process kills, then a new run: the published output, the catalog's batches and the state equal a clean
run's, the killed run's lease is taken over (its process is gone), and its Spark scratch folder is removed.

The CLI runs on local folders (the kill semantics are the same as on S3, and it is faster): `nexgen-etl run` as a
child process, killed with SIGKILL from outside at a moment chosen by watching its output folder, or dying at a
fault point of the CLI's own steps with `NEXGEN_FAULT=<point>:kill` (os._exit: no cleanup, like SIGKILL, at an exact
step boundary). Kills inside the transform are SIGKILLs from outside, of the CLI and of the spark-submit JVM.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from nexgen_etl.core import layout
from nexgen_etl.core.catalog import Catalog
from nexgen_etl.dev.sample import SampleSpec, generate

CLI = [sys.executable, "-m", "nexgen_etl.cli"]


def _run(raw: Path, out: Path, scratch: Path, fault: str | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "NEXGEN_SCRATCH_DIR": str(scratch), "NEXGEN_SPARK_MASTER": "local[2]"}
    env.pop("NEXGEN_FAULT", None)
    if fault:
        env["NEXGEN_FAULT"] = fault
    return subprocess.Popen([*CLI, "run", "--raw", str(raw), "--output", str(out), "--state", str(out.parent /
                            f"{out.name}-state.json")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    text, _ = proc.communicate(timeout=timeout)
    return proc.returncode, text


def _dataset(out: Path, dataset: str) -> pd.DataFrame:
    cat = Catalog.from_json((out / layout.CATALOG_KEY).read_text())
    frames = [pq.read_table(out / f).to_pandas() for f in cat.files(dataset)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    drop = [c for c in ("_row_id",) if c in df.columns]
    df = df.drop(columns=drop)
    return df.sort_values(list(df.columns)[:6]).reset_index(drop=True)


def _prefix_rows(out: Path, dataset: str) -> int:
    """What a plain reader of the dataset's prefix sees (every Parquet file under it)."""
    return sum(pq.read_metadata(p).num_rows for p in (out / dataset).rglob("*.parquet"))


def _state(out: Path) -> dict:
    return json.loads((out.parent / f"{out.name}-state.json").read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("kills")
    raw = root / "raw"
    generate(raw, SampleSpec(stores=2, skus=3, days=6, dirt=0.1, seed=17))
    ref = root / "ref"
    code, text = _finish(_run(raw, ref, root / "scratch-ref"))
    assert code == 0, text
    return {"root": root, "raw": raw, "ref": ref}


def _assert_equals_clean_run(world, out: Path) -> None:
    for ds in ("features", "clean", "quarantine"):
        pd.testing.assert_frame_equal(_dataset(out, ds), _dataset(world["ref"], ds), check_like=True)
        assert _prefix_rows(out, ds) == _prefix_rows(world["ref"], ds), ds
    cat, ref = (Catalog.from_json((o / layout.CATALOG_KEY).read_text()) for o in (out, world["ref"]))
    assert len(cat.batches) == len(ref.batches) == 1 and cat.version == ref.version
    assert len(list((out / layout.MANIFEST_PREFIX).glob("*.json"))) == 1
    assert not list((out / layout.STAGING_PREFIX).rglob("*.parquet")), "staged files left behind"
    state, ref_state = _state(out), _state(world["ref"])
    assert state["watermark"] == ref_state["watermark"] and state["band"] == ref_state["band"]
    assert state["lease"] is None


def _then_a_new_run(world, out: Path, scratch: Path, killed_pid: int) -> str:
    code, text = _finish(_run(world["raw"], out, scratch))
    assert code == 0, text
    assert f"its process {killed_pid} on this host is gone" in text, text[-3000:]
    assert not [p for p in scratch.glob(f"{killed_pid}-*")], "the killed run's scratch folder is left"
    _assert_equals_clean_run(world, out)
    return text


@pytest.mark.parametrize("point", [
    pytest.param("extract.after_plan", id="before-the-transform"),
    pytest.param("load.mid_copy", id="mid-publish"),
    pytest.param("load.after_catalog", id="after-the-catalog-put"),
    pytest.param("commit.before_write", id="before-the-state-write"),
])
def test_cli_dying_at_a_step_then_a_new_run_equals_a_clean_run(world, point) -> None:
    """Catches: a killed run's lease blocking the next run (tried: without the dead-process takeover the new run
    stopped with "holds the pipeline lease"), a publish finished twice or half (batches, prefix rows), staged files
    or scratch folders left."""
    out, scratch = world["root"] / f"out-{point}", world["root"] / f"scratch-{point}"
    proc = _run(world["raw"], out, scratch, fault=f"{point}:kill")
    code, text = _finish(proc)
    assert code == 137, text[-3000:]
    assert _state(out)["lease"] is not None  # left behind by the dead process
    _then_a_new_run(world, out, scratch, proc.pid)


def _staged_parquet(out: Path) -> bool:
    """Whether a Parquet file is in the staging folder yet. Spark creates and removes its `_temporary` folders while
    this looks: a folder gone between listing and descending means "not yet", not an error."""
    try:
        return any((out / layout.STAGING_PREFIX).rglob("*.parquet"))
    except FileNotFoundError:
        return False


def _wait_for(predicate, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the run to reach the point to kill it at"
        time.sleep(0.05)


def test_sigkill_of_the_cli_mid_transform_kills_its_driver_too(world) -> None:
    """SIGKILL of the CLI while spark-submit writes: the driver dies with it (no orphan writing into the staging
    folder the next run writes too), and a new run equals a clean run.

    Catches: the killed CLI's lease blocking the new run (tried). Removing the parent-death signal alone did not make
    it fail (tried): the driver ended without it too, presumably on writing to the pipe whose reader was gone; the
    signal makes that certain rather than incidental."""
    out, scratch = world["root"] / "out-sigkill-cli", world["root"] / "scratch-sigkill-cli"
    proc = _run(world["raw"], out, scratch)
    _wait_for(lambda: _staged_parquet(out))
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "no spark-submit child to check"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{c}").exists() for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{c}").exists() for c in children), "spark-submit outlived the killed CLI"
    _then_a_new_run(world, out, scratch, proc.pid)


def test_sigkill_of_the_spark_driver_fails_the_run_cleanly(world) -> None:
    """SIGKILL of the spark-submit JVM: the run fails with the exit code, gives the lease back, removes its scratch
    folder; a new run equals a clean run."""
    out, scratch = world["root"] / "out-sigkill-jvm", world["root"] / "scratch-sigkill-jvm"
    proc = _run(world["raw"], out, scratch)
    _wait_for(lambda: _staged_parquet(out))
    java = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "java"], capture_output=True, text=True).stdout.split()
    driver = java[0] if java else subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                 text=True).stdout.split()[0]
    os.kill(int(driver), signal.SIGKILL)
    code, text = _finish(proc)
    assert code != 0 and "spark-submit failed with exit code" in text, text[-3000:]
    assert _state(out)["lease"] is None
    assert not list(scratch.glob("*-*")), "the failed run's scratch folder is left"
    code, text = _finish(_run(world["raw"], out, scratch))
    assert code == 0, text
    _assert_equals_clean_run(world, out)


def test_two_runs_started_at_once_exactly_one_processes(world) -> None:
    """Two `nexgen-etl run` processes started together on the same state and output: exactly one takes the lease and
    publishes, the other stops at once saying why (the lease is held, or the other run's compare-and-set came first)
    and how to free a stale lease; the output equals a clean run. Catches a live lease not refused (tried: with
    Watermark.with_lease taking the lease whoever holds it, both processed and the output held two batches) and a
    refusal without the unlock hint. The race inside the compare-and-set is made certain in
    test_conditional_writes.py."""
    out, scratch = world["root"] / "out-two-at-once", world["root"] / "scratch-two-at-once"
    procs = [_run(world["raw"], out, scratch) for _ in range(2)]
    results = [_finish(p) for p in procs]
    ran = [text for code, text in results if code == 0 and "committed" in text]
    refused = [(code, text) for code, text in results
               if "holds the pipeline lease" in text or "another run wrote the state while" in text]
    assert len(ran) == 1 and len(refused) == 1, [t[-1500:] for _, t in results]
    code, text = refused[0]
    assert code != 0 and "nexgen-etl state unlock" in text, text[-1500:]
    _assert_equals_clean_run(world, out)


def _features_keys(out: Path) -> list[tuple]:
    """(store, sku, day) of every row a plain reader of `features/` sees."""
    keys = []
    for p in (out / "features").rglob("*.parquet"):
        t = pq.read_table(p, columns=["store_id", "sku"]).to_pylist()
        keys += [(r["store_id"], r["sku"], p.parent.name) for r in t]
    return keys


def test_sigkill_in_the_middle_of_the_plain_view_leaves_no_key_twice(world) -> None:
    """A correction of one day published by a CLI that dies after the first partition of the plain view was replaced
    (after the catalog PUT): a reader of `features/` sees each (store, sku, day) exactly once, some days already
    corrected and some not; a new run finishes the view and equals a clean run over the corrected files.

    Catches: the view's new files added beside the old ones and the old deleted afterwards (tried: with a batch's
    names in the view, the killed run left the corrected days twice), and a new run that does not finish what the
    dead one left pending (the final comparison of prefix rows)."""
    root = world["root"]
    raw, out, scratch = root / "raw-corrected", root / "out-mid-view", root / "scratch-mid-view"
    shutil.copytree(world["raw"], raw)
    code, text = _finish(_run(raw, out, scratch))
    assert code == 0, text
    before = Counter(_features_keys(out))
    day2 = raw / "sales/2024/01/02/sales_2024-01-02.csv"
    lines = day2.read_text().splitlines()
    day2.write_text("\n".join([lines[0], *[re.sub(r"^([^,]*,[^,]*,[^,]*,)(\d+),", lambda m: f"{m[1]}{int(m[2]) + 7},",
                                                   line) for line in lines[1:]]]) + "\n")
    proc = _run(raw, out, scratch, fault="load.mid_view:kill")
    code, text = _finish(proc)
    assert code == 137, text[-3000:]
    after = Counter(_features_keys(out))
    assert after == before and set(after.values()) == {1}  # each key once, no day lost
    pending = list((out / layout.VIEW_PENDING_PREFIX).glob("*.json"))
    assert len(pending) == 1
    code, text = _finish(_run(raw, out, scratch))
    assert code == 0 and f"its process {proc.pid} on this host is gone" in text, text[-3000:]
    ref = root / "ref-corrected"
    code, text = _finish(_run(raw, ref, root / "scratch-ref-corrected"))
    assert code == 0, text
    for ds in ("features", "clean", "quarantine"):
        pd.testing.assert_frame_equal(_dataset(out, ds), _dataset(ref, ds), check_like=True)
        assert _prefix_rows(out, ds) == _prefix_rows(ref, ds), ds
    assert len(Catalog.from_json((out / layout.CATALOG_KEY).read_text()).batches) == 2
    assert not list((out / layout.VIEW_PENDING_PREFIX).glob("*.json"))
    assert _state(out)["lease"] is None
