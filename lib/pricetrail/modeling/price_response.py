"""What a demand model says about the price, and how sure it is: curves, elasticity, the optimal-price band.

A :class:`pricetrail.modeling.network.PriceResponseNetwork` records its least-squares price weights and their sampling
covariance (``metadata["price_response"]``). Drawing plausible weights from that normal (seeded, so an answer is
reproducible) gives a family of demand curves. Each one pivots at the customer group's median price paid, where
the data pin demand down, and fans out away from it, as the data's uncertainty does. From the family:

- the **band**: the 5th to 95th percentile of the members' optimal prices (a 90% interval for the optimum);
- the **elasticity** at the median price paid, with its 90% interval.

The network's curves are per order line. When the checkpoint records the order-rate elasticity
(``metadata["order_rate"]``, :mod:`pricetrail.modeling.order_rate`), every member also draws one from its posterior and
multiplies its curve by the relative number of lines per day, ``(price / median) ** -a``: the optimum, the band
and the robust choice are then for revenue (or profit) per day.

Everything here works on model-input matrices, so the pipeline (``recommend``), the risk gate and the router's
fast grid encoder share it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pricetrail.modeling.metrics import expected_quantity
from pricetrail.modeling.order_rate import OrderRateFit, rate_factor

DRAWS = 200
DRAW_SEED = 20111209
RATE_DRAW_SEED = DRAW_SEED + 1
# Relative step of the central difference that measures an elasticity.
ELASTICITY_STEP = 1e-3
BAND_PERCENTILES = (5.0, 95.0)
# Defaults of the notes' thresholds (params.yaml assess_model_risk records the ones a served model uses).
MIN_DISTINCT_PRICES = 4
MAX_BAND_SHARE = 0.15
# The recommendation minimises this quantile of its regret over the plausible curves.
ROBUST_QUANTILE = 0.9


class PriceModel(Protocol):
    """What the curves need of a demand model: ``log1p(quantity)`` per row of a model-input matrix, and which
    columns its non-negative price weights read (empty for a model without a price term). The served
    :class:`pricetrail.modeling.exported.ServingModel` is one; so is :func:`pricetrail.modeling.export.export_network`
    of a torch network."""

    price_columns: tuple[int, ...]

    def predict_log(self, matrix: np.ndarray) -> np.ndarray: ...


class PriceResponseError(ValueError):
    """A model's recorded price response is missing or malformed."""


@dataclass(frozen=True)
class GroupPrices:
    """What the training rows of one customer group say about its prices (recorded in the checkpoint)."""

    median: float
    distinct: int
    low: float
    high: float

    def to_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "distinct": self.distinct, "low": self.low, "high": self.high}


def group_prices(prices: np.ndarray) -> GroupPrices:
    values = np.asarray(prices, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise PriceResponseError("group_prices needs at least one finite price > 0")
    return GroupPrices(median=float(np.median(values)), distinct=int(np.unique(np.round(values, 4)).size),
                       low=float(values.min()), high=float(values.max()))


def price_reference(metadata: Mapping[str, Any], customer: str) -> GroupPrices | None:
    """The group's recorded prices, or None for a checkpoint written before they were recorded."""
    entry = (metadata.get("price_reference") or {}).get(customer)
    if not entry:
        return None
    return GroupPrices(median=float(entry["median"]), distinct=int(entry["distinct"]), low=float(entry["low"]),
                       high=float(entry["high"]))


def pivot_prices(median: float) -> np.ndarray:
    """The median price and its two neighbours for the central difference."""
    return np.array([median * (1 - ELASTICITY_STEP), median, median * (1 + ELASTICITY_STEP)])


def elasticity(quantity_at_pivot: np.ndarray) -> np.ndarray:
    """d log q / d log p at the pivot from quantities at ``pivot_prices`` (last axis of length 3)."""
    q = np.asarray(quantity_at_pivot, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.log(q[..., 2]) - np.log(q[..., 0])) / (math.log1p(ELASTICITY_STEP) - math.log1p(-ELASTICITY_STEP))


def _beta_draws(fit: Mapping[str, Any], k: int, n_draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        beta = np.asarray(fit["beta"], dtype=np.float64)
        covariance = np.asarray(fit["covariance"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise PriceResponseError(f"the recorded price response {str(fit)[:120]!r} lacks beta/covariance") from error
    if beta.shape != (k,) or covariance.shape != (k, k):
        raise PriceResponseError(f"the recorded price response has beta {beta.shape} and covariance "
                                 f"{covariance.shape}; the network has {k} price columns")
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(covariance))):
        raise PriceResponseError("the recorded price response holds a non-finite beta or covariance entry; "
                                 "every entry must be a finite number")
    rng = np.random.default_rng(seed)
    # Symmetrise and floor the eigenvalues: a covariance from a near-singular solve can be a hair indefinite.
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    # Not clipped at 0 weight by weight: the price columns are strongly correlated (price, log price, ...), so the
    # data fix the sum of their effects far better than each weight, and a draw trades one weight against another.
    # Clipping each negative weight to 0 keeps the other's excess and steepens the family (its members leaned to
    # lower prices than the point model). What the structure guarantees, demand that does not rise with the
    # price, is kept by dropping the members whose curve rises (response_family).
    return beta, beta + rng.standard_normal((n_draws, k)) @ root.T


def check_recorded_response(price_columns: tuple[int, ...], metadata: Mapping[str, Any]) -> None:
    """Read every record an answer uses (smearing factor, group prices, price weights and their covariance, order
    rate), so a malformed checkpoint fails when it is loaded, not at its first request. Raises PriceResponseError
    or OrderRateError (both ValueError) naming the record."""
    smearing = metadata.get("smearing_factor", 1.0)
    if isinstance(smearing, bool) or not isinstance(smearing, (int, float)) or not (math.isfinite(smearing)
                                                                                   and smearing > 0):
        raise PriceResponseError(f"the recorded smearing_factor={smearing!r} is invalid; expected a finite number > 0")
    for customer in ("registered", "guest"):
        try:
            price_reference(metadata, customer)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise PriceResponseError(f"the recorded price_reference of {customer} customers is malformed: "
                                     f"{error!r}") from error
    order_rate(metadata)
    fit = metadata.get("price_response")
    if price_columns and fit:
        _beta_draws(fit, len(price_columns), 1, DRAW_SEED)


def order_rate(metadata: Mapping[str, Any]) -> OrderRateFit | None:
    """The checkpoint's order-rate fit, or None for a checkpoint written before it was recorded."""
    entry = metadata.get("order_rate")
    return None if not entry else OrderRateFit.from_dict(entry)


@dataclass(frozen=True)
class ResponseFamily:
    """Expected quantity per order line on the grid (``point``) and per plausible curve (``members``), and the
    same at the three pivot prices; with an order-rate fit, the lines per day relative to the median price of the
    point model (``rate_point``) and of each member (``rate_members``, the member's own draw of the elasticity)."""

    point: np.ndarray  # (grid,)
    members: np.ndarray | None  # (draws, grid); None when the model records no uncertainty
    pivot_point: np.ndarray  # (3,)
    pivot_members: np.ndarray | None  # (draws, 3)
    rate: OrderRateFit | None = None
    rate_point: np.ndarray | None = None  # (grid,)
    rate_members: np.ndarray | None = None  # (draws, grid)
    rate_draws: np.ndarray | None = None  # (draws,)

    def take(self, columns: slice | np.ndarray) -> ResponseFamily:
        """The family on a subset of its grid prices (the pivot and the order-rate draws stay)."""
        def cut(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[..., columns]

        return ResponseFamily(point=self.point[columns], members=cut(self.members), pivot_point=self.pivot_point,
                              pivot_members=self.pivot_members, rate=self.rate, rate_point=cut(self.rate_point),
                              rate_members=cut(self.rate_members), rate_draws=self.rate_draws)

    @property
    def daily_point(self) -> np.ndarray:
        """What the recommendation maximises (times the price margin): quantity per line times relative lines per
        day (per line alone without an order-rate fit)."""
        return self.point if self.rate_point is None else self.point * self.rate_point

    @property
    def daily_members(self) -> np.ndarray | None:
        if self.members is None and self.rate_members is None:
            return None
        members = self.point[None, :] if self.members is None else self.members
        return members if self.rate_members is None else members * self.rate_members


def response_family(network: PriceModel, metadata: Mapping[str, Any], grid_matrix: np.ndarray,
                    pivot_matrix: np.ndarray, *, prices: np.ndarray | None = None, median_price: float | None = None,
                    n_draws: int = DRAWS, seed: int = DRAW_SEED) -> ResponseFamily:
    """Expected quantities of the point model and of ``n_draws`` plausible price responses.

    ``grid_matrix`` and ``pivot_matrix`` are model inputs (rows = prices, same context on every row). A member
    replaces the price weights ``beta`` by a draw ``b``; its log prediction moves by ``-(z - z_pivot) . (b - beta)``,
    which leaves it unchanged at the median price (the pivot), where the data fix the level. Given the grid's
    ``prices`` and the group's ``median_price``, a recorded order-rate fit adds the lines-per-day factors.
    """
    smearing = float(metadata.get("smearing_factor", 1.0))
    grid_log = network.predict_log(grid_matrix)
    pivot_log = network.predict_log(pivot_matrix)
    point = expected_quantity(grid_log, smearing)
    pivot_point = expected_quantity(pivot_log, smearing)
    rate = order_rate(metadata)
    rate_fields: dict[str, Any] = {}
    if rate is not None and prices is not None and median_price is not None:
        # Seeded like the price weights: the same request always gets the same answer.
        draws = np.clip(np.random.default_rng(RATE_DRAW_SEED).normal(rate.elasticity, rate.sd, n_draws), 0.0, None)
        rate_fields = {"rate": rate, "rate_point": rate_factor(prices, median_price, max(rate.elasticity, 0.0)),
                       "rate_members": rate_factor(prices, median_price, draws), "rate_draws": draws}
    fit = metadata.get("price_response")
    if not network.price_columns or not fit:
        return ResponseFamily(point, None, pivot_point, None, **rate_fields)
    columns = list(network.price_columns)
    beta, draws = _beta_draws(fit, len(columns), n_draws, seed)
    z_grid = np.asarray(grid_matrix, dtype=np.float64)[:, columns]
    z_pivot = np.asarray(pivot_matrix, dtype=np.float64)[:, columns]
    centre = z_pivot[1]
    keep = _falling_members(draws, np.vstack([z_grid, z_pivot]))
    if not keep.any():  # every plausible curve rises somewhere: no family to draw a band from, the point stands
        return ResponseFamily(point, None, pivot_point, None, **rate_fields)
    delta = draws[keep] - beta  # (members, k)
    members = expected_quantity(grid_log[None, :] - delta @ (z_grid - centre).T, smearing)
    pivot_members = expected_quantity(pivot_log[None, :] - delta @ (z_pivot - centre).T, smearing)
    if "rate_members" in rate_fields:  # member k keeps its own order-rate draw (elasticity_summary pairs them)
        rate_fields["rate_members"] = rate_fields["rate_members"][keep]
        rate_fields["rate_draws"] = rate_fields["rate_draws"][keep]
    return ResponseFamily(point, members, pivot_point, pivot_members, **rate_fields)


def _falling_members(draws: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Which draws give a price term ``z . b`` that does not fall as the price rises over the rows of ``z`` (so
    demand does not rise). Every price column is non-decreasing in the price, so sorting the rows by all of
    them in turn orders them by price."""
    order = np.lexsort(z.T[::-1])
    term = z[order] @ draws.T  # (rows, draws)
    tolerance = 1e-9 * (1.0 + np.abs(term).max(axis=0))
    return np.all(np.diff(term, axis=0) >= -tolerance, axis=0)


def optimal_price_band(prices: np.ndarray, members: np.ndarray, unit_cost: float | None = None) -> tuple[float, float]:
    """The 5th-95th percentile of the members' optimal prices on the grid."""
    margin = prices - (0.0 if unit_cost is None else unit_cost)
    best = prices[np.argmax(members * margin[None, :], axis=1)]
    low, high = np.percentile(best, BAND_PERCENTILES)
    return float(low), float(high)


def robust_choice(prices: np.ndarray, members: np.ndarray, unit_cost: float | None = None,
                  quantile: float = ROBUST_QUANTILE) -> int:
    """Index of the grid price whose regret (the share of the best revenue or profit given up) is smallest in the
    ``quantile`` of plausible curves: the point optimum when the curves agree, a price that is good under all
    of them when they do not (a flat revenue curve read with a 15% slope error otherwise lands at a range end)."""
    margin = prices - (0.0 if unit_cost is None else unit_cost)
    value = members * margin[None, :]
    best = value.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        regret = np.where(best > 0, (best - value) / best, 0.0)
    return int(np.argmin(np.quantile(regret, quantile, axis=0)))


def choose_price(prices: np.ndarray, family: ResponseFamily,
                 unit_cost: float | None = None) -> tuple[int, int, tuple[float, float] | None]:
    """(point optimum's index, recommended index, band) of revenue or profit per day (per line without an
    order-rate fit): the robust choice and the 90% band when the model records its uncertainty, else the point
    optimum and no band."""
    margin = prices - (0.0 if unit_cost is None else unit_cost)
    point_best = int(np.argmax(family.daily_point * margin))
    members = family.daily_members
    if members is None:
        return point_best, point_best, None
    return point_best, robust_choice(prices, members, unit_cost), optimal_price_band(prices, members, unit_cost)


def elasticity_summary(family: ResponseFamily) -> dict[str, Any]:
    """The point elasticity of quantity per line at the median price paid and its 90% interval (None without
    members); with an order-rate fit also that of the lines per day (``order_rate``) and of their product
    (``per_day``: the one revenue per day answers to)."""
    value: float | None = float(elasticity(family.pivot_point))
    if not math.isfinite(value):  # no demand at the median price: the elasticity is undefined
        value = None
    interval = None
    line_draws = None
    if family.pivot_members is not None:
        line_draws = elasticity(family.pivot_members)
        spread = line_draws[np.isfinite(line_draws)]
        if spread.size:
            interval = [float(v) for v in np.percentile(spread, BAND_PERCENTILES)]
    summary: dict[str, Any] = {"value": value, "interval_90": interval}
    if family.rate is None or family.rate_draws is None:
        return summary
    rate_value = -max(family.rate.elasticity, 0.0)
    rate_draws = -family.rate_draws
    summary["order_rate"] = {"value": rate_value,
                             "interval_90": [float(v) for v in np.percentile(rate_draws, BAND_PERCENTILES)]}
    per_day: dict[str, Any] = {"value": None, "interval_90": None}
    if value is not None:
        # Paired: member k's line elasticity with member k's order-rate draw.
        total = (value if line_draws is None else line_draws) + rate_draws
        finite = total[np.isfinite(total)]
        per_day = {"value": value + rate_value,
                   "interval_90": [float(v) for v in np.percentile(finite, BAND_PERCENTILES)] if finite.size else None}
    summary["per_day"] = per_day
    return summary


def daily_lines(family: ResponseFamily, customer: str) -> np.ndarray | None:
    """Expected lines per day of the customer group at each grid price (its training days' mean lines, moved by the
    point order-rate factor), or None without an order-rate fit."""
    if family.rate is None or family.rate_point is None or customer not in family.rate.lines_per_day:
        return None
    return family.rate.lines_per_day[customer] * family.rate_point


def uncertainty_notes(reference: GroupPrices, band: tuple[float, float] | None, price: float, has_members: bool,
                      customer: str, *, min_distinct_prices: int = MIN_DISTINCT_PRICES,
                      max_band_share: float = MAX_BAND_SHARE, rate: OrderRateFit | None = None) -> list[str]:
    """The notes a recommendation carries about how far its price response can be trusted."""
    notes = []
    if reference.distinct < min_distinct_prices:
        notes.append(f"the training history holds {reference.distinct} distinct price(s) for {customer} customers, "
                     f"fewer than {min_distinct_prices}: the price response is hardly identified, so the "
                     "recommendation rests on the model's structure more than on the data")
    if not has_members:
        notes.append("this model records no price-response uncertainty (trained before it was recorded): no band")
    elif band is not None and price > 0 and (band[1] - band[0]) / price > max_band_share:
        notes.append(f"the optimal price is uncertain: its 90% band {band[0]:.4g}-{band[1]:.4g} spans "
                     f"{(band[1] - band[0]) / price:.0%} of the price (more than {max_band_share:.0%})")
    if rate is None:
        notes.append("expected quantity and revenue are per order line: this model records no response of the "
                     "number of orders to the price (trained before it was), so the recommendation leaves it out")
    elif rate.prior_dominates:
        seen = "no estimate of its own" if rate.data_sd is None else \
            f"its own estimate {rate.data_elasticity:.2f} +- {rate.data_sd:.2f}"
        notes.append(f"how the number of orders answers the price (elasticity -{max(rate.elasticity, 0.0):.2f} +- "
                     f"{rate.sd:.2f}) comes mostly from the prior (tune_primary_model.order_rate_prior: "
                     f"{rate.prior.mean:g} +- {rate.prior.sd:g}): {rate.days} days of history give {seen}")
    return notes
