"""The typed stage results: a file's accounting, StagedResult and Manifest, and their stored JSON."""

from __future__ import annotations

import json

import pytest

from nexgen_etl.core.results import COUNTS, FileAccounting, Manifest, StagedResult, totals


def test_the_fold_of_fates_balances_and_names_each_reason() -> None:
    """Catches: a fate counted under the wrong field (merged rows as out, a reason lost)."""
    acc = FileAccounting()
    for fate, n in [("rows_read", 10), ("out", 5), ("merged", 1), ("duplicates_exact", 1), ("duplicates_key", 1),
                    ("q:bad_date", 1), ("q:negative_target", 1)]:
        acc.add(fate, n)
    assert (acc.rows_out, acc.rows_merged, acc.rows_quarantined) == (5, 1, 2)
    assert acc.quarantine_reasons == {"bad_date": 1, "negative_target": 1}
    assert acc.balanced
    acc.add("periods_taken_over", 2)  # of the rows out: not a fate, not in the balance
    assert acc.balanced and acc.periods_taken_over == 2
    acc.add("out", 1)
    assert not acc.balanced
    with pytest.raises(ValueError, match="unknown row fate"):
        acc.add("lost", 1)


def test_staged_result_json_is_what_the_job_wrote_before_the_type() -> None:
    """The stored form is unchanged: sorted keys, one-space indent, `balanced` beside each file's counts.

    Catches: a field renamed or dropped in to_json (publish and the bench read this file)."""
    acc = FileAccounting(rows_read=3, rows_out=2, rows_quarantined=1, quarantine_reasons={"bad_date": 1})
    result = StagedResult(batch_id="b1", catalog_version=2, clean_partitions=["2024-01-01"],
                          features_ranges=[["2024-01-01", "2024-01-08"]], quarantine_partitions=["abc"],
                          sources={"a.csv": {"etag": "e", "min": "2024-01-01", "max": "2024-01-01"}},
                          accounting={"a.csv": acc}, schemas={"clean": "{}"}, timings={"parse": 1.0},
                          spark_version="3.5.9")
    expected = {"batch_id": "b1", "status": "staged", "catalog_version": 2, "clean_partitions": ["2024-01-01"],
                "features_ranges": [["2024-01-01", "2024-01-08"]], "quarantine_partitions": ["abc"],
                "sources": {"a.csv": {"etag": "e", "min": "2024-01-01", "max": "2024-01-01"}},
                "accounting": {"a.csv": {"rows_read": 3, "rows_out": 2, "rows_quarantined": 1,
                                         "quarantine_reasons": {"bad_date": 1}, "duplicates_exact": 0,
                                         "duplicates_key": 0, "rows_merged": 0, "file_rejected": None,
                                         "periods_taken_over": 0,
                                         "balanced": True}},
                "schemas": {"clean": "{}"}, "timings": {"parse": 1.0}, "spark_version": "3.5.9"}
    assert result.to_json() == json.dumps(expected, indent=1, sort_keys=True)
    assert StagedResult.from_json(result.to_json()) == result


def test_manifest_round_trip_keeps_publish_out_of_the_stored_json() -> None:
    """Catches: the load's own status ("published") stored in the manifest, or accounting read back as dicts."""
    m = Manifest(batch_id="b1", inputs=[{"key": "a.csv"}], accounting={"a.csv": FileAccounting(rows_read=1,
                 rows_out=1)}, totals={"rows_read": 1}, publish="published")
    stored = json.loads(m.to_json())
    assert "publish" not in stored and stored["accounting"]["a.csv"]["balanced"] is True
    back = Manifest.from_json(m.to_json())
    assert back == m.with_publish(None) and isinstance(back.accounting["a.csv"], FileAccounting)


def test_totals_sum_every_count() -> None:
    accounting = {"a": FileAccounting(rows_read=2, rows_out=2), "b": FileAccounting(rows_read=3, rows_merged=3)}
    assert totals(accounting) == {**dict.fromkeys(COUNTS, 0), "rows_read": 5, "rows_out": 2, "rows_merged": 3}


@pytest.mark.parametrize(("dataset", "published", "staged", "expected"), [
    pytest.param("clean", ["2024-01-01"], ["2024-01-05"], ["2024-01-03"], id="clean-as-listed"),
    pytest.param("features", ["2024-01-01", "2024-01-04", "2024-01-20"], ["2024-01-05"],
                 ["2024-01-04", "2024-01-05"], id="features-emptied-partitions-too"),
])
def test_affected_partitions(dataset, published, staged, expected) -> None:
    """Catches: a features partition inside a recomputed range that lost all its rows left published."""
    result = StagedResult(batch_id="b", catalog_version=0, clean_partitions=["2024-01-03"],
                          features_ranges=[["2024-01-03", "2024-01-10"]])
    assert result.affected_partitions(dataset, published, staged) == expected
