"""The prices each customer group paid: the range a price grid stays in unless a request widens it."""

from __future__ import annotations

import pandas as pd


def observed_price_ranges(train: pd.DataFrame) -> dict[str, list[float]]:
    """Lowest and highest price per customer group (guests pay about twice the list price) of the rows given (a
    promotion passes every split), so that a server bounds its price grid from the record instead of reading the
    splits."""
    ranges = {"all": [float(train["unit_price"].min()), float(train["unit_price"].max())]}
    if "is_registered" not in train.columns:
        return {**ranges, "registered": ranges["all"], "guest": ranges["all"]}
    for name, registered in (("registered", True), ("guest", False)):
        group = train.loc[train["is_registered"] == registered, "unit_price"]
        ranges[name] = [float(group.min()), float(group.max())] if len(group) >= 2 else ranges["all"]
    return ranges
