"""The contract's quality gates: what they are (`QualityGates`, parsed from the contract's `quality` field) and how a
staged batch measures up to them (`measure`, `evaluate`), as pure functions of the transform's result and the
published history. A batch that breaks a gate is held instead of published (nexgen_etl.run.gates; docs/contract.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from nexgen_etl.core.results import StagedResult

# the gates by the contract path that declares them (and names them in every message)
PER_FILE = "quality.max_quarantined_share.per_file"
PER_BATCH = "quality.max_quarantined_share.per_batch"
NON_NULL = "quality.min_non_null_share"
TARGET_BAND = "quality.target_band"
MIN_ROWS = "quality.min_rows_per_period"
GATES = (PER_FILE, PER_BATCH, NON_NULL, TARGET_BAND, MIN_ROWS)

PASS, BREACH, SKIPPED = "pass", "breach", "skipped"


class QualityError(ValueError):
    """A `quality` field that cannot be used; the message names it (the contract reports it as a ContractError)."""


@dataclass(frozen=True)
class TargetBand:
    """The target total of a period must lie within median ± mads × MAD of the `periods` published periods before
    it (MAD: the median absolute deviation from that median); not checked while fewer than `min_history` exist."""

    periods: int = 28
    # 10 MADs: a daily feed with a weekly pattern has its weekend totals some 7 MADs off the median of 28 days
    # (the MAD measures the weekday noise), while units in thousands or a half-delivered day are far outside
    mads: float = 10.0
    min_history: int = 7


@dataclass(frozen=True)
class QualityGates:
    """The gates a batch must pass to be published; None (or empty) = that gate is not declared."""

    max_quarantined_share_per_file: float | None = None
    max_quarantined_share_per_batch: float | None = None
    min_non_null_share: tuple[tuple[str, float], ...] = ()  # (column, minimum share of the batch's valid rows)
    target_band: TargetBand | None = None
    min_rows_per_period: int | None = None

    @property
    def declared(self) -> bool:
        return self != QualityGates()

    @property
    def needs_non_null(self) -> bool:
        return bool(self.min_non_null_share)

    @property
    def needs_periods(self) -> bool:
        return self.target_band is not None or self.min_rows_per_period is not None

    @property
    def needs_stats(self) -> bool:
        """Whether the job must compute numbers the accounting does not hold (StagedResult.quality)."""
        return self.needs_non_null or self.needs_periods

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> QualityGates:
        """From asdict() output, as frozen into a batch plan (None or absent: no gates)."""
        if not d:
            return cls()
        band = d.get("target_band")
        return cls(max_quarantined_share_per_file=d.get("max_quarantined_share_per_file"),
                   max_quarantined_share_per_batch=d.get("max_quarantined_share_per_batch"),
                   min_non_null_share=tuple((str(c), float(s)) for c, s in d.get("min_non_null_share") or ()),
                   target_band=TargetBand(**band) if band is not None else None,
                   min_rows_per_period=d.get("min_rows_per_period"))


# -- parsing ----------------------------------------------------------------------------------------------------------
def _keys(d: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(map(str, d)) - allowed)
    if unknown:
        raise QualityError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _mapping(v: Any, where: str, example: str) -> Mapping:
    if not isinstance(v, Mapping):
        raise QualityError(f"{where}: must be a mapping, e.g. {example}")
    return v


def _share(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
        raise QualityError(f"{where}: must be a share between 0 and 1 (0.05 = 5%), got {v!r}")
    return float(v)


def _positive_int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise QualityError(f"{where}: must be a positive integer, got {v!r}")
    return v


def parse_quality(raw: Mapping | None, columns: Sequence[str] | None = None) -> QualityGates:
    """The contract's `quality` field (None or {}: no gates). `columns`, the declared column names, checks the
    columns of `min_non_null_share`. Raises QualityError naming the field."""
    if raw is None:
        return QualityGates()
    raw = _mapping(raw, "quality", "{max_quarantined_share: {per_file: 0.2}}")
    _keys(raw, {"max_quarantined_share", "min_non_null_share", "target_band", "min_rows_per_period"}, "quality")
    per_file = per_batch = None
    if raw.get("max_quarantined_share") is not None:
        q = _mapping(raw["max_quarantined_share"], "quality.max_quarantined_share", "{per_file: 0.2, per_batch: 0.05}")
        _keys(q, {"per_file", "per_batch"}, "quality.max_quarantined_share")
        if q.get("per_file") is not None:
            per_file = _share(q["per_file"], PER_FILE)
        if q.get("per_batch") is not None:
            per_batch = _share(q["per_batch"], PER_BATCH)
    non_null: list[tuple[str, float]] = []
    if raw.get("min_non_null_share") is not None:
        nn = _mapping(raw["min_non_null_share"], NON_NULL, "{unit_price: 0.95}")
        for col, share in nn.items():
            if columns is not None and col not in columns:
                raise QualityError(f"{NON_NULL}: {col!r} is not a declared column (declared: {list(columns)})")
            non_null.append((str(col), _share(share, f"{NON_NULL}.{col}")))
    band = None
    if "target_band" in raw:  # `target_band: {}` (or null) declares it with the defaults
        b = _mapping(raw["target_band"] or {}, TARGET_BAND, "{periods: 28, mads: 10, min_history: 7}")
        _keys(b, {"periods", "mads", "min_history"}, TARGET_BAND)
        periods = _positive_int(b.get("periods", TargetBand.periods), f"{TARGET_BAND}.periods")
        mads = b.get("mads", TargetBand.mads)
        if isinstance(mads, bool) or not isinstance(mads, (int, float)) or mads <= 0:
            raise QualityError(f"{TARGET_BAND}.mads: must be a positive number, got {mads!r}")
        min_history = _positive_int(b.get("min_history", min(TargetBand.min_history, periods)),
                                    f"{TARGET_BAND}.min_history")
        if min_history > periods:
            raise QualityError(f"{TARGET_BAND}.min_history: {min_history} is more than periods ({periods})")
        band = TargetBand(periods=periods, mads=float(mads), min_history=min_history)
    min_rows = None
    if raw.get("min_rows_per_period") is not None:
        min_rows = _positive_int(raw["min_rows_per_period"], MIN_ROWS)
    return QualityGates(max_quarantined_share_per_file=per_file, max_quarantined_share_per_batch=per_batch,
                        min_non_null_share=tuple(non_null), target_band=band, min_rows_per_period=min_rows)


# -- evaluation -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One gate measured on one subject (a file, a column, a period, the batch): its number, its limit, the verdict
    and the sentence that says it with the numbers."""

    gate: str
    subject: str
    status: str  # pass | breach | skipped
    value: float | None
    limit: float | list[float] | None  # the maximum or minimum; [low, high] for the band
    detail: str

    @property
    def breached(self) -> bool:
        return self.status == BREACH

    @property
    def message(self) -> str:
        return f"{self.gate}: {self.detail}"

    def to_dict(self) -> dict:
        return asdict(self)


Breach = Check  # a Check whose status is "breach" (what evaluate returns)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _num(x: float) -> str:
    """1,314,000 and 796.5, not 1.314e+06 and 796.500000."""
    return f"{x:,.2f}".rstrip("0").rstrip(".") if abs(x) < 1e12 else f"{x:.6g}"


def batch_periods(result: StagedResult) -> list[str]:
    """The periods (features partitions) whose totals the batch measured: those its clean rows changed."""
    return sorted((result.quality or {}).get("periods", {}))


def history_partitions(gates: QualityGates, published: Sequence[str], periods: Sequence[str]) -> list[str]:
    """The published partitions the band of each of the batch's periods is learned from: for each, the last
    `target_band.periods` published before it that the batch does not replace."""
    if gates.target_band is None or not periods:
        return []
    own = set(periods)
    earlier = sorted(p for p in published if p not in own)
    needed: set[str] = set()
    for p in periods:
        needed.update([q for q in earlier if q < p][-gates.target_band.periods:])
    return sorted(needed)


def median_mad(values: Sequence[float]) -> tuple[float, float]:
    m = statistics.median(values)
    return m, statistics.median(abs(v - m) for v in values)


def measure(gates: QualityGates, result: StagedResult, history: Mapping[str, float]) -> list[Check]:
    """Every declared gate on every subject it applies to. `history`: published target total per features partition
    (at least history_partitions' ones; the batch's own periods are ignored in it)."""
    checks: list[Check] = []
    if gates.max_quarantined_share_per_file is not None:
        limit = gates.max_quarantined_share_per_file
        for key in sorted(result.accounting):
            acc = result.accounting[key]
            if acc.file_rejected:
                why = acc.file_rejected.get("reason") if isinstance(acc.file_rejected, dict) else acc.file_rejected
                status = BREACH if limit < 1 else PASS
                checks.append(Check(PER_FILE, key, status, 1.0, limit,
                                    f"{key} was rejected as a whole ({why}): 100% quarantined, maximum {_pct(limit)}"))
            elif acc.rows_read == 0:
                checks.append(Check(PER_FILE, key, SKIPPED, None, limit, f"{key} has no rows"))
            else:
                share = acc.rows_quarantined / acc.rows_read
                checks.append(Check(PER_FILE, key, BREACH if share > limit else PASS, share, limit,
                                    f"{key}: {_pct(share)} of its rows quarantined ({acc.rows_quarantined} of "
                                    f"{acc.rows_read}), maximum {_pct(limit)}"))
    if gates.max_quarantined_share_per_batch is not None:
        limit = gates.max_quarantined_share_per_batch
        read = sum(a.rows_read for a in result.accounting.values())
        quarantined = sum(a.rows_quarantined for a in result.accounting.values())
        if read == 0:
            checks.append(Check(PER_BATCH, "batch", SKIPPED, None, limit, "the batch has no rows read"))
        else:
            share = quarantined / read
            checks.append(Check(PER_BATCH, "batch", BREACH if share > limit else PASS, share, limit,
                                f"{_pct(share)} of the batch's rows quarantined ({quarantined} of {read}), maximum "
                                f"{_pct(limit)}"))
    stats = result.quality or {}
    valid = int(stats.get("valid_rows") or 0)
    for col, minimum in gates.min_non_null_share:
        non_null = (stats.get("non_null") or {}).get(col)
        if not valid or non_null is None:
            checks.append(Check(NON_NULL, col, SKIPPED, None, minimum, f"{col}: the batch has no valid rows"))
            continue
        share = non_null / valid
        checks.append(Check(NON_NULL, col, BREACH if share < minimum else PASS, share, minimum,
                            f"{col} is non-null in {_pct(share)} of the batch's valid rows ({non_null} of {valid}), "
                            f"minimum {_pct(minimum)}"))
    periods = stats.get("periods") or {}
    own = set(periods)
    if gates.min_rows_per_period is not None:
        minimum = gates.min_rows_per_period
        for p in sorted(periods):
            rows = int(periods[p]["rows"])
            checks.append(Check(MIN_ROWS, p, BREACH if rows < minimum else PASS, rows, minimum,
                                f"{p} has {rows} rows, minimum {minimum}"))
    if gates.target_band is not None:
        band = gates.target_band
        earlier = sorted(q for q in history if q not in own)
        for p in sorted(periods):
            total = float(periods[p]["total"])
            hist = [float(history[q]) for q in [q for q in earlier if q < p][-band.periods:]]
            if len(hist) < band.min_history:
                checks.append(Check(TARGET_BAND, p, SKIPPED, total, None,
                                    f"{p}: {len(hist)} published periods before it, fewer than min_history "
                                    f"{band.min_history}"))
                continue
            m, mad = median_mad(hist)
            lo, hi = m - band.mads * mad, m + band.mads * mad
            status = PASS if lo <= total <= hi else BREACH
            checks.append(Check(TARGET_BAND, p, status, total, [lo, hi],
                                f"{p}: target total {_num(total)} {'inside' if status == PASS else 'outside'} "
                                f"[{_num(lo)}, {_num(hi)}] = median {_num(m)} ± {band.mads:g} × MAD {_num(mad)} of "
                                f"the {len(hist)} published periods before it"))
    return checks


def evaluate(gates: QualityGates, staged_result: StagedResult, history: Mapping[str, float]) -> list[Breach]:
    """The gates the staged batch breaks, each with its numbers (empty: the batch may be published)."""
    return [c for c in measure(gates, staged_result, history) if c.breached]


def summary(checks: Sequence[Check]) -> dict:
    """The evaluation as the run report and `_reports/<batch>/quality.json` hold it."""
    breaches = [c for c in checks if c.breached]
    return {"status": "held" if breaches else "passed", "breaches": len(breaches),
            "gates_broken": sorted({c.gate for c in breaches}), "checks": [c.to_dict() for c in checks]}
