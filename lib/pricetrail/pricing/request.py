"""A price request: who buys, where, when, and over which prices; every field validated with a message naming it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

CUSTOMERS = ("registered", "guest")
MAX_PRICE = 1_000_000.0
MIN_PRICE = 0.01  # a cent: answers are rounded to 6 decimals, and a price below this is a typo, not a question


DATE_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# The largest grid a request may ask for: 2,001 points score in a few milliseconds; 100,000 would hold a worker.
POINTS_LIMIT = 2001


class RequestError(ValueError):
    """A price request that cannot be answered as asked; ``parameter`` names the offending input."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class PriceRequest:
    """Who buys, where, when, and over which prices; every field validated with a message naming it."""

    date: str
    country: str = "United Kingdom"
    customer: str = "registered"
    min_price: float | None = None
    max_price: float | None = None
    points: int = 101
    unit_cost: float | None = None
    hour: int = 12
    max_points: int = POINTS_LIMIT
    range_widening: float = 0.0
    # The price charged now, when the caller knows it better than the history shows (a change this morning): the
    # decision's status quo. None: the group's typical price over its last days (decision.status_quo).
    current_price: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.date, str) or not DATE_PATTERN.fullmatch(self.date):
            raise RequestError("date", f"date {str(self.date)[:64]!r} is not accepted; use YYYY-MM-DD")
        try:
            pd.Timestamp(self.date)
        except ValueError as error:
            raise RequestError("date", f"date {self.date!r} is not a date; use YYYY-MM-DD") from error
        if self.customer not in CUSTOMERS:
            raise RequestError("customer", f"customer {self.customer!r} is not accepted; use one of {CUSTOMERS}")
        if not isinstance(self.country, str) or not self.country.strip() or len(self.country) > 64 or any(
                not (ch.isprintable()) for ch in self.country):
            raise RequestError("country", f"country {self.country[:80]!r} is not accepted: a name of 1 to 64 "
                                          "printable characters")
        for name in ("min_price", "max_price", "current_price"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and MIN_PRICE <= value <= MAX_PRICE):
                raise RequestError(name, f"{name}={value!r} is not accepted: a price from {MIN_PRICE:g} to "
                                         f"{MAX_PRICE:g}")
        if self.min_price is not None and self.max_price is not None and self.min_price >= self.max_price:
            raise RequestError("min_price", f"min_price={self.min_price:g} must be below max_price={self.max_price:g}")
        if self.unit_cost is not None and not (math.isfinite(self.unit_cost) and 0 <= self.unit_cost <= MAX_PRICE):
            raise RequestError("unit_cost", f"unit_cost={self.unit_cost!r} is not accepted: a finite number >= 0")
        if isinstance(self.points, bool) or not isinstance(self.points, int) or not 3 <= self.points <= self.max_points:
            raise RequestError("points", f"points={self.points!r} is not accepted: a whole number from 3 to "
                                         f"{self.max_points}")
        if isinstance(self.hour, bool) or not isinstance(self.hour, int) or not 0 <= self.hour <= 23:
            raise RequestError("hour", f"hour={self.hour!r} is not accepted: a whole number from 0 to 23")

    @property
    def is_registered(self) -> bool:
        return self.customer == "registered"


class RecommendSettingsError(ValueError):
    """``params.yaml: recommend`` holds a value that is not accepted."""


@dataclass(frozen=True)
class RecommendSettings:
    """``params.yaml: recommend``: the grid an answer is scored on when a request does not say, for ``pricetrail
    recommend`` and for ``pricetrail serve`` (its ``default_points`` and ``range_widening``)."""

    grid_size: int
    range_widening: float

    def __post_init__(self) -> None:
        size = self.grid_size
        if isinstance(size, bool) or not isinstance(size, int) or not 3 <= size <= POINTS_LIMIT:
            raise RecommendSettingsError(f"recommend.grid_size={size!r} is not accepted: a whole number from 3 to "
                                         f"{POINTS_LIMIT}")
        widening = self.range_widening
        if isinstance(widening, bool) or not isinstance(widening, int | float) or not (
                math.isfinite(widening) and 0 <= widening <= 1):
            raise RecommendSettingsError(f"recommend.range_widening={widening!r} is not accepted: a fraction of the "
                                         "observed range from 0 to 1")

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> RecommendSettings:
        from pricetrail.project.config import settings_from_params

        return settings_from_params(cls, "recommend", values, error=RecommendSettingsError)
