"""core/infer.py: draft contracts from generated CSVs of the shapes feeds come in.

Every draft must parse with parse_contract (checked here, not only inside infer) and read its own sample in the
preview with (nearly) every row valid: a draft whose formats, null tokens or columns miss the file would show up
as quarantined rows.
"""

from __future__ import annotations

import gzip
import random
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from nexgen_etl.core.contract import parse_contract
from nexgen_etl.core.infer import InferError, infer_contract
from nexgen_etl.core.preview import preview
from nexgen_etl.dev.sample import SampleSpec, generate


def write(path: Path, lines: list[str], gz: bool = False) -> Path:
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def parsed(draft):
    """The draft as the pipeline loads it."""
    return parse_contract(yaml.safe_load(draft.yaml))


def valid_share(draft, path: Path) -> float:
    p = preview(parsed(draft), [path], rows=None)
    assert p.not_previewed == [] and p.files[0].rejected is None, p.files[0].rejected
    return sum(1 for r in p.rows if r.valid) / len(p.rows)


def daily_sales(tmp_path: Path) -> Path:
    return generate(tmp_path, SampleSpec(stores=4, skus=6, days=30, days_per_file=30, dirt=0.02))[0]


def transaction_log(tmp_path: Path) -> Path:
    """Till lines at irregular minutes; a busy store sells the same product twice in one minute now and then."""
    rng = random.Random(3)
    lines = ["sold_at,store,product,receipt,quantity,unit_price"]
    t = datetime(2024, 5, 1, 8)
    for i in range(600):
        t += timedelta(minutes=rng.choice([0, 0, 1, 3, 7, 13]))
        store, product = rng.choice(["S1", "S2"]), rng.choice(["apple", "pear", "plum"])
        lines.append(f"{t:%Y-%m-%d %H:%M:%S},{store},{product},R{i:04d},{rng.randint(1, 5)},"
                     f"{rng.choice(['1.20', '0.90', '2.10'])}")
    return write(tmp_path / "till.csv", lines)


def monthly_series(tmp_path: Path) -> Path:
    rng = random.Random(5)
    lines = ["month,commodity,unit,price"]
    for m in range(24):
        d = date(2022 + m // 12, m % 12 + 1, 1)
        for commodity, unit in (("copper", "t"), ("brent", "bbl"), ("cocoa", "kg")):
            lines.append(f"{d:%Y-%m-%d},{commodity},{unit},{rng.uniform(50, 9000):.2f}")
    return write(tmp_path / "prices.csv", lines)


def test_daily_sales_with_keys(tmp_path):
    """The generated sales feed (dirt included): store and SKU are the keys, date the daily time, units the
    target, price the price, a snapshot (`last`). Catches a key search that takes too few or too many columns, a
    type or format lost to a few dirty values, and a snapshot taken for a log because of its corrections."""
    path = daily_sales(tmp_path)
    d = infer_contract(path)
    c = parsed(d)
    assert (d.delimiter, d.header, d.time_column, d.period) == (",", True, "date", "day")
    assert c.column("date").formats[0] == "yyyy-MM-dd" and c.column("date").type == "date"
    assert (list(c.keys), c.target, c.price_column, c.duplicate_policy) == (["store_id", "sku"], "units_sold",
                                                                           "unit_price", "last")
    assert "NA" in c.csv.null_values
    assert "'2024-13-45'" in d.yaml  # the dirty date is named in a comment, not a reason to give up the type
    assert valid_share(d, path) > 0.95


def test_transaction_log_with_repeats_keeps_every_row(tmp_path):
    """Several lines per store, product and minute at irregular times: `keep`, rolled up to daily sums; the
    receipt (unique per line) is not a key. Catches a log read as a snapshot (its same-minute sales would be lost)
    and ids taken for entities."""
    path = transaction_log(tmp_path)
    d = infer_contract(path)
    c = parsed(d)
    assert (c.duplicate_policy, c.period, list(c.keys), c.target) == ("keep", "day", ["store", "product"],
                                                                      "quantity")
    assert c.column("sold_at").formats == ("yyyy-MM-dd HH:mm:ss",)
    assert (c.column("quantity").rollup, c.column("unit_price").rollup) == ("sum", "mean")
    assert "transaction log" in d.yaml
    assert valid_share(d, path) == 1.0


def test_monthly_series(tmp_path):
    """Month starts one month apart: `period: month`, the commodity the key (not its unit, which names the same
    thing). Catches monthly data taken for daily (lags of one day) and an attribute chosen as the entity."""
    path = monthly_series(tmp_path)
    d = infer_contract(path)
    c = parsed(d)
    assert (c.time_column, c.period, list(c.keys), c.target) == ("month_start", "month", ["commodity"], "price")
    assert valid_share(d, path) == 1.0


def test_month_and_year_columns_build_the_time(tmp_path):
    """Year and month in columns of their own: `time.parts`, a month period. Catches a file without a date column
    refused although its time is there."""
    lines = ["Year;Month;commodity;price"] + [f"{2022 + m // 12};{m % 12 + 1};{c};{10 + m}"
                                             for m in range(24) for c in ("copper", "brent")]
    path = write(tmp_path / "parts.csv", lines)
    d = infer_contract(path)
    c = parsed(d)
    assert d.parts == {"year": "Year", "month": "Month"}
    assert (c.time_column, c.period, list(c.keys)) == ("month_start", "month", ["commodity"])
    assert valid_share(d, path) == 1.0


def test_wide_file_unpivots(tmp_path):
    """A time column and one numeric column per sensor: an unpivot by the columns' common prefix, the series the
    key, hourly. Catches a wide file drafted as one series of its first column (the other sensors dropped)."""
    rng = random.Random(9)
    lines = ["logged_at," + ",".join(f"sensor_{i}" for i in range(1, 7))]
    t = datetime(2024, 3, 1)
    for _ in range(96):
        lines.append(f"{t:%Y-%m-%dT%H:%M:%S}," + ",".join(f"{rng.uniform(0, 80):.1f}" for _ in range(6)))
        t += timedelta(minutes=30)
    path = write(tmp_path / "wide.csv", lines)
    d = infer_contract(path)
    c = parsed(d)
    assert d.unpivot["pattern"] == "sensor_*" and c.unpivot.pattern == "sensor_*"
    assert (list(c.keys), c.target, c.period) == (["series"], "value", "hour")
    p = preview(c, [path], rows=None)
    assert len(p.rows) == 96 * 6 and all(r.valid for r in p.rows)  # a row per cell
    assert {pr.keys[0] for pr in p.periods} == {f"sensor_{i}" for i in range(1, 7)}


def test_years_as_column_names_unpivot_to_a_yearly_series(tmp_path):
    """A statistics table, one column per year: the year comes from the column's name. Catches the header taken
    for data (its years are numbers) and the file refused for having no time column."""
    lines = ["Country Name,Indicator," + ",".join(str(y) for y in range(2000, 2010))]
    for i, country in enumerate(["Aland", "Borduria", "Carpania", "Dorne", "Erewhon"]):
        lines.append(f"{country},Population total," + ",".join(str(10_000 * (i + 1) + y) for y in range(10)))
    path = write(tmp_path / "years.csv", lines)
    d = infer_contract(path)
    c = parsed(d)
    assert (d.header, d.parts, c.period, list(c.keys)) == (True, {"year": "year_label"}, "year", ["country_name"])
    p = preview(c, [path], rows=None)
    assert len(p.rows) == 5 * 10 and all(r.valid for r in p.rows)


def test_repeated_header_name_reads_by_position(tmp_path):
    """`value` twice in the header: `csv.header: positional`, the columns told apart by number; the header check
    accepts the file. Catches a draft whose file would be rejected whole as duplicate_header."""
    lines = ["meter,read_at,value,value,flag"] + [
        f"M-{m},2024-06-{d:02d},{m * d * 0.5:.2f},0.{30 + m},A" for d in range(1, 21) for m in (1, 2, 3)]
    path = write(tmp_path / "meter.csv", lines)
    d = infer_contract(path)
    c = parsed(d)
    assert d.header == "positional" and c.csv.header == "positional"
    assert c.column_names == ["meter", "read_at", "value", "value_2", "flag"]
    p = preview(c, [path], rows=None)
    assert p.files[0].rejected is None and all(r.valid for r in p.rows)
    assert p.rows[0].values["value_2"] == 0.31


def test_semicolons_dotted_dates_and_awkward_names(tmp_path):
    """A German till export: `;`, dd.MM.yyyy, `-` for missing, names with dots, spaces, parentheses and umlauts.
    Catches the delimiter or the date pattern missed, and a name Spark would parse (a dot) used as the column's
    name: it gets a safe `name` and its header as `source`."""
    lines = ["Datum;Filiale Nr.;Artikel (SKU);Menge.Stück;Preis (€)"]
    for day in range(1, 29):
        for store in ("F-01", "F 02"):
            for sku in ("KAFFEE", "TEE"):
                price = "-" if day % 9 == 0 else f"{3 + day % 3}.50"
                lines.append(f"{day:02d}.02.2024;{store};{sku};{day % 7 + 3};{price}")
    path = write(tmp_path / "filiale.csv", lines)
    d = infer_contract(path)
    c = parsed(d)
    assert (c.csv.delimiter, c.column("datum").formats, c.column("datum").source) == (";", ("dd.MM.yyyy",), "Datum")
    assert c.column("menge_stuck").source == "Menge.Stück" and c.column("filiale_nr").source == "Filiale Nr."
    assert (list(c.keys), c.target, c.price_column) == (["filiale_nr", "artikel_sku"], "menge_stuck", "preis")
    assert "-" in c.csv.null_values
    assert valid_share(d, path) == 1.0


def test_gzip_headerless_epoch_seconds(tmp_path):
    """A gzip file without a header line, times as epoch seconds: `header: false`, `epoch_s`. Catches the first
    data row taken for names (one row lost, the columns named after values) and epoch numbers left as longs."""
    t0 = int(datetime(2024, 1, 1).timestamp())
    rows = [f"{t0 + 3600 * h},{site},{20 + h % 5}.5" for h in range(48) for site in ("north", "south")]
    path = write(tmp_path / "epoch.csv.gz", rows, gz=True)
    d = infer_contract(path)
    c = parsed(d)
    assert (d.header, c.column("col_1").type, c.column("col_1").formats) == (False, "timestamp", ("epoch_s",))
    assert (list(c.keys), c.period) == (["col_2"], "hour")
    assert valid_share(d, path) == 1.0


@pytest.mark.parametrize("lines, message", [
    pytest.param(["a,b", "x,1", "y,2"], "a contract needs a time", id="no-time"),
    pytest.param(["day,name", "2024-01-01,x", "2024-01-02,y"], "no numeric column", id="no-target"),
    pytest.param([], "empty", id="empty"),
])
def test_a_file_that_cannot_give_a_contract_says_why(tmp_path, lines, message):
    with pytest.raises(InferError, match=message):
        infer_contract(write(tmp_path / "bad.csv", lines))
