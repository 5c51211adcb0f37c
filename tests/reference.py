"""An independent pandas reference of cleaning and features (never calls the Spark code), for comparisons."""

from __future__ import annotations

import io
from datetime import datetime

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
