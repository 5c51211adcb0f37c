"""`nexgen-etl contract check` (core/preview.py, plain Python) against the Spark job, row by row.

Against Spark, one pipeline run per contract, each contract's files in one batch (5 runs): the default sales
contract on generated dirty files (nexgen_etl.dev.sample, gzip-compressed) plus a file of hand-made edge cases
(number syntax Java accepts and Python does not, strict pattern widths, malformed lines, bytes invalid in UTF-8,
quoting, CRLF, blank lines), and the examples that exercise the most of the read: awkward names with `;` and
`first` (filiale), a positional header with epoch milliseconds in a zone (meter_export), a time from parts by month
(monthly_prices), an unpivot by pattern (yearly_wide). The preview reads the same files in the same arrival order,
all rows; then per file:

- every row's verdict (valid with its typed values, or its quarantine reason list) equals the job's clean and
  quarantine output for that row (rows matched in file order: `_row_id` grows with it), and the rows the preview
  drops as exact repeats are the ones missing from the job's clean output;
- the preview's accounting equals the manifest's, fate by fate;
- the preview's roll-up equals the features' base columns (keys, period, the rolled-up columns).

Against the independent reference (tests/reference.py), without Spark: every example under examples/contracts/,
the same three checks on the reference's clean, quarantine, accounting and features. test_contract_shapes.py checks
the reference against the Spark job on every example, so this closes the loop for the examples not run here.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import yaml

from nexgen_etl.core.contract import load_contract
from nexgen_etl.core.preview import FATES, Preview, preview
from nexgen_etl.core.publish import read_manifest
from nexgen_etl.core.settings import Settings
from nexgen_etl.core.state import FileStateStore
from nexgen_etl.core.storage import LocalStore
from nexgen_etl.dev.sample import SampleSpec, generate
from nexgen_etl.run.pipeline import Pipeline
from tests import reference
from tests.integration.test_contract_shapes import EXAMPLES, plain, read_arrow, records, run_pass, same, samples

SPARK_EXAMPLES = ["filiale", "meter_export", "monthly_prices", "yearly_wide"]
EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))

# Hand-made rows for the default sales contract (date, store_id, sku, units_sold, unit_price, promo): each line says
# in its SKU what it tries. Written as bytes: one line carries a byte that is not UTF-8, two end in CRLF.
EDGE_ROWS = b"\n".join([
    b'date,store_id,sku,units_sold,unit_price,promo',
    b'2024-01-02,S001,E-EXPONENT,1e2,3.5,1',
    b'2024-01-02,S001,E-JAVA-SUFFIX,12.0,3.5d,0',
    b'2024-01-02,S001,E-INFINITY,7,Infinity,0',
    b'2024-01-02,S001,E-HEX,0x10p0,1.5,0',
    b'2024-01-02,S001,E-UNDERSCORE,1_000,1.5,0',
    b'2024-01-02,S001,E-LOWER-NAN,nan,1.5,0',
    b'2024-1-2,S001,E-SHORT-MONTH,5,1.5,0',
    b'1/2/2024,S001,E-SLASH-SHORT,5,1.5,0',
    b'02/30/2024,S001,E-NO-SUCH-DAY,5,1.5,0',
    b'31.12.2023,S001,E-DOTTED,5,1.5,0',
    b'2024-01-02,S001,E-PROMO-2,5,1.5,2',
    b'2024-01-02,S001,E-PROMO-1.0,5,1.5,1.0',
    b'2024-01-02,S001,E-PROMO-HALF,5,1.5,0.5',
    b'2024-01-02,S001,E-PROMO-YES,5,1.5,yes',
    b'2024-01-02,S001,E-SHORT-LINE,5,1.5',
    b'2024-01-02,S001,E-LONG-LINE,5,1.5,0,extra',
    b'2024-01-02,,E-NO-STORE,5,1.5,0',
    b'"2024-01-02","S001","E-QUOTED","5","1.5","0"',
    b'2024-01-02,S001,E-QUOTED-EMPTY,"",1.5,0',
    b'2024-01-02,S001,E-SPACES,   ,1.5,0',
    b'2024-01-02,S\xff01,E-BAD-BYTE,5,1.5,0',
    b'',
    b'   \t',
    b'2024-01-02,S001,E-TAB,\t5,1.5,0\r',
    b'2024-01-02,S001,E-PLUS,+5,-0,0\r',
    b'2024-01-02,S001,E-DOT-FIRST,.5,5.,0',
    b'2024-01-02,  s001 ,e-case,5,1.5,0',
    b'2024-01-02,S001,E-HUGE,3000000000,1.5,0',
    b'2024-01-02,S001,E-OVERFLOW,1e400,1.5,0',
    b'2024-01-02,S001,E-NEGATIVE,-1,1.5,0',
    b'"2024-01-02",S001,"E-COMMA, INSIDE",5,1.5,0',
    b'2024-01-02,S001,E-ESCAPED-QUOTE,"5""",1.5,0',
    b'2024-01-02,S001,E-NA,NA,N/A,null',
    b'2024-01-01,S001,SKU-00001,999,2.5,1',
    b'2024-01-01,S001,SKU-00001,998,2.5,1',
    b'2024-01-02,S001,E-REPEAT,5,1.5,0',
    b'2024-01-02,S001,E-REPEAT,5,1.5,0',
    b'2024-01-02,S001,E-REPEAT,5.0,1.50,0',
    b'',
]) + b"\n"


def sales_files(folder: Path) -> list[Path]:
    """The default contract's files, in arrival order: generated dirty days (gzip), then the edge cases."""
    spec = SampleSpec(stores=3, skus=4, days=5, dirt=0.3, days_per_file=5, gzip=True, prefix="gen")
    files = generate(folder, spec)
    edge = folder / "edge.csv"
    edge.write_bytes(EDGE_ROWS)
    return [*files, edge]


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """Each Spark case's files through the pipeline in one batch, and the preview of the same files."""
    cases = {name: (EXAMPLES / f"{name}.yaml", samples(name)) for name in SPARK_EXAMPLES}
    cases["nexgen_sales"] = (None, sales_files(tmp_path_factory.mktemp("sales_files")))
    out, now, t0 = {}, int(time.time()), time.monotonic()
    for name, (contract_path, files) in cases.items():
        tmp = tmp_path_factory.mktemp(name)
        raw, published = tmp / "raw", tmp / "out"
        contract = load_contract(contract_path)
        p = Pipeline(settings=Settings(raw_url=str(raw), output_url=str(published)), contract=contract,
                     raw=LocalStore(raw), out=LocalStore(published), state=FileStateStore(tmp / "state.json"))
        keys = []
        for i, path in enumerate(files):
            key = f"feed/{i:02d}_{path.name}"  # arrival order is key order too: the job's tie-breaks agree
            (raw / "feed").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, raw / key)
            os.utime(raw / key, (now - 600 + 60 * i, now - 600 + 60 * i))
            keys.append(key)
        batch = run_pass(p, spark)
        out[name] = {"contract": contract, "keys": keys, "out": published, "batch": batch,
                     "preview": preview(contract, [raw / k for k in keys], rows=None)}
    print(f"contract preview vs Spark: {len(out)} runs in {time.monotonic() - t0:.1f}s")
    return out


SPARK_CASES = [*SPARK_EXAMPLES, "nexgen_sales"]


def kept(pv: Preview, i: int) -> list[tuple[str, object]]:
    """The preview's verdicts on file i, in file order, without the exact repeats it drops."""
    return [("quarantined", v.reasons) if v.reasons else ("valid", v.values)
            for v in pv.verdicts(i) if v.fate != "duplicates_exact"]


def spark_rows(r: dict, key: str) -> list[tuple[str, object]]:
    """The job's verdicts on one file, in file order: ("valid", values) from clean, ("quarantined", reasons)."""
    names = r["contract"].column_names
    clean = read_arrow(r["out"], "clean")
    q = read_arrow(r["out"], "quarantine")
    got = [(row["_row_id"], "valid", {n: plain(row[n]) for n in names})
           for row in clean[clean["_source_key"] == key].to_dict("records")]
    got += [(row["_row_id"], "quarantined", row["reasons"].split(";"))
            for row in q[q["_source_key"] == key].to_dict("records")]
    return [(kind, what) for _, kind, what in sorted(got, key=lambda x: x[0])]


def assert_same_verdicts(mine: list, theirs: list, what: str) -> None:
    assert len(mine) == len(theirs), (what, len(mine), len(theirs))
    diffs = [(n + 1, m, t) for n, (m, t) in enumerate(zip(mine, theirs))
             if m[0] != t[0] or (m[0] == "quarantined" and m[1] != t[1])
             or (m[0] == "valid" and not all(same(m[1][c], t[1][c]) for c in m[1]))]
    assert not diffs, (what, diffs[:5])


def base_columns(contract, rows) -> list:
    """(keys, period, the other columns) of features rows (dicts), sorted: what a roll-up decides."""
    others = [n for n in contract.column_names if n not in contract.keys and n != contract.time_column]
    out = [([plain(row[k]) for k in contract.keys], plain(row[contract.time_column]),
            {n: plain(row[n]) for n in others}) for row in rows if not row.get("is_filled")]
    return sorted(out, key=lambda x: (repr(x[0]), repr(x[1])))


def preview_periods(pv: Preview) -> list:
    return sorted(((list(pr.keys), pr.period, pr.values) for pr in pv.periods), key=lambda x: (repr(x[0]), repr(x[1])))


def assert_same_periods(mine: list, theirs: list, what: str) -> None:
    assert len(mine) == len(theirs) > 0, (what, len(mine), len(theirs))
    diffs = [(m, t) for m, t in zip(mine, theirs)
             if m[:2] != t[:2] or not all(same(m[2][n], t[2][n]) for n in t[2])]
    assert not diffs, (what, diffs[:5])


# -- against the Spark job -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SPARK_CASES)
def test_every_row_gets_the_spark_jobs_verdict(runs, name):
    """Catches any parse rule of the preview that differs from the job's: trim (spaces only), null_values before
    case, Java's number syntax (`1e2`, `3.5d`, `0x10p0` parse, `1_000` does not), NaN and Infinity, whole numbers
    for ints, strict pattern widths (`2024-1-2` and `1/2/2024` do not parse), impossible dates, defaults, the reason
    order, malformed lines (short or long) and their partial values, invalid bytes, quoting, CRLF and blank lines,
    positional names, epoch times in a zone, parts, unpivoted cells, and the exact repeats a file drops."""
    r = runs[name]
    pv = r["preview"]
    assert pv.not_previewed == []
    for i, key in enumerate(r["keys"]):
        assert not any(v.undetermined for v in pv.verdicts(i))
        assert_same_verdicts(kept(pv, i), spark_rows(r, key), key)


@pytest.mark.parametrize("name", SPARK_CASES)
def test_accounting_matches_the_manifest(runs, name):
    """Catches a fate the preview decides differently from the job: an exact repeat, a duplicate by key (the
    winner under last/first, across files), a merged row, a quarantined one."""
    r = runs[name]
    acc = read_manifest(LocalStore(r["out"]), r["batch"]["batch_id"]).to_dict()["accounting"]
    for f, key in zip(r["preview"].files, r["keys"]):
        assert {fate: acc[key][fate] for fate in FATES} == r["preview"].accounting[f.path], key


@pytest.mark.parametrize("name", SPARK_CASES)
def test_rollup_matches_the_features_base_columns(runs, name):
    """Catches a roll-up that differs from the job's: the period start, which rows merge, each column's rollup
    (sum, mean, count, last = the latest time, then the newest file)."""
    r = runs[name]
    theirs = base_columns(r["contract"], read_arrow(r["out"], "features").to_dict("records"))
    assert_same_periods(preview_periods(r["preview"]), theirs, name)


def test_the_edge_cases_are_what_they_say(runs):
    """The hand-made edge cases keep their meaning (a guard on the fixture itself): a few verdicts by hand."""
    pv = runs["nexgen_sales"]["preview"]
    last = len(runs["nexgen_sales"]["keys"]) - 1
    edge = {v.raw.get("sku"): v for v in pv.verdicts(last)}
    assert edge["E-EXPONENT"].values["units_sold"] == 100.0
    assert edge["E-JAVA-SUFFIX"].values["unit_price"] == 3.5
    assert edge["E-HEX"].values["units_sold"] == 16.0
    assert edge["E-UNDERSCORE"].reasons == ["unparseable:units_sold"]
    assert edge["E-SHORT-MONTH"].reasons == ["unparseable:date"]
    assert edge["E-SLASH-SHORT"].reasons == ["unparseable:date"]
    assert edge["E-SHORT-LINE"].reasons == ["malformed_row"] and edge["E-SHORT-LINE"].values["promo"] == 0
    assert edge["E-BAD-BYTE"].reasons == ["invalid_encoding"]
    assert edge["E-INFINITY"].reasons == ["above_max:unit_price"]
    assert edge["E-TAB"].valid and edge["E-TAB"].values["units_sold"] == 5.0
    assert [v.fate for v in pv.verdicts(last) if v.raw.get("sku") == "E-REPEAT"] == \
        ["rows_out", "duplicates_exact", "duplicates_exact"]
    r = runs["nexgen_sales"]
    assert r["keys"][0].endswith(".csv.gz")
    with gzip.open(r["out"].parent / "raw" / r["keys"][0], "rt") as fh:
        assert sum(1 for line in fh if line.strip()) - 1 == len(pv.verdicts(0)) > 50


# -- against the independent reference, every example ----------------------------------------------------------------
@pytest.fixture(scope="module")
def references():
    """Each example's files (arrival order) in the preview and in the reference, as one full run."""
    out, now = {}, datetime.now(timezone.utc).replace(microsecond=0)
    for name in EXAMPLE_NAMES:
        files = samples(name)
        spec = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))
        inputs = [(str(path), now.replace(second=i), path.read_bytes()) for i, path in enumerate(files)]
        out[name] = {"contract": load_contract(EXAMPLES / f"{name}.yaml"), "files": files,
                     "ref": reference.run_contract(spec, inputs),
                     "preview": preview(load_contract(EXAMPLES / f"{name}.yaml"), files, rows=None)}
    return out


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_matches_the_reference(references, name):
    """Catches a preview rule that differs from the documented rules on any example shape (a week or month
    period, a fill policy, keys: [], zones, parts, unpivot, positional headers): per file the same valid rows and
    the same quarantine reasons, the same accounting, and the same rolled-up periods."""
    r = references[name]
    c, pv, ref = r["contract"], r["preview"], r["ref"]
    assert pv.not_previewed == []
    for i, path in enumerate(r["files"]):
        mine = pd.DataFrame([v.values for v in pv.verdicts(i) if v.valid and v.fate != "duplicates_exact"],
                            columns=c.column_names)
        theirs = ref.clean[ref.clean["_source_key"] == str(path)]
        assert_same_verdicts([("valid", row) for row in records(mine, c.column_names)],
                             [("valid", row) for row in records(theirs, c.column_names)], f"{name}: {path.name}")
        q = ref.quarantine[ref.quarantine["_source_key"] == str(path)]
        assert sorted(v.reasons for v in pv.verdicts(i) if v.reasons) == sorted(x.split(";") for x in q["reasons"])
        assert pv.accounting[str(path)] == ref.accounting[str(path)], path.name
    assert_same_periods(preview_periods(pv), base_columns(c, ref.features.to_dict("records")), name)
