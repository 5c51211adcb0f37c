"""bench/shapes.py, the data and yardsticks of the bench's sections e-h: its contracts are contracts the product
accepts, its DuckDB and Polars yardsticks give the same output on every shape's generated data, and the output check
reports each kind of difference. Nothing here is timed; the job's side of the comparison runs in bench/run.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nexgen_etl.core.contract import parse_contract

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))
import shapes  # noqa: E402

SMALL = {"log": {"stores": 2, "products": 4, "days": 35}, "sensors": {"sensors": 4, "days": 9},
         "monthly": {"series": 40, "months": 26}}


@pytest.mark.parametrize("shape", sorted(shapes.CONTRACTS))
def test_each_shape_contract_is_accepted_by_the_product(shape, tmp_path):
    """Catches: a shape's contract using a field or value the product's contract parser refuses (the bench would
    then measure nothing), or one the yardsticks do not implement."""
    contract = parse_contract(shapes.CONTRACTS[shape])
    assert contract.target == shapes.CONTRACTS[shape]["target"]
    shapes.Rules(shapes.CONTRACTS[shape])


def _yardstick(engine: str, meta: dict, out: Path) -> dict:
    subprocess.run([sys.executable, str(ROOT / "bench" / "shapes.py"), engine, meta["contract"], meta["raw"],
                    str(out), "--threads", "2"], check=True, capture_output=True, timeout=120)
    return shapes.summary(out / "features", out / "clean", out / "quarantine.parquet")


@pytest.mark.parametrize("shape", sorted(SMALL))
def test_duckdb_and_polars_yardsticks_agree_on_generated_data(shape, tmp_path):
    """The two yardsticks are written independently, so their agreement on data with every kind of dirt, repeat,
    late line, correction and gap of the shape is what makes either a yardstick. Catches: one of them departing
    from a rule of the contract, e.g. (tried) Polars ordering a file's rows backwards, so that an earlier
    correction of a reading wins over a later one; DuckDB taking a `last` column from another row than the period's
    latest."""
    meta = shapes.generate(shape, tmp_path / "data", SMALL[shape], seed=7)
    duck = _yardstick("duckdb", meta, tmp_path / "duckdb")
    polars = _yardstick("polars", meta, tmp_path / "polars")
    assert duck["rows"]["quarantine"] > 0, "the generated dirt reaches the quarantine"
    assert 0 < duck["rows"]["features"] < duck["rows"]["clean"], "rows roll up to periods"
    if shape == "sensors":
        assert duck["columns"]["is_filled"]["sum"] > 0, "missing hours are filled"
    if shape == "monthly":
        assert duck["partitions"] == SMALL["monthly"]["months"]
    assert shapes.compare("duckdb", duck, "polars", polars) == []


def _summary(**columns) -> dict:
    return {"rows": {"features": 10, "clean": 12, "quarantine": 1}, "quarantine_reasons": {"missing:ts": 1},
            "partitions": 2, "partition_range": ["period_date=2024-01-01", "period_date=2024-01-02"],
            "columns": {"x": {"type": "DOUBLE", "nulls": 1, "sum": 1000.0},
                        "s": {"type": "VARCHAR", "nulls": 0, "sum": 12345.0}} | columns}


@pytest.mark.parametrize(("other", "expected"), [
    pytest.param(_summary(), [], id="same"),
    pytest.param(_summary(x={"type": "DOUBLE", "nulls": 1, "sum": 1000.0000001}), [], id="sum-within-tolerance"),
    pytest.param(_summary(x={"type": "DOUBLE", "nulls": 1, "sum": 1000.01}), ["x sums to 1000.01"], id="sum-differs"),
    pytest.param(_summary(x={"type": "DOUBLE", "nulls": 2, "sum": 1000.0}), ["x has 2 nulls"], id="nulls-differ"),
    pytest.param(_summary(x={"type": "DOUBLE", "nulls": 1, "sum": None}), ["x sums to None"], id="all-null"),
    pytest.param(_summary(s={"type": "VARCHAR", "nulls": 0, "sum": 12346.0}), ["s sums to 12346.0"],
                 id="string-hashes-exactly"),
    pytest.param({**_summary(), "rows": {"features": 10, "clean": 11, "quarantine": 1}}, ["rows"], id="rows"),
    pytest.param({**_summary(), "quarantine_reasons": {"unparseable:ts": 1}}, ["quarantine_reasons"], id="reasons"),
    pytest.param({**_summary(), "partitions": 3}, ["partitions 3"], id="partitions"),
    pytest.param(_summary(y={"type": "DOUBLE", "nulls": 0, "sum": 1.0}), ["columns"], id="extra-column"),
])
def test_compare_reports_each_kind_of_difference(other, expected):
    """Catches: the bench's output check passing outputs that differ (a count, a null count, a sum beyond the
    rounding, a string column's values, a column), or failing equal ones over the last bits of a sum."""
    diffs = shapes.compare("duckdb", _summary(), "job", other)
    assert len(diffs) == len(expected), diffs
    for d, e in zip(diffs, expected):
        assert d.startswith(f"job: {e}"), (d, e)
