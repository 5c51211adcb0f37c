"""What a contract does to the first rows of CSV files, in plain Python (no Spark, no S3): `nexgen-etl contract check`.

The Spark job's rules, row by row (spark/transform/clean.py, docs/contract.md): the header check of extract
(core/headers.py), the CSV read (an empty field is null, blank lines are skipped, a field count other than the
schema's is `malformed_row`), per column trim → null_values → case → parse (formats in order) → default → checks,
then exact repeats, duplicates by key and the roll-up to periods. Numbers and booleans parse as Spark's casts do
(Java's number syntax: `1e3`, `1.5d`, `Infinity`; not `1_000`). Datetime patterns: the subset in PATTERN_LETTERS;
a value that only a pattern outside it could parse, and a contract field this module does not know, are reported
as "not previewed" instead of guessed. tests/integration/test_contract_preview.py compares the verdicts with the
Spark job's output.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import fnmatch
import gzip
import json
import math
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from nexgen_etl.core.contract import PERIODS, Contract, CsvDialect
from nexgen_etl.core.contract import Column as ContractColumn
from nexgen_etl.core.headers import HEAD_BYTES, inspect_header

DEFAULT_ROWS = 20
EPOCH_FORMATS = {"epoch_s": 1, "epoch_ms": 1000}  # whole numbers since 1970-01-01 UTC: per second
# pattern letter → what it reads; a pattern with any other letter (or an optional section) is not previewed
PATTERN_LETTERS = {"y": "year", "M": "month", "d": "day", "H": "hour", "m": "minute", "s": "second",
                   "S": "fraction of a second", "X": "UTC offset"}

# The fields of the contract model this module previews (or that do not bear on a preview). A field outside these
# sets with a value other than its default is a feature added later: reported as "not previewed: <field>".
KNOWN_CONTRACT_FIELDS = {"name", "columns", "time_column", "period", "keys", "target", "source", "csv",
                         "price_column", "flags", "duplicate_policy", "duplicate_on", "drop_exact_repeats",
                         "missing_periods", "features", "max_batch_files", "max_batch_bytes", "schedule", "unpivot"}
KNOWN_COLUMN_FIELDS = {"name", "type", "source", "formats", "required", "trim", "case", "min", "max", "allowed",
                       "default", "rollup", "zone", "parts"}
KNOWN_CSV_FIELDS = {"delimiter", "quote", "escape", "encoding", "header", "multiline", "null_values", "names"}

BAD = object()  # a non-null string that did not parse
UNKNOWN = object()  # a string only a pattern outside the previewed subset could parse


# -- Spark's casts from string ---------------------------------------------------------------------------------------
# Java's Double.valueOf syntax (what Spark's string → double cast uses), after it trims characters <= U+0020
_JAVA_DOUBLE = re.compile(
    r"[+-]?(?:NaN|Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fFdD]?"
    r"|0[xX](?:[0-9a-fA-F]+\.?|[0-9a-fA-F]*\.[0-9a-fA-F]+)[pP][+-]?\d+[fFdD]?)")
_JAVA_TRIM = "".join(chr(i) for i in range(33))
# Spark's fallback for what Java refuses (Cast.processFloatingPointSpecialLiterals), compared trimmed and lower-cased
_SPECIAL_DOUBLES = {"inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf,
                    "-inf": -math.inf, "-infinity": -math.inf, "nan": math.nan}
_TRUE = {"t", "true", "y", "yes", "1"}
_FALSE = {"f", "false", "n", "no", "0"}
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def spark_double(s: str) -> float | None:
    """`cast(s as double)`: None where Spark gives null (NaN stays NaN)."""
    t = s.strip(_JAVA_TRIM)
    if _JAVA_DOUBLE.fullmatch(t):
        body = t[:-1] if t[-1] in "fFdD" else t  # Java's float/double suffix (never the end of NaN or Infinity)
        if "x" in body or "X" in body:
            return float.fromhex(body)
        return float(body.replace("Infinity", "inf"))
    return _SPECIAL_DOUBLES.get(s.strip().lower())


def spark_integral(s: str, ctype: str = "long") -> int | None:
    """The contract's whole-number parse: the double, if it equals its floor (as a long), cast to int or long. Out of
    range casts saturate as the JVM's do; a value beyond a long's range is not whole (its floor saturates)."""
    d = spark_double(s)
    if d is None or math.isnan(d):
        return None
    lo, hi = _INT_RANGE["long"]
    floor = lo if d == -math.inf else hi if d == math.inf else min(max(math.floor(d), lo), hi)
    if float(floor) != d:
        return None
    lo, hi = _INT_RANGE[ctype]
    return min(max(int(d), lo), hi)


def spark_boolean(s: str) -> bool | None:
    t = s.strip(_JAVA_TRIM).lower()
    return True if t in _TRUE else False if t in _FALSE else None


# -- Spark datetime patterns ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatetimePattern:
    """A Spark datetime pattern of the previewed subset, compiled to a regular expression. parse() gives the wall
    clock as written and the UTC offset in minutes (None when the pattern reads none)."""

    pattern: str
    regex: re.Pattern
    has_time: bool
    has_offset: bool

    def parse(self, s: str) -> tuple[datetime, int | None] | None:
        m = self.regex.fullmatch(s)
        if not m:
            return None
        g = m.groupdict()
        year = int(g["year"]) if g.get("year") else 1970
        if g.get("year2"):
            year = 2000 + int(g["year2"])
        frac = (g.get("fraction") or "").ljust(6, "0")[:6]
        try:
            t = datetime(year, int(g.get("month") or 1), int(g.get("day") or 1), int(g.get("hour") or 0),
                         int(g.get("minute") or 0), int(g.get("second") or 0), int(frac or 0))
        except ValueError:
            return None
        offset = None
        if self.has_offset:
            o = g["offset"]
            if o == "Z":
                offset = 0
            else:
                hours, minutes = int(o[1:3]), int(o[3:].lstrip(":") or 0)
                if minutes > 59 or hours * 60 + minutes > 18 * 60:
                    return None
                offset = (hours * 60 + minutes) * (-1 if o[0] == "-" else 1)
        return t, offset


def _digits(name: str, count: int) -> str:
    return f"(?P<{name}>\\d{{{count}}})" if count > 1 else f"(?P<{name}>\\d{{1,2}})"


def compile_pattern(pattern: str) -> DatetimePattern | str:
    """The compiled pattern, or why it is outside the previewed subset (a sentence)."""
    out, i, seen = [], 0, set()
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            end = pattern.find("'", i + 1)
            while end != -1 and pattern[end:end + 2] == "''":  # '' inside a quoted literal is one quote
                end = pattern.find("'", end + 2)
            if end == -1:
                return f"unclosed quote in {pattern!r}"
            literal = pattern[i + 1:end].replace("''", "'")
            out.append(re.escape(literal or "'"))
            i = end + 1
            continue
        if ch.isascii() and ch.isalpha():
            n = len(pattern) - i - len(pattern[i:].lstrip(ch))
            if ch not in PATTERN_LETTERS:
                return f"pattern letter {ch!r} is outside the previewed subset ({''.join(PATTERN_LETTERS)})"
            kind = PATTERN_LETTERS[ch]
            if kind in seen:
                return f"{kind} appears twice in {pattern!r}"
            seen.add(kind)
            if ch == "y":  # yy: 2000–2099; y: 1 to 4 digits; yyy: 3 or 4; yyyy and more: exactly that many
                widths = {1: "1,4", 2: "2", 3: "3,4"}.get(n, str(n))
                out.append(f"(?P<{'year2' if n == 2 else 'year'}>\\d{{{widths}}})")
            elif ch in "MdHms":
                if n > 2:
                    return f"{ch * n!r} (text or too many letters) is outside the previewed subset"
                out.append(_digits({"M": "month", "d": "day", "H": "hour", "m": "minute", "s": "second"}[ch], n))
            elif ch == "S":
                if n > 9:
                    return f"more than 9 'S' in {pattern!r}"
                out.append(f"(?P<fraction>\\d{{1,{n}}})")
            else:  # X: "+02" or "+0200" (X), "+0200" (XX), "+02:00" (XXX); "Z" for UTC
                if n > 3:
                    return f"{ch * n!r} is outside the previewed subset (X, XX, XXX)"
                body = {1: r"[+-]\d{2}(?:\d{2})?", 2: r"[+-]\d{4}", 3: r"[+-]\d{2}:\d{2}"}[n]
                out.append(f"(?P<offset>Z|{body})")
            i += n
            continue
        if ch in "[]{}#":
            return f"{ch!r} (optional sections, reserved characters) is outside the previewed subset"
        out.append(re.escape(ch))
        i += 1
    return DatetimePattern(pattern, re.compile("".join(out)), has_time=bool(seen & {"hour", "minute", "second"}),
                           has_offset="UTC offset" in seen)


# -- one column: trim → null_values → case → parse → default → checks ---------------------------------------------
def _literal(ctype: str, value: Any) -> Any:
    """A contract literal (default, min, max, allowed) as the column's Python value."""
    if value is None:
        return None
    if ctype in ("int", "long"):
        return int(value)
    if ctype == "double":
        return float(value)
    if ctype == "date":
        return value if isinstance(value, date) and not isinstance(value, datetime) else \
            datetime.fromisoformat(str(value)).date()
    if ctype == "timestamp":
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if ctype == "boolean":
        return bool(value)
    return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


class ColumnRule:
    """One declared column's parse and checks, as clean.parse_rows applies them."""

    def __init__(self, col: ContractColumn, nulls: Sequence[str]):
        self.col = col
        self.nulls = set(nulls)
        self.parts: tuple[tuple[str, str], ...] = tuple(getattr(col, "parts", ()) or ())
        self.zone = getattr(col, "zone", None)
        self.formats: list[tuple[str, DatetimePattern | str | int]] = []
        self.unsupported: list[str] = []
        for fmt in col.formats if col.type in ("date", "timestamp") else ():
            if fmt in EPOCH_FORMATS:
                self.formats.append((fmt, EPOCH_FORMATS[fmt]))
                continue
            compiled = compile_pattern(fmt)
            self.formats.append((fmt, compiled))
            if isinstance(compiled, str):
                self.unsupported.append(f"{col.name}: format {fmt!r}: {compiled}")
        self.default = _literal(col.type, col.default) if col.default is not None else None
        self.min = _literal(col.type, col.min) if col.min is not None else None
        self.max = _literal(col.type, col.max) if col.max is not None else None
        self.allowed = None if col.allowed is None else [_literal(col.type, a) for a in col.allowed]

    @property
    def raw_names(self) -> tuple[str, ...]:
        return tuple(r for _, r in self.parts) if self.parts else (self.col.raw_name,)

    def normalise(self, raw: str | None) -> str | None:
        s = raw
        if s is not None and self.col.trim:
            s = s.strip(" ")  # Spark's trim removes spaces only
        if s is not None and s in self.nulls:
            s = None
        if s is not None and self.col.case == "upper":
            s = s.upper()
        elif s is not None and self.col.case == "lower":
            s = s.lower()
        return s

    def parse(self, s: str) -> Any:
        """The typed value of a non-null normalised string, BAD, or UNKNOWN."""
        t = self.col.type
        if t == "string":
            return s
        if t in ("int", "long"):
            v = spark_integral(s, t)
            return BAD if v is None else v
        if t == "double":
            v = spark_double(s)
            return BAD if v is None or math.isnan(v) else v
        if t == "boolean":
            v = spark_boolean(s)
            return BAD if v is None else v
        for fmt, how in self.formats:  # date, timestamp: the first format that parses wins
            if isinstance(how, str):
                return UNKNOWN  # this pattern could parse it or not: not previewed
            v = self._datetime(s, how)
            if v is not None:
                return v
        return BAD

    def _datetime(self, s: str, how: DatetimePattern | int) -> date | datetime | None:
        if isinstance(how, int):  # epoch seconds or milliseconds: a whole number
            n = spark_integral(s)
            if n is None:
                return None
            try:
                t = datetime(1970, 1, 1) + (timedelta(seconds=n) if how == 1 else timedelta(milliseconds=n))
            except OverflowError:
                return None
            offset = 0
        else:
            parsed = how.parse(s)
            if parsed is None:
                return None
            t, offset = parsed
            if offset is not None:  # an instant: UTC, the session's zone
                t = t - timedelta(minutes=offset)
        if offset is not None and self.zone:
            t = t.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(self.zone)).replace(tzinfo=None)
        return t.date() if self.col.type == "date" else t

    def from_parts(self, strings: dict[str, str]) -> Any:
        """make_date / make_timestamp of whole-number parts (null, so BAD, for a date that does not exist)."""
        n = {p: spark_integral(v, "int") for p, v in strings.items()}
        if any(v is None for v in n.values()):
            return BAD
        try:
            if self.col.type == "date":
                return date(n["year"], n.get("month", 1), n.get("day", 1))
            second = n.get("second", 0)
            t = datetime(n["year"], n.get("month", 1), n.get("day", 1), n.get("hour", 0), n.get("minute", 0),
                         0 if second == 60 else second)
            return t + timedelta(minutes=1) if second == 60 else t
        except ValueError:
            return BAD

    def apply(self, raw: dict[str, str | None]) -> tuple[Any, list[str], bool]:
        """(value, reasons, undetermined) of this column in one raw row."""
        name = self.col.name
        if self.parts:
            strings = {p: self.normalise(raw.get(r)) for p, r in self.parts}
            s = None if any(v is None for v in strings.values()) else "-".join(strings.values())
            v = None if s is None else self.from_parts(strings)
        else:
            s = self.normalise(raw.get(self.col.raw_name))
            v = None if s is None else self.parse(s)
        if s is None and self.default is not None:
            v = self.default
        reasons = []
        if self.col.required and s is None:
            reasons.append(f"missing:{name}")
        if v is UNKNOWN:
            return None, reasons, True
        if v is BAD:
            reasons.append(f"unparseable:{name}")
            v = None
        x = spark_double(v) if isinstance(v, str) and self.col.type == "string" else v  # Spark compares as numbers
        if x is not None and self.min is not None and x < self.min:
            reasons.append(f"below_min:{name}")
        if x is not None and self.max is not None and x > self.max:
            reasons.append(f"above_max:{name}")
        if v is not None and self.allowed is not None and v not in self.allowed:
            reasons.append(f"not_allowed:{name}")
        return v, reasons, False


# -- reading a file as the job does --------------------------------------------------------------------------------
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class RawRow:
    file: int  # index of the file in arrival order
    row: int  # 0-based data row (cell, after an unpivot) of the file
    line: int  # 1-based physical line of the file
    raw: dict[str, str | None]  # raw column → string (None: empty or absent)
    malformed: bool = False
    cell: str | None = None  # the value column of an unpivoted cell


@dataclass
class FileSample:
    path: str
    header: list[str] | None  # the names the job reads the fields by; None when the file is rejected whole
    rejected: dict | None  # {reason, detail} of the header check
    rows: list[RawRow]
    more: bool  # the file has rows beyond those read


def open_raw(path: Path):
    """A raw file's bytes, decompressed when its name ends in .gz (as Spark decides)."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def read_head(path: str | Path) -> bytes:
    """The first HEAD_BYTES of a file as stored (compressed for .gz), as extract reads them."""
    with open(path, "rb") as fh:
        return fh.read(HEAD_BYTES)


def read_lines(path: str | Path, encoding: str, limit: int | None) -> tuple[list[str], bool]:
    """The physical lines of a file (decompressed, decoded with U+FFFD for bad bytes, a leading BOM dropped): at
    least `limit` + 1 non-blank ones when there are (all with None), and whether more follow. Lines break at \\n,
    \\r\\n and \\r, as Hadoop's line reader breaks them."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    buf, lines, filled, start = "", [], 0, True
    with open_raw(Path(path)) as fh:
        while True:
            chunk = fh.read(1 << 16)
            eof = not chunk
            buf += decoder.decode(chunk, final=eof)
            if start and buf:
                buf, start = buf.removeprefix("\ufeff"), False
            if eof:
                parts = _LINE_BREAK.split(buf)
                if parts[-1] == "":
                    parts.pop()  # the break after the last line ends it; it starts no empty line
                lines += parts
                return lines, False
            # the last line may be cut, and a final \r may be half of a \r\n: both wait for the next chunk
            cut = len(buf) - 1 if buf.endswith("\r") else len(buf)
            parts = _LINE_BREAK.split(buf[:cut])
            buf = parts.pop() + buf[cut:]
            lines += parts
            filled += sum(1 for x in parts if x.strip(_JAVA_TRIM))
            if limit is not None and filled > limit + 1:
                return lines, True


def _tokenizer(dialect: CsvDialect):
    quote = dialect.quote if dialect.quote and dialect.quote != "\u0000" else None
    opts: dict[str, Any] = {"delimiter": dialect.delimiter, "strict": False}
    if quote is None:
        opts["quoting"] = csv.QUOTE_NONE
    else:
        opts["quotechar"] = quote
        if dialect.escape and dialect.escape != quote:
            opts.update(escapechar=dialect.escape, doublequote=False)
    return opts


def _records(lines: list[str], dialect: CsvDialect) -> Iterator[tuple[int, list[str]]]:
    """(1-based line, fields) of every non-blank record: one a line, or (multiline) as quotes span lines."""
    opts = _tokenizer(dialect)
    if dialect.multiline:
        reader = csv.reader(iter(lines), **opts)
        for fields in reader:
            if fields and "".join(fields).strip(_JAVA_TRIM):
                yield reader.line_num, fields
        return
    for i, line in enumerate(lines, 1):
        if line.strip(_JAVA_TRIM):  # Spark skips empty and blank lines
            yield i, next(csv.reader((line,), **opts), [])


def read_sample(path: str | Path, contract: Contract, limit: int | None, file: int = 0) -> FileSample:
    """The first `limit` data rows of a file as the job reads them (all of them with None)."""
    path = Path(path)
    try:
        header, rejected = inspect_header(read_head(path), path.name, contract)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    if rejected:
        return FileSample(str(path), None, rejected, [], False)
    c = contract.csv
    try:
        lines, more = read_lines(path, c.encoding, limit)
    except (OSError, EOFError, zlib.error) as exc:
        return FileSample(str(path), None, {"reason": "corrupt_compression", "detail": f"corrupt gzip: {exc}"},
                          [], False)
    records = _records(lines, c)
    if c.header is not False:  # true or positional: the first non-blank line is the header
        next(records, None)
    names = list(header)
    unpivot = getattr(contract, "unpivot", None)
    cells = unpivot.value_columns(names) if unpivot is not None else None
    rows: list[RawRow] = []
    for n, (line, fields) in enumerate(records):
        if limit is not None and n >= limit:
            more = True
            break
        values = [v if v != "" else None for v in fields]  # Spark's CSV reader: an empty field is null
        raw = dict(zip(names, values + [None] * (len(names) - len(values))))
        malformed = len(fields) != len(names)
        if cells is None:
            rows.append(RawRow(file, len(rows), line, raw, malformed))
            continue
        ids = {i: raw.get(i) for i in unpivot.ids if i in names}
        for cell in cells:  # one row per cell, in the file's column order
            rows.append(RawRow(file, len(rows), line, {**ids, unpivot.key: cell, unpivot.value: raw.get(cell)},
                               malformed, cell))
    return FileSample(str(path), names, None, rows, more)


# -- the preview ------------------------------------------------------------------------------------------------------
@dataclass
class RowVerdict:
    file: int
    row: int
    line: int
    raw: dict[str, str | None]
    values: dict[str, Any]  # typed values (valid rows), None where a value is missing
    reasons: list[str]  # quarantine reason codes in the job's order; empty: valid
    undetermined: list[str] = field(default_factory=list)  # columns only an unpreviewed format could parse
    fate: str = ""  # quarantined, duplicates_exact, duplicates_key, merged, out (or "not previewed")
    same_as: tuple[int, int] | None = None  # (file, row) of the row an exact repeat repeats, or a key winner
    cell: str | None = None

    @property
    def valid(self) -> bool:
        return not self.reasons and not self.undetermined


@dataclass
class PeriodRow:
    keys: tuple
    period: date | datetime
    values: dict[str, Any]  # the rolled-up non-key columns
    rows: list[tuple[int, int]]  # (file, row) of the rows rolled into it, the representative first


@dataclass
class Preview:
    contract: Contract
    files: list[FileSample]
    rows: list[RowVerdict]
    periods: list[PeriodRow]
    rolls_up: bool
    not_previewed: list[str]
    accounting: dict[str, dict[str, int]]  # per file: rows_read and each fate
    limit: int | None = DEFAULT_ROWS  # data rows read per file (None: all)

    def verdicts(self, file: int = 0) -> list[RowVerdict]:
        return [r for r in self.rows if r.file == file]


FATES = ("rows_read", "rows_quarantined", "duplicates_exact", "duplicates_key", "rows_merged", "rows_out")


def _defaults(obj: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = dataclasses.MISSING
    return out


def not_previewed(contract: Contract) -> list[str]:
    """The contract's settings this preview does not apply: fields it does not know (set to other than their
    default), datetime patterns outside the subset, a period it cannot compute."""
    notes = []
    for obj, known, where in ((contract, KNOWN_CONTRACT_FIELDS, ""), (contract.csv, KNOWN_CSV_FIELDS, "csv.")):
        for name, default in _defaults(obj).items():
            if name not in known and default is not dataclasses.MISSING and getattr(obj, name) != default:
                notes.append(f"{where}{name}")
    for i, c in enumerate(contract.columns):
        for name, default in _defaults(c).items():
            if name not in KNOWN_COLUMN_FIELDS and getattr(c, name) != default:
                notes.append(f"columns[{i}] ({c.name}).{name}")
        notes += ColumnRule(c, ()).unsupported
    if contract.period not in PERIODS:
        notes.append(f"period {contract.period!r} (the roll-up)")
    return notes


def _period_start(t: date | datetime, period: str) -> date | datetime:
    if period == "hour":
        return t.replace(minute=0, second=0, microsecond=0) if isinstance(t, datetime) else t
    d = t.date() if isinstance(t, datetime) else t
    if period == "week":
        return d - timedelta(days=d.weekday())
    if period == "month":
        return d.replace(day=1)
    if period == "quarter":
        return d.replace(month=3 * ((d.month - 1) // 3) + 1, day=1)
    if period == "year":
        return d.replace(month=1, day=1)
    return d


def rolls_up(contract: Contract) -> bool:
    """Whether rows of one entity and period merge (clean.needs_rollup): a timestamp time column, a period longer
    than a day, or a policy that leaves several rows per keys and time (`keep`, a natural key)."""
    return (contract.column(contract.time_column).type != "date" or contract.period != "day"
            or contract.duplicate_policy == "keep" or bool(contract.duplicate_on))


def _mark_duplicates(rows: list[RowVerdict], contract: Contract) -> None:
    """Exact repeats within a file, then duplicates by key (mark_duplicates): sets fate and same_as."""
    names = contract.column_names
    valid = [r for r in rows if r.valid]
    if contract.drop_exact_repeats:
        first: dict[tuple, RowVerdict] = {}
        for r in valid:
            sig = (r.file, *[r.values[n] for n in names])
            if sig in first:
                r.fate, r.same_as = "duplicates_exact", (first[sig].file, first[sig].row)
            else:
                first[sig] = r
    if contract.duplicate_policy == "keep":
        return
    groups: dict[tuple, list[RowVerdict]] = {}
    for r in valid:
        if r.fate:
            continue
        t = r.values[contract.time_column]
        if contract.duplicate_on:
            p = _period_start(t, contract.period) if t is not None else None
            g = (*[r.values[n] for n in contract.duplicate_on], p.date() if isinstance(p, datetime) else p)
        else:
            g = (*[r.values[k] for k in contract.keys], t)
        groups.setdefault(g, []).append(r)
    pick = min if contract.duplicate_policy == "first" else max
    for members in groups.values():
        best = pick(members, key=lambda r: (r.file, r.row))
        for r in members:
            if r is not best:
                r.fate, r.same_as = "duplicates_key", (best.file, best.row)


_ROLLUPS = {
    "sum": lambda vals: sum(vals) if vals else None,
    "mean": lambda vals: sum(vals) / len(vals) if vals else None,
    "max": lambda vals: max(vals) if vals else None,
    "min": lambda vals: min(vals) if vals else None,
    "count": len,
}


def _roll_up(rows: list[RowVerdict], contract: Contract, rolls: bool) -> list[PeriodRow]:
    """One row per (keys, period) of the rows left (rollup_to_period); sets fate out or merged."""
    cells: dict[tuple, list[RowVerdict]] = {}
    t_name = contract.time_column
    for r in rows:
        if r.valid and not r.fate:
            t = r.values[t_name]
            p = None if t is None else _period_start(t, contract.period)
            cells.setdefault((tuple(r.values[k] for k in contract.keys), p), []).append(r)
    out = []
    others = [c for c in contract.columns if c.name not in contract.keys and c.name != t_name]
    for (keys, p), members in cells.items():
        if not rolls:  # one row each: nothing merges (a date time column under last/first)
            groups = [[r] for r in members]
        else:
            # the representative first: the latest time (a null time last), then the newest file, the last row
            groups = [sorted(members, key=lambda r: (_nulls_first(r.values[t_name]), r.file, r.row), reverse=True)]
        for g in groups:
            g[0].fate = "rows_out"
            for r in g[1:]:
                r.fate, r.same_as = "rows_merged", (g[0].file, g[0].row)
            values = {}
            for c in others:
                how = c.rollup if rolls else "last"
                values[c.name] = g[0].values[c.name] if how == "last" else \
                    _ROLLUPS[how]([r.values[c.name] for r in g if r.values[c.name] is not None])
            out.append(PeriodRow(keys, p, values, [(r.file, r.row) for r in g]))
    return sorted(out, key=lambda pr: (_nulls_first(pr.period), [str(k) for k in pr.keys]))


def _nulls_first(v: Any) -> tuple:
    """A sort key that orders None before every value (of one type)."""
    return (False,) if v is None else (True, v)


def preview(contract: Contract, paths: Sequence[str | Path], rows: int | None = DEFAULT_ROWS) -> Preview:
    """What the contract does to the first `rows` data rows of each file (all rows with None). Files are given in
    arrival order: a later file is newer (it wins under `last`)."""
    notes = not_previewed(contract)
    rules = [ColumnRule(c, contract.csv.null_values) for c in contract.columns]
    inputs = _inputs(contract)
    files = [read_sample(p, contract, rows, i) for i, p in enumerate(paths)]
    verdicts = []
    for sample in files:
        for raw in sample.rows:
            reasons = ["malformed_row"] if raw.malformed else []
            # bytes invalid in the encoding decode to U+FFFD, in any raw column the parse reads
            if "\ufffd" in "".join(raw.raw.get(n) or "" for n in inputs):
                reasons.append("invalid_encoding")
            values, undetermined = {}, []
            for rule in rules:
                v, why, unknown = rule.apply(raw.raw)
                values[rule.col.name] = v
                reasons += why
                if unknown:
                    undetermined.append(rule.col.name)
            verdicts.append(RowVerdict(raw.file, raw.row, raw.line, raw.raw, values, reasons, undetermined,
                                       cell=raw.cell))
    for r in verdicts:
        if r.reasons:
            r.fate = "rows_quarantined"
        elif r.undetermined:
            r.fate = "not previewed"
    rolls = rolls_up(contract)
    periods: list[PeriodRow] = []
    if contract.period in PERIODS:
        _mark_duplicates(verdicts, contract)
        periods = _roll_up(verdicts, contract, rolls)
    accounting = {}
    for i, sample in enumerate(files):
        mine = [r for r in verdicts if r.file == i]
        acc = {"rows_read": len(mine)}
        for fate in FATES[1:]:
            acc[fate] = sum(1 for r in mine if r.fate == fate)
        accounting[sample.path] = acc
    return Preview(contract, files, verdicts, periods, rolls, notes, accounting, rows)


# -- rendering ------------------------------------------------------------------------------------------------------
def _show(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, float):
        return repr(v)
    return str(v) if not isinstance(v, str) else json.dumps(v, ensure_ascii=False) if (
        v == "" or v != v.strip() or any(ch in v for ch in " =,\"")) else v


def _pairs(d: dict[str, Any]) -> str:
    return "  ".join(f"{k}={_show(v)}" for k, v in d.items())


def render(p: Preview) -> str:
    """The preview as text for a terminal."""
    c = p.contract
    lines = [f"contract {c.name} on {len(p.files)} file(s): "
             + (f"the first {p.limit} data rows of each" if p.limit else "every row")]
    if p.not_previewed:
        lines += [f"not previewed: {n}" for n in p.not_previewed]
    multi = len(p.files) > 1
    for i, f in enumerate(p.files):
        lines.append("")
        lines.append(f"== {f.path}" + (f" (file {i + 1}, {'newest' if i == len(p.files) - 1 else 'older'})"
                                       if multi else ""))
        name = Path(f.path).name
        if not any(fnmatch.fnmatch(name, pat) for pat in c.source.patterns):
            lines.append(f"note: the name {name!r} matches no source.patterns {list(c.source.patterns)}: the "
                         f"pipeline would not pick this file up")
        if f.rejected:
            lines.append(f"header: REJECTED, the whole file: file:{f.rejected['reason']} ({f.rejected['detail']})")
            continue
        how = {True: "by name", False: "no header line, by position"}.get(c.csv.header, f"{c.csv.header}")
        lines.append(f"header: ok ({how}): {', '.join(f.header or [])}")
        missing = [n for n in _inputs(c) if n not in (f.header or [])]
        if missing:
            lines.append(f"note: not in the header, so null on every row: {', '.join(missing)}")
        for r in p.verdicts(i):
            where = f"row {r.row + 1:>3} (line {r.line})" + (f" [{r.cell}]" if r.cell is not None else "")
            if r.reasons:
                lines.append(f"{where}  QUARANTINED {';'.join(r.reasons)}   raw: {_pairs(r.raw)}")
            elif r.undetermined:
                lines.append(f"{where}  not previewed ({', '.join(r.undetermined)}: a format outside the subset)"
                             f"   raw: {_pairs(r.raw)}")
            else:
                lines.append(f"{where}  valid  {_pairs(r.values)}" + _fate_note(r, multi))
        if f.more:
            lines.append("… more rows not shown (--rows)")
    lines.append("")
    lines += _render_rollup(p)
    lines.append("")
    lines.append("accounting (the fates of the previewed rows, as the run's manifest counts them):")
    for f in p.files:
        path, a = f.path, p.accounting[f.path]
        if f.rejected:
            lines.append(f"  {Path(path).name}: rejected whole, one quarantine record file:{f.rejected['reason']}")
            continue
        lines.append(f"  {Path(path).name}: read {a['rows_read']} = out {a['rows_out']} + quarantined "
                     f"{a['rows_quarantined']} + duplicates_exact {a['duplicates_exact']} + duplicates_key "
                     f"{a['duplicates_key']} + merged {a['rows_merged']}"
                     + (f" + not previewed {a['rows_read'] - sum(a[k] for k in FATES[1:])}"
                        if a["rows_read"] != sum(a[k] for k in FATES[1:]) else ""))
    return "\n".join(lines)


def _inputs(c: Contract) -> list[str]:
    """The raw columns the parse reads, each once, in declared order (Contract.raw_inputs)."""
    out: list[str] = []
    for col in c.columns:
        out += [n for n in ColumnRule(col, ()).raw_names if n not in out]
    return out


def _ref(fr: tuple[int, int], multi: bool) -> str:
    return f"file {fr[0] + 1} row {fr[1] + 1}" if multi else f"row {fr[1] + 1}"


def _fate_note(r: RowVerdict, multi: bool) -> str:
    if r.fate == "duplicates_exact":
        return f"   → exact repeat of {_ref(r.same_as, multi)}: dropped"
    if r.fate == "duplicates_key":
        return f"   → duplicate by key: {_ref(r.same_as, multi)} wins"
    if r.fate == "rows_merged":
        return f"   → rolled up into {_ref(r.same_as, multi)}"
    return ""


def _render_rollup(p: Preview) -> list[str]:
    c = p.contract
    if c.period not in PERIODS:
        return [f"roll-up: not previewed (period {c.period!r})"]
    keys = ", ".join(c.keys) if c.keys else "no keys: one series"
    policy = f"duplicates: policy {c.duplicate_policy}" + (f" on {list(c.duplicate_on)}" if c.duplicate_on else "")
    head = (f"roll-up to {c.period} periods per ({keys}), {policy}: "
            + ("rows of one entity and period merge, each column by its rollup" if p.rolls_up
               else "one row per key and date, nothing merges"))
    lines = [head]
    if any(r.undetermined for r in p.rows):
        lines.append("  (rows with values not previewed are left out)")
    for pr in p.periods:
        k = " ".join(_show(v) for v in pr.keys)
        lines.append(f"  {k + '  ' if k else ''}{_show(pr.period)}  {_pairs(pr.values)}"
                     + (f"   ({len(pr.rows)} rows)" if len(pr.rows) > 1 else ""))
    if not p.periods:
        lines.append("  (no valid rows)")
    return lines
