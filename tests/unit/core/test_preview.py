"""core/preview.py without Spark: the casts and patterns it mirrors, what it declines to preview, how it reads a
file. tests/integration/test_contract_preview.py compares its verdicts with the Spark job's."""

from __future__ import annotations

import dataclasses
import gzip
import math
from datetime import date, datetime
from pathlib import Path

import pytest

from nexgen_etl.core.contract import Contract, load_contract, parse_contract
from nexgen_etl.core.preview import (
    compile_pattern,
    preview,
    read_lines,
    render,
    spark_boolean,
    spark_double,
    spark_integral,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "contracts"


@pytest.mark.parametrize("s, want", [
    pytest.param("1e3", 1000.0, id="exponent"), pytest.param(" 12 ", 12.0, id="spaces"),
    pytest.param("\t5", 5.0, id="tab"), pytest.param("3.5d", 3.5, id="java-suffix"),
    pytest.param("0x10p0", 16.0, id="hex"), pytest.param(".5", 0.5, id="dot-first"), pytest.param("5.", 5.0, id="dot"),
    pytest.param("Infinity", math.inf, id="infinity"), pytest.param("-inf", -math.inf, id="inf-fallback"),
    pytest.param("1_000", None, id="underscore"), pytest.param("1,5", None, id="comma"),
    pytest.param("", None, id="empty"), pytest.param("12abc", None, id="trailing"),
])
def test_double_cast_is_javas(s, want):
    """Catches Python's float syntax in place of Java's (`1_000` would parse, `3.5d` and `0x10p0` would not)."""
    assert spark_double(s) == want


def test_nan_and_whole_numbers():
    assert math.isnan(spark_double("nan")) and math.isnan(spark_double("NaN"))
    assert [spark_integral(s) for s in ("12.0", "12.5", "1e2", "nan", "1e400", "-0")] == [12, None, 100, None, None, 0]
    assert spark_integral("3000000000", "int") == 2**31 - 1  # the JVM's cast saturates
    assert [spark_boolean(s) for s in ("yes", "T", "0", "maybe")] == [True, True, False, None]


@pytest.mark.parametrize("pattern, s, want", [
    pytest.param("yyyy-MM-dd", "2024-02-29", (datetime(2024, 2, 29), None), id="date"),
    pytest.param("yyyy-MM-dd", "2024-2-9", None, id="two-digit-month"),
    pytest.param("yyyy-MM-dd", "2023-02-29", None, id="no-such-day"),
    pytest.param("M/d/yyyy", "2/9/2024", (datetime(2024, 2, 9), None), id="one-letter"),
    pytest.param("dd.MM.yyyy HH:mm", "31.12.2024 23:59", (datetime(2024, 12, 31, 23, 59), None), id="dotted"),
    pytest.param("yyyy-MM-dd'T'HH:mm:ssXXX", "2024-05-01T09:00:00+02:00", (datetime(2024, 5, 1, 9), 120),
                 id="offset"),
    pytest.param("yyyy-MM-dd'T'HH:mm:ssXXX", "2024-05-01T09:00:00Z", (datetime(2024, 5, 1, 9), 0), id="zulu"),
    pytest.param("yyyy-MM-dd HH:mm:ssX", "2024-05-01 09:00:00+0530", (datetime(2024, 5, 1, 9), 330), id="X"),
    pytest.param("yyyy-MM-dd HH:mm:ss.SSS", "2024-05-01 09:00:00.5", (datetime(2024, 5, 1, 9, 0, 0, 500000), None),
                 id="fraction"),
    pytest.param("yyyy-MM", "2024-05", (datetime(2024, 5, 1), None), id="month"),
    pytest.param("''yy''", "'24'", (datetime(2024, 1, 1), None), id="quotes"),
])
def test_pattern_subset(pattern, s, want):
    """Catches a lenient parse where Spark's is strict (one-digit months, 29 February 2023) and offsets ignored."""
    compiled = compile_pattern(pattern)
    assert not isinstance(compiled, str), compiled
    assert compiled.parse(s) == want


@pytest.mark.parametrize("pattern", ["EEE, dd MMM yyyy", "yyyy-MM-dd[ HH:mm]", "dd-MMM-yy", "yyyy-MM-dd z", "a"])
def test_patterns_outside_the_subset_are_named(pattern):
    assert isinstance(compile_pattern(pattern), str)


def contract(**over) -> Contract:
    data = {"name": "t", "columns": [{"name": "day", "type": "date", "formats": ["yyyy-MM-dd"], "required": True},
                                     {"name": "k", "type": "string", "required": True, "case": "upper"},
                                     {"name": "v", "type": "double", "min": 0, "rollup": "sum"}],
            "time": {"column": "day"}, "keys": ["k"], "target": "v", "csv": {"null_values": ["", "NA"]}}
    data.update(over)
    return parse_contract(data)


def test_a_format_outside_the_subset_is_not_previewed_not_guessed(tmp_path):
    """A value only an unpreviewable pattern could read is undetermined, not quarantined (nor valid); the rest of
    the row still gets its checks. Catches a preview that guesses Spark's verdict."""
    c = contract(columns=[{"name": "day", "type": "date", "formats": ["yyyy-MM-dd", "dd MMM yyyy"]},
                          {"name": "k", "type": "string"}, {"name": "v", "type": "double", "min": 0}])
    f = tmp_path / "a.csv"
    f.write_text("day,k,v\n2024-05-01,a,1\n01 May 2024,b,2\n01 May 2024,c,-1\n")
    p = preview(c, [f])
    assert any("dd MMM yyyy" in n for n in p.not_previewed)
    assert [(r.valid, r.undetermined, r.reasons) for r in p.rows] == [
        (True, [], []), (False, ["day"], []), (False, ["day"], ["below_min:v"])]
    assert "not previewed" in render(p)


def test_an_unknown_contract_field_is_reported(tmp_path):
    """A field added to the contract model later (a dataclass field this preview does not know), set away from its
    default, is listed as not previewed instead of ignored silently."""
    Later = dataclasses.make_dataclass("Later", [("smoothing", str | None, dataclasses.field(default=None))],
                                       bases=(Contract,), frozen=True)
    c = contract()
    later = Later(**{f.name: getattr(c, f.name) for f in dataclasses.fields(c)}, smoothing="ewm")
    f = tmp_path / "a.csv"
    f.write_text("day,k,v\n2024-05-01,a,1\n")
    assert preview(later, [f]).not_previewed == ["smoothing"]
    assert preview(c, [f]).not_previewed == []


def test_lines_break_as_hadoop_breaks_them(tmp_path):
    """\\n, \\r\\n and \\r end lines, a BOM is dropped, a \\r\\n split across read chunks is one break."""
    f = tmp_path / "a.csv"
    xs = "x" * (65535 - 6)  # the BOM (3 bytes), h and \r\n before: the first 64 KiB chunk ends with the next \r
    f.write_bytes(("\ufeffh\r\n" + xs + "\r\na\rb\n\nc").encode())
    assert f.read_bytes()[65535:65537] == b"\r\n"
    lines, more = read_lines(f, "UTF-8", None)
    assert lines == ["h", xs, "a", "b", "", "c"] and not more
    lines, more = read_lines(f, "UTF-8", 1)
    assert lines[:2] == ["h", xs] and more


def test_rows_quarantine_reasons_and_rollup(tmp_path):
    """One file through the whole preview: the reasons in the job's order, null_values before case, a malformed
    line, an exact repeat, a key duplicate (the later row wins), and the roll-up's text."""
    f = tmp_path / "a.csv"
    f.write_text("day,k,v\n"
                 "2024-05-01,a,1\n"         # 1 valid
                 "2024-05-01, a ,1\n"       # 2 exact repeat of 1 (after trim and case)
                 "2024-05-01,A,5\n"         # 3 key duplicate: wins over 1
                 "2024-05-32,NA,-1\n"       # 4 unparseable date, missing key, below min
                 "2024-05-02,b\n"           # 5 malformed (and valid values otherwise)
                 "\n"
                 "2024-05-02,c,x\n")        # 6 unparseable v
    p = preview(contract(), [f])
    assert [r.reasons for r in p.rows] == [[], [], [], ["unparseable:day", "missing:k", "below_min:v"],
                                           ["malformed_row"], ["unparseable:v"]]
    assert [r.fate for r in p.rows] == ["duplicates_key", "duplicates_exact", "rows_out", "rows_quarantined",
                                        "rows_quarantined", "rows_quarantined"]
    assert [r.line for r in p.rows][-1] == 8
    assert [(pr.keys, pr.period, pr.values) for pr in p.periods] == [(("A",), date(2024, 5, 1), {"v": 5.0})]
    assert p.accounting[str(f)] == {"rows_read": 6, "rows_quarantined": 3, "duplicates_exact": 1,
                                    "duplicates_key": 1, "rows_merged": 0, "rows_out": 1}
    text = render(p)
    assert "QUARANTINED unparseable:day;missing:k;below_min:v" in text and "exact repeat of row 1" in text


def test_first_rows_only_by_default(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("day,k,v\n" + "".join(f"2024-05-{d:02d},a,{d}\n" for d in range(1, 31)))
    p = preview(contract(), [f])
    assert len(p.rows) == 20 and p.files[0].more and "more rows not shown" in render(p)


@pytest.mark.parametrize("content, reason", [
    pytest.param(b"day,k,k,v\n2024-05-01,a,a,1\n", "duplicate_header", id="repeated-name"),
    pytest.param(b"day,v\n2024-05-01,1\n", "missing_columns", id="required-missing"),
    pytest.param(b"", "empty_file", id="empty"),
])
def test_whole_file_rejects_are_the_header_checks(tmp_path, content, reason):
    f = tmp_path / "a.csv"
    f.write_bytes(content)
    p = preview(contract(), [f])
    assert p.files[0].rejected["reason"] == reason and p.rows == []
    assert f"REJECTED, the whole file: file:{reason}" in render(p)


def test_gzip_is_read_and_a_corrupt_one_rejected(tmp_path):
    good = tmp_path / "a.csv.gz"
    good.write_bytes(gzip.compress(b"day,k,v\n2024-05-01,a,1\n"))
    assert preview(contract(), [good]).rows[0].values["v"] == 1.0
    bad = tmp_path / "b.csv.gz"
    bad.write_bytes(b"day,k,v\n")
    assert preview(contract(), [bad]).files[0].rejected["reason"] == "corrupt_compression"


def test_later_files_win_under_last_and_lose_under_first(tmp_path):
    """Files are given in arrival order: the newer file's row wins under `last`, the older one's under `first`."""
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text("day,k,v\n2024-05-01,a,1\n")
    new.write_text("day,k,v\n2024-05-01,a,2\n")
    assert preview(contract(), [old, new]).periods[0].values == {"v": 2.0}
    assert preview(contract(duplicates={"policy": "first"}), [old, new]).periods[0].values == {"v": 1.0}


def test_every_example_previews_without_gaps():
    """Every example contract is previewable in full: no field or format outside what the preview knows."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        c = load_contract(path)
        p = preview(c, sorted(EXAMPLES.glob(f"{path.stem}*.csv")))
        assert p.not_previewed == [] and p.rows, path.name
        assert not any(r.undetermined for r in p.rows), path.name
