"""The quality gates: parsing the contract's `quality` field, measuring a staged result against them, and the state a
held or rejected batch leaves (core.quality, core.state)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from nexgen_etl.core.contract import DEFAULT_CONTRACT, ContractError, contract_from_dict, parse_contract
from nexgen_etl.core.quality import (
    MIN_ROWS,
    NON_NULL,
    PER_BATCH,
    PER_FILE,
    TARGET_BAND,
    QualityGates,
    TargetBand,
    evaluate,
    history_partitions,
    measure,
    parse_quality,
)
from nexgen_etl.core.results import FileAccounting, StagedResult
from nexgen_etl.core.state import Watermark
from nexgen_etl.core.storage import ObjectInfo

ALL = {"max_quarantined_share": {"per_file": 0.2, "per_batch": 0.05}, "min_non_null_share": {"unit_price": 0.9},
       "target_band": {"periods": 5, "mads": 3, "min_history": 3}, "min_rows_per_period": 10}


def contract_with(quality) -> dict:
    d = yaml.safe_load(DEFAULT_CONTRACT.read_text())
    d["quality"] = quality
    return d


# -- parsing ------------------------------------------------------------------------------------------------------------
def test_every_gate_parses_and_survives_the_frozen_plan():
    """Catches a gate lost on its way through the batch plan (Contract.to_dict → contract_from_dict): the job and
    load read the plan's copy, not the YAML."""
    c = parse_contract(contract_with(ALL))
    assert c.quality == QualityGates(max_quarantined_share_per_file=0.2, max_quarantined_share_per_batch=0.05,
                                     min_non_null_share=(("unit_price", 0.9),),
                                     target_band=TargetBand(periods=5, mads=3.0, min_history=3), min_rows_per_period=10)
    assert contract_from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.quality.declared and c.quality.needs_non_null and c.quality.needs_periods


def test_no_quality_field_means_no_gates_and_old_plans_have_none():
    """A contract without `quality`, and a plan frozen before the field existed, have no gates (nothing measured)."""
    c = parse_contract(contract_with(None))
    assert c.quality == QualityGates() and not c.quality.declared and not c.quality.needs_stats
    old = c.to_dict()
    del old["quality"]
    assert contract_from_dict(old) == c


def test_band_defaults_and_a_quarantine_gate_alone_needs_no_stats():
    gates = parse_quality({"target_band": {}, "max_quarantined_share": {"per_batch": 0.1}})
    assert gates.target_band == TargetBand(periods=28, mads=10.0, min_history=7)
    assert parse_quality({"target_band": {"periods": 3}}).target_band.min_history == 3  # at most periods
    only_shares = parse_quality({"max_quarantined_share": {"per_file": 0.5}})
    assert only_shares.declared and not only_shares.needs_stats  # the accounting has its numbers: no Spark action


@pytest.mark.parametrize("quality, message", [
    pytest.param([1], "quality: must be a mapping", id="not-a-mapping"),
    pytest.param({"max_quarantine": {}}, "quality: unknown field(s) max_quarantine; allowed:", id="unknown-field"),
    pytest.param({"max_quarantined_share": {"per_row": 0.1}}, "quality.max_quarantined_share: unknown field(s) "
                 "per_row", id="unknown-share"),
    pytest.param({"max_quarantined_share": {"per_file": 20}}, "quality.max_quarantined_share.per_file: must be a "
                 "share between 0 and 1 (0.05 = 5%), got 20", id="percent-not-share"),
    pytest.param({"max_quarantined_share": {"per_batch": True}}, "quality.max_quarantined_share.per_batch: must be "
                 "a share", id="bool-share"),
    pytest.param({"min_non_null_share": {"price": 0.9}}, "quality.min_non_null_share: 'price' is not a declared "
                 "column", id="undeclared-column"),
    pytest.param({"min_non_null_share": {"unit_price": "90%"}}, "quality.min_non_null_share.unit_price: must be a "
                 "share", id="string-share"),
    pytest.param({"min_non_null_share": ["unit_price"]}, "quality.min_non_null_share: must be a mapping",
                 id="list-not-mapping"),
    pytest.param({"target_band": {"periods": 0}}, "quality.target_band.periods: must be a positive integer",
                 id="zero-periods"),
    pytest.param({"target_band": {"mads": -1}}, "quality.target_band.mads: must be a positive number", id="neg-k"),
    pytest.param({"target_band": {"periods": 5, "min_history": 6}}, "quality.target_band.min_history: 6 is more than "
                 "periods (5)", id="history-longer-than-window"),
    pytest.param({"target_band": {"window": 5}}, "quality.target_band: unknown field(s) window", id="band-field"),
    pytest.param({"min_rows_per_period": 0}, "quality.min_rows_per_period: must be a positive integer", id="no-rows"),
])
def test_bad_quality_fields_are_named(quality, message):
    with pytest.raises(ContractError) as err:
        parse_contract(contract_with(quality))
    assert str(err.value).startswith(message)


# -- measuring ------------------------------------------------------------------------------------------------------------
def result(accounting: dict[str, FileAccounting] | None = None, quality: dict | None = None) -> StagedResult:
    return StagedResult(batch_id="b", catalog_version=1, accounting=accounting or {}, quality=quality or {})


def acc(read: int, quarantined: int, rejected: dict | None = None) -> FileAccounting:
    return FileAccounting(rows_read=read, rows_out=read - quarantined, rows_quarantined=quarantined,
                          file_rejected=rejected)


def test_quarantine_shares_per_file_and_per_batch():
    """A file at the limit passes, above it breaks; a file rejected whole counts as 100% quarantined (its rows were
    never read); the batch's share is over rows read. Catches >= for >, and the batch share taken as the mean of
    the files' shares (here 10.5% instead of 4.8%)."""
    gates = QualityGates(max_quarantined_share_per_file=0.2, max_quarantined_share_per_batch=0.05)
    r = result({"a.csv": acc(100, 20), "b.csv": acc(1000, 1), "c.csv": acc(0, 0, {"reason": "empty_file"})})
    checks = {(c.gate, c.subject): c for c in measure(gates, r, {})}
    assert checks[PER_FILE, "a.csv"].status == "pass"  # exactly 20%
    assert checks[PER_FILE, "b.csv"].status == "pass"
    rejected = checks[PER_FILE, "c.csv"]
    assert rejected.breached and rejected.value == 1.0 and "rejected as a whole (empty_file)" in rejected.detail
    batch = checks[PER_BATCH, "batch"]
    assert batch.value == pytest.approx(21 / 1100) and batch.status == "pass"
    r2 = result({"a.csv": acc(100, 21), "b.csv": acc(1000, 40)})
    breaches = evaluate(gates, r2, {})
    assert [(b.gate, b.subject) for b in breaches] == [(PER_FILE, "a.csv"), (PER_BATCH, "batch")]
    assert breaches[0].message == (f"{PER_FILE}: a.csv: 21.0% of its rows quarantined (21 of 100), maximum 20.0%")
    assert breaches[1].message == (f"{PER_BATCH}: 5.5% of the batch's rows quarantined (61 of 1100), maximum 5.0%")


def test_non_null_share_is_over_the_batchs_valid_rows():
    """Catches the share taken over rows read (quarantined rows have no values) or a missing column read as 100%."""
    gates = QualityGates(min_non_null_share=(("unit_price", 0.9), ("promo", 0.5)))
    r = result({"a.csv": acc(1000, 500)}, {"valid_rows": 500, "non_null": {"unit_price": 449, "promo": 250}})
    breaches = evaluate(gates, r, {})
    assert [b.subject for b in breaches] == ["unit_price"]
    assert breaches[0].message == (f"{NON_NULL}: unit_price is non-null in 89.8% of the batch's valid rows (449 of "
                                   "500), minimum 90.0%")
    empty = measure(gates, result({"a.csv": acc(10, 10)}, {"valid_rows": 0, "non_null": {}}), {})
    assert {c.status for c in empty} == {"skipped"}  # no valid rows: the quarantine gates speak for this batch


def test_min_rows_per_period():
    gates = QualityGates(min_rows_per_period=50)
    r = result(quality={"periods": {"2024-01-02": {"total": 1.0, "rows": 49}, "2024-01-03": {"total": 1.0,
                                                                                              "rows": 50}}})
    assert [b.message for b in evaluate(gates, r, {})] == [f"{MIN_ROWS}: 2024-01-02 has 49 rows, minimum 50"]


def days(first: int, n: int) -> list[str]:
    return [f"2024-01-{d:02d}" for d in range(first, first + n)]


def test_band_is_learned_from_the_published_periods_before_each_one():
    """Each period's band: the median ± k × MAD of the `periods` published partitions before it, leaving out the ones
    the batch replaces. Catches a band over all history (a trend would break it), over later periods, over the
    batch's own old totals, and a band checked with too little history."""
    gates = QualityGates(target_band=TargetBand(periods=5, mads=3, min_history=3))
    # published: 1..8 Jan; 9 and 10 Jan replaced by the batch (their old totals must not count)
    history = dict(zip(days(1, 8), [1000.0, 100, 102, 98, 104, 96, 100, 101]))
    history.update({"2024-01-09": 5000.0, "2024-01-10": 5000.0})
    periods = {"2024-01-09": {"total": 112.0, "rows": 9}, "2024-01-10": {"total": 88.0, "rows": 9}}
    r = result(quality={"periods": periods})
    assert history_partitions(gates, sorted(history), sorted(periods)) == days(4, 5)
    checks = measure(gates, r, history)
    # before 9 Jan: 98, 104, 96, 100, 101 → median 100, deviations 2, 4, 4, 0, 1 → MAD 2 → band 94 … 106
    c9, c10 = checks
    assert (c9.subject, c9.status, c9.limit) == ("2024-01-09", "breach", [94.0, 106.0])
    assert c9.message == (f"{TARGET_BAND}: 2024-01-09: target total 112 outside [94, 106] = median 100 ± 3 × MAD 2 "
                          "of the 5 published periods before it")
    assert (c10.status, c10.limit) == ("breach", [94.0, 106.0])  # the same five: 9 Jan is the batch's own
    short = measure(QualityGates(target_band=TargetBand(periods=5, mads=3, min_history=3)),
                    result(quality={"periods": {"2024-01-03": {"total": 1e9, "rows": 1}}}), history)
    assert short[0].status == "skipped" and "2 published periods before it, fewer than min_history 3" in \
        short[0].detail


def test_no_gates_measure_nothing():
    assert measure(QualityGates(), result({"a": acc(10, 10)}, {"valid_rows": 0}), {}) == []


# -- the state of a held or rejected batch --------------------------------------------------------------------------------
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def obj(key: str, etag: str, minutes: int = 0) -> ObjectInfo:
    return ObjectInfo(key=key, etag=etag, size=1, last_modified=T0 + timedelta(minutes=minutes))


def test_a_rejected_file_version_is_not_new_until_it_changes():
    """Catches marks by key only (a corrected file never processed again), marks ignored before the first commit,
    and a reprocess request that a rejection overrides."""
    wm = Watermark(rejected={"a.csv": "e1"})
    assert not wm.is_new(obj("a.csv", "e1"))
    assert wm.is_new(obj("a.csv", "e2")) and wm.is_new(obj("b.csv", "e1"))
    assert Watermark(rejected={"a.csv": "e1"}, reprocess=("a.csv",)).is_new(obj("a.csv", "e1"))
    done = wm.advance([obj("a.csv", "e2")], {"batch_id": "b2"})
    assert done.rejected == {}  # the committed version supersedes the rejected one


def test_holding_gives_the_lease_back_and_commit_or_an_operation_ends_the_hold():
    lease = {"owner": "me", "acquired_at": T0.isoformat(), "expires_at": (T0 + timedelta(hours=2)).isoformat()}
    wm = Watermark(version=3, revision=7, lease=lease)
    held = wm.holding({"batch_id": "b1", "gates": [PER_FILE]}, "me")
    assert (held.version, held.revision, held.lease, held.held["batch_id"]) == (3, 8, None, "b1")
    assert wm.holding({"batch_id": "b1"}, "other").lease == lease  # someone else's lease is not ours to drop
    approved = held.approving("b1", T0)
    assert approved.held["approved_at"] == T0.isoformat() and approved.version == 3
    with pytest.raises(ValueError, match="batch b2 is not held"):
        held.approving("b2", T0)
    assert held.advance([obj("a.csv", "e")], {"batch_id": "b1"}).held is None
    assert held.advance([obj("a.csv", "e")], {"batch_id": "other"}).held == held.held
    assert held.operation("reset").held is None  # its plan's version is gone: it could never commit


def test_state_json_keeps_holds_and_rejections_and_is_unchanged_without_them():
    """Catches a hold lost on a rewrite (the Variable store round-trips the JSON), and new keys in the state of a
    feed without gates."""
    plain = Watermark(version=1, revision=1)
    assert "held" not in json.loads(plain.to_json()) and "rejected" not in json.loads(plain.to_json())
    wm = Watermark(version=1, revision=2, held={"batch_id": "b1", "gates": [MIN_ROWS]}, rejected={"a.csv": "e1"})
    back = Watermark.from_json(wm.to_json())
    assert (back.held, back.rejected, back.extra) == (wm.held, wm.rejected, {})
