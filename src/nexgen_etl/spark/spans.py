"""Which days a batch restages: closed day spans, merged, and widened by the features' lookback.

Pure Python (no Spark): the job computes its spans here from the dates its rows touch, and reads and writes by them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import NamedTuple

from nexgen_etl.core.contract import Contract

Span = tuple[date, date]  # first and last day, both included


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Closed day spans, sorted, with overlapping or adjacent ones merged."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def in_spans(day: str, spans: Iterable[Span]) -> bool:
    """day (yyyy-MM-dd) lies inside one of the spans."""
    return any(a.isoformat() <= day <= b.isoformat() for a, b in spans)


def lookback_days(contract: Contract) -> int:
    """The features' lookback in whole days (an hourly contract's hours, rounded up)."""
    lb = contract.features.lookback
    return lb if contract.period == "day" else -(-lb // 24)


def earlier_version_dates(keys: Iterable[str], sources: Mapping[str, dict], published: Iterable[str]) -> set[str]:
    """The published clean dates an earlier version of these raw keys contributed to (corrections): a key's
    catalog entry holds the day range of its valid rows ({"min", "max"}; none when it had no valid row)."""
    days = list(published)
    out: set[str] = set()
    for key in keys:
        prev = sources.get(key)
        if prev and prev.get("min"):
            out |= {p for p in days if prev["min"] <= p <= prev["max"]}
    return out


class IncrementalSpans(NamedTuple):
    """history: the days to read back from the published clean data; recompute: the days whose features change."""

    history: list[Span]
    recompute: list[Span]


def incremental_spans(clean_dates: Iterable[str], moved: Iterable[Span], lookback: int) -> IncrementalSpans:
    """The spans a batch reads and recomputes, from the clean dates it restages (yyyy-MM-dd), the spans where an
    entity's first or last period moved, and the lookback in days.

    Features at t read t-lookback … t: each touched span is recomputed with the lookback days after it, and read
    back with the lookback days before it and after it (the rows those recomputed days read); far-apart spans stay
    separate."""
    lb = timedelta(days=lookback)
    touched = [(day, day) for day in map(date.fromisoformat, clean_dates)]
    spans = merge_spans([*touched, *moved])
    return IncrementalSpans(history=merge_spans([(a - lb, b + lb) for a, b in spans]),
                            recompute=merge_spans([(a, b + lb) for a, b in spans]))
