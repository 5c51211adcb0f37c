"""The run report of one batch: what went in, what came out, what was quarantined and why, how long each step
took, and the target per period against its history — as JSON and as one self-contained HTML page.

Everything is built from what a batch already records (its manifest, plan and step timings) and from the
published features; `build_report` and the renderers are pure, the I/O is in `collect_report`/`write_report`.
"""

from __future__ import annotations

import html
import io
import json
from datetime import datetime, timezone

from nexgen_etl.core.catalog import Catalog
from nexgen_etl.core.layout import plan_key, quality_key, report_key, step_key, steps_dir
from nexgen_etl.core.quality import QualityGates
from nexgen_etl.core.results import COUNTS, Manifest
from nexgen_etl.core.storage import ObjectStore

STEPS = ("discover", "extract", "transform", "load", "commit")
HISTORY_PERIODS = 60  # feature partitions before the batch's first period shown in the target chart


# -- step timings (I/O) -----------------------------------------------------------------------------------------
def step_record(step: str, started: datetime, seconds: float) -> dict:
    return {"step": step, "started_at": started.isoformat(), "seconds": round(seconds, 3)}


def record_step(store: ObjectStore, batch_id: str, record: dict) -> None:
    """One object per step: a retried step overwrites its own record (the timing of the attempt that succeeded)."""
    store.put_bytes(step_key(batch_id, record["step"]), json.dumps(record, sort_keys=True).encode())


def read_steps(store: ObjectStore, batch_id: str) -> list[dict]:
    """The recorded steps of a batch, in pipeline order."""
    found = {}
    for obj in store.list(steps_dir(batch_id)):
        rec = json.loads(store.get_bytes(obj.key))
        found[rec["step"]] = rec
    return [found[s] for s in STEPS if s in found]


# -- target history (I/O) ---------------------------------------------------------------------------------------
def target_series(store: ObjectStore, catalog: Catalog, target: str, batch_periods: list[str],
                  history: int = HISTORY_PERIODS) -> list[dict]:
    """Total target per published feature partition, from `history` partitions before the batch's first period
    up to the batch's last one: one {period, total, rows} each, read back from the live Parquet files."""
    parts = catalog.partitions("features")
    if not parts or not batch_periods:
        return []
    first, last = min(batch_periods), max(batch_periods)
    before = [p for p in parts if p < first][-history:]
    return partition_totals(store, catalog, target, before + [p for p in parts if first <= p <= last])


def partition_totals(store: ObjectStore, catalog: Catalog, target: str, partitions: list[str]) -> list[dict]:
    """{period, total, rows} of each published features partition named, from its live Parquet files."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    series = []
    for part in partitions:
        total, rows = 0.0, 0
        for f in catalog.files("features", [part]):
            # one file, read as such: read_table would go through pyarrow.dataset, which imports pandas (~0.6 s)
            table = pq.ParquetFile(io.BytesIO(store.get_bytes(f))).read(columns=[target])
            rows += table.num_rows
            total += pc.sum(table[target]).as_py() or 0.0
        series.append({"period": part, "total": round(total, 6), "rows": rows})
    return series


# -- the report (pure) ------------------------------------------------------------------------------------------
def build_report(manifest: Manifest, steps: list[dict], series: list[dict], target: str, stage: str,
                 state_version: int | None = None, generated_at: str | None = None,
                 quality: dict | None = None) -> dict:
    """The report's numbers from a manifest, the recorded step timings and the target series; with `quality`, the
    batch measured against the contract's quality gates (core.quality.summary)."""
    sizes = {o["key"]: o.get("size", 0) for o in manifest.inputs}
    files, reasons = [], {}
    for key in sorted(manifest.accounting):
        acc = manifest.accounting[key]
        rejected = acc.file_rejected
        row = {"key": key, "size": sizes.get(key, 0), **{c: int(getattr(acc, c)) for c in COUNTS},
               "duplicates": int(acc.duplicates_exact) + int(acc.duplicates_key),
               "quarantine_reasons": dict(sorted(acc.quarantine_reasons.items())),
               "file_rejected": rejected.get("reason") if isinstance(rejected, dict) else rejected}
        files.append(row)
        for reason, n in row["quarantine_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
        if row["file_rejected"]:
            reasons[f"file:{row['file_rejected']}"] = reasons.get(f"file:{row['file_rejected']}", 0) + 1
    totals = {c: sum(f[c] for f in files) for c in COUNTS}
    totals.update(duplicates=totals["duplicates_exact"] + totals["duplicates_key"], files_in=len(files),
                  files_rejected=sum(1 for f in files if f["file_rejected"]), bytes_in=sum(f["size"] for f in files))
    outputs = manifest.outputs
    batch_periods = sorted(p for p, fs in outputs.get("clean", {}).items() if fs)
    in_batch = set(batch_periods)
    return {
        "schema": 1,
        "batch_id": manifest.batch_id,
        "contract": manifest.contract,
        "stage": stage,
        "generated_at": generated_at or datetime.now(timezone.utc).isoformat(),
        "published_at": manifest.published_at,
        "catalog_version": manifest.catalog_version,
        "state_version": state_version,
        "code_version": manifest.code_version,
        "spark_version": manifest.spark_version,
        "totals": totals,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "files": files,
        # partitions left with no file were emptied by the batch (e.g. a correction removed their rows)
        "outputs": {ds: {"partitions": sum(1 for v in parts.values() if v),
                         "files": sum(len(v) for v in parts.values())}
                    for ds, parts in sorted(outputs.items())},
        "batch_periods": batch_periods,
        "steps": steps,
        "transform_timings": manifest.timings,
        "target": {"column": target, "series": [{**p, "in_batch": p["period"] in in_batch} for p in series]},
        **({"quality": quality} if quality is not None else {}),
    }


def finalise_report(report: dict, steps: list[dict], stage: str, state_version: int | None) -> dict:
    """The load-time report brought up to date at commit: its numbers stand, the steps and stage move on."""
    return {**report, "stage": stage, "steps": steps, "state_version": state_version,
            "generated_at": datetime.now(timezone.utc).isoformat()}


def reasons_by_count(report: dict) -> dict[str, int]:
    """Quarantine reasons, most frequent first (the stored JSON has its keys sorted by name)."""
    return dict(sorted(report["quarantine_reasons"].items(), key=lambda kv: (-kv[1], kv[0])))


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 10_000 else f"{n} B"


def render_text(report: dict, location: str | None = None) -> str:
    """The operator's summary: totals, reasons, files, steps (what `nexgen-etl report BATCH` prints)."""
    t = report["totals"]
    state = f", state v{report['state_version']}" if report.get("state_version") is not None else ""
    published = "not published" if report["stage"] in STAGE_NOTES else f"published {report.get('published_at')}"
    lines = [f"batch {report['batch_id']} ({report.get('contract')}): {report['stage']}, {published}, "
             f"catalog v{report.get('catalog_version')}{state}",
             f"files in: {t['files_in']} ({_mb(t['bytes_in'])}), {t['files_rejected']} rejected as a whole",
             f"rows: read {t['rows_read']}  out {t['rows_out']}  quarantined {t['rows_quarantined']}  duplicates "
             f"{t['duplicates']} (exact {t['duplicates_exact']}, key {t['duplicates_key']})  merged by roll-up "
             f"{t['rows_merged']}"]
    lines.append("outputs: " + ", ".join(f"{ds} {o['files']} files in {o['partitions']} partitions"
                                         for ds, o in report["outputs"].items()))
    if report["quarantine_reasons"]:
        lines.append("quarantine reasons:")
        width = max(len(r) for r in report["quarantine_reasons"])
        lines += [f"  {r:<{width}}  {n}" for r, n in reasons_by_count(report).items()]
    lines.append("per file:                                    read     out   quar   dups merged")
    for f in report["files"]:
        note = f"  [rejected: {f['file_rejected']}]" if f["file_rejected"] else ""
        lines.append(f"  {f['key'][-40:]:<40} {f['rows_read']:>7} {f['rows_out']:>7} {f['rows_quarantined']:>6} "
                     f"{f['duplicates']:>6} {f['rows_merged']:>6}{note}")
    if report["steps"]:
        lines.append("steps: " + "  ".join(f"{s['step']} {s['seconds']:.{2 if s['seconds'] < 10 else 1}f}s"
                                           for s in report["steps"]))
    series = report["target"]["series"]
    if series:
        batch = [p for p in series if p["in_batch"]]
        lines.append(f"target {report['target']['column']}: {len(series)} periods shown, {len(batch)} from this "
                     f"batch, batch total {sum(p['total'] for p in batch):.2f}")
    lines += quality_lines(report.get("quality"))
    if location:
        lines.append(f"report: {location}")
    return "\n".join(lines)


def quality_lines(quality: dict | None) -> list[str]:
    """The quality gates in the text summary: the verdict, then every breach with its numbers."""
    if not quality:
        return []
    checks = quality["checks"]
    counts = {s: sum(1 for c in checks if c["status"] == s) for s in ("pass", "breach", "skipped")}
    lines = [f"quality gates: {quality['status']} ({counts['breach']} broken, {counts['pass']} passed, "
             f"{counts['skipped']} skipped of {len(checks)} checks)"]
    lines += [f"  BROKEN {c['gate']}: {c['detail']}" for c in checks if c["status"] == "breach"]
    return lines


# -- charts: inline SVG, no library ----------------------------------------------------------------------------
def _num(x: float) -> str:
    return f"{x:.10g}"


def svg_target_chart(series: list[dict], column: str, width: int = 760, height: int = 260,
                     bands: dict[str, list[float]] | None = None) -> str:
    """Total target per period as a line with one point per period; the batch's periods are highlighted. `bands`:
    period → [low, high] of the quality gate's target band, drawn as a vertical bar at that period."""
    e = html.escape
    if not series:
        return f'<p class="empty">no published {e(column)} values to chart</p>'
    bands = bands or {}
    left, right, top, bottom = 60, 16, 16, 40
    w, h = width - left - right, height - top - bottom
    top_value = max(max(p["total"] for p in series), *(hi for _, hi in bands.values()), 1e-9)
    step = w / max(len(series) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + (i * step if len(series) > 1 else w / 2), top + h - (v / top_value) * h

    pts = [xy(i, p["total"]) for i, p in enumerate(series)]
    out = [f'<svg id="target-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(column)} per period">',
           f'<line class="axis" x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}"/>',
           f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + h}"/>',
           f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{e(f"{top_value:,.0f}")}</text>',
           f'<text x="{left - 6}" y="{top + h}" text-anchor="end">0</text>',
           f'<text x="{left}" y="{height - 12}">{e(series[0]["period"])}</text>',
           f'<text x="{left + w}" y="{height - 12}" text-anchor="end">{e(series[-1]["period"])}</text>',
           '<polyline class="line" points="' + " ".join(f"{_num(x)},{_num(y)}" for x, y in pts) + '"/>']
    for (x, _), p in zip(pts, series):
        if p["period"] in bands:
            lo, hi = bands[p["period"]]
            label = f"{p['period']}: band {lo:,.2f} … {hi:,.2f}"
            out.append(f'<line class="band" x1="{_num(x)}" y1="{_num(xy(0, max(lo, 0))[1])}" x2="{_num(x)}" '
                       f'y2="{_num(xy(0, hi)[1])}"><title>{e(label)}</title></line>')
    for (x, y), p in zip(pts, series):
        cls, r = ("point batch", 4) if p["in_batch"] else ("point history", 3)
        label = f"{p['period']}: {p['total']:,.2f} ({p['rows']} rows)"
        out.append(f'<circle class="{cls}" cx="{_num(x)}" cy="{_num(y)}" r="{r}"><title>{e(label)}</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


def svg_bar_chart(items: dict[str, float], chart_id: str, unit: str = "", width: int = 760) -> str:
    """Horizontal bars, one per item (label → value), labels escaped."""
    e = html.escape
    if not items:
        return f'<p class="empty" id="{e(chart_id)}-empty">none</p>'
    bar, gap, label_w, top = 20, 6, 260, 4
    height = top + len(items) * (bar + gap)
    scale = (width - label_w - 90) / max(max(items.values()), 1e-9)
    out = [f'<svg id="{e(chart_id)}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">']
    for i, (label, value) in enumerate(items.items()):
        y = top + i * (bar + gap)
        shown = f"{value:g}{unit}"
        out.append(f'<text x="{label_w - 8}" y="{y + bar - 6}" text-anchor="end">{e(label[:48])}</text>'
                   f'<rect class="bar" x="{label_w}" y="{y}" width="{_num(max(value * scale, 1))}" height="{bar}">'
                   f'<title>{e(label)}: {e(shown)}</title></rect>'
                   f'<text x="{_num(label_w + max(value * scale, 1) + 6)}" y="{y + bar - 6}">{e(shown)}</text>')
    out.append("</svg>")
    return "\n".join(out)


_CSS = ('body{font-family:system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}'
        'h2{font-size:16px;margin-top:28px}table{border-collapse:collapse;font-size:13px}'
        'td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td.k,th.k{text-align:left}'
        'svg text{font-size:11px;fill:#333}.axis{stroke:#888}.line{fill:none;stroke:#4a7bd0;stroke-width:1.5}'
        '.point.history{fill:#4a7bd0}.point.batch{fill:#e8590c}.bar{fill:#c0392b}#steps-chart .bar{fill:#4a7bd0}'
        '.muted{color:#666}.band{stroke:#2b8a3e;stroke-width:6;stroke-opacity:.35}.breach{color:#c0392b}')


def _table(headers: list[str], rows: list[list], left: int = 1) -> str:
    e = html.escape
    head = "".join(f'<th class="{"k" if i < left else ""}">{e(str(h))}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"k" if i < left else ""}">{e(str(c))}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict) -> str:
    """One self-contained page (inline CSS and SVG; no script, no network); every value is escaped."""
    e = html.escape
    t = report["totals"]
    col = report["target"]["column"]
    summary = _table(["", "value"], [
        ["files in", t["files_in"]], ["files rejected as a whole", t["files_rejected"]],
        ["bytes in", t["bytes_in"]], ["rows read", t["rows_read"]], ["rows out", t["rows_out"]],
        ["rows quarantined", t["rows_quarantined"]], ["duplicates removed (exact)", t["duplicates_exact"]],
        ["duplicates removed (same key)", t["duplicates_key"]], ["rows merged by roll-up", t["rows_merged"]]])
    files = _table(["file", "bytes", "read", "out", "quarantined", "duplicates", "merged", "reasons / rejected"], [
        [f["key"], f["size"], f["rows_read"], f["rows_out"], f["rows_quarantined"], f["duplicates"], f["rows_merged"],
         f"file rejected: {f['file_rejected']}" if f["file_rejected"] else
         ", ".join(f"{r} {n}" for r, n in f["quarantine_reasons"].items())] for f in report["files"]])
    outputs = _table(["dataset", "partitions", "files"],
                     [[ds, o["partitions"], o["files"]] for ds, o in report["outputs"].items()])
    steps = {s["step"]: s["seconds"] for s in report["steps"]}
    inner = _table(["transform phase", "seconds"], [[k, v] for k, v in report["transform_timings"].items()])
    state = f", state v{report['state_version']}" if report.get("state_version") is not None else ""
    pending = "" if report["stage"] == "commit" else STAGE_NOTES.get(report["stage"], (
        '<p class="muted">Written at load; the commit step rewrites it with its own timing.</p>'))
    quality = report.get("quality")
    bands = {c["subject"]: c["limit"] for c in (quality or {}).get("checks", [])
             if c["gate"].endswith("target_band") and isinstance(c["limit"], list)}
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>NexGen ETL batch {e(report['batch_id'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Batch {e(report['batch_id'])}</h1>",
        f'<p>contract {e(str(report.get("contract")))} · {e(report["stage"])} · published '
        f'{e(str(report.get("published_at")))} · catalog v{e(str(report.get("catalog_version")))}{e(state)} · '
        f'code {e(str(report.get("code_version")))} · Spark {e(str(report.get("spark_version")))}</p>', pending,
        "<h2>Totals</h2>", summary, quality_html(quality),
        f"<h2>{e(col)} per period (total over all entities)</h2>",
        f'<p class="muted">{len(report["batch_periods"])} periods written by this batch in orange, the published '
        "history before them in blue" + ("; in green, the quality gate's band of each" if bands else "") + ".</p>",
        svg_target_chart(report["target"]["series"], col, bands=bands),
        "<h2>Quarantine reasons</h2>", svg_bar_chart(reasons_by_count(report), "quarantine-chart"),
        "<h2>Files</h2>", files, "<h2>Outputs</h2>", outputs,
        "<h2>Time per step</h2>", svg_bar_chart(steps, "steps-chart", unit=" s"), inner,
        f'<p class="muted">generated {e(report["generated_at"])}</p>', "</body></html>"])


STAGE_NOTES = {
    "held": '<p class="breach">Held by the quality gates: nothing of this batch is published, the watermark has not '
            'moved. <code>nexgen-etl batch approve BATCH</code> publishes it as it is staged, <code>nexgen-etl batch '
            'reject BATCH</code> drops it.</p>',
    "rejected": '<p class="breach">Rejected by an operator: nothing of it was published, and its files are not '
                'picked up again until they change.</p>',
}
SHARE_GATES = ("max_quarantined_share", "min_non_null_share")


def _gate_number(gate: str, x) -> str:
    if x is None:
        return "–"
    if isinstance(x, list):
        return " … ".join(_gate_number(gate, v) for v in x)
    return f"{100 * x:.1f}%" if any(g in gate for g in SHARE_GATES) else f"{x:,.6g}"


def quality_html(quality: dict | None) -> str:
    """The quality gates section: the verdict and one row per check (broken ones first)."""
    if not quality:
        return ""
    e = html.escape
    order = {"breach": 0, "pass": 1, "skipped": 2}
    checks = sorted(quality["checks"], key=lambda c: order.get(c["status"], 3))
    rows = [[c["gate"].removeprefix("quality."), c["subject"], _gate_number(c["gate"], c["value"]),
             _gate_number(c["gate"], c["limit"]), c["status"], c["detail"]] for c in checks]
    verdict = (f'<p class="breach">{quality["breaches"]} check(s) broken: {e(", ".join(quality["gates_broken"]))}</p>'
               if quality["breaches"] else f'<p>{e(quality["status"])}: no gate broken</p>')
    return "\n".join(["<h2>Quality gates</h2>", verdict,
                      _table(["gate", "subject", "value", "limit", "result", "detail"], rows, left=2)])


# -- I/O: collect, write, read ----------------------------------------------------------------------------------
def collect_report(store: ObjectStore, batch_id: str, stage: str, state_version: int | None = None) -> dict:
    """Build the report of a published batch from its manifest, plan, step records and the published features."""
    from nexgen_etl.core.publish import read_catalog, read_manifest

    manifest = read_manifest(store, batch_id)
    if manifest is None:
        raise FileNotFoundError(f"batch {batch_id}: no manifest in {store.url} (not published)")
    target, gates = "target", QualityGates()
    if store.head(plan_key(batch_id)):
        contract = json.loads(store.get_bytes(plan_key(batch_id)))["contract"]
        target, gates = contract["target"], QualityGates.from_dict(contract.get("quality"))
    periods = sorted(p for p, fs in manifest.outputs.get("clean", {}).items() if fs)
    series = target_series(store, read_catalog(store), target, periods)
    quality = None
    if gates.declared and store.head(quality_key(batch_id)):  # what run.gates measured before publishing it
        quality = json.loads(store.get_bytes(quality_key(batch_id)))
    return build_report(manifest, read_steps(store, batch_id), series, target, stage, state_version, quality=quality)


def write_report(store: ObjectStore, report: dict) -> str:
    """Put report.json and report.html beside each other (same keys on every retry); the HTML's location."""
    batch_id = report["batch_id"]
    store.put_bytes(report_key(batch_id, "json"), json.dumps(report, indent=1, sort_keys=True).encode())
    store.put_bytes(report_key(batch_id, "html"), render_html(report).encode())
    return f"{store.url}{report_key(batch_id, 'html')}"


def read_report(store: ObjectStore, batch_id: str) -> dict | None:
    key = report_key(batch_id, "json")
    return json.loads(store.get_bytes(key)) if store.head(key) else None
