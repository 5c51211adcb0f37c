"""The shapes of real feeds for bench/run.py's sections e-h: generated data, their contracts, and two yardsticks.

Four shapes, each a contract (CONTRACTS, written as YAML beside the data, the file the job is given) and a
generator (generated, never downloaded; deterministic per seed; file modification times set in key order, so that
"the newest file" is the last key, for the job as for the yardsticks):

  log      a point-of-sale log like examples/contracts/sales_log.yaml: lines at the minute, several per store,
           product and day, `duplicates: {policy: keep}`, rolled up to days (quantity summed, price averaged,
           receipts counted); one file a day, late lines of the day before in it, exact repeats, dirt
  sensors  readings every 15 minutes per sensor rolled up to hours like examples/contracts/grid_load.yaml, but with
           an entity key; whole hours and single readings missing, outages, sensors starting late and ending
           early, corrections of the day before (the newest file wins), `missing_periods: fill_null`
  monthly  series of monthly values with the time from Year/Month columns like
           examples/contracts/monthly_prices.yaml; one file a year plus a revision of the last year's months
  tiny     the sensors shape on one file of a few hundred rows (an hourly schedule's batch), 3 % dirt

The yardsticks apply the contract's rules to the same CSVs, in DuckDB SQL (`duckdb`) and in Polars' lazy API with
rolling windows and joins on the period index (`polars`), 2 threads each, and write what the job writes: features
and clean partitioned by `period_date`, and the quarantine. They read the contract's YAML data (not the product's
Contract) and share no code with the product; they handle the subset of the contract the shapes use and refuse any
other setting. `summary` and `compare` are the bench's output checks: row counts, partitions, the quarantine by
first reason, and per feature column its nulls and the sum of its values rounded to 6 places.

    python bench/shapes.py gen SHAPE OUT_DIR [--seed 42] [--size k=v ...]
    python bench/shapes.py duckdb|polars CONTRACT.yaml RAW_DIR OUT_DIR [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import yaml

# -- the contracts --------------------------------------------------------------------------------------------------
CONTRACTS: dict[str, dict] = {
    "log": {
        "name": "bench_sales_log",
        "csv": {"delimiter": ",", "null_values": ["", "NA"]},
        "columns": [
            {"name": "sold_at", "type": "timestamp", "formats": ["yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm"],
             "required": True},
            {"name": "store", "type": "string", "required": True, "case": "upper"},
            {"name": "product", "type": "string", "required": True, "case": "upper"},
            {"name": "receipt", "type": "string", "rollup": "count"},
            {"name": "quantity", "type": "int", "required": True, "min": 1, "max": 1000, "rollup": "sum"},
            {"name": "unit_price", "type": "double", "min": 0, "rollup": "mean"},
        ],
        "time": {"column": "sold_at", "period": "day"},
        "keys": ["store", "product"],
        "target": "quantity",
        "price": "unit_price",
        "duplicates": {"policy": "keep"},
        "missing_periods": "leave",
        "features": {"lags": [1, 7, 14, 28], "rolling": {"windows": [7, 28], "stats": ["mean", "std", "min", "max"]},
                     "calendar": True, "price": True},
    },
    "sensors": {
        "name": "bench_sensors",
        "csv": {"delimiter": ",", "null_values": ["", "NA"]},
        "columns": [
            {"name": "ts", "type": "timestamp", "formats": ["yyyy-MM-dd HH:mm"], "required": True},
            {"name": "sensor", "type": "string", "required": True, "case": "upper"},
            {"name": "load_mw", "type": "double", "required": True, "min": 0, "max": 5000, "rollup": "mean"},
            {"name": "price_eur_mwh", "type": "double", "rollup": "mean"},
            {"name": "status", "type": "string", "allowed": ["ok", "estimated"], "rollup": "last"},
        ],
        "time": {"column": "ts", "period": "hour"},
        "keys": ["sensor"],
        "target": "load_mw",
        "price": "price_eur_mwh",
        "duplicates": {"policy": "last"},
        "missing_periods": "fill_null",
        "features": {"lags": [1, 24, 168], "rolling": {"windows": [6, 24], "stats": ["mean", "std", "min", "max"]},
                     "calendar": True, "price": True},
    },
    "monthly": {
        "name": "bench_monthly",
        "csv": {"delimiter": ";", "null_values": ["", "..", "n/a"]},
        "columns": [
            {"name": "series", "type": "string", "required": True},
            {"name": "value", "type": "double", "required": True, "min": 0},
            {"name": "unit", "type": "string", "allowed": ["t", "bbl", "kg"]},
        ],
        "time": {"column": "month_start", "parts": {"year": "Year", "month": "Month"}, "period": "month"},
        "keys": ["series"],
        "target": "value",
        "duplicates": {"policy": "last"},
        "features": {"lags": [1, 3, 12], "rolling": {"windows": [3, 12], "stats": ["mean", "std", "min", "max"]}},
    },
}
CONTRACTS["tiny"] = CONTRACTS["sensors"]

# the default sizes; bench/run.py reads each from BENCH_<SHAPE>_<NAME> (e.g. BENCH_LOG_STORES)
SIZES: dict[str, dict[str, int]] = {
    "log": {"stores": 30, "products": 120, "days": 90},
    "sensors": {"sensors": 200, "days": 60},
    "monthly": {"series": 5000, "months": 120},
    "tiny": {"sensors": 5, "days": 1},
}


def write_contract(shape: str, path: Path) -> Path:
    path.write_text(f"# bench/shapes.py: the {shape} shape's contract\n" + yaml.safe_dump(CONTRACTS[shape],
                                                                                         sort_keys=False))
    return path


# -- the data -------------------------------------------------------------------------------------------------------
def _pick(rng, n: int, share: float):
    """Indices of about share × n rows."""
    import numpy as np

    return np.flatnonzero(rng.random(n) < share)


def _write(path: Path, header: str, lines: list[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return len(lines)


def _dirty(rng, lines: list[list[str]], share: float, kinds: list) -> None:
    """Applies one of kinds (each a function of a row's fields, in place) to about share of the rows."""
    for i in _pick(rng, len(lines), share):
        kinds[rng.integers(len(kinds))](lines[i])


def _repeat_and_join(rng, rows: list[list[str]], share: float, sep: str) -> list[str]:
    """Each row as a line; about share of them repeated exactly right after themselves (an export glitch)."""
    repeat = set(_pick(rng, len(rows), share).tolist())
    out = []
    for i, r in enumerate(rows):
        line = sep.join(r)
        out.append(line)
        if i in repeat:
            out.append(line)
    return out


def _set(i: int, value: str):
    def f(row: list[str]) -> None:
        row[i] = value
    return f


def _apply(i: int, fn):
    def f(row: list[str]) -> None:
        row[i] = fn(row[i])
    return f


def gen_log(root: Path, stores: int, products: int, days: int, seed: int, start: date = date(2024, 1, 1)) -> list:
    """One CSV a day (log/YYYY/MM/DD/pos_YYYY-MM-DD.csv): each store and product sells on about 60 % of the days,
    1 + Poisson(1-8) lines a day (more at weekends), at minutes between 08:00 and 21:59, sorted by time; 0.5 %
    exact repeats, 0.3 % of a day's lines arriving late in the next day's file, 1.5 % dirt."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_ent = stores * products
    sells = rng.uniform(0.3, 0.95, n_ent)
    lam = rng.uniform(1, 8, n_ent)
    base_price = np.round(rng.uniform(0.5, 20, products), 2)
    store_ids = np.array([f"S{s:03d}" for s in range(stores)])
    product_ids = np.array([f"P{p:04d}" for p in range(products)])
    dirt = [_apply(1, lambda v: f" {v.lower()} "), _apply(2, str.lower), _set(4, ""), _set(4, "0"),
            _set(4, "1500"), _set(4, "2.5"), _set(5, "NA"), _set(5, "-1.00"), _set(5, "n.a."),
            _apply(0, lambda v: v[:10] + "T" + v[11:16]), _set(0, ""), _set(3, "NA"), _apply(4, lambda v: v + ".0"),
            _set(1, "")]
    files, late = [], []
    for d in range(days):
        day = start + timedelta(days=d)
        weekend = 1.3 if day.isoweekday() >= 6 else 1.0
        n = np.where(rng.random(n_ent) < sells, 1 + rng.poisson(lam * weekend), 0)
        ent = np.repeat(np.arange(n_ent), n)
        minute = rng.integers(8 * 60, 22 * 60, len(ent))
        order = np.argsort(minute, kind="stable")
        ent, minute = ent[order], minute[order]
        qty = rng.geometric(0.6, len(ent))
        promo = rng.random(len(ent)) < 0.1
        price = np.round(base_price[ent % products] * np.where(promo, 0.8, 1.0), 2)
        seconds = rng.random(len(ent)) < 0.8
        iso = day.isoformat()
        rows = [[f"{iso} {m // 60:02d}:{m % 60:02d}" + (":00" if s else ""), store_ids[e // products],
                 product_ids[e % products], f"R{e // products:03d}{d:03d}{i:06d}", str(q), f"{p:.2f}"]
                for i, (e, m, s, q, p) in enumerate(zip(ent.tolist(), minute.tolist(), seconds.tolist(),
                                                        qty.tolist(), price.tolist()))]
        _dirty(rng, rows, 0.015, dirt)
        moved = set(_pick(rng, len(rows), 0.003).tolist()) if d < days - 1 else set()
        today = [r for i, r in enumerate(rows) if i not in moved]
        lines = _repeat_and_join(rng, late + today, 0.005, ",")
        late = [rows[i] for i in sorted(moved)]
        path = root / f"log/{day:%Y/%m/%d}/pos_{iso}.csv"
        _write(path, "sold_at,store,product,receipt,quantity,unit_price", lines)
        files.append(path)
    return files


def gen_sensors(root: Path, sensors: int, days: int, seed: int, start: date = date(2024, 3, 1),
                dirt_share: float = 0.01) -> list:
    """One CSV a day (sensors/YYYY/MM/DD/readings_YYYY-MM-DD.csv), a reading every 15 minutes per active sensor,
    sorted by time: 15 % of the sensors start later and 8 % stop earlier, each has ~1.5 outages of 1-12 hours, 1 % of
    its hours and 3 % of its readings are missing; 0.5 % of the day before's readings re-sent corrected, 0.2 % of
    the day's re-sent corrected at the end of its file, 0.3 % exact repeats, dirt_share dirt."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = np.array([f"SNR-{s:04d}" for s in range(sensors)])
    base = rng.uniform(50, 800, sensors)
    amp = rng.uniform(0.1, 0.4, sensors) * base
    first = np.where(rng.random(sensors) < 0.15, rng.integers(0, max(days // 2, 1), sensors), 0)
    last = np.where(rng.random(sensors) < 0.08, rng.integers(days // 2, days, sensors), days - 1)
    hours = days * 24
    down = rng.random((sensors, hours)) < 0.01
    for s in range(sensors):
        for _ in range(rng.poisson(1.5)):
            h0 = rng.integers(hours)
            down[s, h0:h0 + rng.integers(1, 13)] = True
    dirt = [_set(2, ""), _set(2, "-3.5"), _set(2, "7500"), _set(2, "err"),
            _apply(0, lambda v: f"{v[8:10]}.{v[5:7]}.{v[:4]} {v[11:]}"), _apply(1, str.lower), _set(1, ""),
            _set(3, "x"), _set(4, "bad"), _set(3, "NA")]
    files, previous = [], []
    for d in range(days):
        day = start + timedelta(days=d)
        active = np.flatnonzero((first <= d) & (d <= last))
        slot = np.repeat(np.arange(96), len(active))
        sensor = np.tile(active, 96)
        keep = ~down[sensor, d * 24 + slot // 4] & (rng.random(len(slot)) >= 0.03)
        slot, sensor = slot[keep], sensor[keep]
        phase = 2 * np.pi * (slot / 4 - 6) / 24
        load = np.round(np.maximum(base[sensor] + amp[sensor] * np.sin(phase) + rng.normal(0, 1, len(slot))
                                   * 0.03 * base[sensor], 0), 1)
        price = np.round(60 + 30 * np.sin(2 * np.pi * slot / 96) + rng.normal(0, 3, len(slot)), 2)
        status = np.where(rng.random(len(slot)) < 0.05, "estimated", "ok")
        iso = day.isoformat()
        rows = [[f"{iso} {t // 4:02d}:{t % 4 * 15:02d}", ids[s], f"{v:.1f}", f"{p:.2f}", st]
                for t, s, v, p, st in zip(slot.tolist(), sensor.tolist(), load.tolist(), price.tolist(),
                                          status.tolist())]
        _dirty(rng, rows, dirt_share, dirt)
        fixes = [[*previous[i][:2], f"{float(previous[i][2]) * 1.05:.1f}", *previous[i][3:]]
                 for i in _pick(rng, len(previous), 0.005)]
        redo = [[*rows[i][:2], f"{float(rows[i][2]) + 1:.1f}", *rows[i][3:]] for i in _pick(rng, len(rows), 0.002)
                if _number(rows[i][2])]
        lines = _repeat_and_join(rng, fixes + rows + redo, 0.003, ",")
        previous = [r for r in rows if _number(r[2])]
        path = root / f"sensors/{day:%Y/%m/%d}/readings_{iso}.csv"
        _write(path, "ts,sensor,load_mw,price_eur_mwh,status", lines)
        files.append(path)
    return files


def _number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def gen_monthly(root: Path, series: int, months: int, seed: int, start: date = date(2015, 1, 1)) -> list:
    """One CSV a year (stats/stats_YYYY.csv, `;`-separated, Year;Month;series;value;unit), sorted by month, then a
    revision of the last year's months for 20 % of the series (stats/stats_YYYY_rev.csv, the newest file): 15 % of
    the series start later, 1 % of the months are missing, months written 3, 03 or 3.0, 1 % dirt."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = np.array([f"SER{s:05d}" for s in range(series)])
    units = rng.choice(["t", "bbl", "kg"], series)
    first = np.where(rng.random(series) < 0.15, rng.integers(0, max(months // 2, 1), series), 0)
    level = np.exp(rng.normal(4, 1.5, series))
    walk = level[:, None] * np.exp(np.cumsum(rng.normal(0, 0.03, (series, months)), axis=1))
    present = (np.arange(months)[None, :] >= first[:, None]) & (rng.random((series, months)) >= 0.01)
    dirt = [_set(3, ".."), _set(3, "n/a"), _set(3, "-4.2"), _set(3, "abc"), _set(1, "13"), _set(1, ""),
            _apply(0, lambda v: v[:2] + "x" + v[3:]), _set(4, "lb"), _set(4, ""), _set(2, "")]
    y0 = start.year * 12 + start.month - 1

    def row(s: int, m: int, value: float) -> list[str]:
        y, mo = divmod(y0 + m, 12)
        mo += 1
        r = rng.random()
        month = f"{mo:02d}" if r < 0.1 else f"{mo}.0" if r < 0.12 else str(mo)
        return [str(y), month, ids[s], f"{value:.2f}", units[s]]

    files = []
    by_year: dict[int, list[list[str]]] = {}
    for m in range(months):
        s_ = np.flatnonzero(present[:, m])
        by_year.setdefault((y0 + m) // 12, []).extend(row(s, m, walk[s, m]) for s in s_.tolist())
    for year, rows in by_year.items():
        _dirty(rng, rows, 0.01, dirt)
        path = root / f"stats/stats_{year}.csv"
        _write(path, "Year;Month;series;value;unit", _repeat_and_join(rng, rows, 0.002, ";"))
        files.append(path)
    last = (y0 + months - 1) // 12
    revised = _pick(rng, series, 0.2)
    rows = [row(s, m, walk[s, m] * rng.uniform(0.98, 1.02)) for m in range(months) if (y0 + m) // 12 == last
            for s in revised.tolist() if present[s, m]]
    path = root / f"stats/stats_{last}_rev.csv"
    _write(path, "Year;Month;series;value;unit", [";".join(r) for r in rows])
    files.append(path)
    return files


def generate(shape: str, root: Path, size: dict[str, int], seed: int) -> dict:
    """Writes the shape's CSVs under root/raw and its contract to root/contract.yaml; returns what was written.
    Modification times are set one second apart in key order: the newest file is the last key."""
    shutil.rmtree(root, ignore_errors=True)
    raw = root / "raw"
    t0 = time.monotonic()
    if shape == "log":
        files = gen_log(raw, size["stores"], size["products"], size["days"], seed)
    elif shape in ("sensors", "tiny"):
        # the tiny feed a little dirtier, so that its few hundred rows have some of each fate
        files = gen_sensors(raw, size["sensors"], size["days"], seed, *(
            (date(2024, 3, 1), 0.01) if shape == "sensors" else (date(2024, 6, 1), 0.03)))
    elif shape == "monthly":
        files = gen_monthly(raw, size["series"], size["months"], seed)
    else:
        raise ValueError(f"unknown shape {shape!r}; shapes: {sorted(SIZES)}")
    files = sorted(files)
    t_base = 1_700_000_000
    for i, p in enumerate(files):
        os.utime(p, (t_base + i, t_base + i))
    contract = write_contract(shape, root / "contract.yaml")
    return {"shape": shape, "size": size, "seed": seed, "files": len(files), "contract": str(contract),
            "raw": str(raw), "rows": sum(sum(1 for _ in open(p, "rb")) - 1 for p in files),
            "bytes": sum(p.stat().st_size for p in files), "generate_s": round(time.monotonic() - t0, 1)}


# -- the contract's rules, as both yardsticks read them -------------------------------------------------------------
_PATTERNS = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]
CALENDAR = {"hour": ["day_of_week", "week_of_year", "month", "quarter", "is_weekend", "is_month_start",
                     "is_month_end", "hour"],
            "day": ["day_of_week", "week_of_year", "month", "quarter", "is_weekend", "is_month_start", "is_month_end"],
            "month": ["month", "quarter"]}


def strftime_pattern(spark_pattern: str) -> str:
    out = spark_pattern
    for spark, c in _PATTERNS:
        out = out.replace(spark, c)
    if any(ch.isalpha() and f"%{ch}" not in out for ch in out.replace("%", "")):
        raise NotImplementedError(f"pattern {spark_pattern!r}")
    return out


class Rules:
    """The contract's YAML data, checked to be within what the yardsticks implement."""

    def __init__(self, spec: dict) -> None:
        unsupported = set(spec) - {"name", "csv", "columns", "time", "keys", "target", "price", "duplicates",
                                   "missing_periods", "features"}
        csv_spec = spec.get("csv") or {}
        dup = spec.get("duplicates") or {}
        if unsupported or set(csv_spec) - {"delimiter", "null_values"} or set(dup) - {"policy"}:
            raise NotImplementedError(f"contract settings the yardsticks do not implement: {spec}")
        self.delimiter = csv_spec.get("delimiter", ",")
        self.nulls = list(csv_spec.get("null_values", [""]))
        t = spec["time"]
        self.time, self.period, self.parts = t["column"], t.get("period", "day"), t.get("parts")
        if self.period not in CALENDAR or (self.parts and set(self.parts) - {"year", "month"}):
            raise NotImplementedError(f"time {t}")
        cols = [dict(c) for c in spec["columns"]]
        if self.parts:  # the time from its parts is a column of its own, checked before the declared ones
            cols.insert(0, {"name": self.time, "type": "date", "required": True, "parts": self.parts})
        for c in cols:
            if set(c) - {"name", "type", "formats", "required", "case", "min", "max", "allowed", "rollup", "parts"}:
                raise NotImplementedError(f"column {c}")
            if c["type"] not in ("string", "int", "long", "double", "timestamp", "date") or \
                    (c["type"] == "date" and not c.get("parts")):
                raise NotImplementedError(f"column {c}")
        self.columns = cols
        self.keys = list(spec["keys"])
        self.target, self.price = spec["target"], spec.get("price")
        self.policy = dup.get("policy", "last")
        if self.policy not in ("last", "keep"):
            raise NotImplementedError(f"duplicates {dup}")
        self.fill = spec.get("missing_periods", "leave")
        if self.fill not in ("leave", "fill_null"):
            raise NotImplementedError(f"missing_periods {self.fill}")
        f = spec.get("features") or {}
        rolling = f.get("rolling") or {}
        self.lags = list(f.get("lags", [1, 7]))
        self.windows = list(rolling.get("windows", [7]))
        self.stats = list(rolling.get("stats", ["mean", "std", "min", "max"]))
        self.with_price = bool(f.get("price", self.price is not None))
        self.calendar = CALENDAR[self.period] if f.get("calendar", True) else []
        names = [c["name"] for c in cols]
        self.names = names
        self.others = [n for n in names if n not in self.keys and n != self.time]
        types = {c["name"]: c["type"] for c in cols}
        if types[self.time] == "date" and self.period == "day" and self.policy != "keep":
            raise NotImplementedError("a date time column by day without a roll-up")
        self.raw_columns = [r for c in cols for r in raw_names(c)]

    def feature_names(self) -> list[str]:
        t, p = self.target, self.price
        out = [f"{t}_lag_{k}" for k in self.lags] + [f"{t}_roll_{s}_{w}" for w in self.windows for s in self.stats]
        if self.with_price:
            out += [f"{p}_change_1"] + [f"{p}_ratio_mean_{w}" for w in self.windows]
        return out + self.calendar

    def output_names(self) -> list[str]:
        return [*self.keys, self.time, *self.others, *self.feature_names(),
                *(["is_filled"] if self.fill != "leave" else [])]


def raw_names(c: dict) -> list[str]:
    return list(c["parts"].values()) if c.get("parts") else [c.get("source") or c["name"]]


def csv_files(raw: str) -> list[str]:
    return sorted(str(p) for p in Path(raw).rglob("*.csv"))


def read_header(path: str, delimiter: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [h.strip() for h in f.readline().rstrip("\r\n").split(delimiter)]


# -- DuckDB ---------------------------------------------------------------------------------------------------------
def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(v) -> str:
    return "'" + str(v).replace("'", "''") + "'" if isinstance(v, str) else repr(v)


def duckdb_sql(r: Rules, files: list[str], header: list[str], out: str) -> list[tuple[str, str]]:
    """The statements, each with a name for its timing."""
    nulls = ", ".join(_lit(s) for s in r.nulls)

    alias = {h: f"_r{j}" for j, h in enumerate(r.raw_columns)}  # the raw strings, apart from the typed columns

    def norm(c: dict, raw: str) -> str:
        s = f"trim({alias[raw]}, ' ')"
        s = f"CASE WHEN {s} IN ({nulls}) THEN NULL ELSE {s} END" if r.nulls else s
        return f"{c['case']}({s})" if c.get("case") else s

    def whole(s: str, to: str) -> str:
        return f"CASE WHEN try_cast({s} AS DOUBLE) = floor(try_cast({s} AS DOUBLE)) THEN " \
               f"try_cast({s} AS DOUBLE)::{to} END"

    normal, typed, reasons = [], [], []
    for i, c in enumerate(r.columns):
        n, s = c["name"], f"_s{i}"
        if c.get("parts"):
            y, m = f"_s{i}_y", f"_s{i}_m"
            normal += [f"{norm(c, c['parts']['year'])} AS {y}", f"{norm(c, c['parts']['month'])} AS {m}"]
            yi, mi = whole(y, "BIGINT"), whole(m, "BIGINT")
            typed.append(f"CASE WHEN ({yi}) BETWEEN 1 AND 9999 AND ({mi}) BETWEEN 1 AND 12 "
                         f"THEN make_date(({yi})::INT, ({mi})::INT, 1) END AS {_q(n)}")
            present = f"{y} IS NOT NULL AND {m} IS NOT NULL"
        else:
            normal.append(f"{norm(c, raw_names(c)[0])} AS {s}")
            present = f"{s} IS NOT NULL"
            t = c["type"]
            if t == "string":
                v = s
            elif t == "double":
                v = f"CASE WHEN NOT isnan(try_cast({s} AS DOUBLE)) THEN try_cast({s} AS DOUBLE) END"
            elif t in ("int", "long"):
                v = whole(s, "INTEGER" if t == "int" else "BIGINT")
            else:
                v = f"coalesce({', '.join(f'try_strptime({s}, {_lit(strftime_pattern(f))})' for f in c['formats'])})"
            typed.append(f"{v} AS {_q(n)}")
        q = _q(n)
        if c.get("required"):
            reasons.append(f"CASE WHEN NOT ({present}) THEN 'missing:{n}' END")
        reasons.append(f"CASE WHEN {present} AND {q} IS NULL THEN 'unparseable:{n}' END")
        if c.get("min") is not None:
            reasons.append(f"CASE WHEN {q} < {_lit(c['min'])} THEN 'below_min:{n}' END")
        if c.get("max") is not None:
            reasons.append(f"CASE WHEN {q} > {_lit(c['max'])} THEN 'above_max:{n}' END")
        if c.get("allowed") is not None:
            reasons.append(f"CASE WHEN {q} NOT IN ({', '.join(_lit(a) for a in c['allowed'])}) "
                           f"THEN 'not_allowed:{n}' END")

    cols = {h: "VARCHAR" for h in header}
    file_list = "[" + ", ".join(_lit(f) for f in files) + "]"
    raw_struct = ", ".join(f"{_lit(h)}: {alias[h]}" for h in r.raw_columns)
    declared = ", ".join(_q(n) for n in r.names)
    keys = ", ".join(_q(k) for k in r.keys)
    tq = _q(r.time)
    period = {"hour": f"date_trunc('hour', {tq})", "day": f"CAST({tq} AS DATE)",
              "month": f"CAST(date_trunc('month', {tq}) AS DATE)"}[r.period]
    index = {"hour": "date_diff('hour', TIMESTAMP '1970-01-01', _period)",
             "day": "date_diff('day', DATE '1970-01-01', _period)",
             "month": "year(_period) * 12 + month(_period) - 1"}[r.period]
    from_index = {"hour": "TIMESTAMP '1970-01-01' + to_hours(_idx)", "day": "DATE '1970-01-01' + _idx::INTEGER",
                  "month": "make_date((_idx // 12)::INT, (_idx % 12 + 1)::INT, 1)"}[r.period]
    types = {c["name"]: c["type"] for c in r.columns}
    aggs = []
    for c in r.columns:
        n = c["name"]
        if n in r.keys or n == r.time:
            continue
        how, q = c.get("rollup", "last"), _q(n)
        agg = {"last": f"any_value({q}) FILTER (WHERE _rank = 1)", "sum": f"sum({q})", "mean": f"avg({q})",
               "count": f"count({q})", "max": f"max({q})", "min": f"min({q})"}[how]
        if how == "sum" and types[n] in ("int", "long"):
            agg = f"CAST({agg} AS BIGINT)"
        aggs.append(f"{agg} AS {q}")
    winners = "clean" if r.policy == "keep" else (
        f"(SELECT * FROM clean QUALIFY row_number() OVER (PARTITION BY {keys}, {tq} "
        f"ORDER BY filename DESC, _row_id DESC) = 1)")

    stmts = [
        ("read", f"""CREATE TEMP TABLE raw AS SELECT *, row_number() OVER () AS _row_id
            FROM read_csv({file_list}, header = true, delim = {_lit(r.delimiter)}, quote = '"', escape = '"',
                          all_varchar = true, filename = true, auto_detect = false, columns = {cols})"""),
        ("parse", f"""CREATE TEMP TABLE parsed AS
            WITH a AS (SELECT filename, _row_id, {', '.join(f'{_q(h)} AS {alias[h]}' for h in r.raw_columns)}
                       FROM raw),
                 n AS (SELECT *, {', '.join(normal)} FROM a),
                 t AS (SELECT *, {', '.join(typed)} FROM n)
            SELECT *, list_filter([{', '.join(reasons)}], lambda x: x IS NOT NULL) AS _reasons FROM t"""),
        ("quarantine", f"""COPY (SELECT filename AS _source_key, _row_id, _reasons[1] AS reason,
                   array_to_string(_reasons, ';') AS reasons, to_json({{{raw_struct}}}) AS raw_values
            FROM parsed WHERE len(_reasons) > 0) TO {_lit(out + '/quarantine.parquet')} (FORMAT PARQUET,
            COMPRESSION SNAPPY)"""),
        # exact repeats within a file: the first stays
        ("clean", f"""CREATE TEMP TABLE clean AS SELECT filename, _row_id, {declared}, {period} AS _period
            FROM parsed WHERE len(_reasons) = 0
            QUALIFY row_number() OVER (PARTITION BY filename, {declared} ORDER BY _row_id) = 1"""),
        ("clean write", f"""COPY (SELECT filename AS _source_key, _row_id, {declared},
                   strftime(CAST(_period AS DATE), '%Y-%m-%d') AS period_date FROM clean)
            TO {_lit(out + '/clean')} (FORMAT PARQUET, COMPRESSION SNAPPY, PARTITION_BY (period_date))"""),
        # per keys and exact time the newest file's last row (`last`); then one row per keys and period, `last`
        # columns from the row with the latest time (then the newest file, the later row)
        ("roll-up", f"""CREATE TEMP TABLE periods AS
            WITH ranked AS (SELECT *, row_number() OVER (PARTITION BY {keys}, _period
                                                         ORDER BY {tq} DESC, filename DESC, _row_id DESC) AS _rank
                            FROM {winners})
            SELECT {keys}, _period, {index} AS _idx, {', '.join(aggs)} FROM ranked GROUP BY {keys}, _period"""),
    ]
    source = "periods"
    if r.fill == "fill_null":
        stmts.append(("fill", f"""CREATE TEMP TABLE filled AS
            SELECT *, false AS is_filled FROM periods
            UNION ALL BY NAME
            SELECT {keys}, _idx, {from_index} AS _period, true AS is_filled FROM (
              SELECT {keys}, unnest(generate_series(min(_idx), max(_idx))) AS _idx FROM periods GROUP BY {keys}
            ) g ANTI JOIN periods p USING ({keys}, _idx)"""))
        source = "filled"

    def over(agg: str, col: str, a: int, b: int) -> str:
        return f"{agg}({_q(col)}) OVER (w RANGE BETWEEN {a} PRECEDING AND {b} PRECEDING)"

    feats = [f"{over('max', r.target, k, k)} AS {_q(f'{r.target}_lag_{k}')}" for k in r.lags]
    sql_stat = {"mean": "avg", "std": "stddev_samp", "min": "min", "max": "max"}
    feats += [f"{over(sql_stat[s], r.target, w, 1)} AS {_q(f'{r.target}_roll_{s}_{w}')}"
              for w in r.windows for s in r.stats]
    if r.with_price:
        p = _q(r.price)
        feats.append(f"{p} - {over('max', r.price, 1, 1)} AS {_q(f'{r.price}_change_1')}")
        feats += [f"{p} / nullif({over('avg', r.price, w, 1)}, 0) AS {_q(f'{r.price}_ratio_mean_{w}')}"
                  for w in r.windows]
    d = "CAST(_period AS DATE)"
    cal = {"day_of_week": f"isodow({d})", "week_of_year": f"weekofyear({d})", "month": f"month({d})",
           "quarter": f"quarter({d})", "is_weekend": f"isodow({d}) >= 6", "is_month_start": f"day({d}) = 1",
           "is_month_end": f"{d} = last_day({d})", "hour": "hour(_period)"}
    feats += [f"{cal[c]} AS {c}" for c in r.calendar]
    filled = ", is_filled" if r.fill != "leave" else ""
    stmts.append(("features", f"""COPY (SELECT {keys}, _period AS {tq}, {', '.join(_q(o) for o in r.others)},
                   {', '.join(feats)}{filled}, strftime({d}, '%Y-%m-%d') AS period_date
            FROM {source} WINDOW w AS (PARTITION BY {keys} ORDER BY _idx))
            TO {_lit(out + '/features')} (FORMAT PARQUET, COMPRESSION SNAPPY, PARTITION_BY (period_date))"""))
    return stmts


def run_duckdb(contract: str, raw: str, out: str, threads: int = 2) -> dict:
    import duckdb

    r = Rules(yaml.safe_load(Path(contract).read_text()))
    shutil.rmtree(out, ignore_errors=True)
    Path(out).mkdir(parents=True)
    files = csv_files(raw)
    timings = {}
    with duckdb.connect(config={"threads": threads}) as con:
        for name, stmt in duckdb_sql(r, files, read_header(files[0], r.delimiter), out):
            t0 = time.monotonic()
            con.execute(stmt)
            timings[name] = round(time.monotonic() - t0, 3)
        rows_read = con.execute("SELECT count(*) FROM raw").fetchone()[0]
        rows_out = con.execute("SELECT count(*) FROM periods").fetchone()[0]
    return {"rows_read": rows_read, "rows_out": rows_out, "timings": timings}


# -- Polars ---------------------------------------------------------------------------------------------------------
def run_polars(contract: str, raw: str, out: str, threads: int = 2) -> dict:
    os.environ["POLARS_MAX_THREADS"] = str(threads)  # read once, when Polars is first imported
    import polars as pl

    if pl.thread_pool_size() != threads:
        raise RuntimeError(f"Polars was imported before with {pl.thread_pool_size()} threads, not {threads}")
    r = Rules(yaml.safe_load(Path(contract).read_text()))
    shutil.rmtree(out, ignore_errors=True)
    Path(out).mkdir(parents=True)
    files = csv_files(raw)
    header = read_header(files[0], r.delimiter)
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(now - clock, 3)
        clock = now

    alias = {h: f"_r{j}" for j, h in enumerate(r.raw_columns)}  # the raw strings, apart from the typed columns

    def norm(c: dict, raw_name: str) -> pl.Expr:
        s = pl.col(alias[raw_name]).str.strip_chars(" ")
        if r.nulls:
            s = pl.when(s.is_in(r.nulls)).then(None).otherwise(s)
        return s.str.to_uppercase() if c.get("case") == "upper" else \
            s.str.to_lowercase() if c.get("case") == "lower" else s

    def whole(s: pl.Expr, to) -> pl.Expr:
        d = s.cast(pl.Float64, strict=False)
        return pl.when(d == d.floor()).then(d.cast(to, strict=False))

    normal, typed, reasons = [], [], []
    for i, c in enumerate(r.columns):
        n, s = c["name"], pl.col(f"_s{i}")
        if c.get("parts"):
            y, m = pl.col(f"_s{i}_y"), pl.col(f"_s{i}_m")
            normal += [norm(c, c["parts"]["year"]).alias(f"_s{i}_y"), norm(c, c["parts"]["month"]).alias(f"_s{i}_m")]
            yi, mi = whole(y, pl.Int64), whole(m, pl.Int64)
            ok = yi.is_between(1, 9999) & mi.is_between(1, 12)
            # the clipped parts only where they are valid: pl.date is evaluated on every row
            typed.append(pl.when(ok).then(pl.date(yi.clip(1, 9999), mi.clip(1, 12), 1)).alias(n))
            present = y.is_not_null() & m.is_not_null()
        else:
            normal.append(norm(c, raw_names(c)[0]).alias(f"_s{i}"))
            present = s.is_not_null()
            t = c["type"]
            if t == "string":
                v = s
            elif t == "double":
                d = s.cast(pl.Float64, strict=False)
                v = pl.when(~d.is_nan()).then(d)
            elif t in ("int", "long"):
                v = whole(s, pl.Int32 if t == "int" else pl.Int64)
            else:
                v = pl.coalesce(*(s.str.strptime(pl.Datetime("us"), strftime_pattern(f), strict=False)
                                  for f in c["formats"]))
            typed.append(v.alias(n))
        q = pl.col(n)
        if c.get("required"):
            reasons.append(pl.when(~present).then(pl.lit(f"missing:{n}")))
        reasons.append(pl.when(present & q.is_null()).then(pl.lit(f"unparseable:{n}")))
        if c.get("min") is not None:
            reasons.append(pl.when(q < c["min"]).then(pl.lit(f"below_min:{n}")))
        if c.get("max") is not None:
            reasons.append(pl.when(q > c["max"]).then(pl.lit(f"above_max:{n}")))
        if c.get("allowed") is not None:
            reasons.append(pl.when(~q.is_in(c["allowed"])).then(pl.lit(f"not_allowed:{n}")))

    scan = pl.scan_csv(files, has_header=True, separator=r.delimiter, schema={h: pl.String for h in header},
                       include_file_paths="filename", row_index_name="_row_id", row_index_offset=1)
    parsed = (scan.select("filename", "_row_id", *(pl.col(h).alias(a) for h, a in alias.items()))
              .with_columns(*normal).with_columns(*typed)
              .with_columns(pl.concat_str(reasons, separator=";", ignore_nulls=True).alias("_reasons"))
              .collect())
    rows_read = parsed.height
    lap("read and parse")
    rs = pl.col("_reasons")
    (parsed.lazy().filter(rs != "")
     .select(pl.col("filename").alias("_source_key"), "_row_id", rs.str.split(";").list.first().alias("reason"),
             rs.alias("reasons"),
             pl.struct(*(pl.col(a).alias(h) for h, a in alias.items())).struct.json_encode().alias("raw_values"))
     .sink_parquet(f"{out}/quarantine.parquet", compression="snappy"))
    lap("quarantine")

    tq = pl.col(r.time)
    period = {"hour": tq.dt.truncate("1h"), "day": tq.dt.date(), "month": tq.dt.truncate("1mo")}[r.period]
    # a file's rank in key order then the row: one Int64 that orders the rows as "newest file, later row"
    rank = pl.col("filename").replace_strict(files, list(range(len(files))), return_dtype=pl.Int64)
    clean = (parsed.lazy().filter(rs == "")
             .select("filename", "_row_id", *r.names, period.alias("_period"),
                     (rank * (1 << 40) + pl.col("_row_id")).alias("_ord"))
             .filter(pl.col("_row_id") == pl.col("_row_id").min().over(["filename", *r.names]))
             .collect())
    del parsed
    lap("clean")
    (clean.lazy().select(pl.col("filename").alias("_source_key"), "_row_id", *r.names,
                         pl.col("_period").cast(pl.Date).dt.strftime("%Y-%m-%d").alias("period_date"))
     .sink_parquet(pl.PartitionBy(f"{out}/clean", key="period_date", include_key=False), compression="snappy",
                   mkdir=True))
    lap("clean write")

    winners = clean.lazy()
    if r.policy == "last":
        winners = winners.filter(pl.col("_ord") == pl.col("_ord").max().over([*r.keys, r.time]))
    types = {c["name"]: c["type"] for c in r.columns}
    aggs = []
    for c in r.columns:
        n = c["name"]
        if n in r.keys or n == r.time:
            continue
        how, q = c.get("rollup", "last"), pl.col(n)
        agg = {"last": q.last(), "sum": pl.when(q.count() > 0).then(q.sum()), "mean": q.mean(),
               "count": q.count().cast(pl.Int64), "max": q.max(), "min": q.min()}[how]
        if how == "sum" and types[n] in ("int", "long"):
            agg = agg.cast(pl.Int64)
        aggs.append(agg.alias(n))
    # sorted so that each period's last row is its representative: latest time, then newest file, later row
    p = pl.col("_period")
    index = {"hour": p.dt.timestamp("us") // 3_600_000_000, "day": p.cast(pl.Int32).cast(pl.Int64),
             "month": p.dt.year().cast(pl.Int64) * 12 + p.dt.month().cast(pl.Int64) - 1}[r.period]
    periods = (winners.sort([*r.keys, "_period", r.time, "_ord"])
               .group_by([*r.keys, "_period"], maintain_order=True).agg(*aggs)
               .with_columns(index.alias("_idx")).collect())
    rows_out = periods.height
    lap("roll-up")
    frame = periods.lazy()
    if r.fill == "fill_null":
        i = pl.col("_idx")
        from_index = {"hour": pl.from_epoch(i * 3600, time_unit="s").cast(pl.Datetime("us")),
                      "day": i.cast(pl.Int32).cast(pl.Date),
                      "month": pl.date(i // 12, i % 12 + 1, 1)}[r.period]
        grid = (periods.lazy().group_by(r.keys).agg(pl.int_ranges(i.min(), i.max() + 1).first().alias("_idx"))
                .explode("_idx").join(periods.lazy().select(*r.keys, "_idx"), on=[*r.keys, "_idx"], how="anti")
                .with_columns(from_index.alias("_period"), pl.lit(True).alias("is_filled")))
        frame = pl.concat([frame.with_columns(pl.lit(False).alias("is_filled")), grid], how="diagonal_relaxed")

    # one sorted Int64 for the windows: the entity's ordinal × 2**22 plus the period index (hours since 1970 stay
    # below 2**22 until 2448), so that a window of periods never reaches another entity
    frame = frame.sort([*r.keys, "_idx"])
    starts = pl.any_horizontal(*(pl.col(k) != pl.col(k).shift(1) for k in r.keys)).fill_null(True)
    t = pl.col("_t")
    frame = frame.with_columns((starts.cum_sum().cast(pl.Int64) * (1 << 22) + pl.col("_idx")).alias("_t"))

    def roll(col: str, stat: str, w: int) -> pl.Expr:
        f = getattr(pl.col(col), f"rolling_{stat}_by")
        return f(by="_t", window_size=f"{w}i", closed="left", min_samples=2 if stat == "std" else 1)

    def lag(col: str, k: int, name: str) -> pl.LazyFrame:
        return frame.select((t + k).alias("_t"), pl.col(col).alias(name))

    tgt = r.target
    feats = [roll(tgt, s, w).alias(f"{tgt}_roll_{s}_{w}") for w in r.windows for s in r.stats]
    if r.with_price:
        feats += [roll(r.price, "mean", w).alias(f"_pm{w}") for w in r.windows]
    frame = frame.with_columns(*feats)
    for k in r.lags:
        frame = frame.join(lag(tgt, k, f"{tgt}_lag_{k}"), on="_t", how="left", maintain_order="left")
    d = p.cast(pl.Date)
    cal = {"day_of_week": d.dt.weekday(), "week_of_year": d.dt.week(), "month": d.dt.month(),
           "quarter": d.dt.quarter(), "is_weekend": d.dt.weekday() >= 6, "is_month_start": d.dt.day() == 1,
           "is_month_end": d == d.dt.month_end(), "hour": p.dt.hour()}
    extra = [cal[c].cast(pl.Int32).alias(c) if not c.startswith("is_") else cal[c].alias(c) for c in r.calendar]
    if r.with_price:
        frame = frame.join(lag(r.price, 1, "_p1"), on="_t", how="left", maintain_order="left")
        price = pl.col(r.price)
        extra.append((price - pl.col("_p1")).alias(f"{r.price}_change_1"))
        extra += [pl.when(pl.col(f"_pm{w}") != 0).then(price / pl.col(f"_pm{w}")).alias(f"{r.price}_ratio_mean_{w}")
                  for w in r.windows]
    (frame.with_columns(*extra, p.alias(r.time), d.dt.strftime("%Y-%m-%d").alias("period_date"))
     .select(*r.output_names(), "period_date")
     .sink_parquet(pl.PartitionBy(f"{out}/features", key="period_date", include_key=False), compression="snappy",
                   mkdir=True))
    lap("features")
    return {"rows_read": rows_read, "rows_out": rows_out, "timings": timings}


# -- are the outputs the same? --------------------------------------------------------------------------------------
def summary(features: Path, clean: Path, quarantine: Path) -> dict:
    """One run's output as the bench compares it: the rows of features, clean and quarantine (a folder of Parquet
    files or one file), the quarantine's rows by first reason, the features' day partitions, and per feature column
    (all but the partition column) its nulls and the sum of its values rounded to 6 places: numbers as they are,
    booleans 0/1, dates as days and timestamps as seconds since 1970-01-01; strings as the sum of their hashes."""
    import duckdb

    def scan(path: Path) -> str:
        glob = path if path.suffix == ".parquet" else path / "**" / "*.parquet"
        return f"read_parquet('{glob}', hive_partitioning = false)"

    def count(path: Path) -> int:  # a job's dataset with no rows may have no file
        if path.suffix != ".parquet" and not any(path.rglob("*.parquet")):
            return 0
        return con.execute(f"SELECT count(*) FROM {scan(path)}").fetchone()[0]

    with duckdb.connect(config={"threads": 2}) as con:
        types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {scan(features)}").fetchall()}
        exprs = []
        for c, t in types.items():
            q = _q(c)
            exprs.append(f"count(*) - count({q})")
            if t == "VARCHAR":
                v = f"hash({q})::HUGEINT"
            elif t == "BOOLEAN":
                v = f"{q}::INT"
            elif t == "DATE":
                v = f"date_diff('day', DATE '1970-01-01', {q})"
            elif t.startswith("TIMESTAMP"):
                v = f"epoch_ms({q}) / 1000"
            else:
                v = f"CASE WHEN NOT isnan({q}::DOUBLE) THEN {q} END" if t in ("FLOAT", "DOUBLE") else q
            exprs.append(f"sum({v})")
        row = con.execute(f"SELECT count(*), {', '.join(exprs)} FROM {scan(features)}").fetchone()
        columns = {c: {"type": t, "nulls": int(row[1 + 2 * i]),
                       "sum": None if row[2 + 2 * i] is None else round(float(row[2 + 2 * i]), 6)}
                   for i, (c, t) in enumerate(types.items())}
        rows = {"features": row[0]}
        for name, path in (("clean", clean), ("quarantine", quarantine)):
            rows[name] = count(path)
        reasons = dict(con.execute(f"SELECT reason, count(*) FROM {scan(quarantine)} GROUP BY ALL ORDER BY 1")
                       .fetchall()) if rows["quarantine"] else {}
    partitions = sorted(d.name for d in features.iterdir() if d.is_dir() and d.name.startswith("period_date="))
    return {"rows": rows, "quarantine_reasons": reasons, "partitions": len(partitions),
            "partition_range": [partitions[0], partitions[-1]] if partitions else [], "columns": columns}


REL_TOL = 1e-9  # sums of doubles added in another order; a rolling std computed another way


def compare(ref_name: str, ref: dict, name: str, other: dict) -> list[str]:
    """How other's summary differs from ref's (empty: the same). Counts, reasons, partitions and nulls exactly;
    strings' hash sums exactly; the sums of numbers within REL_TOL of the larger one, plus 1e-6 for the rounding."""
    diffs = [f"{name}: {k} {other[k]!r}, {ref_name} {ref[k]!r}" for k in ("rows", "quarantine_reasons", "partitions",
                                                                          "partition_range") if other[k] != ref[k]]
    if set(other["columns"]) != set(ref["columns"]):
        diffs.append(f"{name}: columns {sorted(other['columns'])}, {ref_name} {sorted(ref['columns'])}")
    for c, r in ref["columns"].items():
        o = other["columns"].get(c)
        if o is None:
            continue
        if o["nulls"] != r["nulls"]:
            diffs.append(f"{name}: {c} has {o['nulls']} nulls, {ref_name} {r['nulls']}")
        a, b = o["sum"], r["sum"]
        exact = "VARCHAR" in (o["type"], r["type"])
        if (a is None) != (b is None) or (a is not None and (
                a != b if exact else abs(a - b) > REL_TOL * max(abs(a), abs(b)) + 1e-6)):
            diffs.append(f"{name}: {c} sums to {a!r}, {ref_name} {b!r}")
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("shape", choices=sorted(SIZES))
    g.add_argument("out")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--size", nargs="*", default=[], help="name=value, e.g. stores=3 days=10")
    for engine in ("duckdb", "polars"):
        e = sub.add_parser(engine)
        e.add_argument("contract")
        e.add_argument("raw")
        e.add_argument("out")
        e.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.cmd == "gen":
        size = SIZES[a.shape] | {k: int(v) for k, v in (kv.split("=", 1) for kv in a.size)}
        print(json.dumps(generate(a.shape, Path(a.out), size, a.seed)))
    else:
        run = run_duckdb if a.cmd == "duckdb" else run_polars
        print(json.dumps(run(a.contract, a.raw, a.out, a.threads)))


if __name__ == "__main__":
    main()
