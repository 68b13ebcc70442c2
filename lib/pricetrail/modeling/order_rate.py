"""How the price moves the number of order lines a product gets per day, beside what it does to each line.

The demand network models the quantity of one order line. A price also changes how many lines come in; revenue
per day is ``price * E[quantity per line](price) * E[lines per day](price)``. This module estimates the second
factor's elasticity ``a`` in ``E[lines per day] proportional to (price / median price) ** -a`` from the training
lines:

- one row per day with lines: the number of lines and the day's price index (the median over its lines of the
  line's price over its customer group's median price, so guests' dearer prices compare like with like);
- a zero-truncated Poisson regression of the count on a smooth of time (a natural cubic spline: season and trend,
  too smooth to follow a 1-3 week markdown), the day of the week and ``-log(price index)``. Truncated because a
  day without lines leaves no row: the product's own lines cannot say that the shop was open.

One product's year rarely identifies ``a``: a markdown of 20% for two weeks moves a Poisson count of ~7 a day
too little for its slope to be read (the standard error is several times the value). So the
data estimate is combined with a prior (``tune_primary_model.order_rate_prior``: the retailer's belief, e.g.
from earlier price tests) as two normal measurements; the posterior is what the recommendation uses, its
spread widens the price band, and a recommendation says when the prior dominates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("invoice_date", "unit_price", "is_registered")
# Fewer days with lines than this: no data estimate, the prior alone.
MIN_DAYS = 30
# About one interior spline knot per this many days: smooth enough to leave a 1-3 week markdown to the price term.
DAYS_PER_KNOT = 60
MAX_NEWTON_STEPS = 100


class OrderRateError(ValueError):
    """The lines or the prior cannot give an order-rate estimate."""


@dataclass(frozen=True)
class OrderRatePrior:
    mean: float
    sd: float

    @classmethod
    def from_params(cls, settings: Mapping[str, Any] | None) -> OrderRatePrior:
        """``{"mean": 0.2, "sd": 0.1}``: the elasticity of the number of lines, as a positive number."""
        if not isinstance(settings, Mapping) or set(settings) != {"mean", "sd"}:
            raise OrderRateError(f"order_rate_prior {settings!r} is not accepted: use {{mean: <a >= 0>, "
                                 "sd: <a > 0>}, e.g. {mean: 0.2, sd: 0.1}")
        mean, sd = settings["mean"], settings["sd"]
        for name, value in (("mean", mean), ("sd", sd)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise OrderRateError(f"order_rate_prior.{name}={value!r} is not accepted: use a finite number")
        if mean < 0 or sd <= 0:
            raise OrderRateError(f"order_rate_prior mean={mean!r}, sd={sd!r} is not accepted: the mean must be >= 0 "
                                 "(a price rise cannot bring more orders) and the sd > 0")
        return cls(float(mean), float(sd))


@dataclass(frozen=True)
class OrderRateFit:
    elasticity: float  # posterior mean of a (lines per day proportional to price ** -a)
    sd: float  # posterior standard deviation
    data_elasticity: float | None  # the lines' own estimate (None: too few days, or not estimable)
    data_sd: float | None
    prior: OrderRatePrior
    days: int  # days with lines
    lines_per_day: dict[str, float]  # per customer group, over the days with lines

    @property
    def prior_dominates(self) -> bool:
        """True when the prior tells more than the data (the data's sd is larger than the prior's)."""
        return self.data_sd is None or self.data_sd > self.prior.sd

    def to_dict(self) -> dict[str, Any]:
        return {"elasticity": self.elasticity, "sd": self.sd, "data_elasticity": self.data_elasticity,
                "data_sd": self.data_sd, "prior_mean": self.prior.mean, "prior_sd": self.prior.sd,
                "days": self.days, "lines_per_day": dict(self.lines_per_day)}

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> OrderRateFit:
        try:
            fit = cls(elasticity=float(entry["elasticity"]), sd=float(entry["sd"]),
                      data_elasticity=None if entry["data_elasticity"] is None else float(entry["data_elasticity"]),
                      data_sd=None if entry["data_sd"] is None else float(entry["data_sd"]),
                      prior=OrderRatePrior(float(entry["prior_mean"]), float(entry["prior_sd"])),
                      days=int(entry["days"]),
                      lines_per_day={str(k): float(v) for k, v in dict(entry["lines_per_day"]).items()})
        except (KeyError, TypeError, ValueError) as error:
            raise OrderRateError(f"the recorded order rate {str(entry)[:160]!r} is malformed: {error}") from error
        # float() reads "nan" and "inf": a rate the draws would turn into NaN revenue on every grid price.
        if not (math.isfinite(fit.elasticity) and math.isfinite(fit.sd) and fit.sd >= 0):
            raise OrderRateError(f"the recorded order rate has elasticity={fit.elasticity!r}, sd={fit.sd!r}; "
                                 "both must be finite and the sd >= 0")
        return fit


def daily_lines(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per day with lines: ``day``, ``lines`` and ``price_index`` (see the module docstring), plus the lines of
    each customer group (``registered``, ``guest``)."""
    missing = [column for column in REQUIRED_COLUMNS if column not in lines.columns]
    if missing:
        raise OrderRateError(f"the lines lack column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
    if lines.empty:
        raise OrderRateError("no lines to estimate the order rate from")
    price = lines["unit_price"].to_numpy(dtype=float)
    if not np.all(np.isfinite(price)) or np.any(price <= 0):
        raise OrderRateError("the lines' unit_price must be finite and > 0")
    registered = lines["is_registered"].astype(bool).to_numpy()
    index = np.empty(len(price))
    for group in (True, False):
        mask = registered == group
        if mask.any():
            index[mask] = price[mask] / np.median(price[mask])
    frame = pd.DataFrame({"day": pd.to_datetime(lines["invoice_date"]).dt.normalize().to_numpy(),
                          "price_index": index, "registered": registered})
    daily = frame.groupby("day", sort=True).agg(lines=("price_index", "size"), price_index=("price_index", "median"),
                                               registered=("registered", "sum"))
    daily["guest"] = daily["lines"] - daily["registered"]
    return daily.reset_index()


def fit_order_rate(lines: pd.DataFrame, prior: OrderRatePrior) -> OrderRateFit:
    """The order-rate elasticity from ``lines`` (training rows: ``invoice_date``, ``unit_price``, ``is_registered``),
    combined with ``prior``."""
    daily = daily_lines(lines)
    days = len(daily)
    lines_per_day = {name: float(daily[name].sum() / days) for name in ("registered", "guest")
                     if daily[name].sum() > 0}
    estimate: tuple[float, float] | None = None
    log_index = np.log(daily["price_index"].to_numpy(dtype=float))
    if days >= MIN_DAYS and np.ptp(log_index) > 0:
        estimate = _truncated_poisson_slope(daily["lines"].to_numpy(dtype=float), log_index,
                                            _controls(daily["day"]))
    if estimate is None:
        return OrderRateFit(prior.mean, prior.sd, None, None, prior, days, lines_per_day)
    data_mean, data_sd = estimate
    precision = 1 / data_sd**2 + 1 / prior.sd**2
    mean = (data_mean / data_sd**2 + prior.mean / prior.sd**2) / precision
    return OrderRateFit(float(mean), float(math.sqrt(1 / precision)), float(data_mean), float(data_sd), prior, days,
                        lines_per_day)


def rate_factor(prices: np.ndarray, median: float, elasticity: np.ndarray | float) -> np.ndarray:
    """Expected lines per day relative to the median price: ``(price / median) ** -a``; ``elasticity`` a scalar
    (shape of ``prices``) or a 1-d array of draws (shape (draws, prices))."""
    ratio = np.asarray(prices, dtype=np.float64) / float(median)
    a = np.asarray(elasticity, dtype=np.float64)
    if a.ndim == 0:
        return ratio ** -float(a)
    return ratio[None, :] ** -a[:, None]


def _controls(days: pd.Series) -> np.ndarray:
    """Time spline and day-of-week dummies for the days with lines."""
    day = pd.to_datetime(days)
    elapsed = (day - day.min()).dt.days.to_numpy(dtype=float)
    span = max(elapsed.max(), 1.0)
    t = elapsed / span
    n_knots = int(min(6, max(3, round(span / DAYS_PER_KNOT) + 2)))
    knots = np.quantile(t, np.linspace(0.05, 0.95, n_knots))
    columns = [t, *_natural_spline_columns(t, np.unique(knots))]
    weekday = day.dt.dayofweek.to_numpy()
    present = np.unique(weekday)
    columns += [(weekday == value).astype(float) for value in present[1:]]
    return np.column_stack(columns)


def _natural_spline_columns(t: np.ndarray, knots: np.ndarray) -> list[np.ndarray]:
    """The non-linear columns of a natural cubic spline basis (linear beyond the outer knots)."""
    if len(knots) < 3:
        return []
    last, penultimate = knots[-1], knots[-2]

    def d(knot: float) -> np.ndarray:
        return (np.clip(t - knot, 0, None) ** 3 - np.clip(t - last, 0, None) ** 3) / (last - knot)

    return [d(knot) - d(penultimate) for knot in knots[:-2]]


def _truncated_poisson_slope(counts: np.ndarray, log_index: np.ndarray,
                             controls: np.ndarray) -> tuple[float, float] | None:
    """(a, its standard error) of a zero-truncated Poisson model with log mean ``c + controls . g - a * log_index``
    (damped Newton on the log-likelihood); None when the design is singular or Newton does not converge."""
    spread = controls.std(axis=0)
    kept = spread > 0
    scaled = (controls[:, kept] - controls[:, kept].mean(axis=0)) / spread[kept]
    design = np.column_stack([np.ones(len(counts)), scaled, -log_index])
    # A whisker of ridge keeps the spline and weekday terms solvable; it is far below their information.
    ridge = np.full(design.shape[1], 1e-6)
    ridge[0] = 0.0

    def log_likelihood(theta: np.ndarray) -> float:
        eta = np.clip(design @ theta, -30, 30)
        rate = np.exp(eta)
        # log P(n | n >= 1) = n * eta - log(exp(rate) - 1), without the constant log n!
        return float(np.sum(counts * eta - rate - np.log(-np.expm1(-rate))) - 0.5 * np.sum(ridge * theta**2))

    theta = np.zeros(design.shape[1])
    theta[0] = math.log(max(counts.mean() - 1, 0.5))
    current = log_likelihood(theta)
    hessian = np.eye(design.shape[1])
    for _ in range(MAX_NEWTON_STEPS):
        rate = np.exp(np.clip(design @ theta, -30, 30))
        seen = -np.expm1(-rate)  # P(count >= 1)
        mean = rate / seen
        variance = np.clip(mean * (1 - rate * np.exp(-rate) / seen), 1e-12, None)
        gradient = design.T @ (counts - mean) - ridge * theta
        hessian = (design * variance[:, None]).T @ design + np.diag(ridge)
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return None
        scale = 1.0
        while scale > 1e-6:
            candidate = theta + scale * step
            value = log_likelihood(candidate)
            if value >= current - 1e-12:
                break
            scale /= 2
        else:
            return None
        theta, improvement, current = candidate, value - current, value
        if np.max(np.abs(scale * step)) < 1e-8 or improvement < 1e-10:
            break
    else:
        return None
    try:
        covariance = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return None
    sd = float(math.sqrt(covariance[-1, -1])) if covariance[-1, -1] > 0 else math.inf
    if not (math.isfinite(theta[-1]) and math.isfinite(sd)):
        return None
    return float(theta[-1]), sd
