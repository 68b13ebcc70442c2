"""The risk and fairness gate's verdict on one candidate model: its checks, and the price curves it judges.

The price-response checks and the decision plot price the candidate through :func:`pricetrail.pricing.recommend.
recommend`, the function the router answers with, on the record the candidate would be served from: the gate
judges exactly what would be served.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pricetrail.data.price_ranges import observed_price_ranges
from pricetrail.gates.checks import verdict
from pricetrail.gates.fairness import fairness_checks, group_baseline_checks
from pricetrail.gates.price_checks import PriceCurve, price_response_checks
from pricetrail.gates.risk import baseline_prediction, risk_checks
from pricetrail.modeling.exported import ServingModel
from pricetrail.pricing.decision import DecisionSettings
from pricetrail.pricing.recommend import recommend
from pricetrail.pricing.request import PriceRequest
from pricetrail.pricing.served import ServedProduct, served_from_model

logger = logging.getLogger(__name__)

# Grid points of the price-response check: twice the served default, so a rise between two served points shows.
GATE_GRID = 201
# The predictions' is_registered values as the router names the customer groups.
CUSTOMER_GROUPS = {"True": "registered", "False": "guest"}
DECISION_PLOT_COLUMNS = ["customer", "price", "revenue_per_day", "revenue_per_day_p05", "revenue_per_day_p95",
                         "status_quo", "decided", "decision"]


# A settings field's annotation -> the YAML values it accepts, and how a message names them.
_KINDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "str": (str, "a text"), "int": (int, "a whole number"), "float": ((int, float), "a number")}


class RiskSettingsError(ValueError):
    """``params.yaml: assess_model_risk`` holds a value that is not accepted."""


@dataclass(frozen=True)
class RiskSettings:
    """``params.yaml: assess_model_risk``: the gate's thresholds (each check validates its own)."""

    sensitive_feature: str
    min_improvement_over_baseline: float
    min_group_improvement: float
    fairness_scale: str
    max_mae_difference: float
    max_mean_outcome_difference: float
    min_group_size: int
    min_elasticity: float
    max_elasticity: float
    min_distinct_prices: int
    max_band_share: float

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> RiskSettings:
        from pricetrail.project.config import settings_from_params

        settings = settings_from_params(cls, "assess_model_risk", values, error=RiskSettingsError)
        for item in dataclasses.fields(cls):
            value = getattr(settings, item.name)
            kinds, accepted = _KINDS[str(item.type)]
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise RiskSettingsError(f"assess_model_risk.{item.name}={value!r} is not accepted: {accepted}")
        return settings

    def as_params(self) -> dict[str, Any]:
        """The section as dvc.lock records it for the stage (the verdict's ``params``)."""
        return dataclasses.asdict(self)


def served_candidate(model: ServingModel, daily: pd.DataFrame, seen: pd.DataFrame,
                     verdict_record: dict[str, Any]) -> ServedProduct:
    """The candidate as the router would hold it once promoted: the exported model the router will load, and its
    price range is every price the product sold at up to the data's end (``seen``: every split), as promotion
    records it."""
    return served_from_model(model, daily, observed_price_ranges(seen), verdict_record)


def priced_groups(served: ServedProduct, seen: pd.DataFrame, day: str,
                  settings: DecisionSettings) -> dict[str, dict[str, Any]]:
    """The router's answer for each customer group that paid more than one price, ``day`` (the day after the
    history: the state a served model prices from), on the gate's grid: what the price checks judge and the
    decision plot shows."""
    record = served.product.record or {}
    answers = {}
    for group, registered in (("registered", True), ("guest", False)):
        if int((seen["is_registered"] == registered).sum()) < 2:
            continue
        low, high = record["price_range"][group]
        if high - low < 0.005:  # one price only: no grid to check (the detail lists the groups that were)
            logger.info("%s: %s customers paid one price (%g); no price-response curve to check", served.stockcode,
                        group, low)
            continue
        answers[group] = recommend(served, PriceRequest(date=day, customer=group, points=GATE_GRID), (), settings)
    return answers


def price_curves(answers: Mapping[str, dict[str, Any]]) -> dict[str, PriceCurve]:
    """Each group's expected demand over the prices it paid, and its elasticity at its median training price."""
    curves = {}
    for group, answer in answers.items():
        curve = pd.DataFrame(answer["curve"])
        curves[group] = PriceCurve(prices=curve["price"].to_numpy(), quantity=curve["expected_quantity"].to_numpy(),
                                   elasticity=answer["elasticity"].get("value"),
                                   median_price=float(answer["elasticity"]["at_price"]))
    return curves


def decision_curves(answers: Mapping[str, dict[str, Any]], groups: Mapping[str, Any]) -> pd.DataFrame:
    """Each servable customer group's revenue (or profit) per day over its prices, with the plausible curves' 90%
    band, the status quo and the decided price (the decision plot). ``groups``: the verdict's customer groups (a
    group the gate refused is not priced by the model)."""
    frames = []
    for group in ("registered", "guest"):
        if group not in answers or (groups and not (groups.get(group) or {}).get("servable")):
            continue
        answer = answers[group]
        curve = pd.DataFrame(answer["curve"])
        if "expected_revenue_per_day_p05" not in curve.columns:
            continue
        decision = answer["decision"]
        frames.append(pd.DataFrame({
            "customer": group, "price": curve["price"], "revenue_per_day": curve["expected_revenue_per_day"],
            "revenue_per_day_p05": curve["expected_revenue_per_day_p05"],
            "revenue_per_day_p95": curve["expected_revenue_per_day_p95"],
            "status_quo": (decision.get("status_quo") or {}).get("price"), "decided": decision["price"],
            "decision": decision["action"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DECISION_PLOT_COLUMNS)


def price_decisions(answers: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each priced group's decision, as the verdict records it: once this model is replaced, the next one's record
    carries these, and a change among them stays while the next model's curves do not doubt it."""
    decisions = {}
    for group, answer in answers.items():
        decision = answer["decision"]
        quo = decision.get("status_quo")
        if quo is None or decision.get("price") is None:
            continue
        decisions[group] = {"day": answer["date"], "action": decision["action"], "price": decision["price"],
                            "status_quo": quo["price"], "probability_of_gain": decision["probability_of_gain"]}
    return decisions


def day_after_history(daily: pd.DataFrame) -> str:
    return str((pd.to_datetime(daily["day"]).max() + pd.Timedelta(days=1)).date())


@dataclass(frozen=True)
class Assessment:
    """The gate's outcome: pass or fail per check, the metrics behind them, and the groups compared."""

    outcome: dict[str, Any]
    risk_metrics: dict[str, float | None]
    baseline_quantity: float
    groups: pd.DataFrame
    answers: dict[str, dict[str, Any]]  # the router's answer per customer group, as the price checks judged it

    def decision_plot(self) -> pd.DataFrame:
        return decision_curves(self.answers, self.outcome.get("groups", {}))

    def price_decisions(self) -> dict[str, dict[str, Any]]:
        return price_decisions(self.answers)


def assess(predictions: pd.DataFrame, train_quantity: np.ndarray, model: ServingModel, daily: pd.DataFrame,
           seen: pd.DataFrame, settings: RiskSettings, decision: DecisionSettings) -> Assessment:
    """Every check of the gate on a candidate: risk against the median baseline, per-group baselines, fairness
    between the sensitive feature's groups, and the served price response."""
    baseline = baseline_prediction(train_quantity)
    risk, risk_metrics = risk_checks(predictions, baseline_quantity=baseline,
                                     min_improvement=settings.min_improvement_over_baseline)
    sensitive = settings.sensitive_feature
    # The router prices registered customers and guests apart: with is_registered as the sensitive feature each
    # group is judged on its own, and one that cannot be assessed blocks no other.
    names = CUSTOMER_GROUPS if sensitive == "is_registered" else None
    fairness, groups = fairness_checks(predictions, sensitive=sensitive,
                                       max_mae_difference=settings.max_mae_difference,
                                       max_mean_outcome_difference=settings.max_mean_outcome_difference,
                                       min_group_size=settings.min_group_size, scale=settings.fairness_scale,
                                       names=names)
    by_group = group_baseline_checks(predictions, baseline_quantity=baseline, sensitive=sensitive, names=names,
                                     min_improvement=settings.min_group_improvement) if names else []
    served = served_candidate(model, daily, seen, {"promoted": True, "checks": [],
                                                   "params": {"assess_model_risk": settings.as_params()}})
    answers = priced_groups(served, seen, day_after_history(daily), decision)
    response = price_response_checks(price_curves(answers), min_elasticity=settings.min_elasticity,
                                     max_elasticity=settings.max_elasticity)
    return Assessment(outcome=verdict([*risk, *by_group, *fairness, *response]), risk_metrics=risk_metrics,
                      baseline_quantity=baseline, groups=groups, answers=answers)
