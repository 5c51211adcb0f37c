"""An independent pandas reference of cleaning and features (never calls the Spark code), for comparisons."""

from __future__ import annotations

import csv
import fnmatch
import io
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

NULLS = {"", "NA", "N/A", "null", "NULL", "NaN", "-"}
FORMATS = ["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y"]


def _date(s):
    for f in FORMATS:
        try:
            return datetime.strptime(s, f).date()
        except ValueError:
            pass
    return None


def _num(s):
    try:
        v = float(s)
    except ValueError:
        return "bad"
    return None if np.isnan(v) else v


def clean_rows(files: list[tuple[str, datetime, bytes]]) -> pd.DataFrame:
    """files: (key, last_modified, csv bytes) → valid rows with the winner rules applied (one per key and day)."""
    rows = []
    for key, lm, data in files:
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
        for i, r in enumerate(df.to_dict("records")):
            v = {k: (str(x).strip() if x is not None else "") for k, x in r.items()}
            v = {k: (None if x in NULLS else x) for k, x in v.items()}
            if v["date"] is None or v["store_id"] is None or v["sku"] is None or v["units_sold"] is None:
                continue
            d = _date(v["date"])
            units = _num(v["units_sold"])
            price = _num(v["unit_price"]) if v.get("unit_price") is not None else None
            promo = _num(v["promo"]) if v.get("promo") is not None else 0.0
            if d is None or units in (None, "bad") or price == "bad" or promo == "bad":
                continue
            if not (0 <= units <= 1_000_000) or (price is not None and not 0 <= price <= 100_000):
                continue
            if promo not in (0.0, 1.0):
                continue
            rows.append({"store_id": v["store_id"].upper(), "sku": v["sku"].upper(), "date": d, "units_sold": units,
                         "unit_price": price, "promo": int(promo), "_lm": lm, "_key": key, "_row": i})
    df = pd.DataFrame(rows)
    df = df.sort_values(["_lm", "_key", "_row"]).drop_duplicates(["store_id", "sku", "date"], keep="last")
    return df.drop(columns=["_lm", "_key", "_row"]).reset_index(drop=True)


def features(df: pd.DataFrame, lags=(1, 7, 14, 28), windows=(7, 28)) -> pd.DataFrame:
    """Lags and rolling stats on calendar days, excluding t, per (store, sku)."""
    out = []
    for _, g in df.groupby(["store_id", "sku"]):
        s = g.set_index(pd.to_datetime(g["date"]))["units_sold"]
        p = g.set_index(pd.to_datetime(g["date"]))["unit_price"].astype(float)
        full = s.asfreq("D")
        pfull = p.asfreq("D")
        r = g.copy()
        idx = pd.to_datetime(g["date"])
        for k in lags:
            r[f"units_sold_lag_{k}"] = full.shift(k).reindex(idx).to_numpy()
        for w in windows:
            prev = full.shift(1).rolling(w, min_periods=1)
            r[f"units_sold_roll_mean_{w}"] = prev.mean().reindex(idx).to_numpy()
            r[f"units_sold_roll_min_{w}"] = prev.min().reindex(idx).to_numpy()
            r[f"units_sold_roll_max_{w}"] = prev.max().reindex(idx).to_numpy()
            r[f"units_sold_roll_std_{w}"] = prev.std(ddof=1).reindex(idx).to_numpy()
            pm = pfull.shift(1).rolling(w, min_periods=1).mean().reindex(idx).to_numpy()
            r[f"unit_price_ratio_mean_{w}"] = np.where(pm != 0, r["unit_price"].astype(float).to_numpy() / pm, np.nan)
        r["unit_price_change_1"] = r["unit_price"].astype(float).to_numpy() - pfull.shift(1).reindex(idx).to_numpy()
        out.append(r)
    return pd.concat(out, ignore_index=True)


# -- any contract, from its YAML data alone -------------------------------------------------------------------------
# A second reference, for the contracts under examples/contracts/: it reads the contract's plain data (the parsed
# YAML, not the product's Contract) and applies the documented rules (docs/contract.md) row by row in Python.
# Supported: header true/false/positional with csv.names, the column types string/int/long/double/date/timestamp,
# formats with offsets, epoch_s/epoch_ms and a column `zone`, a time from `time.parts`, all six periods, every
# missing_periods policy, any keys (also none), the duplicate policies last/first/keep, `on`, drop_exact_repeats and
# `unpivot`. A timestamp read without an offset is taken as written.

_PATTERN = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"), ("XXX", "%z"),
            ("X", "%z"), ("'T'", "T")]
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
FATES = ("rows_read", "rows_quarantined", "duplicates_exact", "duplicates_key", "rows_merged", "rows_out")


def _strptime_format(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        for spark, py in _PATTERN:
            if pattern.startswith(spark, i):
                out, i = out + py, i + len(spark)
                break
        else:
            if pattern[i].isalpha():
                raise NotImplementedError(f"pattern letter {pattern[i]!r} in {pattern!r}")
            out, i = out + pattern[i], i + 1
    return out


def _whole(s: str):
    """A whole number written as a number ("12", "12.0"), else _BAD."""
    if not _NUMBER.fullmatch(s):
        return _BAD
    v = float(s)
    return int(v) if v == int(v) else _BAD


def _from_epoch(s: str, per_second: int):
    n = _whole(s)
    if n is _BAD:
        return _BAD
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=n * (1_000_000 // per_second))


def _parse(col: dict, s: str):
    """The typed value of a normalised, non-null string, or _BAD."""
    t = col["type"]
    if t == "string":
        return s
    if t in ("double", "int", "long"):
        if not _NUMBER.fullmatch(s):
            return _BAD
        v = float(s)
        if t == "double":
            return v
        return int(v) if v == int(v) else _BAD
    if t in ("date", "timestamp"):
        for fmt in col["formats"]:
            if fmt in ("epoch_s", "epoch_ms"):
                v = _from_epoch(s, 1 if fmt == "epoch_s" else 1000)
                if v is _BAD:
                    continue
            else:
                try:
                    v = datetime.strptime(s, _strptime_format(fmt))
                except ValueError:
                    continue
            if v.tzinfo is not None:  # an instant: the wall clock of the column's zone (UTC without one)
                v = v.astimezone(ZoneInfo(col.get("zone") or "UTC")).replace(tzinfo=None)
            return v.date() if t == "date" else v
        return _BAD
    raise NotImplementedError(t)


_BAD = object()


def _literal(col: dict, value):
    if value is None:
        return None
    if col["type"] == "double":
        return float(value)
    if col["type"] in ("int", "long"):
        return int(value)
    if col["type"] == "date":
        return datetime.fromisoformat(str(value)).date()
    if col["type"] == "timestamp":
        return datetime.fromisoformat(str(value))
    return value


@dataclass
class Reference:
    clean: pd.DataFrame        # _source_key, the declared columns, period_date: valid rows without exact repeats
    quarantine: pd.DataFrame   # _source_key, reason, reasons
    features: pd.DataFrame     # the published features columns (keys, time, other columns, features, period_date)
    accounting: dict           # source key -> {fate: rows}


def run_contract(spec: dict, files: list[tuple[str, datetime, bytes]]) -> Reference:
    """spec: the contract's YAML data; files: (key, last_modified, bytes) of every raw file (latest versions)."""
    cols = declared_columns(spec)
    names = [c["name"] for c in cols]
    by_name = {c["name"]: c for c in cols}
    csv_spec = spec.get("csv") or {}
    nulls = set(csv_spec.get("null_values", [""]))
    t_name = spec["time"]["column"]
    t_type = by_name[t_name]["type"]
    period = spec["time"].get("period", "day")
    wide = spec.get("unpivot")
    keys = list(spec["keys"])
    dup = spec.get("duplicates") or {}
    on = dup.get("on", dup.get(True)) or []  # a bare `on:` key is the boolean true in YAML 1.1
    on = [on] if isinstance(on, str) else list(on)
    policy, drop_exact = dup.get("policy", "last"), dup.get("drop_exact_repeats", True)

    def period_of(t):
        if period == "hour":
            return t.replace(minute=0, second=0, microsecond=0)
        return period_start(t.date() if isinstance(t, datetime) else t, period)

    def day_of(t):
        p = period_of(t)
        return p.date() if isinstance(p, datetime) else p

    accounting = {key: dict.fromkeys(FATES, 0) for key, _, _ in files}
    valid, quarantine = [], []
    for key, lm, data in files:
        text = data.decode(csv_spec.get("encoding", "UTF-8")).lstrip("\ufeff")
        reader = csv.reader(io.StringIO(text), delimiter=csv_spec.get("delimiter", ","),
                            quotechar=csv_spec.get("quote", '"'))
        mode = csv_spec.get("header", True)
        header = [h.strip() for h in next(reader)] if mode is not False else None
        if mode is not True:  # by position: the contract's names (csv.names, else the declared raw names in order)
            header = csv_spec.get("names") or [r for c in cols for r in raw_names(c)]
        lines = []
        for fields in (r for r in reader if r):
            raw = dict(zip(header, fields))
            if not wide:
                lines.append((len(fields) != len(header), raw))
                continue
            values = wide.get("values") or [h for h in header if h not in wide.get("ids", [])
                                            and fnmatch.fnmatchcase(h, wide["pattern"])]
            for v in values:  # one long row per cell, in the order of the rows, then of the columns
                lines.append((len(fields) != len(header), {**{i: raw.get(i) for i in wide.get("ids", [])},
                                                           wide["key"]: v, wide["value"]: raw.get(v)}))
        for i, (malformed, raw) in enumerate(lines):
            accounting[key]["rows_read"] += 1
            reasons, values = [], {}
            if malformed:
                reasons.append("malformed_row")

            def normal(c, name):
                s = raw.get(name)
                if s is not None and c.get("trim", True):
                    s = s.strip(" ")
                if s in nulls:
                    s = None
                if s is not None and c.get("case"):
                    s = s.upper() if c["case"] == "upper" else s.lower()
                return s

            for c in cols:
                if c.get("parts"):
                    got = {part: normal(c, name) for part, name in c["parts"].items()}
                    s = None if None in got.values() else "-".join(got.values())
                    v = None if s is None else _from_parts(c, {part: _whole(x) for part, x in got.items()})
                else:
                    s = normal(c, c.get("source") or c["name"])
                    v = None if s is None else _parse(c, s)
                if s is None and c.get("default") is not None:
                    v = _literal(c, c["default"])
                if c.get("required") and s is None:
                    reasons.append(f"missing:{c['name']}")
                if v is _BAD:
                    reasons.append(f"unparseable:{c['name']}")
                    v = None
                lo, hi = _literal(c, c.get("min")), _literal(c, c.get("max"))
                if v is not None and lo is not None and v < lo:
                    reasons.append(f"below_min:{c['name']}")
                if v is not None and hi is not None and v > hi:
                    reasons.append(f"above_max:{c['name']}")
                if v is not None and c.get("allowed") is not None and v not in [_literal(c, a) for a in c["allowed"]]:
                    reasons.append(f"not_allowed:{c['name']}")
                values[c["name"]] = v
            if reasons:
                accounting[key]["rows_quarantined"] += 1
                quarantine.append({"_source_key": key, "reason": reasons[0], "reasons": ";".join(reasons)})
            else:
                valid.append({"_key": key, "_lm": lm, "_row": i, **values})

    # exact repeats: a later row of the same file equal in every declared column
    seen, kept = set(), []
    for r in valid:
        sig = (r["_key"], *[r[n] for n in names])
        if drop_exact and sig in seen:
            accounting[r["_key"]]["duplicates_exact"] += 1
            continue
        seen.add(sig)
        kept.append(r)

    # duplicates by key: groups on the natural key and the partition, or on the keys and the exact time
    def rank(r):
        return (r["_lm"], r["_key"], r["_row"])

    winners = kept
    if policy != "keep":
        groups: dict[tuple, list] = {}
        for r in kept:
            g = (*[r[n] for n in on], day_of(r[t_name])) if on else (*[r[k] for k in keys], r[t_name])
            groups.setdefault(g, []).append(r)
        pick = max if policy == "last" else min
        best = {id(pick(g, key=rank)) for g in groups.values()}
        winners = [r for r in kept if id(r) in best]
        for r in kept:
            if id(r) not in best:
                accounting[r["_key"]]["duplicates_key"] += 1

    # one row per (keys, period): rolled up when the time is a timestamp or several rows can share a key and time
    rolls = t_type != "date" or period != "day" or policy == "keep" or bool(on)
    cells: dict[tuple, list] = {}
    for r in winners:
        cells.setdefault((*[r[k] for k in keys], period_of(r[t_name])), []).append(r)
    others = [n for n in names if n not in keys and n != t_name]
    out_rows = []
    for cell, rows in cells.items():
        rows.sort(key=lambda r: (r[t_name], *rank(r)), reverse=True)  # the representative first
        accounting[rows[0]["_key"]]["rows_out"] += 1
        for r in rows[1:]:
            accounting[r["_key"]]["rows_merged"] += 1
        assert rolls or len(rows) == 1
        row = dict(zip([*keys, t_name], cell))
        for n in others:
            vals = [r[n] for r in rows if r[n] is not None]
            how = by_name[n].get("rollup", "last") if rolls else "last"
            row[n] = {"last": lambda: rows[0][n], "sum": lambda: sum(vals) if vals else None,
                      "mean": lambda: sum(vals) / len(vals) if vals else None,
                      "max": lambda: max(vals) if vals else None, "min": lambda: min(vals) if vals else None,
                      "count": lambda: len(vals)}[how]()
        out_rows.append(row)

    feats = _contract_features(spec, out_rows, keys, t_name, period)
    clean = pd.DataFrame([{"_source_key": r["_key"], **{n: r[n] for n in names},
                           "period_date": day_of(r[t_name]).isoformat()} for r in kept])
    return Reference(clean=clean, quarantine=pd.DataFrame(quarantine, columns=["_source_key", "reason", "reasons"]),
                     features=feats, accounting=accounting)


def declared_columns(spec: dict) -> list[dict]:
    """The contract's columns, with a time built from `time.parts` (declared or not: an undeclared one comes first)."""
    cols = [dict(c) for c in spec["columns"]]
    parts = spec["time"].get("parts")
    if not parts:
        return cols
    t_name = spec["time"]["column"]
    kind = "timestamp" if set(parts) & {"hour", "minute", "second"} else "date"
    mine = {"name": t_name, "type": kind, "required": True, "parts": parts}
    if t_name in [c["name"] for c in cols]:
        return [{**c, **mine} if c["name"] == t_name else c for c in cols]
    return [mine, *cols]


def raw_names(c: dict) -> list[str]:
    return list(c["parts"].values()) if c.get("parts") else [c.get("source") or c["name"]]


def _from_parts(c: dict, n: dict):
    if _BAD in n.values():
        return _BAD
    try:
        v = datetime(n["year"], n.get("month", 1), n.get("day", 1), n.get("hour", 0), n.get("minute", 0),
                     n.get("second", 0))
    except ValueError:
        return _BAD
    return v if c["type"] == "timestamp" else v.date()


def period_start(d: date, period: str) -> date:
    """The first day of d's period (a date; weeks begin on Monday)."""
    if period == "day":
        return d
    if period == "week":
        return d - timedelta(days=d.weekday())
    if period == "month":
        return d.replace(day=1)
    if period == "quarter":
        return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)
    return date(d.year, 1, 1)


def next_period(p, period: str):
    if period == "hour":
        return p + timedelta(hours=1)
    if period in ("day", "week"):
        return p + timedelta(days=7 if period == "week" else 1)
    months = p.year * 12 + p.month - 1 + {"month": 1, "quarter": 3, "year": 12}[period]
    return date(months // 12, months % 12 + 1, 1)


CALENDAR = {"hour": ["day_of_week", "week_of_year", "month", "quarter", "is_weekend", "is_month_start", "is_month_end",
                     "hour"],
            "day": ["day_of_week", "week_of_year", "month", "quarter", "is_weekend", "is_month_start", "is_month_end"],
            "week": ["week_of_year", "month", "quarter"], "month": ["month", "quarter"], "quarter": ["quarter"],
            "year": []}


def _contract_features(spec: dict, rows: list[dict], keys: list[str], t_name: str, period: str) -> pd.DataFrame:
    f = spec.get("features") or {}
    lags = f.get("lags", [1, 7])
    rolling = f.get("rolling") or {}
    windows, stats = rolling.get("windows", [7]), rolling.get("stats", ["mean", "std", "min", "max"])
    target, price = spec["target"], spec.get("price")
    with_price = f.get("price", price is not None)
    calendar = f.get("calendar", True)
    fill = spec.get("missing_periods", "leave")

    def index(p):  # consecutive periods, consecutive numbers
        if period == "hour":
            return int((p - datetime(1970, 1, 1)).total_seconds() // 3600)
        d = p.date() if isinstance(p, datetime) else p
        if period in ("day", "week"):
            return d.toordinal() // (7 if period == "week" else 1)  # ordinal 1 (0001-01-01) is a Monday
        return d.year * 12 + d.month - 1 if period == "month" else d.year * 4 + (d.month - 1) // 3 \
            if period == "quarter" else d.year

    def window(series, i, back_from, back_to):
        return [series[j] for j in range(i - back_from, i - back_to + 1) if series.get(j) is not None]

    out = []
    entities: dict[tuple, list] = {}
    for r in rows:
        entities.setdefault(tuple(r[k] for k in keys), []).append(r)
    for entity, members in entities.items():
        for r in members:
            r["is_filled"] = False
        if fill != "leave":
            # a row for every period with none between the entity's first and last period
            have = {r[t_name] for r in members}
            p, last = min(have), max(have)
            while p < last:
                p = next_period(p, period)
                if p not in have:
                    defaults = {c["name"]: _literal(c, c.get("default")) for c in spec["columns"]}
                    members.append({**defaults, **dict(zip(keys, entity)), t_name: p, "is_filled": True,
                                    target: 0 if fill == "fill_zero" else None})
        tgt = {index(r[t_name]): r[target] for r in members}
        prc = {index(r[t_name]): r[price] for r in members} if with_price else {}
        for r in sorted(members, key=lambda r: r[t_name]):
            i, o = index(r[t_name]), dict(r)
            for k in lags:
                o[f"{target}_lag_{k}"] = tgt.get(i - k)
            for w in windows:
                vals = window(tgt, i, w, 1)
                for s in stats:
                    o[f"{target}_roll_{s}_{w}"] = (
                        None if not vals or (s == "std" and len(vals) < 2) else
                        {"mean": lambda: sum(vals) / len(vals), "min": lambda: min(vals), "max": lambda: max(vals),
                         "std": lambda: float(np.std(vals, ddof=1))}[s]())
            if with_price:
                p, p1 = r[price], prc.get(i - 1)
                o[f"{price}_change_1"] = None if p is None or p1 is None else p - p1
                for w in windows:
                    vals = window(prc, i, w, 1)
                    mean = sum(vals) / len(vals) if vals else None
                    o[f"{price}_ratio_mean_{w}"] = None if p is None or not mean else p / mean
            if calendar:
                d = r[t_name].date() if isinstance(r[t_name], datetime) else r[t_name]
                iso = d.isocalendar()
                every = dict(day_of_week=iso[2], week_of_year=iso[1], month=d.month, quarter=(d.month - 1) // 3 + 1,
                             is_weekend=iso[2] >= 6, is_month_start=d.day == 1,
                             is_month_end=(d + timedelta(days=1)).month != d.month,
                             hour=r[t_name].hour if isinstance(r[t_name], datetime) else None)
                o.update({name: every[name] for name in CALENDAR[period]})
            d = r[t_name].date() if isinstance(r[t_name], datetime) else r[t_name]
            if fill == "leave":
                del o["is_filled"]
            o["period_date"] = d.isoformat()
            out.append(o)
    return pd.DataFrame(out)
