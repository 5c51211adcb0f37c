"""Which partitions a batch restages: closed spans of partition dates, merged, and widened by the features' lookback.

A partition is a day for hourly and daily contracts, one period (named by its start) for weekly, monthly, quarterly
and yearly ones: a span's ends are partition dates, and it is widened and merged in steps of one partition.
Pure Python (no Spark): the job computes its spans here from the dates its rows touch, and reads and writes by them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import NamedTuple

from nexgen_etl.core.contract import Contract

Span = tuple[date, date]  # first and last partition date, both included
UNITS = ("day", "week", "month", "quarter", "year")


def partition_unit(contract: Contract) -> str:
    """What one partition holds: a day for hourly and daily contracts, else one period."""
    return "day" if contract.period in ("hour", "day") else contract.period


def shift(d: date, n: int, unit: str = "day") -> date:
    """d moved by n partitions of the unit (d a partition's date: a period start for the longer units)."""
    if unit in ("day", "week"):
        return d + timedelta(days=n * (7 if unit == "week" else 1))
    months = d.year * 12 + d.month - 1 + n * {"month": 1, "quarter": 3, "year": 12}[unit]
    return date(months // 12, months % 12 + 1, 1)


def merge_spans(spans: Iterable[Span], unit: str = "day") -> list[Span]:
    """Closed spans, sorted, with overlapping or adjacent ones merged."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= shift(out[-1][1], 1, unit):
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def in_spans(day: str, spans: Iterable[Span]) -> bool:
    """day (yyyy-MM-dd) lies inside one of the spans."""
    return any(a.isoformat() <= day <= b.isoformat() for a, b in spans)


def lookback_partitions(contract: Contract) -> int:
    """The features' lookback in partitions (an hourly contract's hours, rounded up to days)."""
    lb = contract.features.lookback
    return -(-lb // 24) if contract.period == "hour" else lb


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


def incremental_spans(clean_dates: Iterable[str], moved: Iterable[Span], lookback: int,
                      unit: str = "day") -> IncrementalSpans:
    """The spans a batch reads and recomputes, from the clean dates it restages (yyyy-MM-dd), the spans where an
    entity's first or last period moved, and the lookback in partitions of the unit.

    Features at t read t-lookback … t: each touched span is recomputed with the lookback partitions after it, and
    read back with the lookback partitions before it and after it (the rows those recomputed partitions read);
    far-apart spans stay separate."""
    touched = [(day, day) for day in map(date.fromisoformat, clean_dates)]
    spans = merge_spans([*touched, *moved], unit)
    return IncrementalSpans(
        history=merge_spans([(shift(a, -lookback, unit), shift(b, lookback, unit)) for a, b in spans], unit),
        recompute=merge_spans([(a, shift(b, lookback, unit)) for a, b in spans], unit))
