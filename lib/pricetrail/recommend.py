"""Price recommendation: evaluate a demand model over a price grid and pick the revenue- or profit-maximising price.

At every grid price, every price-derived feature is recomputed by :func:`pricetrail.data.etl.price_features` —
the reference kept the sampled rows' old price features, so its curve moved only through the raw price column.
By default the grid stays inside the prices the model saw for that customer group: outside it the model
extrapolates, and the reference's grid stretched to 5x the highest price recommended exactly that corner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pricetrail.data.etl import STATE_COLUMNS, calendar_features, price_features, state_features
from pricetrail.data.preprocess import transform
from pricetrail.modeling.bundle import ModelBundle
from pricetrail.modeling.price_response import (
    MAX_BAND_SHARE,
    MIN_DISTINCT_PRICES,
    GroupPrices,
    choose_price,
    daily_lines,
    elasticity_summary,
    group_prices,
    pivot_prices,
    price_reference,
    response_family,
    uncertainty_notes,
)


class RecommendError(ValueError):
    """A price recommendation cannot be made as asked."""


@dataclass(frozen=True)
class PriceContext:
    """Who buys, where and when."""

    date: str
    country: str = "United Kingdom"
    is_registered: bool = True
    hour: int = 12

    def __post_init__(self) -> None:
        try:
            pd.Timestamp(self.date)
        except ValueError as error:
            raise RecommendError(f"date {self.date!r} is not a date; use YYYY-MM-DD") from error
        if not isinstance(self.is_registered, bool):
            raise RecommendError(f"is_registered={self.is_registered!r} must be true or false")
        if not isinstance(self.hour, int) or not 0 <= self.hour <= 23:
            raise RecommendError(f"hour={self.hour!r} must be a whole number from 0 to 23")
        if not isinstance(self.country, str) or not self.country.strip() or len(self.country) > 64:
            raise RecommendError(f"country={self.country!r} must be a non-empty name of at most 64 characters")


@dataclass
class Recommendation:
    stockcode: str
    model_version: str
    price: float
    expected_quantity: float
    expected_revenue: float
    expected_profit: float | None
    objective: str
    price_range: tuple[float, float]
    observed_range: tuple[float, float]
    within_observed_range: bool
    state_as_of: str
    notes: list[str] = field(default_factory=list)
    curve: pd.DataFrame = field(default_factory=pd.DataFrame)
    # 90% interval of the optimal price (None: the model records no price-response uncertainty)
    band: tuple[float, float] | None = None
    # {"at_price", "value", "interval_90"}: d log q / d log p at the group's median training price (per line), and
    # with an order-rate fit "order_rate" and "per_day" alike
    elasticity: dict[str, Any] = field(default_factory=dict)
    # what the objective is per: "day" with an order-rate fit (expected_quantity/revenue/profit stay per line, the
    # *_per_day fields multiply them by the expected lines per day), else "order line"
    per: str = "order line"
    expected_lines_per_day: float | None = None
    expected_revenue_per_day: float | None = None
    expected_profit_per_day: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stockcode": self.stockcode, "model_version": self.model_version, "price": round(self.price, 4),
            "expected_quantity": round(self.expected_quantity, 4),
            "expected_revenue": round(self.expected_revenue, 4),
            "expected_profit": None if self.expected_profit is None else round(self.expected_profit, 4),
            "objective": self.objective,
            "price_range": [round(p, 4) for p in self.price_range],
            "observed_range": [round(p, 4) for p in self.observed_range],
            "within_observed_range": self.within_observed_range, "state_as_of": self.state_as_of,
            "band": None if self.band is None else [round(p, 4) for p in self.band],
            "elasticity": self.elasticity, "per": self.per,
            "per_day": None if self.expected_lines_per_day is None else {
                "expected_lines": round(self.expected_lines_per_day, 4),
                "expected_revenue": round(self.expected_revenue_per_day or 0.0, 4),
                "expected_profit": None if self.expected_profit_per_day is None else round(
                    self.expected_profit_per_day, 4)},
            "notes": list(self.notes), "curve": self.curve.round(6).to_dict(orient="records"),
        }


def observed_price_range(reference: pd.DataFrame, is_registered: bool) -> tuple[float, float]:
    """Lowest and highest training price for the customer group (guests pay about twice the list price)."""
    group = reference[reference["is_registered"] == is_registered]
    if len(group) < 2:
        group = reference
    return float(group["unit_price"].min()), float(group["unit_price"].max())


def grid_rows(bundle: ModelBundle, context: PriceContext, prices: np.ndarray) -> tuple[pd.DataFrame, str]:
    """Model input rows, one per grid price, with state features as of the context date."""
    if bundle.daily is None:
        raise RecommendError(f"the bundle of {bundle.stockcode} has no daily history; cannot compute state features")
    requested = pd.Timestamp(context.date).normalize()
    last_day = pd.to_datetime(bundle.daily["day"]).max()
    # Past the history, the state is the one right after it: the previous-month features of a far future date
    # would read as "no sales", which the model never saw.
    state_day = min(requested, last_day + pd.Timedelta(days=1))
    state = state_features(bundle.daily, [state_day]).iloc[0]
    n = len(prices)
    timestamps = pd.Series([requested + pd.Timedelta(hours=context.hour)] * n)
    rows = pd.concat([
        price_features(prices, state["max_price_before"], state["prev_month_mean_price"]),
        calendar_features(timestamps),
        pd.DataFrame({
            "country": [context.country] * n,
            "is_registered": [context.is_registered] * n,
            **{column: [state[column]] * n for column in STATE_COLUMNS},
        }),
    ], axis=1)
    return rows, str(state_day.date())


def reference_prices(bundle: ModelBundle, is_registered: bool) -> GroupPrices:
    """The group's training prices: as the checkpoint records them, else from the bundle's training rows."""
    recorded = price_reference(bundle.metadata, "registered" if is_registered else "guest")
    if recorded is not None:
        return recorded
    if bundle.reference is None:
        raise RecommendError(f"the bundle of {bundle.stockcode} records no training prices and has no training rows")
    group = bundle.reference[bundle.reference["is_registered"] == is_registered]
    return group_prices((group if len(group) else bundle.reference)["unit_price"].to_numpy())


def recommend_price(bundle: ModelBundle, context: PriceContext, *, low: float | None = None,
                    high: float | None = None, grid_size: int = 101, range_widening: float = 0.0,
                    unit_cost: float | None = None, min_distinct_prices: int = MIN_DISTINCT_PRICES,
                    max_band_share: float = MAX_BAND_SHARE) -> Recommendation:
    """The price that maximises expected revenue (or profit, given a unit cost) per day (per order line for a model
    without an order-rate fit), with the 90% band of the optimal price and the elasticity at the median price
    paid."""
    if bundle.reference is None:
        raise RecommendError(f"the bundle of {bundle.stockcode} has no training rows; cannot bound the price grid")
    if not isinstance(grid_size, int) or not 3 <= grid_size <= 2001:
        raise RecommendError(f"grid_size={grid_size!r} must be a whole number from 3 to 2001")
    if not 0 <= range_widening <= 1:
        raise RecommendError(f"range_widening={range_widening!r} must be a fraction from 0 to 1")
    if unit_cost is not None and not (np.isfinite(unit_cost) and unit_cost >= 0):
        raise RecommendError(f"unit_cost={unit_cost!r} must be a finite number >= 0")
    observed = observed_price_range(bundle.reference, context.is_registered)
    span = observed[1] - observed[0]
    allowed = (max(observed[0] - range_widening * span, 0.01), observed[1] + range_widening * span)
    lo = allowed[0] if low is None else float(low)
    hi = allowed[1] if high is None else float(high)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or lo >= hi:
        raise RecommendError(f"price range [{lo}, {hi}] is not accepted: need 0 < low < high")
    notes = []
    if lo < allowed[0] - 1e-9 or hi > allowed[1] + 1e-9:
        raise RecommendError(
            f"price range [{lo:g}, {hi:g}] leaves the allowed range [{allowed[0]:.4g}, {allowed[1]:.4g}] "
            f"(observed {observed[0]:g}-{observed[1]:g}, widened by range_widening={range_widening:g}); "
            "raise range_widening to extrapolate")
    if unit_cost is not None and unit_cost >= hi:
        raise RecommendError(f"unit_cost={unit_cost:g} is at or above every price of the range [{lo:g}, {hi:g}]: "
                             "every price loses money; check the cost or raise the range")
    if range_widening > 0:
        notes.append(f"grid widened by {range_widening:.0%} of the observed range: the model extrapolates there")
    prices = np.linspace(lo, hi, grid_size)
    rows, state_as_of = grid_rows(bundle, context, prices)
    reference = reference_prices(bundle, context.is_registered)
    pivot, _ = grid_rows(bundle, context, pivot_prices(reference.median))
    family = response_family(bundle.network, bundle.metadata, transform(bundle.preprocessor, rows),
                             transform(bundle.preprocessor, pivot), prices=prices, median_price=reference.median)
    customer = "registered" if context.is_registered else "guest"
    quantity = family.point
    revenue = prices * quantity
    curve = pd.DataFrame({"price": prices, "expected_quantity": quantity, "expected_revenue": revenue})
    if unit_cost is not None:
        curve["expected_profit"] = (prices - unit_cost) * quantity
    lines = daily_lines(family, customer)
    if lines is not None:
        curve["expected_lines_per_day"] = lines
        curve["expected_revenue_per_day"] = revenue * lines
        if unit_cost is not None:
            curve["expected_profit_per_day"] = curve["expected_profit"] * lines
    objective_values = (prices - (unit_cost or 0.0)) * family.daily_point
    _, best, band = choose_price(prices, family, unit_cost)
    elasticity = {"at_price": reference.median, **elasticity_summary(family)}
    if best in (0, grid_size - 1):
        notes.append("the best price is at the edge of the grid: the optimum may lie outside it")
    if unit_cost is not None and objective_values[best] <= 0:
        notes.append(f"no price of the range makes a profit at unit_cost={unit_cost:g}: this is the smallest loss")
    if state_as_of != str(pd.Timestamp(context.date).date()):
        notes.append(f"the date is after the product's history; state features are as of {state_as_of}")
    notes.extend(uncertainty_notes(reference, band, float(prices[best]), family.members is not None, customer,
                                   min_distinct_prices=min_distinct_prices, max_band_share=max_band_share,
                                   rate=family.rate))
    return Recommendation(
        stockcode=bundle.stockcode, model_version=bundle.version, price=float(prices[best]),
        expected_quantity=float(quantity[best]), expected_revenue=float(revenue[best]),
        expected_profit=None if unit_cost is None else float(curve["expected_profit"].iloc[best]),
        objective="profit" if unit_cost is not None else "revenue", price_range=(lo, hi), observed_range=observed,
        within_observed_range=observed[0] <= lo and hi <= observed[1], state_as_of=state_as_of, notes=notes,
        curve=curve, band=band, elasticity=elasticity, per="order line" if lines is None else "day",
        expected_lines_per_day=None if lines is None else float(lines[best]),
        expected_revenue_per_day=None if lines is None else float(curve["expected_revenue_per_day"].iloc[best]),
        expected_profit_per_day=None if lines is None or unit_cost is None else float(
            curve["expected_profit_per_day"].iloc[best]),
    )
