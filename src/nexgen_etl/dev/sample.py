"""Deterministic generator of realistic raw NexGen sales CSVs, dirt included (for the demo, tests, benchmarks)."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

HEADER = ["date", "store_id", "sku", "units_sold", "unit_price", "promo"]


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


def _clean_frame(spec: SampleSpec, rng: np.random.Generator) -> pd.DataFrame:
    n_ent = spec.stores * spec.skus
    store = np.repeat(np.arange(1, spec.stores + 1), spec.skus)
    sku = np.tile(np.arange(1, spec.skus + 1), spec.stores)
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
        "store_id": np.tile([f"S{s:03d}" for s in store], spec.days),
        "sku": np.tile([f"SKU-{k:05d}" for k in sku], spec.days),
        "units_sold": units.ravel().astype(object),
        "unit_price": price_t.ravel().astype(object),
        "promo": promo.ravel().astype(object),
    })


def _dirty(df: pd.DataFrame, spec: SampleSpec, rng: np.random.Generator) -> pd.DataFrame:
    """Apply one kind of dirt to a `spec.dirt` share of rows, plus duplicate rows."""
    df = df.astype({"date": str, "units_sold": object, "unit_price": object, "promo": object})
    df["date"] = df["date"].astype(str)
    n = len(df)
    pick = rng.random(n) < spec.dirt
    kinds = rng.integers(0, 8, n)
    idx = np.flatnonzero(pick)
    for i in idx:
        k = kinds[i]
        if k == 0:
            df.at[i, "units_sold"] = ""  # blank target → quarantined (missing)
        elif k == 1:
            df.at[i, "units_sold"] = -int(rng.integers(1, 20))  # negative units → quarantined (below_min)
        elif k == 2:
            df.at[i, "date"] = "2024-13-45"  # unparseable date
        elif k == 3:
            df.at[i, "store_id"] = "  " + str(df.at[i, "store_id"]).lower() + " "  # whitespace + case: cleaned
        elif k == 4:
            df.at[i, "sku"] = str(df.at[i, "sku"]).lower()  # mixed case: cleaned
        elif k == 5:
            d = date.fromisoformat(df.at[i, "date"])
            df.at[i, "date"] = d.strftime("%m/%d/%Y")  # a second declared format: parsed
        elif k == 6:
            df.at[i, "unit_price"] = "NA"  # missing optional value
        else:
            df.at[i, "promo"] = ""  # blank flag: default 0
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
        first = spec.start + timedelta(days=int(f) * spec.days_per_file)
        name = f"{spec.prefix}/{first:%Y/%m/%d}/sales_{first:%Y-%m-%d}.csv" + (".gz" if spec.gzip else "")
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = part[HEADER].to_csv(index=False, lineterminator="\n")
        if spec.gzip:
            with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
                fh.write(text)
        else:
            path.write_text(text, encoding="utf-8", newline="")
        written.append(path)
    return written
