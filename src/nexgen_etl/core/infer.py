"""A draft contract from a sample of a CSV file: `nexgen-etl contract infer`.

Sniffs the dialect (delimiter among , ; tab |, header line or not, encoding, null tokens), each column's type and
the datetime patterns of DATE_PATTERNS / TIMESTAMP_PATTERNS that read it (through core/preview.py, so a proposed
format parses in the preview as in the job), the time column (or year/month/day/hour columns to build it from) and
its period, the entity keys, a target and a price, and the duplicate policy; a wide file (one column per series,
or years as column names) becomes an `unpivot`. A few values that do not fit a column's type do not change it: they
are the dirt the contract will quarantine, and the comments name them. The YAML says in comments what was guessed
and why, and is checked with parse_contract before it is returned.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from nexgen_etl.core import contract as contract_model
from nexgen_etl.core.contract import ContractError, parse_contract
from nexgen_etl.core.preview import compile_pattern, open_raw, read_lines, spark_integral

SAMPLE_ROWS = 10_000
DELIMITERS = (",", ";", "\t", "|")
NULL_TOKENS = ("", "NA", "N/A", "n/a", "#N/A", "null", "NULL", "None", "-", "..", "NaN", "nan")
DATE_PATTERNS = ("yyyy-MM-dd", "dd.MM.yyyy", "MM/dd/yyyy", "dd/MM/yyyy", "yyyy/MM/dd", "yyyy-MM")
TIMESTAMP_PATTERNS = (
    "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm",
    "yyyy-MM-dd HH:mm:ss.SSS", "yyyy-MM-dd'T'HH:mm:ss.SSS", "yyyy-MM-dd HH:mm:ss.SSSSSS",
    "yyyy-MM-dd'T'HH:mm:ss.SSSSSS", "yyyy-MM-dd'T'HH:mm:ssXXX", "yyyy-MM-dd HH:mm:ssXXX",
    "yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "yyyy-MM-dd'T'HH:mmXXX", "yyyy-MM-dd'T'HH:mm:ssX", "yyyy-MM-dd HH:mm:ssX",
    "dd.MM.yyyy HH:mm:ss", "dd.MM.yyyy HH:mm", "MM/dd/yyyy HH:mm:ss", "MM/dd/yyyy HH:mm", "dd/MM/yyyy HH:mm:ss",
    "dd/MM/yyyy HH:mm",
)
# epoch seconds / milliseconds of 1973–2286: only for whole numbers in a column named like a time
EPOCH_RANGES = {"epoch_s": (10**8, 10**10, 1), "epoch_ms": (10**11, 10**13, 1000)}
TIME_NAME = re.compile(r"(^|[^a-z])(date|day|time|ts|timestamp|datetime|period|week|month|epoch|at)($|[^a-z])|"
                       r"datum|zeit", re.I)
TARGET_NAME = re.compile(r"qty|quantit|units?($|[^a-z])|sales|sold|demand|volume|count|amount|value|load|consum|"
                         r"kwh|revenue|reading|target|menge|population|close", re.I)
ADDITIVE_NAME = re.compile(r"qty|quantit|units?($|[^a-z])|sales|sold|demand|volume|count|amount|consum|kwh|"
                           r"revenue|menge", re.I)  # sums make sense over a period: a roll-up sums them
PRICE_NAME = re.compile(r"price|preis|prix|cost|tariff", re.I)
ID_NAME = re.compile(r"(^|[^a-z])(id|no|nr|num|number|line|code|seq)($|[^a-z])", re.I)  # numbers that name, not count
# on a tie between key sets: names of entities first, attributes of an entity (a unit, a status) last
KEY_NAME = re.compile(r"id($|[^a-z])|store|shop|sku|product|item|article|artikel|filiale|commodity|country|region|"
                      r"site|sensor|meter|station|customer|series|name|code", re.I)
ATTRIBUTE_NAME = re.compile(r"unit|currency|uom|status|flag|type|category|comment|note", re.I)
TIME_PARTS = ("year", "month", "day", "hour")
BOOLEAN_WORDS = {"true", "false", "yes", "no"}
# generated feature columns a declared name must not take (contract.parse_contract rejects them)
GENERATED = {"day_of_week", "week_of_year", "month", "quarter", "is_weekend", "is_month_start", "is_month_end",
             "hour", "period_date", "is_filled"}
KEEP_SHARE = 0.2  # rows repeating keys and time with other values, from which regular times read as a log
NEARLY_UNIQUE = 0.99
WIDE_MIN = 3  # numeric columns side by side (without entity columns) that make a wide file
REGULAR = 0.8  # share of an entity's time gaps equal to its most common gap: readings, not events


class InferError(ValueError):
    """The sample cannot give a usable contract; the message says what is missing."""


@dataclass
class ColumnGuess:
    raw: str  # the raw header name (or the name given to a position)
    name: str  # a safe output name
    type: str = "string"
    formats: list[str] = field(default_factory=list)
    why: str = ""
    cells: list[str | None] = field(default_factory=list)  # each sampled row's trimmed value (None: missing)
    parsed: list[Any] = field(default_factory=list)  # each row's typed value (None: missing or unparseable)
    bad: list[str] = field(default_factory=list)  # values that would not parse as the type
    upper: bool = False  # the same ids in mixed case: `case: upper`
    parts: dict[str, str] | None = None  # a time built from columns: part → raw column

    @property
    def values(self) -> list[str]:
        return [c for c in self.cells if c is not None]

    @property
    def nulls(self) -> int:
        return sum(1 for c in self.cells if c is None)

    @property
    def numeric(self) -> bool:
        return self.type in ("int", "long", "double")


@dataclass
class Draft:
    """The inferred contract: its YAML (with comments) and the guesses, for tests and callers."""

    yaml: str
    delimiter: str
    header: bool | str
    encoding: str
    null_values: list[str]
    columns: list[ColumnGuess]
    time_column: str
    period: str
    keys: list[str]
    target: str
    price: str | None
    policy: str
    unpivot: dict | None = None
    parts: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)


# -- reading ----------------------------------------------------------------------------------------------------------
def _encoding(path: Path) -> str:
    with open_raw(path) as fh:
        head = fh.read(1 << 20)
    for enc in ("UTF-8", "windows-1252"):
        try:
            head.decode(enc)
            return enc
        except UnicodeDecodeError as exc:
            if enc == "UTF-8" and exc.start >= len(head) - 3 and len(head) == 1 << 20:  # a character cut at the end
                return enc
    return "ISO-8859-1"


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader((line,), delimiter=delimiter, quotechar='"', strict=False), [])


def _sniff(lines: list[str]) -> tuple[str, str]:
    """The delimiter whose field count is the same on the most sampled lines (more than one field), and why."""
    best, why, score = ",", "no delimiter gives more than one field: one column", (0.0, 0)
    sample = lines[:200]
    for d in DELIMITERS:
        counts = Counter(len(_split(line, d)) for line in sample)
        n, hits = counts.most_common(1)[0]
        if n < 2:
            continue
        s = (hits / len(sample), n)
        if s > score:
            best, score = d, s
            why = f"{hits} of {len(sample)} sampled lines have {n} fields with {_name_delimiter(d)}"
    return best, why


def _name_delimiter(d: str) -> str:
    return {"\t": "a tab", ",": "','", ";": "';'", "|": "'|'"}[d]


# -- one column's type ------------------------------------------------------------------------------------------------
_INT = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")


def _allowed_bad(n: int) -> int:
    """How many values may fail a type that the rest fit: the dirt a contract quarantines."""
    return max(2, n // 20) if n >= 10 else 0


def _datetime_reader(pattern: str) -> Callable[[str], datetime | None] | None:
    compiled = compile_pattern(pattern)
    if isinstance(compiled, str):
        return None

    def read(s: str) -> datetime | None:
        r = compiled.parse(s)
        if r is None:
            return None
        t, offset = r
        return t - timedelta(minutes=offset) if offset is not None else t  # an instant: UTC

    return read


def _cover(values: list[str], patterns: tuple[str, ...], allowed: int) -> list[str] | None:
    """The fewest patterns (greedy, at most 3) that together read all values but at most `allowed`, or None."""
    counts = Counter(values)
    readers = {p: r for p in patterns if (r := _datetime_reader(p)) is not None}
    hits = {p: {v for v in counts if r(v) is not None} for p, r in readers.items()}
    chosen, left = [], set(counts)
    while sum(counts[v] for v in left) > allowed and len(chosen) < 3:
        p = max(hits, key=lambda q: (sum(counts[v] for v in left & hits[q]), -patterns.index(q)))
        if not left & hits[p]:
            break
        chosen.append(p)
        left -= hits[p]
    return chosen if chosen and sum(counts[v] for v in left) <= allowed else None


def _fit(g: ColumnGuess, read: Callable[[str], Any]) -> bool:
    """Whether all values but a few read with `read`; if so, sets parsed and bad."""
    values = g.values
    parsed = [None if c is None else read(c) for c in g.cells]
    bad = [c for c, p in zip(g.cells, parsed) if c is not None and p is None]
    if len(bad) > _allowed_bad(len(values)) or len(bad) * 2 >= len(values):
        return False
    g.parsed, g.bad = parsed, bad
    return True


def _type_column(g: ColumnGuess) -> None:
    values = g.values
    if not values:
        g.why = "empty in the sample: typed as text"
        return
    if _fit(g, lambda v: int(v) if _INT.fullmatch(v) else None):
        good = [v for v, p in zip(g.cells, g.parsed) if p is not None]
        if any(len(v.lstrip("+-")) > 1 and v.lstrip("+-").startswith("0") for v in good):
            g.parsed, g.bad, g.why = [], [], "whole numbers with leading zeros: kept as text (codes, not amounts)"
            return
        ints = [p for p in g.parsed if p is not None]
        if TIME_NAME.search(g.raw) and _as_epoch(g, "named like a time"):
            return
        g.type = "int" if all(-(2**31) <= n < 2**31 for n in ints) else "long"
        g.why = "whole numbers"
        return
    if _fit(g, lambda v: float(v) if _DECIMAL.fullmatch(v) else None):
        g.type, g.why = "double", "numbers"
        return
    words = {v.lower() for v in values}
    if words & BOOLEAN_WORDS and _fit(g, lambda v: {"true": True, "yes": True, "t": True, "y": True, "false": False,
                                                   "no": False, "f": False, "n": False}.get(v.lower())):
        g.type, g.why = "boolean", "true/false or yes/no"
        return
    allowed = _allowed_bad(len(values))
    for ctype, patterns in (("date", DATE_PATTERNS), ("timestamp", TIMESTAMP_PATTERNS + DATE_PATTERNS)):
        chosen = _cover(values, patterns, allowed)
        if chosen is None:
            continue
        readers = [_datetime_reader(p) for p in chosen]

        def first(v: str) -> Any:  # the first format that reads a value wins, as in the job
            return next((t for r in readers if (t := r(v)) is not None), None)

        if not _fit(g, first):
            continue
        g.type, g.formats = ctype, chosen
        if ctype == "date":
            g.parsed = [None if t is None else t.date() for t in g.parsed]
        g.why = f"reads with {' or '.join(chosen)}"
        for a, b in (("MM/dd/yyyy", "dd/MM/yyyy"), ("dd/MM/yyyy", "MM/dd/yyyy")):
            if a in chosen and b not in chosen and _cover(values, (b,), allowed) is not None:
                g.why += f" (ambiguous: as many values read as {b})"
        if any("X" in "".join(p.split("'")[::2]) for p in chosen):  # an offset letter outside quoted text
            g.why += "; the times carry UTC offsets: read as UTC (`zone: Area/City` gives local wall-clock time)"
        return
    if all(_DECIMAL_COMMA.fullmatch(v) or _INT.fullmatch(v) for v in values):
        g.why = "numbers with a decimal comma (1,5): kept as text, the contract reads decimal points only"
        return
    g.why = "text"


def _as_epoch(g: ColumnGuess, why: str) -> bool:
    """Whole numbers all in the range of epoch seconds or milliseconds: a timestamp column (sets it)."""
    ints = [p for p in g.parsed if p is not None]
    for fmt, (lo, hi, per_second) in EPOCH_RANGES.items():
        if ints and all(isinstance(n, int) and lo <= n < hi for n in ints):
            g.type, g.formats, g.why = "timestamp", [fmt], f"whole numbers in the range of {fmt}, {why}"
            g.parsed = [None if p is None else datetime(1970, 1, 1) + timedelta(seconds=p / per_second)
                        for p in g.parsed]
            return True
    return False


def _describe(g: ColumnGuess) -> str:
    out = g.why
    if g.nulls:
        out += f", {g.nulls} missing"
    if g.bad:
        shown = ", ".join(repr(b) for b in list(dict.fromkeys(g.bad))[:3])
        out += f"; {len(g.bad)} value(s) would be quarantined as unparseable:{g.name} ({shown})"
    return out


# -- names ------------------------------------------------------------------------------------------------------------
_PLAIN_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _safe_name(raw: str, i: int) -> str:
    if _PLAIN_NAME.fullmatch(raw) and raw not in GENERATED:
        return raw
    folded = unicodedata.normalize("NFKD", raw.replace("ß", "ss")).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "_", folded.lower()).strip("_") or f"column_{i + 1}"
    if name[0].isdigit():
        name = f"c_{name}"
    if name in GENERATED:  # a calendar name (month, hour) for a time is its period's start
        return f"{name}_start" if name in ("month", "quarter", "hour") else f"{name}_value"
    return name


def _distinct_names(raws: list[str], taken: set[str] = frozenset()) -> list[str]:
    out: list[str] = []
    for i, raw in enumerate(raws):
        name, n = _safe_name(raw, i), 2
        base = name
        while name.lower() in {o.lower() for o in [*out, *taken]}:
            name, n = f"{base}_{n}", n + 1
        out.append(name)
    return out


def _q(s: str) -> str:
    """A YAML scalar: bare when YAML reads it back as this same string, else double-quoted (JSON)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", s):
        try:
            if yaml.safe_load(s) == s:
                return s
        except yaml.YAMLError:
            pass
    return json.dumps(s, ensure_ascii=False)


def _flow(items: list[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


# -- the time, the keys, the policy ------------------------------------------------------------------------------------
def _period_of_dates(days: list[date]) -> tuple[str, str]:
    """The longest period whose starts all the dates are, one period apart as a rule; else day."""
    distinct = sorted(set(days))
    if len(distinct) < 2:
        return "day", "one date only: day"
    gaps = Counter((b - a).days for a, b in zip(distinct, distinct[1:])).most_common(1)[0][0]
    months = Counter((b.year - a.year) * 12 + b.month - a.month
                     for a, b in zip(distinct, distinct[1:])).most_common(1)[0][0]
    for period, starts, spaced in (
            ("year", all(d.month == 1 and d.day == 1 for d in distinct), months == 12),
            ("quarter", all(d.month % 3 == 1 and d.day == 1 for d in distinct), months == 3),
            ("month", all(d.day == 1 for d in distinct), months == 1),
            ("week", all(d.weekday() == 0 for d in distinct), gaps == 7)):
        if starts and spaced:
            return period, f"every date is the start of a {period}" + (" (a Monday)" if period == "week" else "") \
                + f", mostly one {period} apart"
    if gaps == 7:
        return "day", (f"dates 7 days apart on {distinct[0]:%A}s: `period: week` would date each week by its Monday "
                       f"(ISO weeks)")
    return "day", "dates"


def _period_guess(times: list[Any], step: timedelta | None, keep: bool) -> tuple[str, str]:
    """The period of a time column's values (dates or timestamps; None for missing), given the usual step between
    an entity's times and whether the feed is a transaction log."""
    clock = [x for x in times if isinstance(x, datetime)]
    sub_hour = any(x.minute or x.second or x.microsecond for x in clock)
    on_hours = any(x.hour for x in clock)
    hours = step / timedelta(hours=1) if step else None
    if sub_hour and keep:
        return "day", "events at any minute: rolled up to daily totals (or `hour`)"
    if (sub_hour or on_hours) and hours is not None and hours <= 1:
        return "hour", "readings within the hour: rolled up to the hour (or `day`)" if hours < 1 else "hourly times"
    if (sub_hour or on_hours) and hours is not None and hours < 24:
        return "day", f"readings every {hours:g} hours: rolled up to days (`hour` would leave gaps)"
    period, why = _period_of_dates([x.date() if isinstance(x, datetime) else x for x in times if x is not None])
    if sub_hour or on_hours:
        return period, f"one time a day or less often, not at midnight (UTC; a `zone` may make it so): {why}"
    return period, ("every time is midnight; " if clock else "") + why


def _pick_keys(candidates: list[ColumnGuess], time: list[Any]) -> tuple[list[ColumnGuess], str]:
    """The smallest set of candidate columns that with the time is (nearly) as unique as all of them together."""
    if not candidates:
        return [], "no text column repeats like an entity: one series"
    cols = sorted(candidates, key=lambda g: len(set(g.values)))[:8]
    n = len(time)

    def distinct(subset) -> int:
        return len(set(zip(*[_key_values(g) for g in subset], time)))

    full = distinct(cols)
    for size in range(len(cols) + 1):
        scored = [(distinct(s), s) for s in combinations(cols, size)]
        # "nearly": a misspelt id (dirt) adds a distinct tuple that no key choice should hinge on
        good = [x for x in scored if x[0] >= full - max(full * (1 - NEARLY_UNIQUE), _allowed_bad(n) // 2)]
        if good:
            # all nearly as unique: names decide (a commodity over its unit), then uniqueness
            d, subset = max(good, key=lambda x: (sum(bool(KEY_NAME.search(g.raw)) for g in x[1]),
                                                 -sum(bool(ATTRIBUTE_NAME.search(g.raw)) for g in x[1]), x[0]))
            chosen = [g for g in candidates if g in subset]  # in file order
            unique = "unique" if d == n else f"{d} distinct in {n} rows"
            if not chosen:
                return [], f"the time alone is {unique} (as with the text columns): one series"
            return chosen, (f"({', '.join(g.name for g in chosen)}, time) is {unique}, as with every text column that "
                            f"repeats")
    return cols, "every text column that repeats"


def _key_values(g: ColumnGuess) -> list[Any]:
    return [None if v is None else v.upper() if g.upper else v for v in g.cells]


def _steps(keys: list[ColumnGuess], times: list[Any]) -> tuple[bool, timedelta | None]:
    """Whether each entity's times mostly step by one interval (readings, not events at irregular moments), and
    that interval (None without two times of one entity)."""
    per: dict[tuple, set] = {}
    for *k, t in zip(*[_key_values(g) for g in keys], times):
        if t is not None:
            per.setdefault(tuple(k), set()).add(t)
    gaps = Counter()
    for ts in per.values():
        s = sorted(ts)
        gaps.update(b - a for a, b in zip(s, s[1:]))
    if not gaps:
        return True, None
    step, hits = gaps.most_common(1)[0]
    return hits >= REGULAR * sum(gaps.values()), step if isinstance(step, timedelta) else None


def _time_from_parts(gs: list[ColumnGuess]) -> ColumnGuess | None:
    """Year, month, day, hour columns (whole numbers, named so) as one time column, or None."""
    found = {}
    for g in gs:
        if g.raw.strip().lower() in TIME_PARTS and g.type in ("int", "long") and g.raw.strip().lower() not in found:
            found[g.raw.strip().lower()] = g
    given = [p for p in TIME_PARTS if p in found]
    if not given or given != list(TIME_PARTS[:len(given)]):
        return None
    ctype = "timestamp" if "hour" in given else "date"
    name = {1: "year_start", 2: "month_start", 3: "date", 4: "hour_start"}[len(given)]
    name = _distinct_names([name], {g.name for g in gs if g not in found.values()})[0]  # the parts are not declared
    cells = [None if any(found[p].cells[i] is None for p in given) else "-".join(found[p].cells[i] for p in given)
             for i in range(len(found["year"].cells))]
    t = ColumnGuess(raw="", name=name, type=ctype, cells=cells)
    for i, cell in enumerate(cells):
        # each part as the job reads it: a whole number ("5.0" too)
        n = [spark_integral(found[p].cells[i], "int") if cell is not None else None for p in given]
        n += [1] * (3 - min(3, len(given)))
        try:
            v = datetime(*n[:3], *(n[3:4] or [0])) if cell is not None and None not in n else None
        except (ValueError, TypeError):
            v = None
        t.parsed.append(None if v is None else v if ctype == "timestamp" else v.date())
    t.bad = [c for c, v in zip(cells, t.parsed) if c is not None and v is None]
    t.why = f"built from {', '.join(found[p].raw for p in given)} (`time.parts`)"
    t.parts = {p: found[p].raw for p in given}
    return t


# -- the draft ---------------------------------------------------------------------------------------------------------
def infer_contract(path: str | Path, rows: int = SAMPLE_ROWS) -> Draft:
    """A draft contract from the first `rows` data rows of a CSV (or .csv.gz) file."""
    path = Path(path)
    if not path.is_file():
        raise InferError(f"{path}: no such file")
    encoding = _encoding(path)
    lines, _ = read_lines(path, encoding, rows)
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise InferError(f"{path}: empty, nothing to infer from")
    notes: list[str] = []
    delimiter, delimiter_why = _sniff(lines)
    table = [_split(line, delimiter) for line in lines]
    width = Counter(len(r) for r in table).most_common(1)[0][0]
    ragged = sum(1 for r in table if len(r) != width)
    if ragged:
        notes.append(f"{ragged} sampled line(s) do not have {width} fields: they would be malformed_row")
    table = [r for r in table if len(r) == width]

    seen = Counter(v.strip() for r in table[1:rows + 1] for v in r if v.strip() in NULL_TOKENS)
    null_values = [t for t in NULL_TOKENS if t == "" or seen[t]]

    def guesses(raws: list[str], body: list[list[str]]) -> list[ColumnGuess]:
        gs = [ColumnGuess(raw=r, name=n) for r, n in zip(raws, _distinct_names(raws))]
        for j, g in enumerate(gs):
            g.cells = [None if (c := r[j].strip(" ")) in null_values else c for r in body]
            _type_column(g)
        return gs

    first = [h.strip() for h in table[0]]
    gs = guesses(first, table[1:rows + 1])
    header: bool | str = True
    header_why = "the first line holds names, not values"
    if not _looks_like_header(first, gs, set(null_values)):
        header, header_why = False, "the first line reads as data (its values fit their columns)"
        gs = guesses([f"col_{j + 1}" for j in range(width)], table[:rows])
    raws = [g.raw for g in gs]
    repeated = sorted({r for r in raws if raws.count(r) > 1})
    if header is True and repeated:
        header = "positional"
        header_why = f"the header repeats {repeated}: read by position, the columns named in file order"
    n = len(gs[0].cells)

    years = [g for g in gs if re.fullmatch(r"(19|20)\d\d", g.raw) and g.type not in ("date", "timestamp")]
    times = sorted((g for g in gs if g.type in ("date", "timestamp")),
                   key=lambda g: (not TIME_NAME.search(g.raw), gs.index(g)))
    texts = [g for g in gs if g.type == "string" and g.values]
    for g in texts:
        g.upper = len({v.lower() for v in g.values}) < len(set(g.values))
    entities = [g for g in texts if _entity_like(g, n)]
    numeric = [g for g in gs if g.numeric and g not in years]
    if header is True and len(years) >= WIDE_MIN and not times:
        return _wide_by_year(path, gs, years, delimiter, delimiter_why, encoding, null_values, seen, notes,
                             n, rows)
    if header is True and times and len(numeric) >= WIDE_MIN and not entities:
        wide = _wide_series(numeric)
        if wide is not None:
            return _wide_by_series(path, gs, times[0], wide, delimiter, delimiter_why, encoding, null_values, seen,
                                   notes, n, rows)
    if not times:  # no name hints at the time (a file without a header): epoch numbers by their range alone
        times = [g for g in gs if g.type in ("int", "long") and _as_epoch(g, "and no other column holds times")][:1]
    t = times[0] if times else _time_from_parts(gs)
    if t is None:
        raise InferError(f"{path}: no column reads as dates or times ({', '.join(DATE_PATTERNS)}, the timestamp "
                         f"patterns, epoch numbers in a column named like a time) and no year/month/day columns: a "
                         f"contract needs a time")
    used = [g for g in gs if t.parts and g.raw in t.parts.values()]
    if len(times) > 1:
        notes.append(f"other date/time columns: {', '.join(g.name for g in times[1:])}")
    keys, keys_why = _pick_keys([g for g in entities if g not in used], t.parsed)

    # the policy: keys and time repeating with other values: several events per instant (a log), or corrections
    rest = [g for g in gs if g not in keys and g is not t and g not in used]
    ident = list(zip(*[_key_values(g) for g in keys], t.parsed))  # (keys…, time) of each row
    groups: dict[tuple, set] = {}
    for i, k in enumerate(ident):
        groups.setdefault(k, set()).add(tuple(g.cells[i] for g in rest))
    sizes = Counter(ident)
    differing = sum(sizes[k] for k, vals in groups.items() if len(vals) > 1)
    sub_hour = any(isinstance(x, datetime) and (x.minute or x.second or x.microsecond) for x in t.parsed)
    regular, step = _steps(keys, t.parsed)
    if differing and ((sub_hour and not regular) or differing >= KEEP_SHARE * n):
        policy = "keep"
        policy_why = (f"{differing} of {n} rows share their keys and time with rows of other values"
                      + (" at irregular moments" if sub_hour and not regular else "")
                      + ": a transaction log, every row counts (if lines carry an id that repeats when re-sent: "
                        "`{policy: last, on: [id columns]}`)")
    elif differing:
        policy = "last"
        policy_why = (f"{differing} of {n} rows share their keys and time with different values: corrections, the "
                      f"newest file's row wins (if every row is an event, `keep`)")
    else:
        policy, policy_why = "last", "keys and time identify a row: a snapshot, the newest file's row wins"

    period, period_why = _period_guess(t.parsed, step, policy == "keep")
    if period not in contract_model.PERIODS:
        notes.append(f"the dates suggest `period: {period}`, which this contract version does not have: day")
        period = "day"

    numeric = [g for g in gs if g.numeric and g not in keys and g is not t and g not in used
               and not ID_NAME.search(g.raw)]
    flags = [g for g in numeric if g.type in ("int", "long") and {p for p in g.parsed if p is not None} <= {0, 1}]
    prices = [g for g in numeric if PRICE_NAME.search(g.raw) and g not in flags]
    measures = [g for g in numeric if g not in flags and g not in prices] or [g for g in numeric if g not in flags]
    if not measures:
        raise InferError(f"{path}: no numeric column to forecast (a target); columns: {', '.join(raws)}")
    named = [g for g in measures if TARGET_NAME.search(g.raw)]
    target = (named or measures)[0]
    target_why = ("the numeric column named like a quantity" if named else
                  "the first numeric column that is not a key, a price or a 0/1 flag")
    price = next((g for g in prices if g is not target), None)
    # rows that merge in the sample: several per keys and period (under last, one per keys and time is left)
    periods = Counter()
    for k, count in sizes.items():
        periods[(*k[:-1], None if k[-1] is None else _period_start(k[-1], period))] += \
            count if policy == "keep" else 1
    merges = any(c > 1 for c in periods.values())
    return _emit(path, gs, used, header, header_why, delimiter, delimiter_why, encoding, null_values, seen, t, period,
                 period_why, keys, keys_why, target, target_why, price, flags, numeric, policy, policy_why, merges,
                 notes, n, rows)


def _period_start(t: date | datetime, period: str) -> date | datetime:
    if period == "hour" and isinstance(t, datetime):
        return t.replace(minute=0, second=0, microsecond=0)
    d = t.date() if isinstance(t, datetime) else t
    return {"week": d - timedelta(days=d.weekday()), "month": d.replace(day=1),
            "quarter": d.replace(month=3 * ((d.month - 1) // 3) + 1, day=1),
            "year": d.replace(month=1, day=1)}.get(period, d)


def _looks_like_header(first: list[str], gs: list[ColumnGuess], nulls: set[str]) -> bool:
    """Votes of the first line's values: a value that does not read as its column's type, or a number shaped
    unlike the column's (a year over population counts), is a name; a value that fits, or that recurs in its text
    column, is data. A header unless only data votes."""
    header = data = 0
    for v, g in zip(first, gs):
        if v in nulls:
            continue
        if g.type == "string":
            data += v in set(g.values)
            continue
        probe = ColumnGuess(raw=g.raw, name=g.name, cells=[v] * 20)
        _type_column(probe)
        if probe.type != g.type:
            header += 1
        elif g.numeric and len(v) not in {len(x) for x in g.values}:
            header += 1
        else:
            data += 1
    return header > 0 or data == 0


def _entity_like(g: ColumnGuess, n: int) -> bool:
    """A text column whose values repeat (entities), not ids unique to most rows."""
    return len(set(g.values)) <= max(1, n // 2)


def _wide_series(numeric: list[ColumnGuess]) -> tuple[list[str], str | None] | None:
    """The value columns of a wide file and a glob for them (their common prefix), or None: measures that merely
    sit side by side (units, price, …) are not series."""
    raws = [g.raw for g in numeric]
    prefix = raws[0]
    for r in raws[1:]:
        while not r.startswith(prefix):
            prefix = prefix[:-1]
    if len(prefix) >= 2 and not any(ch in prefix for ch in "*?[]"):
        return raws, prefix + "*"
    if len(raws) >= 5 and not any(PRICE_NAME.search(r) for r in raws):
        return raws, None
    return None


def _yaml_column(g: ColumnGuess, extra: dict[str, Any] | None = None, by_name: bool = True,
                 source: str | None = None) -> str:
    """One column as a flow mapping; a `source` when read by name under another name than its raw one."""
    parts = [f"name: {_q(g.name)}", f"type: {g.type}"]
    src = source or (g.raw if by_name and g.raw != g.name else None)
    if src is not None and src != g.name:
        parts.append(f"source: {_q(src)}")
    if g.formats:
        parts.append(f"formats: {_flow(g.formats)}")
    for k, v in (extra or {}).items():
        parts.append(f"{k}: {v}")
    return "  - {" + ", ".join(parts) + "}"


def _features(period: str) -> list[str]:
    lags, windows = {"hour": ([1, 24], [24]), "day": ([1, 7], [7]), "week": ([1, 52], [4]),
                     "month": ([1, 12], [3, 12]), "quarter": ([1, 4], [4]), "year": ([1], [3])}[period]
    return ["features:", f"  lags: {lags}", f"  rolling: {{windows: {windows}, stats: [mean, std, min, max]}}"]


def _head(path: Path, n: int, rows: int) -> list[str]:
    return [f"# Draft contract for {path.name}, inferred by `nexgen-etl contract infer` from {n} sampled rows"
            + (f" (--rows {rows})" if n >= rows else "") + ".",
            "# Each comment says what was guessed and why: review them, then preview the contract on the file with",
            f"#   nexgen-etl contract check <this file> {path.name}",
            "# (docs/contract.md describes every field)."]


def _csv_block(delimiter: str, delimiter_why: str, header: bool | str, header_why: str, encoding: str,
               null_values: list[str], seen: Counter) -> list[str]:
    shown = ", ".join(f"{t!r} ×{seen[t]}" for t in null_values if t and seen[t]) or "none but empty fields"
    return ["csv:",
            f"  delimiter: {json.dumps(delimiter)}  # {delimiter_why}",
            f"  header: {json.dumps(header)}  # {header_why}",
            f"  encoding: {encoding}" + ("" if encoding == "UTF-8" else "  # the sample is not valid UTF-8"),
            f"  null_values: {json.dumps(null_values, ensure_ascii=False)}  # missing-value tokens seen: {shown}"]


def _name(path: Path) -> str:
    return _q(_safe_name(path.name.split(".")[0], 0))


def _finish(path: Path, lines: list[str], draft: Draft) -> Draft:
    if draft.notes:
        lines[4:4] = ["#", *[f"# note: {n}" for n in draft.notes]]
    text = "\n".join(lines) + "\n"
    try:
        parse_contract(yaml.safe_load(text))
    except (ContractError, yaml.YAMLError) as exc:  # a bug of this module: say so rather than print a bad draft
        raise InferError(f"{path}: the inferred draft does not parse ({exc}); draft:\n{text}") from None
    draft.yaml = text
    return draft


def _emit(path, gs, used, header, header_why, delimiter, delimiter_why, encoding, null_values, seen, t, period,
          period_why, keys, keys_why, target, target_why, price, flags, numeric, policy, policy_why, merges, notes,
          n, rows) -> Draft:
    lines = [*_head(path, n, rows), f"name: {_name(path)}",
             *_csv_block(delimiter, delimiter_why, header, header_why, encoding, null_values, seen), "columns:"]
    parts = t.parts
    if parts:
        lines.append(f"  # the time, {t.name}: {_describe(t)}; the part columns are read through it")
    for g in gs:
        if g in used:
            continue
        extra: dict[str, Any] = {}
        role = []
        if g is t or g in keys or (g is target and not g.nulls):
            extra["required"] = "true"
        if g.upper:
            extra["case"] = "upper"
            role.append("the same ids in mixed case: upper-cased")
        if g in flags:
            extra["allowed"] = "[0, 1]"
        if merges and g is not t and g not in keys:
            if g.numeric and g in numeric:
                how = "max" if g in flags else "mean" if g is price else \
                    "sum" if policy == "keep" or ADDITIVE_NAME.search(g.raw) else "mean"
            elif g.type == "string":
                how = "count" if policy == "keep" and not _entity_like(g, n) else "last"
            else:
                how = "last"
            if how != "last":
                extra["rollup"] = how
        role += [r for r, hit in (("the time", g is t), ("a key", g in keys), ("the target", g is target),
                                  ("the price", g is price), ("a 0/1 flag", g in flags)) if hit]
        lines.append(f"  # {g.raw!r}: {_describe(g)}" + (f" ({'; '.join(role)})" if role else ""))
        lines.append(_yaml_column(g, extra, by_name=header is True))
    time_spec = f"column: {_q(t.name)}" + (
        f", parts: {{{', '.join(f'{p}: {_q(r)}' for p, r in parts.items())}}}" if parts else "")
    lines += [f"time: {{{time_spec}, period: {period}}}  # {period_why}",
              f"keys: {_flow([g.name for g in keys])}  # {keys_why}",
              f"target: {_q(target.name)}  # guess: {target_why}"]
    if price is not None:
        lines.append(f"price: {_q(price.name)}  # named like a price")
    if flags:
        lines.append(f"flags: {_flow([g.name for g in flags])}  # only 0 and 1")
    lines += [f"duplicates: {{policy: {policy}}}  # {policy_why}", "missing_periods: leave", *_features(period)]
    draft = Draft("", delimiter, header, encoding, null_values, gs, t.name, period, [g.name for g in keys],
                  target.name, price.name if price else None, policy, None, parts, notes)
    return _finish(path, lines, draft)


def _free_name(options: tuple[str, ...], taken: set[str]) -> str:
    return next(o for o in options if o not in taken)


def _wide_by_series(path, gs, t, wide, delimiter, delimiter_why, encoding, null_values, seen, notes, n,
                    rows) -> Draft:
    """A time column and one numeric column per series: unpivot to (series, time, value)."""
    raws, pattern = wide
    taken = {g.raw for g in gs}
    key = _free_name(("series", "series_name", "wide_column"), taken)
    value = _free_name(("value", "cell", "cell_value"), taken)
    sub_hour = any(isinstance(x, datetime) and (x.minute or x.second) for x in t.parsed)
    period, period_why = _period_guess(t.parsed, _steps([], t.parsed)[1], False)
    if period not in contract_model.PERIODS:
        period = "day"
    spec = f"pattern: {_q(pattern)}" if pattern else f"values: {_flow(raws)}"
    lines = [*_head(path, n, rows), f"name: {_name(path)}",
             *_csv_block(delimiter, delimiter_why, True, "the first line holds names", encoding, null_values, seen),
             f"# a wide file: {len(raws)} numeric columns side by side and no entity column, a series each:",
             "# unpivoted to one row per (series, time); every cell is a row read",
             "unpivot:",
             f"  ids: {_flow([t.raw])}",
             f"  {spec}",
             f"  key: {_q(key)}",
             f"  value: {_q(value)}",
             "columns:",
             f"  # {t.raw!r}: {_describe(t)} (the time)",
             _yaml_column(t, {"required": "true"}),
             "  # the series: the name of the column a cell came from (the key)",
             f"  - {{name: series, type: string{'' if key == 'series' else f', source: {_q(key)}'}, required: true}}",
             "  # the cells (the target)",
             f"  - {{name: value, type: double{'' if value == 'value' else f', source: {_q(value)}'}"
             + (", rollup: mean}" if sub_hour else "}"),
             f"time: {{column: {_q(t.name)}, period: {period}}}  # {period_why}",
             "keys: [series]", "target: value", "duplicates: {policy: last}", "missing_periods: leave",
             *_features(period)]
    draft = Draft("", delimiter, True, encoding, null_values, gs, t.name, period, ["series"], "value", None, "last",
                  {"ids": [t.raw], "values": raws, "pattern": pattern, "key": key, "value": value}, None, notes)
    return _finish(path, lines, draft)


def _wide_by_year(path, gs, years, delimiter, delimiter_why, encoding, null_values, seen, notes, n,
                  rows) -> Draft:
    """Years as column names (a statistics table): unpivot to (ids, year, value), the time from the label."""
    taken = {g.raw for g in gs}
    key = _free_name(("year_label", "year_column", "wide_column"), taken)
    value = _free_name(("value", "cell", "cell_value"), taken)
    # the text columns that tell rows apart (a country), not a constant (an indicator's name)
    texts = [g for g in gs if g.type == "string" and g.values and g.name not in ("year", "value")]
    ids = [g for g in texts if len(set(g.values)) == len(g.values)] or \
        sorted(texts, key=lambda g: -len(set(g.values)))[:1]
    lines = [*_head(path, n, rows), f"name: {_name(path)}",
             *_csv_block(delimiter, delimiter_why, True, "the first line holds names (years among them)", encoding,
                         null_values, seen),
             f"# a wide file: {len(years)} columns named by years ({years[0].raw}–{years[-1].raw}): unpivoted to one "
             "row per (row, year), the year read from the column's name; every cell is a row read",
             "unpivot:",
             f"  ids: {_flow([g.raw for g in ids])}",
             '  pattern: "[12][0-9][0-9][0-9]"',
             f"  key: {_q(key)}",
             f"  value: {_q(value)}",
             "columns:"]
    for g in ids:
        lines += [f"  # {g.raw!r}: {_describe(g)} (a key)", _yaml_column(g, {"required": "true"})]
    lines += ["  # the cells (the target)",
              f"  - {{name: value, type: double{'' if value == 'value' else f', source: {_q(value)}'}}}",
              f"time: {{column: year, parts: {{year: {_q(key)}}}, period: year}}  # the year in the column's name",
              f"keys: {_flow([g.name for g in ids])}  # the text columns that name a row",
              "target: value", "duplicates: {policy: last}", "missing_periods: leave", *_features("year")]
    draft = Draft("", delimiter, True, encoding, null_values, gs, "year", "year", [g.name for g in ids], "value",
                  None, "last", {"ids": [g.raw for g in ids], "pattern": "[12][0-9][0-9][0-9]", "key": key,
                                 "value": value}, {"year": key}, notes)
    return _finish(path, lines, draft)
