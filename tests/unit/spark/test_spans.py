"""The days a batch restages, in pure Python (no JVM): merged spans, the lookback around them, and the dates an
earlier version of a corrected file contributed to."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import date

from nexgen_etl.core.contract import Features, load_contract
from nexgen_etl.spark.spans import earlier_version_dates, in_spans, incremental_spans, lookback_partitions, merge_spans


def D(day: int, month: int = 1) -> date:
    return date(2024, month, day)


def test_adjacent_and_overlapping_spans_merge():
    """Catches: spans that touch (one ends the day before the other starts) left apart, so the day between two
    batches' dates would be read and recomputed twice, or an overlap counted as two spans."""
    assert merge_spans([(D(4), D(4)), (D(1), D(3))]) == [(D(1), D(4))]
    assert merge_spans([(D(10), D(12)), (D(11), D(20)), (D(12), D(15))]) == [(D(10), D(20))]
    assert merge_spans([]) == []


def test_spans_one_free_day_apart_stay_separate():
    """Catches: merging spans one day apart too eagerly (a free day between them read and recomputed)."""
    assert merge_spans([(D(5), D(5)), (D(1), D(3))]) == [(D(1), D(3)), (D(5), D(5))]


def test_far_apart_dates_stay_separate_spans():
    """Catches: one span from the first touched date to the last (a correction of January in a March batch
    would recompute everything in between)."""
    spans = incremental_spans(["2024-03-01", "2024-01-01"], [], 7)
    assert spans.recompute == [(D(1), D(8)), (D(1, 3), D(8, 3))]
    assert spans.history == [(date(2023, 12, 25), D(8)), (D(23, 2), D(8, 3))]


def test_the_lookback_widens_each_span():
    """Catches: forgetting the lookback after a span (the features of the next days read the changed rows) in the
    recompute or the history spans, or the lookback before it in the history (the first recomputed day's lags)."""
    spans = incremental_spans(["2024-01-10", "2024-01-11"], [], 3)
    assert spans.recompute == [(D(10), D(14))]
    assert spans.history == [(D(7), D(14))]
    assert incremental_spans(["2024-01-10"], [], 0) == ([(D(10), D(10))], [(D(10), D(10))])


def test_history_spans_merge_where_the_recomputed_ones_do_not():
    """Catches: widened spans not merged again (the days where two widened spans overlap read twice), or the
    recompute spans taken as wide as the history ones (features rewritten on days nothing changed)."""
    spans = incremental_spans(["2024-01-01", "2024-01-10"], [], 7)
    assert spans.history == [(date(2023, 12, 25), D(17))]
    assert spans.recompute == [(D(1), D(8)), (D(10), D(17))]


def test_moved_extents_are_recomputed_too():
    """Catches: ignoring the spans where an entity's first or last period moved (filled rows appearing or
    vanishing away from the batch's own dates)."""
    spans = incremental_spans(["2024-03-01"], [(D(1, 2), D(5, 2))], 2)
    assert spans.recompute == [(D(1, 2), D(7, 2)), (D(1, 3), D(3, 3))]
    assert spans.history == [(D(30), D(7, 2)), (D(28, 2), D(3, 3))]
    assert incremental_spans([], [(D(1, 2), D(5, 2))], 2).recompute == [(D(1, 2), D(7, 2))]


def test_a_corrections_old_dates_are_the_published_days_in_its_earlier_range():
    """Catches: forgetting an earlier version's dates (its old rows stay published beside the new ones), dropping
    the first or last day of its range, taking days that are not published (no partition to replace), or the
    ranges of catalog files that are not in the batch."""
    sources = {"raw/a.csv": {"etag": '"1"', "min": "2024-01-02", "max": "2024-01-05"},
               "raw/b.csv": {"etag": '"2"', "min": "2024-01-01", "max": "2024-01-09"},
               "raw/empty.csv": {"etag": '"3"', "min": None, "max": None}}
    published = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-05", "2024-01-06"]
    assert earlier_version_dates(["raw/a.csv"], sources, published) == {"2024-01-02", "2024-01-03", "2024-01-05"}
    # a file with no valid row before, or new to the catalog, contributed to no date
    assert earlier_version_dates(["raw/empty.csv", "raw/new.csv"], sources, published) == set()
    assert earlier_version_dates([], sources, published) == set()


def test_in_spans_includes_both_ends():
    """Catches: a span's first or last day left out of the history read (a half-open comparison)."""
    spans = [(D(2), D(4)), (D(8), D(8))]
    assert [d for d in range(1, 10) if in_spans(D(d).isoformat(), spans)] == [2, 3, 4, 8]


def test_an_hourly_lookback_rounds_up_to_whole_days():
    """Catches: rounding hours down (a 25-hour lag reading one day back misses the first hour of the day before)."""
    sales = load_contract()
    assert lookback_partitions(sales) == sales.features.lookback == 28
    hourly = replace(sales, period="hour")
    assert lookback_partitions(replace(hourly, features=Features(lags=(1, 24), rolling_windows=(3,)))) == 1
    assert lookback_partitions(replace(hourly, features=Features(lags=(1, 25), rolling_windows=(3,)))) == 2


def test_spans_load_no_pyspark():
    """Catches: a Spark import in spans (its arithmetic would need a JVM's packages to be tested or used)."""
    code = "import sys, nexgen_etl.spark.spans; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('pyspark', 'py4j')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
