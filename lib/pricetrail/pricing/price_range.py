"""The prices a customer group paid: the range a price grid stays in unless a request widens it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pricetrail.data.frames import read_parquet
from pricetrail.data.price_ranges import observed_price_ranges
from pricetrail.registry import records
from pricetrail.registry.artifacts import ArtifactSource, resolve


def observed_range(record: dict[str, Any], customer: str, sources: Iterable[ArtifactSource],
                   owner: str) -> tuple[float, float]:
    """Lowest and highest training price for the customer group, from the record (older records: the training
    rows' two columns, read by hash)."""
    ranges = record.get("price_range")
    if isinstance(ranges, dict) and customer in ranges:
        low, high = ranges[customer]
        return float(low), float(high)
    path = resolve(records.artifacts_of(record)["reference.parquet"], sources, owner=owner)
    train = read_parquet(path, columns=["unit_price", "is_registered"])
    return tuple(observed_price_ranges(train)[customer])  # type: ignore[return-value]
