"""Fast, vectorised benchmark data: the NexGen sales schema (contracts/nexgen_sales.yaml), one CSV per day.

Same layout and the same kinds of dirt as nexgen_etl.dev.sample (blank/negative target, bad date, whitespace and
case, a second date format, NA price, blank flag, exact and key duplicates), but every day is built with numpy
array operations instead of a per-row loop, so 7.3M rows take seconds, not minutes. Deterministic per seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class BenchSpec:
    stores: int = 50
    skus: int = 200
    days: int = 730
    start: date = date(2024, 1, 1)
    seed: int = 42
    dirt: float = 0.02
    prefix: str = "sales"

    @property
    def entities(self) -> int:
        return self.stores * self.skus

    def tag(self) -> str:
        return f"{self.stores}x{self.skus}x{self.days}-s{self.seed}"


def day_key(spec: BenchSpec, day: date) -> str:
    return f"{spec.prefix}/{day:%Y/%m/%d}/sales_{day:%Y-%m-%d}.csv"


def _day_frame(spec: BenchSpec, i: int, rng: np.random.Generator, base: np.ndarray, price: np.ndarray,
               store: np.ndarray, sku: np.ndarray) -> pd.DataFrame:
    n = spec.entities
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
    if spec.dirt > 0:
        kind = np.where(rng.random(n) < spec.dirt, rng.integers(0, 8, n), -1)
        units_s[kind == 0] = ""                                                   # missing target
        neg = kind == 1
        units_s[neg] = (-rng.integers(1, 20, int(neg.sum()))).astype(str)         # below_min
        date_s[kind == 2] = "2024-13-45"                                          # unparseable date
        m = kind == 3
        store_s[m] = np.char.add(np.char.add("  ", np.char.lower(store[m].astype(str))), " ").astype(object)
        m = kind == 4
        sku_s[m] = np.char.lower(sku[m].astype(str)).astype(object)               # case: cleaned
        date_s[kind == 5] = day.strftime("%m/%d/%Y")                              # second declared format
        price_s[kind == 6] = "NA"                                                 # missing optional value
        promo_s[kind == 7] = ""                                                   # blank flag: default 0
    df = pd.DataFrame({"date": date_s, "store_id": store_s, "sku": sku_s, "units_sold": units_s,
                       "unit_price": price_s, "promo": promo_s})
    if spec.dirt > 0:
        dup_n = max(1, int(n * spec.dirt / 2))
        exact = df.iloc[rng.choice(n, dup_n, replace=False)]
        keydup = df.iloc[rng.choice(n, dup_n, replace=False)].copy()
        u = pd.to_numeric(keydup["units_sold"], errors="coerce")
        keydup["units_sold"] = np.where(u >= 0, (u + 1).fillna(0).astype(np.int64).astype(str), keydup["units_sold"])
        df = pd.concat([df, exact, keydup], ignore_index=True)
    return df


def generate(out_dir: str | Path, spec: BenchSpec, days: range | None = None) -> list[Path]:
    """Write days (default: all of spec.days) as out_dir/sales/YYYY/MM/DD/sales_YYYY-MM-DD.csv.

    Day i's content depends only on (seed, i), so a subset of days is the same as in the full set."""
    n = spec.entities
    ent_rng = np.random.default_rng(spec.seed)
    base = ent_rng.gamma(2.0, 6.0, n)
    price = np.round(ent_rng.uniform(1.5, 60.0, n), 2)
    store = np.repeat(np.array([f"S{s:03d}" for s in range(1, spec.stores + 1)], dtype=object), spec.skus)
    sku = np.tile(np.array([f"SKU-{k:05d}" for k in range(1, spec.skus + 1)], dtype=object), spec.stores)
    out = Path(out_dir)
    written = []
    for i in days if days is not None else range(spec.days):
        rng = np.random.default_rng([spec.seed, i])
        df = _day_frame(spec, i, rng, base, price, store, sku)
        path = out / day_key(spec, spec.start + timedelta(days=i))
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False, lineterminator="\n")
        written.append(path)
    return written
