"""The synthetic products' true demand and revenue curves in closed form, and the optimum they imply.

Demand of one regular (non-tier) order line at price ``p`` on day ``d``::

    X = multiplier * base * exp(-b * (p - ref_price)) * eps,   eps ~ lognormal with mean 1 and log-sd sigma
    Y = clip(X, 1, quantity_cap) * season(d) * drift(d)
    Quantity = an unbiased random rounding of Y to a pack size (or, on a share of lines, to a whole number)

``multiplier`` is 1 for registered customers and ``guest_multiplier`` for guests. Unbiased rounding keeps
``E[Quantity] = season(d) * drift(d) * E[clip(X, 1, cap)]``, which has a closed form: :func:`expected_quantity`
is the exact expectation of what the generator draws.

The price also moves how many order lines come in: a day's lines are Poisson with mean
``lines_per_day * lines_season(d) * (p / ref_price) ** -order_rate_elasticity`` (``p`` the day's regular price;
guests pay a fixed multiple of it, so their lines move alike). Revenue per day is therefore
``p * E[Quantity](p) * E[lines](p)``: :func:`optimal_price` and :func:`revenue_regret` score that, and the
optimal price does not depend on the date. ``b`` is set so that the registered optimum per day sits at the
product's target price, where a line's own elasticity is ``order_rate_elasticity - 1``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any

import numpy as np

from pricetrail.data.synthetic.calendar import lines_season, season_bump
from pricetrail.data.synthetic.settings import check_range, parse_day, positive_prices

# Customers and channels.
GUEST_SHARE = 0.25


def expected_quantity(truth: Mapping[str, Any], prices: np.ndarray, *, is_registered: bool,
                      date: str) -> np.ndarray:
    """True expected quantity per regular order line of one product (``ground_truth["products"][code]``).

    Regular means not a volume-tier line; exact for the generator's draws, including the floor at one unit.
    """
    params = _curve_params(truth)
    price = positive_prices(prices)
    day = parse_day(date, "date")
    multiplier = 1.0 if is_registered else params["guest_multiplier"]
    mean = multiplier * params["base"] * np.exp(-params["b"] * (price - params["ref_price"]))
    return _day_factor(truth, day) * clipped_lognormal_mean(mean, params["noise_sigma"], params["quantity_cap"])


def expected_lines_per_day(truth: Mapping[str, Any], prices: np.ndarray, *, is_registered: bool,
                           date: str) -> np.ndarray:
    """True expected number of one customer group's regular (non-tier) order lines per trading day at ``prices``
    (the group's own price: a guest price is compared with the guests' reference price)."""
    price = positive_prices(prices)
    day = parse_day(date, "date")
    elasticity = float(truth.get("order_rate_elasticity", 0.0))
    if is_registered:
        reference, share = float(truth["ref_price"]), (1 - GUEST_SHARE) * (1 - float(truth["tier_share"]))
    else:
        reference, share = float(truth["ref_price"]) * float(truth["guest_price_ratio"]), GUEST_SHARE
    season = float(lines_season(np.array([day.timetuple().tm_yday], dtype=float))[0])
    return float(truth["lines_per_day"]) * season * share * (price / reference) ** -elasticity


def regular_quantities(truth: Mapping[str, Any], prices: np.ndarray, is_registered: np.ndarray,
                       day_factor: np.ndarray | float, z: np.ndarray, u_kind: np.ndarray,
                       u_round: np.ndarray) -> np.ndarray:
    """Quantities of regular order lines at ``prices``, drawn from the product's curve (the module docstring's
    formula) with the given standard normals ``z`` and uniforms ``u_kind`` (pack or whole-number rounding) and
    ``u_round`` (the unbiased rounding). The generator's own draw; bench/price_response_bias.py draws with it."""
    sigma = truth["noise_sigma"]
    multiplier = np.where(is_registered, 1.0, truth["guest_multiplier"])
    mean = multiplier * truth["base"] * np.exp(-truth["b"] * (prices - truth["ref_price"]))
    draw = np.clip(mean * np.exp(sigma * z - sigma**2 / 2), 1.0, truth["quantity_cap"]) * day_factor
    packs = np.asarray(truth["pack_sizes"], dtype=float)
    integers = np.floor(draw) + (u_round < draw - np.floor(draw))
    return np.where(u_kind < truth["integer_rounding_share"], integers, random_round(draw, packs, u_round))


def expected_profit_per_day(truth: Mapping[str, Any], prices: np.ndarray, *, is_registered: bool, date: str,
                            unit_cost: float = 0.0) -> np.ndarray:
    """(price - unit_cost) * expected quantity per line * expected lines per day: one group's regular lines."""
    price = positive_prices(prices)
    return (price - unit_cost) * expected_quantity(truth, price, is_registered=is_registered, date=date) \
        * expected_lines_per_day(truth, price, is_registered=is_registered, date=date)


def optimal_price(truth: Mapping[str, Any], low: float, high: float, *, is_registered: bool, date: str,
                  unit_cost: float = 0.0, grid_size: int = 401) -> tuple[float, float]:
    """(price, expected profit per day) maximising :func:`expected_profit_per_day` over [low, high]."""
    check_range(low, high)
    if not math.isfinite(unit_cost) or unit_cost < 0:
        raise ValueError(f"unit_cost {unit_cost!r} is not accepted: use a finite number >= 0")
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 3:
        raise ValueError(f"grid_size {grid_size!r} is not accepted: use a whole number >= 3")

    def profit(p: np.ndarray) -> np.ndarray:
        return expected_profit_per_day(truth, p, is_registered=is_registered, date=date, unit_cost=unit_cost)

    grid = np.linspace(float(low), float(high), grid_size)
    values = profit(grid)
    best = int(np.argmax(values))
    # Refine inside the neighbouring grid cells so the answer does not depend on the grid spacing.
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, grid_size - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        left, right = b - ratio * (b - a), a + ratio * (b - a)
        if profit(np.array([left]))[0] >= profit(np.array([right]))[0]:
            b = right
        else:
            a = left
    refined = (a + b) / 2
    refined_value = float(profit(np.array([refined]))[0])
    if refined_value >= values[best]:
        return float(refined), refined_value
    return float(grid[best]), float(values[best])


def revenue_regret(truth: Mapping[str, Any], recommended_price: float, low: float, high: float, *,
                   is_registered: bool, date: str, unit_cost: float = 0.0) -> float:
    """(optimal profit - profit at recommended price) / optimal profit, per day, clipped to a fraction in [0, 1].

    The optimum is searched over [low, high]; a recommendation outside that range is scored all the same.
    """
    if not math.isfinite(recommended_price) or recommended_price <= 0:
        raise ValueError(f"recommended_price {recommended_price!r} is not accepted: use a positive finite number")
    _, best = optimal_price(truth, low, high, is_registered=is_registered, date=date, unit_cost=unit_cost)
    if best <= 0:
        raise ValueError(f"no price in [{low}, {high}] makes a profit at unit_cost {unit_cost!r}: "
                         "use a unit_cost below the range")
    value = expected_profit_per_day(truth, np.array([recommended_price]), is_registered=is_registered, date=date,
                                    unit_cost=unit_cost)[0]
    regret = (best - value) / best
    return float(min(1.0, max(0.0, regret)))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * (1.0 + np.asarray(erf(np.asarray(x, dtype=float) / math.sqrt(2)), dtype=float))


def clipped_lognormal_mean(mean: np.ndarray, sigma: float, cap: float) -> np.ndarray:
    """E[clip(mean * eps, 1, cap)] for eps lognormal with E[eps] = 1 and log-sd sigma."""
    mean = np.asarray(mean, dtype=float)
    mu = np.log(mean) - sigma**2 / 2
    below = _normal_cdf(-mu / sigma)
    inside = mean * (_normal_cdf((math.log(cap) - mu - sigma**2) / sigma) - _normal_cdf((-mu - sigma**2) / sigma))
    above = 1.0 - _normal_cdf((math.log(cap) - mu) / sigma)
    return below + inside + cap * above


def _clipped_lognormal_slope(mean: np.ndarray, sigma: float, cap: float) -> np.ndarray:
    """d/d(mean) of :func:`clipped_lognormal_mean`: E[eps; 1 <= mean * eps <= cap]."""
    mu = np.log(np.asarray(mean, dtype=float)) - sigma**2 / 2
    return _normal_cdf((math.log(cap) - mu - sigma**2) / sigma) - _normal_cdf((-mu - sigma**2) / sigma)


_CURVE_KEYS = ("base", "b", "ref_price", "guest_multiplier", "noise_sigma", "quantity_cap",
               "quantity_season_amplitude", "drift_quantity_factor")


def _curve_params(truth: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(truth, Mapping):
        raise ValueError(f"truth {type(truth).__name__} is not accepted: pass ground_truth['products'][code]")
    missing = [key for key in _CURVE_KEYS if key not in truth]
    if missing:
        raise ValueError(f"truth lacks {missing}: pass one product's entry, ground_truth['products'][code]")
    return {key: float(truth[key]) for key in _CURVE_KEYS}


def _day_factor(truth: Mapping[str, Any], day: date) -> float:
    """Quantity multiplier of a day: seasonality, times the drift factor inside the drift window."""
    factor = 1.0 + float(truth["quantity_season_amplitude"]) * float(season_bump(day.timetuple().tm_yday))
    drift_start = truth.get("drift_start")
    if drift_start is not None and day >= date.fromisoformat(drift_start):
        factor *= float(truth["drift_quantity_factor"])
    return factor


def fit_slope(target: float, base: float, ref_price: float, sigma: float, cap: float,
               order_rate_elasticity: float) -> float:
    """The b whose registered revenue per day p * E[q](p) * E[lines](p) is stationary at ``target``.

    A line's elasticity must then be ``order_rate_elasticity - 1``: without the floor and cap the answer is
    (1 - order_rate_elasticity) / target; with them, solve target * b * (the clipped mean's elasticity) = that.
    """
    line_elasticity = 1.0 - order_rate_elasticity

    def excess(b: float) -> float:
        mean = np.array([base * math.exp(-b * (target - ref_price))])
        elasticity = mean * _clipped_lognormal_slope(mean, sigma, cap) / clipped_lognormal_mean(mean, sigma, cap)
        return float(target * b * elasticity[0] - line_elasticity)

    candidates = np.geomspace(0.1 / target, 10.0 / target, 261)
    values = np.array([excess(b) for b in candidates])
    crossings = np.flatnonzero((values[:-1] < 0) & (values[1:] >= 0))
    if not len(crossings):
        raise RuntimeError(f"no demand slope puts the optimum at {target:.3f} (base {base:.2f}, cap {cap})")
    lo, hi = candidates[crossings[0]], candidates[crossings[0] + 1]
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
    return math.sqrt(lo * hi)


def random_round(values: np.ndarray, grid: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Round each value to a neighbouring grid point, up with probability (value - lower) / (upper - lower).

    Unbiased (E[result] = value), which keeps expected_quantity exact.
    """
    index = np.clip(np.searchsorted(grid, values, side="right") - 1, 0, len(grid) - 2)
    lower, upper = grid[index], grid[index + 1]
    return np.where(u < (values - lower) / (upper - lower), upper, lower)
