"""The run report built from a hand-written manifest: totals, reasons, periods, charts, escaping, progress lines."""

from __future__ import annotations

import json
import logging
from html.parser import HTMLParser

import pytest

from nexgen_etl.core.progress import Progress
from nexgen_etl.core.report import build_report, render_html, render_text, svg_bar_chart
from nexgen_etl.core.results import Manifest
from nexgen_etl.run.spark_output import relay_spark_output

A, B, C = "sales/a.csv", "sales/<b>&.csv", "sales/c.csv"
MANIFEST = {
    "batch_id": "b20240103T000000-abc",
    "contract": "nexgen_sales",
    "published_at": "2026-11-26T03:00:00+00:00",
    "catalog_version": 4,
    "inputs": [{"key": A, "size": 1000}, {"key": B, "size": 250}, {"key": C, "size": 40}],
    "accounting": {
        # 10 read = 6 out + 2 quarantined + 1 exact dup + 1 merged
        A: {"rows_read": 10, "rows_out": 6, "rows_quarantined": 2, "quarantine_reasons": {"bad_date": 1,
            "<script>alert(1)</script>": 1}, "duplicates_exact": 1, "duplicates_key": 0, "rows_merged": 1,
            "file_rejected": None, "balanced": True},
        # 5 read = 2 out + 1 quarantined + 2 key dups
        B: {"rows_read": 5, "rows_out": 2, "rows_quarantined": 1, "quarantine_reasons": {"bad_date": 1},
            "duplicates_exact": 0, "duplicates_key": 2, "rows_merged": 0, "file_rejected": None, "balanced": True},
        # a whole file rejected at extract: no rows, one file-level reason
        C: {"rows_read": 0, "rows_out": 0, "rows_quarantined": 0, "quarantine_reasons": {}, "duplicates_exact": 0,
            "duplicates_key": 0, "rows_merged": 0, "file_rejected": {"reason": "bad_header", "detail": "x"},
            "balanced": True},
    },
    "outputs": {"clean": {"2024-01-02": ["c1"], "2024-01-03": ["c2", "c3"], "2024-01-01": []},
                "features": {"2024-01-02": ["f1"], "2024-01-03": ["f2"]}, "quarantine": {"s1": ["q1"]}},
    "timings": {"parse_and_quarantine": 1.5},
    "code_version": "0.1.0",
}
SERIES = [{"period": "2023-12-31", "total": 5.0, "rows": 2}, {"period": "2024-01-01", "total": 7.0, "rows": 2},
          {"period": "2024-01-02", "total": 9.5, "rows": 3}, {"period": "2024-01-03", "total": 0.0, "rows": 1}]
STEPS = [{"step": "discover", "started_at": "t", "seconds": 0.5}, {"step": "load", "started_at": "t", "seconds": 2.0}]


@pytest.fixture()
def report() -> dict:
    return build_report(Manifest.from_json(json.dumps(MANIFEST)), STEPS, SERIES, "units_sold", "load",
                        generated_at="2026-11-26T03:00:01+00:00")


def test_totals_by_hand(report):
    assert report["totals"] == {"rows_read": 15, "rows_out": 8, "rows_quarantined": 3, "duplicates_exact": 1,
                                "duplicates_key": 2, "duplicates": 3, "rows_merged": 1, "files_in": 3,
                                "files_rejected": 1, "bytes_in": 1290}
    # row reasons summed over files, the rejected file counted once under file:<reason>
    assert report["quarantine_reasons"] == {"bad_date": 2, "<script>alert(1)</script>": 1, "file:bad_header": 1}
    by_key = {f["key"]: f for f in report["files"]}
    assert by_key[B]["duplicates"] == 2 and by_key[C]["file_rejected"] == "bad_header"
    # the partition the batch emptied (no files left) is not counted
    assert report["outputs"] == {"clean": {"partitions": 2, "files": 3}, "features": {"partitions": 2, "files": 2},
                                 "quarantine": {"partitions": 1, "files": 1}}
    # a partition the batch emptied is not one of its periods
    assert report["batch_periods"] == ["2024-01-02", "2024-01-03"]
    assert [p["in_batch"] for p in report["target"]["series"]] == [False, False, True, True]


def test_text_summary(report):
    text = render_text(report, "s3://out/_reports/x/report.html")
    assert text.index("bad_date") < text.index("file:bad_header")  # most frequent reason first
    assert "read 15  out 8  quarantined 3  duplicates 3 (exact 1, key 2)  merged by roll-up 1" in text
    assert "files in: 3 (1290 B), 1 rejected as a whole" in text
    assert "steps: discover 0.50s  load 2.00s" in text
    assert "batch total 9.50" in text and text.endswith("report: s3://out/_reports/x/report.html")


class Shapes(HTMLParser):
    """Elements per enclosing svg id, and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.svg: str | None = None
        self.shapes: dict[str, list[tuple[str, dict]]] = {}
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "svg":
            self.svg = a.get("id")
            self.shapes[self.svg] = []
        elif self.svg:
            self.shapes[self.svg].append((tag, a))

    def handle_endtag(self, tag):
        if tag == "svg":
            self.svg = None

    def handle_data(self, data):
        self.text.append(data)


def test_html_charts_and_escaping(report):
    page = render_html(json.loads(json.dumps(report, sort_keys=True)))  # as stored: keys sorted by name
    parsed = Shapes()
    parsed.feed(page)
    assert parsed.scripts == 0 and "<script>alert" not in page  # the user-data reason is escaped, not markup
    assert "<script>alert(1)</script>" in "".join(parsed.text)
    assert B in "".join(parsed.text) and "sales/<b>" not in page
    points = [a for t, a in parsed.shapes["target-chart"] if t == "circle"]
    assert len(points) == 4 and [a["class"] for a in points].count("point batch") == 2
    # the highest total is drawn highest (smallest y); zero on the axis
    ys = [float(a["cy"]) for a in points]
    assert ys.index(min(ys)) == 2 and ys[3] == max(ys)
    bars = [a for t, a in parsed.shapes["quarantine-chart"] if t == "rect"]
    widths = [float(a["width"]) for a in bars]
    # most frequent first, whatever order the stored JSON has; width proportional to the count
    assert len(bars) == 3 and widths[0] == pytest.approx(2 * widths[1]) and widths[1] == widths[2]
    assert page.index("<title>bad_date: 2</title>") < page.index("<title>file:bad_header: 1</title>")
    assert len([t for t, _ in parsed.shapes["steps-chart"] if t == "rect"]) == 2


def test_empty_bar_chart_has_no_svg():
    assert "<svg" not in svg_bar_chart({}, "quarantine-chart")


def test_progress_logs_at_most_every_interval(caplog):
    now = [0.0]
    p = Progress(logging.getLogger("nexgen_etl.test"), "upload: files", total=10, interval=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="nexgen_etl.test"):
        for _ in range(10):
            now[0] += 1.0
            p.update(amount=100_000)
        p.done()
    lines = [r.getMessage() for r in caplog.records]
    # updates at t=1..10: lines at t=5 and t=10, then the final one
    assert lines[0].startswith("upload: files 5/10 (50%), 0.5 MB") and len(lines) == 3
    assert lines[-1].startswith("upload: files 10/10 (100%), 1.0 MB")


def test_progress_is_silent_for_short_loops(caplog):
    p = Progress(logging.getLogger("nexgen_etl.test"), "discover: objects listed", interval=60.0)
    with caplog.at_level(logging.INFO, logger="nexgen_etl.test"):
        for _ in range(100):
            p.update()
        p.done()
    assert not caplog.records


SPARK_OUTPUT = (b"26/11/26 WARN NativeCodeLoader: no native\n\r[Stage 1:>   (0 + 2) / 4]\r[Stage 1:==> (1 + 2) / 4]"
                b"\r" + b" " * 20 + b"\rnexgen-etl: batch b1: staged\n[Stage 2:>  (0 + 1) / 1]26/11/26 ERROR boom\nend")


@pytest.mark.parametrize("console", [True, False], ids=["terminal", "log"])
def test_spark_progress_frames_reach_only_the_terminal(console, caplog):
    import io

    term = io.StringIO() if console else None
    with caplog.at_level(logging.INFO, logger="nexgen_etl"):
        tail = relay_spark_output(io.BufferedReader(io.BytesIO(SPARK_OUTPUT)), term)
    assert tail == ["26/11/26 WARN NativeCodeLoader: no native", "nexgen-etl: batch b1: staged",
                    "26/11/26 ERROR boom", "end"]
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["spark: nexgen-etl: batch b1: staged", "spark: 26/11/26 ERROR boom"]
    if console:
        assert "\r[Stage 1:==> (1 + 2) / 4]" in term.getvalue() and "nexgen-etl" not in term.getvalue()
