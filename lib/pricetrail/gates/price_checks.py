"""Whether a model answers the price sensibly: predicted demand never rises with the price on a group's grid,
and the elasticity at the group's median price lies within plausible bounds. A model that fits quantities well
but reads the price response wrong would otherwise recommend prices with full confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pricetrail.gates.checks import Check, group_scope
from pricetrail.gates.predictions import real_number


@dataclass(frozen=True)
class PriceCurve:
    """A model's expected demand over one customer group's price grid, and its elasticity at the median price."""

    prices: np.ndarray
    quantity: np.ndarray
    elasticity: float | None
    median_price: float


def demand_rises(quantity: np.ndarray, tolerance: float = 1e-9) -> float:
    """The largest relative rise of demand from one grid price to the next higher one (0 when it never rises)."""
    q = np.asarray(quantity, dtype=np.float64)
    if q.size < 2:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        # From no demand to some counts as a 100% rise (a finite value: checks refuse infinities).
        rise = np.where(q[:-1] > 0, (q[1:] - q[:-1]) / q[:-1], np.where(q[1:] > 0, 1.0, 0.0))
    worst = float(np.max(rise))
    return worst if worst > tolerance else 0.0


def price_response_checks(curves: dict[str, PriceCurve], *, min_elasticity: float,
                          max_elasticity: float) -> list[Check]:
    """``price_response_monotone`` over every group's grid, and ``price_elasticity_<group>`` per group."""
    low = real_number("min_elasticity", min_elasticity)
    high = real_number("max_elasticity", max_elasticity)
    if not low < high:
        raise ValueError(f"min_elasticity={low:g} must be below max_elasticity={high:g}")
    if not curves:
        return [Check("price_response_monotone", False, None, 0.0, "value <= threshold",
                      "no customer group has a price grid: the price response cannot be checked")]
    rises = {group: demand_rises(curve.quantity) for group, curve in curves.items()}
    worst_group = max(rises, key=lambda group: rises[group])
    worst = rises[worst_group]
    detail = "; ".join(f"{group}: {len(c.prices)} prices {c.prices[0]:.4g}-{c.prices[-1]:.4g}, largest rise "
                       f"{rises[group]:.3g}" for group, c in curves.items())
    checks = [Check("price_response_monotone", worst <= 0.0, worst, 0.0, "value <= threshold",
                    ("predicted demand never rises with the price; " if worst <= 0 else
                     f"predicted demand rises with the price for {worst_group} customers; ") + detail)]
    for group, curve in curves.items():
        name = f"price_elasticity_{group}"
        rule = f"{low:g} <= value <= {high:g}"
        if curve.elasticity is None:
            checks.append(Check(name, False, None, high, rule,
                                f"the elasticity at {curve.median_price:.4g} cannot be computed (no demand there)",
                                scope=group_scope(group)))
            continue
        value = curve.elasticity
        passed = low <= value <= high
        threshold = low if value < low else high
        checks.append(Check(name, passed, value, threshold, rule,
                            f"elasticity {value:.3g} at the median {group} price {curve.median_price:.4g} "
                            + ("is within" if passed else "is outside") + f" [{low:g}, {high:g}]",
                            scope=group_scope(group)))
    return checks
