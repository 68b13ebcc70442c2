"""Answers that keep the status quo: a product without a model that may set its price, or a customer group its
model is not cleared to price, is told to keep what it charges, with the reason in a buyer's words."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from pricetrail.data.frames import read_parquet
from pricetrail.pricing.decision import (
    Decision,
    DecisionSettings,
    StatusQuo,
    status_quo,
)
from pricetrail.pricing.request import PriceRequest, RequestError
from pricetrail.pricing.served import ServedProduct
from pricetrail.registry import artifacts
from pricetrail.registry.artifacts import ArtifactSource, resolve
from pricetrail.registry.product_record import ProductRecord


def status_quo_for(daily: pd.DataFrame | None, request: PriceRequest, day: pd.Timestamp,
                settings: DecisionSettings) -> StatusQuo | None:
    if request.current_price is not None:
        return StatusQuo(price=float(request.current_price), customer=request.customer, first_day=str(day.date()),
                         last_day=str(day.date()), lines=0, days=0, given=True)
    return None if daily is None else status_quo(daily, request.customer, day, settings.status_quo_days)


def keep_payload(code: str, request: PriceRequest, quo: StatusQuo | None, reason: str,
                  settings: DecisionSettings, **extra: Any) -> dict[str, Any]:
    decision = Decision("keep", None if quo is None else quo.price, reason, quo, None, settings.delta,
                        settings.min_gain)
    return {"stockcode": code, "model_version": None, "customer": request.customer,
            "objective": "revenue" if request.unit_cost is None else "profit",
            "price": None if quo is None else round(quo.price, 6), "decision": decision.to_dict(),
            "model_price": None, "point_optimum": None, "band": None, "curve": [],
            "date": str(pd.Timestamp(request.date).date()), "notes": [], **extra}


def refused_group_answer(served: ServedProduct, request: PriceRequest, quo: StatusQuo | None, refusal: str,
                          settings: DecisionSettings, price_range: tuple[float, float],
                          observed: tuple[float, float]) -> dict[str, Any]:
    hold = "keep what you charge" if quo is None else f"keep {quo.price:g}"
    payload = keep_payload(served.stockcode, request, quo,
                            f"the model is not cleared to price {request.customer} customers: {refusal}; {hold}",
                            settings, price_range=[round(v, 6) for v in price_range],
                            observed_range=[round(v, 6) for v in observed])
    payload.update({"model_version": served.version, "served_by": (served.product.record or {}).get("served_by"),
                    "state_as_of": str(served.state_day(request).date())})
    return payload


def unmodelled_answer(product: ProductRecord, request: PriceRequest, sources: Iterable[ArtifactSource],
                      settings: DecisionSettings | None = None) -> dict[str, Any]:
    """A product with no model that may set its price: keep the status quo (from its newest daily history, read by
    hash and verified), with the reason in a buyer's words."""
    settings = settings or DecisionSettings()
    quo = None
    state_as_of = None
    pointer = product.state
    if pointer is not None:
        daily = daily_history(pointer.artifact, list(sources), product.stockcode)
        requested = pd.Timestamp(request.date).normalize()
        last = pd.Timestamp(pointer.last_day)
        if requested < pd.Timestamp(pointer.first_day):
            raise RequestError("date", f"date {request.date} is before {product.stockcode}'s sales history, which "
                                       f"starts on {pointer.first_day}: there is no price to keep")
        day = min(requested, last + pd.Timedelta(days=1))
        quo = status_quo_for(daily, request, day, settings)
        state_as_of = str(day.date())
    elif request.current_price is not None:
        quo = status_quo_for(None, request, pd.Timestamp(request.date), settings)
    hold = "keep what you charge" if quo is None else f"keep {quo.price:g}"
    return keep_payload(product.stockcode, request, quo, f"{plain_reason(product)}; {hold}", settings,
                         state_as_of=state_as_of)


@functools.lru_cache(maxsize=64)
def _daily_frame(path: str, md5: str) -> pd.DataFrame:
    return read_parquet(Path(path))


def daily_history(artifact: artifacts.Artifact, sources: list[ArtifactSource], code: str) -> pd.DataFrame:
    path = resolve(artifact, sources, owner=f"{code} daily history")
    return _daily_frame(str(path), artifact.md5)


# The checks of the risk gate and the drift gate, in a buyer's words.
PLAIN_CHECKS = {
    "predictions_finite": "the demand model gave no usable forecast",
    "beats_baseline": "the demand model forecasts this product's orders no better than its typical order size does",
    "fairness_computable": "too few recent orders from one customer group to check the model is fair to it",
    "fairness_mae_difference": "the model's forecasts are much less accurate for one customer group than another",
    "fairness_mean_outcome_difference": "the model over- or under-states one customer group's demand more than "
                                        "another's",
    "price_response_monotone": "the model's demand does not fall as the price rises",
    "price_elasticity_registered": "the model reads no believable price response for registered customers",
    "price_elasticity_guest": "the model reads no believable price response for guests",
}


def plain_reason(product: ProductRecord) -> str:
    """Why the product has no model that may set its price, from its latest decision, in a buyer's words."""
    latest = product.pipeline_latest or product.latest or {}
    reason = str(latest.get("reason") or "")
    if product.record is not None:
        return "its served model's record did not pass its checks"
    if not reason:
        return "no model has been trained and checked for it yet (the weekly run has not reached it)"
    if "drift gate" in reason:
        return "its recent sales no longer look like the sales its model would learn from (the drift check " \
               "stopped retraining until someone accepts the new pattern)"
    named = [text for check, text in PLAIN_CHECKS.items() if f"{check}=" in reason]
    if named:
        return "its model failed a check: " + "; ".join(named)
    if "no features" in reason or "etl_pipeline" in reason:
        return "too few clean sales lines to model it"
    return f"no model passed its checks ({reason})"
