"""The price decision: change today's price only when the plausible demand curves agree it gains; else keep it,
and say which price test would tell.

A retailer's alternative to any recommendation is to keep the price it charges (the **status quo**). So the
decision is anchored there, as safe policy improvement is (Laroche et al. 2019, SPIBB; Cho, Kallus et al. 2024,
CSPI-MT): over the family of plausible curves (:mod:`pricetrail.modeling.price_response`), each grid price's change of
revenue (or profit) per day against the status quo is a distribution; the candidate is the price whose
``delta``-quantile of that change is highest (the best gain that holds in ``1 - delta`` of the curves), and the
price changes only when the change gains with probability at least ``1 - delta`` and by at least ``min_gain`` in
expectation. Otherwise the answer is ``keep``, with the reason and, when the data cannot tell, a **test plan**:
two or three prices for some days each, chosen so that the curves' own uncertainty (the price weights'
covariance and the order rate's spread, shrunk by the information the test adds) would settle the question.

A decision has a memory of one step: a change the previously served model decided (its registry record carries
it, :class:`Earlier`) stays the answer while the new curves find it gains in at least ``hold_probability`` of
them, unless a price that beats it in ``1 - delta`` of them replaces it. Without it, a refit that is merely less
sure (a test's lines, a new period) would take back a change it cannot show loses, and the answer would flip
between change and keep from one week to the next.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from pricetrail.modeling.price_response import ResponseFamily, optimal_price_band

CUSTOMERS = ("registered", "guest")
TEST_DAYS = (7, 14, 21, 28, 42, 56)  # per test price; a plan longer than 8 weeks a price is not a plan
# The test prices rotate week by week (a switchback): run one after the other, each would see another part of the
# season, and the season's change of demand would pass for the price's.
BLOCK_DAYS = 7
MAX_TEST_STEP = 0.25  # test prices at most this far from the status quo


class DecisionError(ValueError):
    """The decision settings or inputs are not acceptable."""


@dataclass(frozen=True)
class DecisionSettings:
    """``params.yaml: decision``."""

    delta: float = 0.1  # a change may lose in at most this share of the plausible curves
    min_gain: float = 0.005  # and must gain at least this share of revenue (or profit) per day in expectation
    status_quo_days: int = 28  # the status quo is the group's typical price over this many days before the date
    max_band_share: float = 0.15  # a band wider than this share of the price asks for a test too
    max_step: float = 0.4  # a change moves the price at most this share from the status quo
    # A change the previously served model decided stays while the new curves find it gains in this share of them.
    hold_probability: float = 0.5

    def __post_init__(self) -> None:
        for name, low, high in (("delta", 0.0, 0.5), ("min_gain", 0.0, 1.0), ("max_band_share", 0.0, 10.0),
                                ("max_step", 0.0, 1.0), ("hold_probability", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and low < value <= high if name != "min_gain" else
                    math.isfinite(value) and low <= value <= high):
                raise DecisionError(f"decision.{name}={value!r} is not accepted: a number in "
                                    f"{'[' if name == 'min_gain' else '('}{low:g}, {high:g}]")
        days = self.status_quo_days
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
            raise DecisionError(f"decision.status_quo_days={days!r} is not accepted: a whole number from 1 to 365")

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> DecisionSettings:
        from pricetrail.project.config import settings_from_params

        return settings_from_params(cls, "decision", values, error=DecisionError)


# --------------------------------------------------------------------------------------------- the status quo


@dataclass(frozen=True)
class StatusQuo:
    """The price a customer group pays today: the lines-weighted median of its daily median prices over the
    ``days`` before the date (the most recent such window with lines, if none in the last ``days``)."""

    price: float
    customer: str
    first_day: str
    last_day: str
    lines: int
    days: int
    given: bool = False  # the caller's own current price, not the history's

    def to_dict(self) -> dict[str, Any]:
        definition = ("the current price, as given with the request" if self.given else
                      f"the median price {self.customer} customers paid per order line over the {self.days} days to "
                      f"{self.last_day} ({self.lines} lines)")
        return {"price": round(self.price, 6), "customer": self.customer, "first_day": self.first_day,
                "last_day": self.last_day, "lines": self.lines, "definition": definition}


def status_quo(daily: pd.DataFrame, customer: str, before: pd.Timestamp, days: int) -> StatusQuo | None:
    """The group's status quo price from a daily history (``<group>_lines``, ``<group>_price`` per day), as of the
    start of ``before``; None when the group never bought or the history has no per-group prices."""
    lines_column, price_column = f"{customer}_lines", f"{customer}_price"
    if customer not in CUSTOMERS:
        raise DecisionError(f"customer {customer!r} is not accepted; use one of {CUSTOMERS}")
    if lines_column not in daily.columns or price_column not in daily.columns:
        return None
    day = pd.to_datetime(daily["day"]).dt.normalize()
    bought = daily[(day < before.normalize()) & (daily[lines_column] > 0) & daily[price_column].notna()]
    if bought.empty:
        return None
    bought_days = pd.to_datetime(bought["day"]).dt.normalize()
    last = bought_days.max()
    # The window ends on the group's last day with lines before the date: a quiet month keeps the last price.
    window = bought[bought_days > last - pd.Timedelta(days=days)]
    prices = window[price_column].to_numpy(dtype=float)
    weights = window[lines_column].to_numpy(dtype=float)
    order = np.argsort(prices, kind="stable")
    cumulative = np.cumsum(weights[order])
    median = float(prices[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
    return StatusQuo(price=median, customer=customer,
                     first_day=str(pd.to_datetime(window["day"]).min().date()), last_day=str(last.date()),
                     lines=int(weights.sum()), days=days)


# --------------------------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Change:
    """What moving from the status quo to ``price`` does to revenue (or profit) per day, over the plausible curves."""

    price: float
    expected: float  # mean relative change
    interval_90: tuple[float, float]
    probability_of_gain: float

    def to_dict(self) -> dict[str, Any]:
        return {"price": round(self.price, 6), "expected_change": round(self.expected, 6),
                "interval_90": [round(v, 6) for v in self.interval_90],
                "probability_of_gain": round(self.probability_of_gain, 4)}


@dataclass(frozen=True)
class PriceTest:
    """Prices to charge in turn, and what the curves' uncertainty is expected to be after."""

    prices: tuple[float, ...]
    days_each: int
    lines_per_day: tuple[float, ...]  # expected at each test price
    band_before: tuple[float, float] | None
    band_after: tuple[float, float] | None
    band_share_before: float | None
    band_share_after: float | None
    probability_of_gain_after: float | None
    cost_share: float  # revenue (or profit) given up during the test, as a share of the status quo's
    settles: bool  # whether the largest plan reaches the targets
    why: str

    def to_dict(self) -> dict[str, Any]:
        def rounded(values: Sequence[float] | None) -> list[float] | None:
            return None if values is None else [round(v, 6) for v in values]

        return {"prices": rounded(self.prices), "days_each": self.days_each, "block_days": BLOCK_DAYS,
                "total_days": self.days_each * len(self.prices),
                "schedule": f"rotate among the prices every {BLOCK_DAYS} days until each has had {self.days_each} days",
                "expected_lines_per_day": rounded(self.lines_per_day),
                "band_before": rounded(self.band_before), "band_after": rounded(self.band_after),
                "band_share_before": None if self.band_share_before is None else round(self.band_share_before, 4),
                "band_share_after": None if self.band_share_after is None else round(self.band_share_after, 4),
                "probability_of_gain_after": None if self.probability_of_gain_after is None else round(
                    self.probability_of_gain_after, 4),
                "expected_cost_share": round(self.cost_share, 6), "settles": self.settles, "why": self.why}


@dataclass(frozen=True)
class Earlier:
    """A change the previously served model decided for a customer group (at its assessment, the day after its
    history), as the registry record of the model that replaced it carries it."""

    version: str
    day: str
    price: float
    status_quo: float  # the price it was decided against
    probability_of_gain: float  # as that model's curves saw it

    def applies_to(self, quo: StatusQuo) -> bool:
        """Only while the group still pays the price the change was decided against: once the change is made (or
        the price moved elsewhere), the status quo itself carries what the retailer did."""
        return abs(self.status_quo / quo.price - 1) <= 0.005 and abs(self.price / quo.price - 1) > 0.005


@dataclass(frozen=True)
class Decision:
    action: str  # "change" or "keep"
    price: float | None  # what to charge: the candidate on change, the status quo on keep (None: unknown)
    reason: str
    status_quo: StatusQuo | None
    candidate: Change | None  # the best alternative to the status quo the curves agree on most
    delta: float
    min_gain: float
    test_plan: PriceTest | None = None
    notes: list[str] = field(default_factory=list)
    earlier: dict[str, Any] | None = None  # the previously served model's change and what became of it

    def to_dict(self) -> dict[str, Any]:
        changed = self.action == "change" and self.candidate is not None
        return {"action": self.action, "price": None if self.price is None else round(self.price, 6),
                "reason": self.reason,
                "status_quo": None if self.status_quo is None else self.status_quo.to_dict(),
                "expected_change": round(self.candidate.expected, 6) if changed else 0.0,
                "interval_90": [round(v, 6) for v in self.candidate.interval_90] if changed else [0.0, 0.0],
                "probability_of_gain": round(self.candidate.probability_of_gain, 4) if changed else None,
                "candidate": None if self.candidate is None else self.candidate.to_dict(),
                "delta": self.delta, "min_gain": self.min_gain,
                "test_plan": None if self.test_plan is None else self.test_plan.to_dict(),
                "earlier_change": self.earlier}


def relative_changes(values: np.ndarray, at_status_quo: np.ndarray) -> np.ndarray:
    """(members, grid) relative change of each member's value against its own value at the status quo."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(at_status_quo[:, None] > 0, values / at_status_quo[:, None] - 1.0, 0.0)


def _change(prices: np.ndarray, changes: np.ndarray, index: int) -> Change:
    column = changes[:, index]
    return Change(price=float(prices[index]), expected=float(column.mean()),
                  interval_90=(float(np.quantile(column, 0.05)), float(np.quantile(column, 0.95))),
                  probability_of_gain=float(np.mean(column > 0)))


def best_change(prices: np.ndarray, values: np.ndarray, at_status_quo: np.ndarray, delta: float,
                status_quo: float | None = None, max_step: float | None = None) -> tuple[Change, bool]:
    """The best alternative to the status quo, and whether it gains in at least ``1 - delta`` of the curves.

    Among the grid prices that gain in at least ``1 - delta`` of the plausible curves (safe ones), the one with the
    highest expected change; when no price is safe, the one with the highest expected change all the same (the
    status quo's own price left out): what the data would have to confirm. With ``max_step``, only prices within
    that share of the status quo are candidates (a trust region: the curves are least trustworthy far from what
    the customers pay today, and the next weeks' sales at the new price inform the next step).
    """
    changes = relative_changes(values, at_status_quo)
    allowed = np.ones(len(prices), dtype=bool)
    if status_quo is not None and max_step is not None:
        allowed = np.abs(prices / status_quo - 1) <= max_step + 1e-12
        if not allowed.any():  # the grid misses the window: its nearest price stands in
            allowed[int(np.argmin(np.abs(prices - status_quo)))] = True
    expected = changes.mean(axis=0)
    safe = allowed & (np.mean(changes > 0, axis=0) >= 1 - delta)
    if safe.any():
        return _change(prices, changes, int(np.argmax(np.where(safe, expected, -np.inf)))), True
    candidates = allowed
    if status_quo is not None:
        others = allowed & ~np.isclose(prices, status_quo, rtol=1e-9, atol=1e-12)
        candidates = others if others.any() else allowed
    return _change(prices, changes, int(np.argmax(np.where(candidates, expected, -np.inf)))), False


def _pct(value: float) -> str:
    return f"{value:+.1%}"


def decide(prices: np.ndarray, values: np.ndarray | None, at_status_quo: np.ndarray | None,
           quo: StatusQuo | None, settings: DecisionSettings, *, objective: str = "revenue",
           earlier: Earlier | None = None, at_earlier: np.ndarray | None = None) -> Decision:
    """Change or keep (see the module doc). ``values``: (members, grid) revenue or profit per day of each plausible
    curve on ``prices``; ``at_status_quo``: (members,) the same at the status quo price; ``earlier``: the previously
    served model's change for this group, with ``at_earlier`` (members,) the curves' values at its price."""
    fresh = _decide_afresh(prices, values, at_status_quo, quo, settings, objective)
    if earlier is None or at_earlier is None or values is None or at_status_quo is None or quo is None or (
            not earlier.applies_to(quo)):
        return fresh
    return _with_memory(fresh, prices, values, at_status_quo, earlier, at_earlier, settings, objective)


def _with_memory(fresh: Decision, prices: np.ndarray, values: np.ndarray, at_status_quo: np.ndarray,
                 earlier: Earlier, at_earlier: np.ndarray, settings: DecisionSettings, objective: str) -> Decision:
    """Keep the earlier change unless the new curves doubt it (gains in fewer than ``hold_probability`` of them) or a
    fresh change beats it in ``1 - delta`` of them by ``min_gain``: the safe-improvement rule, with the earlier
    change as the policy to improve on."""
    quo = fresh.status_quo
    assert quo is not None
    held = _change(np.array([earlier.price]), relative_changes(at_earlier[:, None], at_status_quo), 0)
    record = {"version": earlier.version, "day": earlier.day, "price": round(earlier.price, 6),
              "probability_of_gain_then": round(earlier.probability_of_gain, 4),
              "probability_of_gain_now": round(held.probability_of_gain, 4)}
    then = (f"the change from {quo.price:g} to {earlier.price:g} that the previously served model "
            f"({earlier.version}) decided on {earlier.day} (it gained in {earlier.probability_of_gain:.0%} of that "
            "model's curves)")
    if held.probability_of_gain < settings.hold_probability or held.expected <= 0:
        return replace(fresh, earlier={**record, "outcome": "dropped"},
                       notes=[*fresh.notes, f"{then} is dropped: this model finds it gains in only "
                                            f"{held.probability_of_gain:.0%} of its curves"])
    why = "not sure enough to make the change afresh, but no sign that it loses"
    if fresh.action == "change" and fresh.candidate is not None:
        if np.isclose(fresh.candidate.price, earlier.price, rtol=1e-9, atol=1e-12):
            return replace(fresh, earlier={**record, "outcome": "confirmed"})
        index = int(np.argmin(np.abs(prices - fresh.candidate.price)))
        against = relative_changes(values[:, [index]], at_earlier)[:, 0]
        beats = f"{fresh.candidate.price:g} beats it in {np.mean(against > 0):.0%} of this model's curves"
        if np.mean(against > 0) >= 1 - settings.delta and against.mean() >= settings.min_gain:
            return replace(fresh, earlier={**record, "outcome": "replaced"},
                           notes=[*fresh.notes, f"{then} is replaced: {beats}"])
        why = f"{beats} ({_pct(float(against.mean()))} expected), not surely enough to move again"
    spread = f"90%: {_pct(held.interval_90[0])} to {_pct(held.interval_90[1])}"
    return Decision("change", earlier.price, f"{then} stands: this model finds it gains {_pct(held.expected)} of "
                    f"{objective} per day ({spread}) in {held.probability_of_gain:.0%} of its curves; {why}",
                    status_quo=quo, candidate=held,
                    delta=fresh.delta, min_gain=fresh.min_gain, notes=list(fresh.notes),
                    earlier={**record, "outcome": "kept"})


def _decide_afresh(prices: np.ndarray, values: np.ndarray | None, at_status_quo: np.ndarray | None,
                   quo: StatusQuo | None, settings: DecisionSettings, objective: str) -> Decision:
    base = {"status_quo": quo, "delta": settings.delta, "min_gain": settings.min_gain}
    if quo is None:
        return Decision("keep", None, "the product's history holds no recent price for this customer group, so "
                        "there is no status quo to improve on: keep what you charge", candidate=None, **base)
    if values is None or at_status_quo is None:
        return Decision("keep", quo.price, "the model records no uncertainty about its price response, so no "
                        f"change can be shown to gain: keep {quo.price:g}", candidate=None, **base)
    candidate, sure = best_change(prices, values, at_status_quo, settings.delta, quo.price, settings.max_step)
    share = f"{candidate.probability_of_gain:.0%} of the plausible demand curves"
    spread = f"90%: {_pct(candidate.interval_90[0])} to {_pct(candidate.interval_90[1])}"
    if sure and candidate.expected >= settings.min_gain:
        return Decision("change", candidate.price, f"changing from {quo.price:g} to {candidate.price:g} gains "
                        f"{_pct(candidate.expected)} of {objective} per day ({spread}) in {share}",
                        candidate=candidate, **base)
    if sure:
        return Decision("keep", quo.price, f"{candidate.price:g} gains in {share} but only "
                        f"{_pct(candidate.expected)} of {objective} per day expected, below the minimum "
                        f"{settings.min_gain:.1%}: keep {quo.price:g}", candidate=candidate, **base)
    if candidate.expected < settings.min_gain:
        return Decision("keep", quo.price, f"no price is expected to gain more than {settings.min_gain:.1%} of "
                        f"{objective} per day over the status quo {quo.price:g} (the best, {candidate.price:g}: "
                        f"{_pct(candidate.expected)}, {spread}): keep it", candidate=candidate, **base)
    return Decision("keep", quo.price, f"no price gains over the status quo {quo.price:g} in at least "
                    f"{1 - settings.delta:.0%} of the plausible demand curves; the most promising, "
                    f"{candidate.price:g}, is expected to gain {_pct(candidate.expected)} of {objective} per day "
                    f"({spread}) but gains in only {share}: the data cannot tell, keep it", candidate=candidate,
                    **base)


# --------------------------------------------------------------------------------------------- the test plan


@dataclass(frozen=True)
class Uncertainty:
    """What the curves' spread is made of: the price weights' covariance (on the network's scaled price columns),
    the residual sd of one line's log1p quantity, and the order-rate elasticity's sd."""

    covariance: np.ndarray  # (k, k)
    residual_sd: float
    rate_sd: float | None


def shrunk(uncertainty: Uncertainty, z: np.ndarray, lines_per_day: np.ndarray, days: int,
           log_prices: np.ndarray) -> Uncertainty:
    """The uncertainty after ``days`` days at each test price (rows of ``z``: its scaled price columns).

    Each line at price j adds ``z_j z_j' / residual_sd**2`` of information about the price weights (a Gauss-Newton
    step of their least-squares refit; Woodbury form, so a near-singular covariance needs no inverse); the lines
    per day at the test prices add ``sum_j n_j (log p_j - mean)**2`` about the order rate (a Poisson regression's
    information, the weighted mean taken out). Treats the covariance recorded with the model (which also pools
    how much the tuning trials disagree) as if it were all sampling error: an approximation the closed-loop
    benchmark measures.
    """
    covariance = np.asarray(uncertainty.covariance, dtype=np.float64)
    n = np.asarray(lines_per_day, dtype=np.float64) * days
    noise = np.diag(uncertainty.residual_sd ** 2 / np.maximum(n, 1e-12))
    middle = noise + z @ covariance @ z.T
    after = covariance - covariance @ z.T @ np.linalg.solve(middle, z @ covariance)
    after = (after + after.T) / 2
    rate_sd = uncertainty.rate_sd
    if rate_sd is not None and rate_sd > 0:
        mean = float(np.average(log_prices, weights=n))
        information = float(np.sum(n * (log_prices - mean) ** 2))
        rate_sd = 1.0 / math.sqrt(1.0 / rate_sd ** 2 + information)
    return Uncertainty(covariance=after, residual_sd=uncertainty.residual_sd, rate_sd=rate_sd)


FamilyAt = Callable[[Uncertainty], tuple[ResponseFamily, np.ndarray | None]]


def design_prices(quo: float, band: tuple[float, float] | None, low: float, high: float) -> tuple[float, ...]:
    """The status quo and a price on each side: the band's ends (where the optimum may be), at least 10% and at
    most 25% away, inside the price range. Two prices when the range allows only one side."""
    below = quo * (1 - MAX_TEST_STEP) if band is None else max(min(band[0], quo * 0.9), quo * (1 - MAX_TEST_STEP))
    above = quo * (1 + MAX_TEST_STEP) if band is None else min(max(band[1], quo * 1.1), quo * (1 + MAX_TEST_STEP))
    chosen = [p for p in (max(below, low), quo, min(above, high)) if low - 1e-9 <= p <= high + 1e-9]
    unique: list[float] = []
    for price in chosen:
        if not unique or abs(price - unique[-1]) > 0.005 * quo:
            unique.append(round(price, 2))
    return tuple(unique)


def plan_test(prices: np.ndarray, quo: StatusQuo, decision: Decision, band: tuple[float, float] | None,
              uncertainty: Uncertainty, design: tuple[float, ...], z_design: np.ndarray,
              lines_at_design: np.ndarray, value_at_design: np.ndarray, value_at_quo: float,
              family_at: FamilyAt, settings: DecisionSettings, unit_cost: float | None = None) -> PriceTest | None:
    """The shortest test (days per price from :data:`TEST_DAYS`) after which the band is expected to be narrower
    than ``max_band_share`` of the price and, where the data could not tell, a change to gain with probability
    ``1 - delta`` (either settles it); the longest if none does. ``family_at`` redraws the plausible curves for
    an uncertainty, returning the family and its values at the status quo (the caller knows the model)."""
    if len(design) < 2:
        return None
    share_before = None if band is None else (band[1] - band[0]) / quo.price
    cost = float(np.mean([max(0.0, 1 - v / value_at_quo) for v in value_at_design])) if value_at_quo > 0 else 0.0
    log_design = np.log(np.asarray(design, dtype=np.float64))
    chosen = None
    for days in TEST_DAYS:
        after = shrunk(uncertainty, z_design, lines_at_design, days, log_design)
        family, at_quo = family_at(after)
        members = family.daily_members
        if members is None:
            return None
        margin = prices - (0.0 if unit_cost is None else unit_cost)
        band_after = optimal_price_band(prices, members, unit_cost)
        share_after = (band_after[1] - band_after[0]) / quo.price
        values = members * margin[None, :]
        gain_after = None
        sure = False
        if at_quo is not None:
            gain_after, safe = best_change(prices, values, at_quo, settings.delta, quo.price, settings.max_step)
            sure = safe or gain_after.expected < settings.min_gain
        narrow = share_after <= settings.max_band_share
        chosen = (days, band_after, share_after, gain_after, narrow and sure)
        if narrow and sure:
            break
    assert chosen is not None
    days, band_after, share_after, gain_after, settles = chosen
    why = (f"{days} days at each of {', '.join(f'{p:g}' for p in design)} are expected to narrow the optimal "
           f"price's 90% band from {'-' if share_before is None else f'{share_before:.0%}'} to {share_after:.0%} of "
           f"the price" + ("" if gain_after is None else
                            f" and to tell whether {gain_after.price:g} gains (probability "
                            f"{gain_after.probability_of_gain:.0%} after)")
           + ("" if settles else f"; even {TEST_DAYS[-1]} days a price would not settle it: the curve is flat there "
                                 "or the product sells too few lines"))
    return PriceTest(prices=design, days_each=days, lines_per_day=tuple(float(v) for v in lines_at_design),
                    band_before=band, band_after=band_after, band_share_before=share_before,
                    band_share_after=share_after,
                    probability_of_gain_after=None if gain_after is None else gain_after.probability_of_gain,
                    cost_share=cost, settles=settles, why=why)


def needs_test(decision: Decision, band: tuple[float, float] | None, settings: DecisionSettings) -> bool:
    """A keep for lack of evidence, or a band wider than ``max_band_share`` of the status quo."""
    if decision.status_quo is None or decision.candidate is None:
        return False
    unsure = (decision.action == "keep" and decision.candidate.probability_of_gain < 1 - settings.delta
              and decision.candidate.expected >= settings.min_gain)
    wide = band is not None and (band[1] - band[0]) / decision.status_quo.price > settings.max_band_share
    return unsure or wide


def with_plan(decision: Decision, plan: PriceTest | None) -> Decision:
    return replace(decision, test_plan=plan)
