"""Deterministic generators of realistic raw NexGen sales CSVs, dirt included.

Two generators of the same data — the schema of contracts/nexgen_sales.yaml, `stores × skus` entities a day, the
same kinds of dirt (DIRT below) — for two uses:

* `generate`: the demo, the class archive's training and the tests. The whole set is one frame, so a file may hold
  several days (`days_per_file`); the tests' expectations are computed from its files, which stay as they are.
* `generate_days`: large sets, such as the benchmark's 7.3M rows (bench/gen.py). One file a day, each day built by
  array operations from (seed, day) alone: memory is one day's rows, 7.3M rows take seconds, and a subset of the
  days (the bench's next day) is the same as those days of the full set. Not the same files as `generate` for the
  same spec.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

HEADER = ["date", "store_id", "sku", "units_sold", "unit_price", "promo"]

# The dirt: a `dirt` share of the rows get one of these kinds (uniformly), and the contract's verdict on it. On top,
# dirt/2 of the rows are repeated exactly and dirt/2 again with the same keys and one more unit (key duplicates).
DIRT = (
    "blank target: quarantined (missing)",
    "negative units: quarantined (below_min)",
    "unparseable date (BAD_DATE): quarantined",
    "store id padded with spaces and lower case: cleaned",
    "SKU lower case: cleaned",
    "date in the second declared format (SECOND_DATE_FORMAT): parsed",
    "price 'NA': a missing optional value",
    "blank promo flag: default 0",
)
BAD_DATE = "2024-13-45"
SECOND_DATE_FORMAT = "%m/%d/%Y"


@dataclass(frozen=True)
class SampleSpec:
    stores: int = 5
    skus: int = 20
    days: int = 60
    start: date = date(2024, 1, 1)
    seed: int = 7
    dirt: float = 0.02  # share of rows that get one kind of dirt
    days_per_file: int = 1
    gzip: bool = False
    prefix: str = "sales"


def file_key(spec: SampleSpec, first: date) -> str:
    """The key of the file whose first day is `first`: prefix/YYYY/MM/DD/sales_YYYY-MM-DD.csv[.gz]."""
    return f"{spec.prefix}/{first:%Y/%m/%d}/sales_{first:%Y-%m-%d}.csv" + (".gz" if spec.gzip else "")


def _labels(spec: SampleSpec) -> tuple[np.ndarray, np.ndarray]:
    """Each entity's store id and SKU, store by store: S001 SKU-00001, S001 SKU-00002, …"""
    stores = np.array([f"S{s:03d}" for s in range(1, spec.stores + 1)], dtype=object)
    skus = np.array([f"SKU-{k:05d}" for k in range(1, spec.skus + 1)], dtype=object)
    return np.repeat(stores, spec.skus), np.tile(skus, spec.stores)


def _write(path: Path, frame: pd.DataFrame, gz: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, lineterminator="\n")
    if gz:
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")


# -- generate: the whole set in one frame -------------------------------------------------------------------------
def _clean_frame(spec: SampleSpec, rng: np.random.Generator) -> pd.DataFrame:
    n_ent = spec.stores * spec.skus
    store, sku = _labels(spec)
    base = rng.gamma(2.0, 6.0, n_ent)
    price = np.round(rng.uniform(1.5, 60.0, n_ent), 2)
    day = np.arange(spec.days)
    dates = np.array([spec.start + timedelta(days=int(d)) for d in day])
    weekday = np.array([d.weekday() for d in dates])
    season = 1.0 + 0.25 * (weekday >= 5) + 0.1 * np.sin(2 * np.pi * day / 365.25)
    promo = (rng.random((spec.days, n_ent)) < 0.08).astype(np.int8)
    lam = base[None, :] * season[:, None] * (1 + 0.6 * promo)
    units = rng.poisson(lam)
    price_t = np.round(price[None, :] * (1 - 0.15 * promo) * rng.normal(1.0, 0.01, (spec.days, n_ent)), 2)
    return pd.DataFrame({
        "date": np.repeat(dates, n_ent),
        "store_id": np.tile(store, spec.days),
        "sku": np.tile(sku, spec.days),
        "units_sold": units.ravel().astype(object),
        "unit_price": price_t.ravel().astype(object),
        "promo": promo.ravel().astype(object),
    })


def _dirty(df: pd.DataFrame, spec: SampleSpec, rng: np.random.Generator) -> pd.DataFrame:
    """Apply one kind of dirt (DIRT) to a `spec.dirt` share of rows, plus duplicate rows."""
    df = df.astype({"date": str, "units_sold": object, "unit_price": object, "promo": object})
    df["date"] = df["date"].astype(str)
    n = len(df)
    pick = rng.random(n) < spec.dirt
    kinds = rng.integers(0, len(DIRT), n)
    idx = np.flatnonzero(pick)
    for i in idx:
        k = kinds[i]
        if k == 0:
            df.at[i, "units_sold"] = ""
        elif k == 1:
            df.at[i, "units_sold"] = -int(rng.integers(1, 20))
        elif k == 2:
            df.at[i, "date"] = BAD_DATE
        elif k == 3:
            df.at[i, "store_id"] = "  " + str(df.at[i, "store_id"]).lower() + " "
        elif k == 4:
            df.at[i, "sku"] = str(df.at[i, "sku"]).lower()
        elif k == 5:
            df.at[i, "date"] = date.fromisoformat(df.at[i, "date"]).strftime(SECOND_DATE_FORMAT)
        elif k == 6:
            df.at[i, "unit_price"] = "NA"
        else:
            df.at[i, "promo"] = ""
    dup_n = max(1, int(n * spec.dirt / 2)) if spec.dirt > 0 else 0
    exact = df.iloc[rng.choice(n, dup_n, replace=False)]
    keydup = df.iloc[rng.choice(n, dup_n, replace=False)].copy()
    keydup["units_sold"] = [str(int(u) + 1) if str(u).lstrip("-").isdigit() else u for u in keydup["units_sold"]]
    out = pd.concat([df, exact, keydup], ignore_index=True)
    # keep file order realistic: duplicates land near their day
    return out.sort_values("date", kind="stable", key=lambda s: s.str[:10]).reset_index(drop=True)


def generate(out_dir: str | Path, spec: SampleSpec = SampleSpec()) -> list[Path]:
    """Write the sample as CSV files (one per `days_per_file` days) under out_dir/prefix/YYYY/MM/DD/."""
    rng = np.random.default_rng(spec.seed)
    df = _clean_frame(spec, rng)
    day_of = {spec.start + timedelta(days=i): i for i in range(spec.days)}
    df["_file"] = [day_of[d] // spec.days_per_file for d in df["date"]]
    df = _dirty(df, spec, rng) if spec.dirt > 0 else df.astype({"date": str})
    out = Path(out_dir)
    written = []
    for f, part in df.groupby("_file", sort=True):
        path = out / file_key(spec, spec.start + timedelta(days=int(f) * spec.days_per_file))
        _write(path, part[HEADER], spec.gzip)
        written.append(path)
    return written


# -- generate_days: one day at a time, vectorised -----------------------------------------------------------------
def _day_frame(spec: SampleSpec, i: int, rng: np.random.Generator, base: np.ndarray, price: np.ndarray,
               store: np.ndarray, sku: np.ndarray) -> pd.DataFrame:
    n = spec.stores * spec.skus
    day = spec.start + timedelta(days=i)
    season = 1.0 + 0.25 * (day.weekday() >= 5) + 0.1 * np.sin(2 * np.pi * i / 365.25)
    promo = (rng.random(n) < 0.08).astype(np.int8)
    units = rng.poisson(base * season * (1 + 0.6 * promo))
    price_t = np.round(price * (1 - 0.15 * promo) * rng.normal(1.0, 0.01, n), 2)
    date_s = np.full(n, day.isoformat(), dtype=object)
    store_s, sku_s = store.copy(), sku.copy()
    units_s = units.astype(str).astype(object)
    price_s = price_t.astype(str).astype(object)
    promo_s = promo.astype(str).astype(object)
    if spec.dirt > 0:  # the kinds of DIRT, in its order
        kind = np.where(rng.random(n) < spec.dirt, rng.integers(0, len(DIRT), n), -1)
        units_s[kind == 0] = ""
        neg = kind == 1
        units_s[neg] = (-rng.integers(1, 20, int(neg.sum()))).astype(str)
        date_s[kind == 2] = BAD_DATE
        m = kind == 3
        store_s[m] = np.char.add(np.char.add("  ", np.char.lower(store[m].astype(str))), " ").astype(object)
        m = kind == 4
        sku_s[m] = np.char.lower(sku[m].astype(str)).astype(object)
        date_s[kind == 5] = day.strftime(SECOND_DATE_FORMAT)
        price_s[kind == 6] = "NA"
        promo_s[kind == 7] = ""
    df = pd.DataFrame({"date": date_s, "store_id": store_s, "sku": sku_s, "units_sold": units_s,
                       "unit_price": price_s, "promo": promo_s})
    if spec.dirt > 0:  # exact repeats and key duplicates, at the end of the day's file
        dup_n = max(1, int(n * spec.dirt / 2))
        exact = df.iloc[rng.choice(n, dup_n, replace=False)]
        keydup = df.iloc[rng.choice(n, dup_n, replace=False)].copy()
        u = pd.to_numeric(keydup["units_sold"], errors="coerce")
        keydup["units_sold"] = np.where(u >= 0, (u + 1).fillna(0).astype(np.int64).astype(str), keydup["units_sold"])
        df = pd.concat([df, exact, keydup], ignore_index=True)
    return df


def generate_days(out_dir: str | Path, spec: SampleSpec = SampleSpec(),
                  days: Iterable[int] | None = None) -> list[Path]:
    """Write days (indexes from spec.start; default all of spec.days, more are allowed) as one CSV a day under
    out_dir/prefix/YYYY/MM/DD/. Day i depends only on (spec.seed, i) and the entities, so a subset of the days is
    the same as in the full set."""
    if spec.days_per_file != 1:
        raise ValueError(f"generate_days writes one file a day, not {spec.days_per_file}: use generate")
    n = spec.stores * spec.skus
    ent_rng = np.random.default_rng(spec.seed)
    base = ent_rng.gamma(2.0, 6.0, n)
    price = np.round(ent_rng.uniform(1.5, 60.0, n), 2)
    store, sku = _labels(spec)
    out = Path(out_dir)
    written = []
    for i in days if days is not None else range(spec.days):
        df = _day_frame(spec, i, np.random.default_rng([spec.seed, i]), base, price, store, sku)
        path = out / file_key(spec, spec.start + timedelta(days=i))
        _write(path, df, spec.gzip)
        written.append(path)
    return written
