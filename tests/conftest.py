"""Shared fixtures: tiny inline frames, the real data's location, and a throwaway project copy."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PRICETRAIL_SHARED", PROJECT_ROOT.parent / "shared"))
REAL_DATA = SHARED / "data" / "online-retail" / "by-day"


def require_real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real UCI data not found at {REAL_DATA} (../shared is absent); real-data tests skipped")
    return REAL_DATA


def lines(rows: list[dict]) -> pd.DataFrame:
    """A product's lines in the ingested (snake_case) schema, with sensible defaults for unspecified fields."""
    defaults = {"invoice_no": "500000", "stockcode": "85123A", "description": "WHITE HANGING HEART",
                "quantity": 6, "invoice_date": "2011-01-03 10:00:00", "unit_price": 2.95,
                "customer_id": 17850.0, "country": "United Kingdom"}
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    frame["invoice_date"] = pd.to_datetime(frame["invoice_date"])
    frame["quantity"] = frame["quantity"].astype("int64")
    frame["unit_price"] = frame["unit_price"].astype("float64")
    frame["customer_id"] = frame["customer_id"].astype("float64")
    return frame
