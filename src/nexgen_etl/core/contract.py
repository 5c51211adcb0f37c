"""The dataset contract: a typed, validated description of one CSV source (no I/O beyond reading the YAML)."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from nexgen_etl.core.quality import QualityError, QualityGates, parse_quality

COLUMN_TYPES = {"string", "int", "long", "double", "date", "timestamp", "boolean"}
PERIODS = ("hour", "day", "week", "month", "quarter", "year")
TIME_PARTS = ("year", "month", "day", "hour", "minute", "second")  # `time.parts`, in the order they nest
EPOCH_FORMATS = {"epoch_s": "seconds", "epoch_ms": "milliseconds"}  # numeric times since 1970-01-01 00:00 UTC
ZONE_LETTERS = set("XxZzOV")  # datetime pattern letters that read a UTC offset or a zone
ROLLUPS = {"sum", "mean", "last", "count", "max", "min"}
CASES = {"upper", "lower", None}
DUPLICATE_POLICIES = {"last", "first", "keep"}
MISSING_PERIOD_POLICIES = {"leave", "fill_zero", "fill_null"}
ROLLING_STATS = {"mean", "std", "min", "max"}
DEFAULT_SCHEDULE = "@hourly"  # `schedule` of a contract that names none

DEFAULT_CONTRACT = Path(__file__).with_name("contracts") / "nexgen_sales.yaml"


class ContractError(ValueError):
    """A contract that cannot be used; the message names the offending field."""


@dataclass(frozen=True)
class Source:
    prefix: str = ""
    patterns: tuple[str, ...] = ("*.csv", "*.csv.gz")
    # keys sort in arrival order by their date folders (e.g. sales/2026/11/26/…): discovery may start listing at
    # the watermark's folder (ListObjectsV2 StartAfter) instead of listing everything; see docs/contract.md
    keys_ordered_by_date: bool = False

    def matches(self, key: str) -> bool:
        if not key.startswith(self.prefix) or key.endswith("/"):
            return False
        name = key.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(name, p) for p in self.patterns)


@dataclass(frozen=True)
class CsvDialect:
    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'
    encoding: str = "UTF-8"
    header: bool | str = True  # true: by name; false: no header line; "positional": a header line, ignored
    multiline: bool = False
    null_values: tuple[str, ...] = ("",)
    names: tuple[str, ...] = ()  # the raw names of the fields by position (header false or positional)

    @property
    def by_position(self) -> bool:
        return self.header is not True


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    source: str | None = None  # raw header name, when it differs (a rename)
    formats: tuple[str, ...] = ()
    required: bool = False
    trim: bool = True
    case: str | None = None
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    default: Any = None
    rollup: str = "last"
    zone: str | None = None  # a timestamp's wall clock is this zone's (times with an offset are converted to it)
    parts: tuple[tuple[str, str], ...] = ()  # (part, raw name) pairs: the time is built from these columns

    @property
    def raw_name(self) -> str:
        return self.source or self.name

    @property
    def raw_names(self) -> tuple[str, ...]:
        """The raw columns this column reads: its parts, or its one raw name."""
        return tuple(raw for _, raw in self.parts) if self.parts else (self.raw_name,)


def format_has_zone(pattern: str) -> bool:
    """A datetime pattern that reads a UTC offset or a zone (letters outside quoted literals), or an epoch format."""
    if pattern in EPOCH_FORMATS:
        return True
    outside = pattern.split("'")[::2]
    return any(ch in ZONE_LETTERS for part in outside for ch in part)


@dataclass(frozen=True)
class Unpivot:
    """A wide file (one column per series) read as long rows: one row per (row, value column), a cell each."""

    ids: tuple[str, ...]  # raw columns kept on every long row
    key: str  # the new raw column holding the value column's name
    value: str  # the new raw column holding the cell
    values: tuple[str, ...] = ()  # the value columns by name, or
    pattern: str | None = None  # every other header column whose name matches this glob

    def value_columns(self, header: list[str]) -> list[str]:
        if self.values:
            return list(self.values)
        return [h for h in header if h not in self.ids and fnmatch.fnmatchcase(h, self.pattern or "")]


@dataclass(frozen=True)
class Features:
    lags: tuple[int, ...] = (1, 7)
    rolling_windows: tuple[int, ...] = (7,)
    rolling_stats: tuple[str, ...] = ("mean", "std", "min", "max")
    calendar: bool = True
    price: bool = True

    @property
    def lookback(self) -> int:
        """How many periods before t any feature at t reads."""
        return max((*self.lags, *self.rolling_windows, 1))


@dataclass(frozen=True)
class Contract:
    name: str
    columns: tuple[Column, ...]
    time_column: str
    period: str
    keys: tuple[str, ...]
    target: str
    source: Source = field(default_factory=Source)
    csv: CsvDialect = field(default_factory=CsvDialect)
    price_column: str | None = None
    flags: tuple[str, ...] = ()
    duplicate_policy: str = "last"  # last | first | keep (docs/contract.md, `duplicates`)
    duplicate_on: tuple[str, ...] = ()  # a natural key: rows equal on these (within a day) are duplicates
    drop_exact_repeats: bool = True  # identical rows within one file are dropped as `duplicates_exact`
    missing_periods: str = "leave"
    features: Features = field(default_factory=Features)
    max_batch_files: int = 1000
    max_batch_bytes: int = 10 * 1024**3
    schedule: str = DEFAULT_SCHEDULE  # the Airflow schedule of the feed's DAG (cron or preset)
    unpivot: Unpivot | None = None
    quality: QualityGates = field(default_factory=QualityGates)  # none unless declared (core/quality.py)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def raw_inputs(self) -> list[str]:
        """The raw columns the parse reads, each once, in declared order (after an unpivot: its long columns)."""
        out: list[str] = []
        for c in self.columns:
            out += [r for r in c.raw_names if r not in out]
        return out

    @property
    def required_raw(self) -> list[str]:
        """The raw columns a file's header must have: every raw input of a required column (an
        unpivot's ids of one, and its listed value columns), and not an unpivot's own key and value."""
        u = self.unpivot
        need: list[str] = []
        for c in self.columns:
            if c.required:
                need += [r for r in c.raw_names if r not in need]
        if u is not None:
            need = [r for r in need if r not in (u.key, u.value)] + [v for v in u.values if v not in need]
        return need

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists, not tuples), as frozen into a batch plan."""
        return json.loads(json.dumps(asdict(self), default=str))


def _require(d: dict, key: str, where: str) -> Any:
    if key not in d or d[key] is None:
        raise ContractError(f"{where}.{key}: required field is missing")
    return d[key]


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ContractError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _tuple(v: Any) -> tuple:
    if v is None:
        return ()
    if isinstance(v, (list, tuple)):
        return tuple(v)
    return (v,)


def _parse_column(i: int, raw: Any, built: str | None = None) -> Column:
    """columns[i]; built: the name of the time column built from parts (it needs no formats)."""
    where = f"columns[{i}]"
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: must be a mapping, got {type(raw).__name__}")
    _check_keys(raw, {f for f in Column.__dataclass_fields__} - {"parts"}, where)
    name = _require(raw, "name", where)
    where = f"columns[{i}] ({name})"
    ctype = _require(raw, "type", where)
    if ctype not in COLUMN_TYPES:
        raise ContractError(f"{where}.type: {ctype!r} is not one of {sorted(COLUMN_TYPES)}")
    formats = _tuple(raw.get("formats"))
    if ctype in {"date", "timestamp"} and not formats and name != built:
        raise ContractError(f"{where}.formats: a {ctype} column needs at least one accepted format")
    if any(not isinstance(f, str) or not f for f in formats):
        raise ContractError(f"{where}.formats: must be a list of datetime patterns (or epoch_s, epoch_ms)")
    zone = raw.get("zone")
    if zone is not None:
        if ctype != "timestamp":
            raise ContractError(f"{where}.zone: only a timestamp column has a zone")
        _check_zone(zone, f"{where}.zone")
    case = raw.get("case")
    if case not in CASES:
        raise ContractError(f"{where}.case: {case!r} is not one of upper, lower")
    rollup = raw.get("rollup", "last")
    if rollup not in ROLLUPS:
        raise ContractError(f"{where}.rollup: {rollup!r} is not one of {sorted(ROLLUPS)}")
    for bound in ("min", "max"):
        value = raw.get(bound)
        if value is None:
            continue
        if ctype in {"date", "timestamp"}:
            import datetime as _dt

            if isinstance(value, (_dt.date, _dt.datetime)):
                raw[bound] = value.isoformat()
            elif not isinstance(value, str):
                raise ContractError(f"{where}.{bound}: must be an ISO date/time string for a {ctype} column")
            try:
                _dt.datetime.fromisoformat(raw[bound])
            except ValueError:
                raise ContractError(f"{where}.{bound}: {raw[bound]!r} is not an ISO date/time") from None
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ContractError(f"{where}.{bound}: must be a number")
    allowed = raw.get("allowed")
    if allowed is not None and not isinstance(allowed, list):
        raise ContractError(f"{where}.allowed: must be a list of values")
    for flag in ("required", "trim"):
        if flag in raw and not isinstance(raw[flag], bool):
            raise ContractError(f"{where}.{flag}: must be true or false")
    return Column(
        name=name,
        type=ctype,
        source=raw.get("source"),
        formats=formats,
        required=bool(raw.get("required", False)),
        trim=bool(raw.get("trim", True)),
        case=case,
        min=raw.get("min"),
        max=raw.get("max"),
        allowed=tuple(allowed) if allowed is not None else None,
        default=raw.get("default"),
        rollup=rollup,
        zone=zone,
    )


def _check_zone(zone: Any, where: str) -> None:
    """A region zone id (Europe/Berlin) or UTC: one that Java and Python both know by that name."""
    try:
        if not isinstance(zone, str) or "/" not in zone and zone != "UTC":
            raise ValueError
        ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        raise ContractError(f"{where}: {zone!r} is not a zone id such as Europe/Berlin or UTC") from None


def _time_column(time: dict, columns: tuple[Column, ...]) -> tuple[tuple[Column, ...], str]:
    """The contract's columns with the time column built from `time.parts` when it has parts (declared or not:
    an undeclared one comes first, a required date, or a timestamp when it has an hour, minute or second)."""
    name = _require(time, "column", "time")
    parts = time.get("parts")
    if parts is None:
        return columns, name
    if not isinstance(parts, dict) or not parts:
        raise ContractError("time.parts: must map parts (year, month, …) to raw column names")
    _check_keys(parts, set(TIME_PARTS), "time.parts")
    if "year" not in parts:
        raise ContractError("time.parts.year: required field is missing")
    for part, raw in parts.items():
        if not isinstance(raw, str) or not raw:
            raise ContractError(f"time.parts.{part}: must be a raw column name")
    raws = list(parts.values())
    if len(set(raws)) != len(raws):
        raise ContractError(f"time.parts: a raw column used for two parts in {parts}")
    given = [p for p in TIME_PARTS if p in parts]
    if given != list(TIME_PARTS[:len(given)]):
        missing = [p for p in TIME_PARTS[:TIME_PARTS.index(given[-1])] if p not in parts]
        raise ContractError(f"time.parts: {given[-1]} needs {missing} too")
    pairs = tuple((p, parts[p]) for p in given)
    ctype = "timestamp" if len(given) > 3 else "date"
    for i, c in enumerate(columns):
        if c.name == name:
            if c.source is not None or c.formats:
                raise ContractError(f"columns[{i}] ({name}): a time built from time.parts has no source or formats")
            if c.type != ctype:
                raise ContractError(f"columns[{i}] ({name}).type: time.parts {given} make a {ctype}")
            return (*columns[:i], replace(c, parts=pairs, required=True), *columns[i + 1:]), name
    return (Column(name=name, type=ctype, required=True, parts=pairs), *columns), name


def _parse_unpivot(raw: Any) -> Unpivot:
    if not isinstance(raw, dict):
        raise ContractError("unpivot: must be a mapping {ids, values or pattern, key, value}")
    _check_keys(raw, {"ids", "values", "pattern", "key", "value"}, "unpivot")
    ids = _tuple(raw.get("ids"))
    key, value = _require(raw, "key", "unpivot"), _require(raw, "value", "unpivot")
    values, pattern = _tuple(raw.get("values")), raw.get("pattern")
    if bool(values) == (pattern is not None):
        raise ContractError("unpivot: give either values (a list of columns) or pattern (a glob), not both")
    if pattern is not None and (not isinstance(pattern, str) or not pattern):
        raise ContractError("unpivot.pattern: must be a glob such as 'sensor_*'")
    names = [*ids, key, value, *values]
    if any(not isinstance(n, str) or not n for n in names):
        raise ContractError("unpivot: ids, values, key and value must be column names")
    if len(set(names)) != len(names):
        raise ContractError(f"unpivot: a name used twice among ids, key, value and values {names}")
    return Unpivot(ids=ids, key=key, value=value, values=values, pattern=pattern)


def parse_contract(data: dict[str, Any]) -> Contract:
    """Build a Contract from plain data, raising ContractError naming the bad field."""
    if not isinstance(data, dict):
        raise ContractError("contract: must be a mapping")
    _check_keys(
        data,
        {"name", "source", "csv", "columns", "time", "keys", "target", "price", "flags",
         "duplicates", "missing_periods", "features", "limits", "schedule", "unpivot", "quality"},
        "contract",
    )
    name = _require(data, "name", "contract")
    raw_cols = _require(data, "columns", "contract")
    if not isinstance(raw_cols, list) or not raw_cols:
        raise ContractError("contract.columns: must be a non-empty list")
    time = _require(data, "time", "contract")
    if not isinstance(time, dict):
        raise ContractError("contract.time: must be a mapping, e.g. {column: date, period: day}")
    built = time.get("column") if time.get("parts") is not None else None
    columns = tuple(_parse_column(i, c, built) for i, c in enumerate(raw_cols))
    _check_keys(time, {"column", "period", "parts"}, "time")
    columns, time_name = _time_column(time, columns)
    names = [c.name for c in columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ContractError(f"contract.columns: duplicate column name(s) {dupes}")
    # Spark resolves column names without regard to case: `Temp` and `temp` would be one ambiguous reference
    for what, values in (("name", names), ("source", [c.raw_name for c in columns])):
        folded = [v.lower() for v in values]
        clash = sorted({v for v, f in zip(values, folded) if folded.count(f) > 1})
        if clash:
            raise ContractError(f"contract.columns: {what}s that differ only in case {clash}")

    def known(col: str, where: str) -> str:
        if col not in names:
            raise ContractError(f"{where}: {col!r} is not a declared column (declared: {names})")
        return col

    time_column = known(time_name, "time.column")
    if columns[names.index(time_column)].type not in {"date", "timestamp"}:
        raise ContractError("time.column: must be a date or timestamp column")
    period = time.get("period", "day")
    if period not in PERIODS:
        raise ContractError(f"time.period: {period!r} is not one of {list(PERIODS)}")
    if period == "hour" and columns[names.index(time_column)].type == "date":
        raise ContractError("time.period: 'hour' needs a timestamp time column, not a date")
    # `keys: []` is one series (one sensor, one index): features run over all rows as one entity
    keys = _tuple(_require(data, "keys", "contract"))
    if len(set(keys)) != len(keys):
        raise ContractError(f"contract.keys: repeated column(s) in {list(keys)}")
    for k in keys:
        known(k, "contract.keys")
    target = known(_require(data, "target", "contract"), "contract.target")
    if columns[names.index(target)].type not in {"int", "long", "double"}:
        raise ContractError("contract.target: must be a numeric column")
    price = data.get("price")
    if price is not None:
        known(price, "contract.price")
        if columns[names.index(price)].type not in {"int", "long", "double"}:
            raise ContractError("contract.price: must be a numeric column")
    flags = _tuple(data.get("flags"))
    for f in flags:
        known(f, "contract.flags")
    generated = {"day_of_week", "week_of_year", "month", "quarter", "is_weekend", "is_month_start",
                 "is_month_end", "hour", "period_date"}
    prefixes = (f"{target}_lag_", f"{target}_roll_", *((f"{price}_change_", f"{price}_ratio_") if price else ()))
    clash = sorted(n for n in names if n in generated or n.startswith(prefixes))
    if clash:
        raise ContractError(f"contract.columns: {clash} clash with generated feature column names")

    src = data.get("source") or {}
    _check_keys(src, {"prefix", "patterns", "keys_ordered_by_date"}, "source")
    ordered = src.get("keys_ordered_by_date", False)
    if not isinstance(ordered, bool):
        raise ContractError("source.keys_ordered_by_date: must be true or false")
    source = Source(prefix=src.get("prefix", ""), patterns=_tuple(src.get("patterns")) or Source.patterns,
                    keys_ordered_by_date=ordered)

    csv_raw = data.get("csv") or {}
    _check_keys(csv_raw, set(CsvDialect.__dataclass_fields__), "csv")
    if "null_values" in csv_raw and not isinstance(csv_raw["null_values"], list):
        raise ContractError("csv.null_values: must be a list of strings")
    for flag in ("multiline",):
        if flag in csv_raw and not isinstance(csv_raw[flag], bool):
            raise ContractError(f"csv.{flag}: must be true or false")
    if csv_raw.get("header", True) not in (True, False, "positional"):
        raise ContractError("csv.header: must be true (by name), false (no header line) or positional")
    if "names" in csv_raw and (not isinstance(csv_raw["names"], list) or not csv_raw["names"]
                               or not all(isinstance(n, str) and n for n in csv_raw["names"])):
        raise ContractError("csv.names: must be a non-empty list of raw column names, one per field position")
    csv = CsvDialect(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in csv_raw.items()})
    if len(csv.delimiter) != 1:
        raise ContractError("csv.delimiter: must be a single character")
    if csv.names and not csv.by_position:
        raise ContractError("csv.names: names fields by position, so it needs header: false or positional")
    if len(set(csv.names)) != len(csv.names):
        raise ContractError(f"csv.names: repeated name(s) in {list(csv.names)}")
    unpivot = _parse_unpivot(data["unpivot"]) if data.get("unpivot") is not None else None
    produced = [unpivot.key, unpivot.value] if unpivot else []
    available = (list(csv.names) or None) if csv.by_position else None
    if unpivot is not None:
        if csv.by_position and not csv.names:
            raise ContractError("unpivot: with header false or positional, csv.names must name the wide columns")
        for i, c in enumerate(columns):
            bad = [r for r in c.raw_names if r not in (*unpivot.ids, *produced)]
            if bad:
                raise ContractError(f"columns[{i}] ({c.name}): reads {bad}, which is neither an unpivot id nor "
                                    f"its key {unpivot.key!r} or value {unpivot.value!r}")
        raws = [r for c in columns for r in c.raw_names]
        for what in ("key", "value"):
            if getattr(unpivot, what) not in raws:
                raise ContractError(f"unpivot.{what}: no declared column reads {getattr(unpivot, what)!r}")
        if available is not None:
            missing = [n for n in (*unpivot.ids, *unpivot.values) if n not in available]
            if missing:
                raise ContractError(f"unpivot: {missing} are not in csv.names")
    elif available is not None:
        missing = [r for c in columns for r in c.raw_names if r not in available]
        if missing:
            raise ContractError(f"csv.names: the declared columns read {missing}, which csv.names does not name")

    dup = data.get("duplicates") or {}
    if not isinstance(dup, dict):
        raise ContractError("duplicates: must be a mapping, e.g. {policy: last}")
    # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true: `{policy: last, on: [a, b]}` means "on"
    dup = {("on" if k is True else k): v for k, v in dup.items()}
    _check_keys(dup, {"policy", "on", "drop_exact_repeats"}, "duplicates")
    policy = dup.get("policy", "last")
    if policy not in DUPLICATE_POLICIES:
        raise ContractError(f"duplicates.policy: {policy!r} is not one of {sorted(DUPLICATE_POLICIES)}")
    dup_on = _tuple(dup.get("on"))
    if "on" in dup and not dup_on:
        raise ContractError("duplicates.on: must name at least one column (leave it out to compare keys and time)")
    if len(set(dup_on)) != len(dup_on):
        raise ContractError(f"duplicates.on: repeated column(s) in {list(dup_on)}")
    for col in dup_on:
        known(col, "duplicates.on")
    if dup_on and policy == "keep":
        raise ContractError("duplicates.on: policy 'keep' removes no duplicates by key; use 'last' or 'first'")
    drop_exact = dup.get("drop_exact_repeats", True)
    if not isinstance(drop_exact, bool):
        raise ContractError("duplicates.drop_exact_repeats: must be true or false")
    missing = data.get("missing_periods", "leave")
    if missing not in MISSING_PERIOD_POLICIES:
        raise ContractError(f"missing_periods: {missing!r} is not one of {sorted(MISSING_PERIOD_POLICIES)}")

    feat = data.get("features") or {}
    _check_keys(feat, {"lags", "rolling", "calendar", "price"}, "features")
    rolling = feat.get("rolling") or {}
    _check_keys(rolling, {"windows", "stats"}, "features.rolling")
    features = Features(
        lags=_tuple(feat.get("lags", Features.lags)),
        rolling_windows=_tuple(rolling.get("windows", Features.rolling_windows)),
        rolling_stats=_tuple(rolling.get("stats", Features.rolling_stats)),
        calendar=bool(feat.get("calendar", True)),
        price=bool(feat.get("price", price is not None)),
    )
    for where, values in (("features.lags", features.lags), ("features.rolling.windows", features.rolling_windows),
                          ("features.rolling.stats", features.rolling_stats)):
        if len(set(values)) != len(values):
            raise ContractError(f"{where}: repeated value(s) in {list(values)}")
    for where, values in (("features.lags", features.lags), ("features.rolling.windows", features.rolling_windows)):
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
            raise ContractError(f"{where}: must be positive integers, got {list(values)}")
    bad_stats = sorted(set(features.rolling_stats) - ROLLING_STATS)
    if bad_stats:
        raise ContractError(f"features.rolling.stats: unknown stat(s) {bad_stats}; allowed: {sorted(ROLLING_STATS)}")
    if features.price and price is None:
        raise ContractError("features.price: price features need contract.price to name a column")

    limits = data.get("limits") or {}
    _check_keys(limits, {"max_batch_files", "max_batch_bytes"}, "limits")
    for k, v in limits.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ContractError(f"limits.{k}: must be a positive integer")
    schedule = data.get("schedule", DEFAULT_SCHEDULE)
    if not isinstance(schedule, str) or not schedule.strip():
        raise ContractError("schedule: must be a cron expression or an Airflow preset such as @hourly")
    try:
        quality = parse_quality(data.get("quality"), names)
    except QualityError as exc:
        raise ContractError(str(exc)) from None
    return Contract(
        name=name,
        columns=columns,
        time_column=time_column,
        period=period,
        keys=keys,
        target=target,
        source=source,
        csv=csv,
        price_column=price,
        flags=flags,
        duplicate_policy=policy,
        duplicate_on=dup_on,
        drop_exact_repeats=drop_exact,
        missing_periods=missing,
        features=features,
        max_batch_files=int(limits.get("max_batch_files", 1000)),
        max_batch_bytes=int(limits.get("max_batch_bytes", 10 * 1024**3)),
        schedule=schedule.strip(),
        unpivot=unpivot,
        quality=quality,
    )


def load_contract(path: str | Path | None = None) -> Contract:
    """Load and validate a contract YAML file (the NexGen sales contract by default)."""
    path = Path(path) if path else DEFAULT_CONTRACT
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return parse_contract(data)
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from None


def contract_from_dict(data: dict[str, Any]) -> Contract:
    """Rebuild a Contract from Contract.to_dict() output (as frozen into a batch plan)."""
    d = dict(data)
    d["columns"] = tuple(Column(**{k: (tuple(map(tuple, v)) if k == "parts" else tuple(v) if isinstance(v, list)
                                       else v) for k, v in c.items()}) for c in d["columns"])
    if d.get("unpivot") is not None:
        d["unpivot"] = Unpivot(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["unpivot"].items()})
    d["source"] = Source(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["source"].items()})
    d["csv"] = CsvDialect(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["csv"].items()})
    d["features"] = Features(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["features"].items()})
    for k in ("keys", "flags"):
        d[k] = tuple(d[k])
    if "duplicate_on" in d:  # plans frozen before natural keys existed hold no such field
        d["duplicate_on"] = tuple(d["duplicate_on"])
    d["quality"] = QualityGates.from_dict(d.get("quality"))  # plans frozen before gates existed hold none
    return Contract(**d)
