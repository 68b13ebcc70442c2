"""The one pricing function: a product's price decision for one customer group, with the model's curve.

The risk gate's price checks and decision plot, ``pricetrail recommend``, the router, the Lambda handler and the
benchmarks all price through :func:`recommend`, so the gate judges exactly what is served. At every grid price the
price-derived features are recomputed (the reference kept a sampled row's old price features, so its curve moved
only through the raw price column), and by default the grid stays inside the prices the group paid: outside them
the model extrapolates."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from pricetrail.data.etl import calendar_features
from pricetrail.modeling.price_response import (
    MAX_BAND_SHARE,
    MIN_DISTINCT_PRICES,
    ResponseFamily,
    choose_price,
    daily_lines,
    elasticity_summary,
    pivot_prices,
    price_reference,
    response_family,
    uncertainty_notes,
)
from pricetrail.pricing.decision import (
    Decision,
    DecisionSettings,
    Earlier,
    PriceTest,
    Uncertainty,
    decide,
    design_prices,
    needs_test,
    plan_test,
    with_plan,
)
from pricetrail.pricing.grid import price_columns
from pricetrail.pricing.keep import refused_group_answer, status_quo_for
from pricetrail.pricing.price_range import observed_range
from pricetrail.pricing.request import MIN_PRICE, PriceRequest, RequestError
from pricetrail.pricing.served import ServedProduct
from pricetrail.registry.artifacts import ArtifactSource
from pricetrail.registry.product_record import group_refusal


def grid_inputs(served: ServedProduct, request: PriceRequest,
                 prices: np.ndarray) -> tuple[dict[str, Any], dict[str, str], str]:
    requested = pd.Timestamp(request.date).normalize()
    state_day = served.state_day(request)
    state = served.state_on(state_day)
    numerical: dict[str, Any] = price_columns(prices, state["max_price_before"], state["prev_month_mean_price"])
    constants, day_of_week = calendar_constants(requested, request.hour)
    numerical.update(constants)
    numerical.update(state)
    numerical["is_registered"] = float(request.is_registered)
    return numerical, {"country": request.country, "day_of_week": day_of_week}, str(state_day.date())


@functools.lru_cache(maxsize=1024)
def calendar_constants(day: pd.Timestamp, hour: int) -> tuple[dict[str, float], str]:
    """Calendar features of a request (the pipeline's definition), cached: pandas' datetime accessors cost more
    than scoring the whole grid."""
    calendar = calendar_features(pd.Series([day + pd.Timedelta(hours=hour)])).iloc[0]
    return {column: float(calendar[column]) for column in calendar.index}, str(int(calendar["day_of_week"]))


def earlier_change(record: dict[str, Any], request: PriceRequest, price_range: tuple[float, float]) -> Earlier | None:
    """The change the previously served model decided for the request's group, as promotion recorded it, where it
    answers the same question: revenue (no unit cost) and a price inside the request's range."""
    earlier = record.get("earlier_decisions")
    if not earlier or request.unit_cost is not None:
        return None
    entry = (earlier.get("decisions") or {}).get(request.customer)
    if not entry or entry.get("action") != "change" or not (
            price_range[0] - 1e-9 <= entry["price"] <= price_range[1] + 1e-9):
        return None
    return Earlier(version=str(earlier["version"]), day=str(entry["day"]), price=float(entry["price"]),
                   status_quo=float(entry["status_quo"]), probability_of_gain=float(entry["probability_of_gain"]))


def recommend(served: ServedProduct, request: PriceRequest, sources: Iterable[ArtifactSource] = (),
              settings: DecisionSettings | None = None) -> dict[str, Any]:
    """The price decision for one product and customer group, with the model's curve and provenance.

    ``price`` is what to charge: the status quo unless the plausible curves agree a change gains
    (:func:`pricetrail.pricing.decision.decide`). ``model_price`` is the model's robust optimum over the grid,
    ``band`` the 90% interval of the optimal price; ``decision`` says change or keep and why, and carries a test
    plan where the data cannot tell. A customer group the risk gate refused to assess is answered ``keep`` with the
    reason.
    """
    settings = settings or DecisionSettings()
    record = served.product.record
    assert record is not None
    observed = observed_range(record, request.customer, sources, f"{served.stockcode} version {served.version}")
    span = observed[1] - observed[0]
    allowed = (max(observed[0] - request.range_widening * span, MIN_PRICE), observed[1] + request.range_widening * span)
    low = allowed[0] if request.min_price is None else request.min_price
    high = allowed[1] if request.max_price is None else request.max_price
    if low >= high:
        which = "min_price" if request.min_price is not None else "max_price"
        raise RequestError(which, f"price range [{low:g}, {high:g}] is empty: min_price must be below max_price "
                                  f"(the observed range is {observed[0]:g}-{observed[1]:g})")
    if request.unit_cost is not None and request.unit_cost >= high:
        raise RequestError("unit_cost", f"unit_cost={request.unit_cost:g} is at or above every price of the range "
                                        f"[{low:g}, {high:g}]: every price loses money; check the cost or the range")
    prices = np.linspace(low, high, request.points)
    state_day = served.state_day(request)
    quo = status_quo_for(served.daily, request, state_day, settings)
    refusal = group_refusal(record, request.customer)
    if refusal is not None:
        return refused_group_answer(served, request, quo, refusal, settings, (low, high), observed)
    earlier = earlier_change(record, request, (low, high))
    # The status quo (and an earlier change's price) are priced by the same curves, appended to the grid (they may lie
    # between or outside its points).
    evaluated = prices if quo is None else np.append(prices, quo.price)
    n = len(prices)
    if earlier is not None and quo is not None:
        evaluated = np.append(evaluated, earlier.price)
    numerical, categorical, state_as_of = grid_inputs(served, request, evaluated)
    matrix = served.encoder.matrix(numerical, categorical, len(evaluated))
    metadata = served.model.metadata
    reference = price_reference(metadata, request.customer)
    # A checkpoint from before the price reference was recorded: the middle of the observed range stands in.
    median = reference.median if reference is not None else (observed[0] + observed[1]) / 2
    pivot = pivot_prices(median)
    pivot_numerical, pivot_categorical, _ = grid_inputs(served, request, pivot)
    pivot_matrix = served.encoder.matrix(pivot_numerical, pivot_categorical, len(pivot))
    whole = response_family(served.model, metadata, matrix, pivot_matrix, prices=evaluated,
                            median_price=median)
    family = whole.take(slice(0, n))
    cost = 0.0 if request.unit_cost is None else request.unit_cost
    margin = evaluated - cost
    point_best, best, band = choose_price(prices, family, request.unit_cost)
    members = whole.daily_members
    values = None if members is None else members * margin[None, :]
    objective = "revenue" if request.unit_cost is None else "profit"
    at_earlier = None if values is None or len(evaluated) < n + 2 else values[:, n + 1]
    decision = decide(prices, None if values is None else values[:, :n],
                      None if values is None or quo is None else values[:, n], quo, settings, objective=objective,
                      earlier=earlier, at_earlier=at_earlier)
    if needs_test(decision, band, settings):
        # The plan prices the grid and the status quo only (its last evaluated price).
        decision = with_plan(decision, _test_plan(served, request, decision, band, settings, evaluated[:n + 1],
                                                  matrix[:n + 1], pivot_matrix, median, whole.take(slice(0, n + 1)),
                                                  (low, high)))
    quantity = whole.point
    revenue = evaluated * quantity
    profit = None if request.unit_cost is None else margin * quantity
    lines = daily_lines(whole, request.customer)
    # The answer's figures are at the decided price: a grid point on a change, the appended status quo on a keep.
    if decision.price is None:
        chosen = best
    elif decision.action == "keep":
        chosen = n
    elif decision.earlier is not None and decision.earlier["outcome"] == "kept":
        chosen = n + 1
    else:
        chosen = int(np.argmin(np.abs(prices - decision.price)))
    within = observed[0] - 1e-9 <= low and high <= observed[1] + 1e-9
    notes = []
    if not within:
        notes.append(f"the price range [{low:g}, {high:g}] leaves the observed range "
                     f"[{observed[0]:g}, {observed[1]:g}] for {request.customer} customers: the model extrapolates")
    if best in (0, n - 1):
        notes.append("the model's best price is at the edge of the grid: the optimum may lie outside it")
    if profit is not None and profit[best] <= 0:
        notes.append(f"no price of the range makes a profit at unit_cost={request.unit_cost:g}: this is the "
                     "smallest loss")
    if quo is not None and abs(prices[best] / quo.price - 1) > settings.max_step:
        notes.append(f"the model's own optimum {prices[best]:g} lies more than {settings.max_step:.0%} from the "
                     f"status quo {quo.price:g}: a decision moves at most that far in one step")
    requested_day = str(pd.Timestamp(request.date).date())
    if state_as_of != requested_day:
        notes.append(f"the date is after the product's history; state features are as of {state_as_of}")
    country_status = served.encoder.category_status("country", request.country)
    if country_status == "unseen":
        notes.append(f"country {request.country!r} never occurs in this model's training data: it is priced as "
                     "the encoder's infrequent/unknown category")
    elif country_status == "infrequent":
        notes.append(f"country {request.country!r} was rare in training: priced with the infrequent countries")
    kept = served.product.unpromoted_candidate()
    if kept:
        notes.append(f"the latest weekly run ({kept.get('time')}) did not promote its model: {kept.get('reason')}")
    gate_params = ((record.get("verdict") or {}).get("params") or {}).get("assess_model_risk") or {}
    if reference is not None:
        notes.extend(uncertainty_notes(
            reference, band, float(prices[best]), family.members is not None, request.customer,
            min_distinct_prices=int(gate_params.get("min_distinct_prices", MIN_DISTINCT_PRICES)),
            max_band_share=float(gate_params.get("max_band_share", MAX_BAND_SHARE)), rate=family.rate))
    else:
        notes.append("this model records no training prices or price-response uncertainty (trained before they "
                     "were recorded): no band")
    elasticity = {"at_price": round(median, 6), **elasticity_summary(family)}
    columns = {"price": evaluated, "expected_quantity": quantity, "expected_revenue": revenue,
               **({} if profit is None else {"expected_profit": profit}),
               **({} if lines is None else {"expected_lines_per_day": lines,
                                            "expected_revenue_per_day": revenue * lines}),
               **({} if lines is None or profit is None else {"expected_profit_per_day": profit * lines})}
    if lines is not None and values is not None and whole.rate is not None:
        # The plausible curves' 5th-95th percentile of the objective per day at each price (the picture's band).
        scale = whole.rate.lines_per_day.get(request.customer, 0.0)
        columns[f"expected_{objective}_per_day_p05"] = np.percentile(values, 5, axis=0) * scale
        columns[f"expected_{objective}_per_day_p95"] = np.percentile(values, 95, axis=0) * scale
    _check_answer(served.stockcode, float(evaluated[chosen]), columns)
    per_day = None if lines is None else {
        "expected_lines": round(float(lines[chosen]), 6),
        "expected_revenue": round(float(revenue[chosen] * lines[chosen]), 6),
        "expected_profit": None if profit is None else round(float(profit[chosen] * lines[chosen]), 6)}
    rounded = {name: np.round(values_[:n], 6).tolist() for name, values_ in columns.items()}
    curve = [dict(zip(rounded, point, strict=True)) for point in zip(*rounded.values(), strict=True)]
    return {
        "stockcode": served.stockcode, "model_version": served.version,
        "data_md5": (record.get("verdict") or {}).get("lineage", {}).get("features_md5"),
        "served_by": record.get("served_by"), "served_since": record.get("served_since"),
        "objective": objective, "customer": request.customer,
        "price": None if decision.price is None else round(float(decision.price), 6),
        "decision": decision.to_dict(),
        "expected_quantity": round(float(quantity[chosen]), 6),
        "expected_revenue": round(float(revenue[chosen]), 6),
        "expected_profit": None if profit is None else round(float(profit[chosen]), 6),
        "model_price": round(float(prices[best]), 6), "point_optimum": round(float(prices[point_best]), 6),
        "band": None if band is None else [round(band[0], 6), round(band[1], 6)],
        "elasticity": elasticity, "per": "order line" if lines is None else "day", "per_day": per_day,
        "unit_cost": request.unit_cost, "price_range": [round(low, 6), round(high, 6)],
        "observed_range": [round(observed[0], 6), round(observed[1], 6)], "within_observed_range": within,
        "points": request.points, "date": requested_day,
        "country": {"name": request.country, "status": country_status},
        "state_as_of": state_as_of, "state_source": served.state_source, "state_daily_md5": served.daily_md5,
        "notes": notes, "curve": curve,
    }


def _test_plan(served: ServedProduct, request: PriceRequest, decision: Decision, band: tuple[float, float] | None,
               settings: DecisionSettings, evaluated: np.ndarray, matrix: np.ndarray, pivot_matrix: np.ndarray,
               median: float, whole: ResponseFamily, price_range: tuple[float, float]) -> PriceTest | None:
    """The price test that would settle a keep for lack of evidence (:func:`pricetrail.pricing.decision.plan_test`)."""
    network, metadata = served.model, served.model.metadata
    fit = metadata.get("price_response") or {}
    quo = decision.status_quo
    if quo is None or not network.price_columns or not fit or whole.rate is None:
        return None
    n = len(evaluated) - 1  # the status quo is the last evaluated price
    design = design_prices(quo.price, band, *price_range)
    numerical, categorical, _ = grid_inputs(served, request, np.asarray(design))
    design_matrix = served.encoder.matrix(numerical, categorical, len(design))
    design_family = response_family(network, metadata, design_matrix, pivot_matrix, prices=np.asarray(design),
                                     median_price=median)
    lines = daily_lines(design_family, request.customer)
    if lines is None:
        return None
    cost = 0.0 if request.unit_cost is None else request.unit_cost
    margin = evaluated - cost
    value_at_design = (np.asarray(design) - cost) * design_family.daily_point
    uncertainty = Uncertainty(covariance=np.asarray(fit["covariance"], dtype=np.float64),
                              residual_sd=float(fit.get("residual_sd", 1.0)), rate_sd=whole.rate.sd)

    def family_at(after: Uncertainty) -> tuple[ResponseFamily, np.ndarray | None]:
        changed = {**metadata, "price_response": {**fit, "covariance": after.covariance.tolist()}}
        if after.rate_sd is not None and metadata.get("order_rate"):
            changed["order_rate"] = {**metadata["order_rate"], "sd": after.rate_sd}
        redrawn = response_family(network, changed, matrix, pivot_matrix, prices=evaluated, median_price=median)
        members = redrawn.daily_members
        at_quo = None if members is None else members[:, n] * margin[n]
        return redrawn.take(slice(0, n)), at_quo

    z = np.asarray(design_matrix, dtype=np.float64)[:, list(network.price_columns)]
    return plan_test(evaluated[:n], quo, decision, band, uncertainty, design, z, lines, value_at_design,
                     float(margin[n] * whole.daily_point[n]), family_at, settings, request.unit_cost)


class AnswerError(RuntimeError):
    """The model produced an answer that must not reach a caller (a non-finite value, a price below a cent)."""


def _check_answer(code: str, price: float, columns: dict[str, np.ndarray]) -> None:
    if not (math.isfinite(price) and price >= MIN_PRICE):
        raise AnswerError(f"the model of {code} chose price {price!r}, below {MIN_PRICE:g}: refusing to answer")
    for name, values in columns.items():
        if not np.all(np.isfinite(values)):
            raise AnswerError(f"the model of {code} gave non-finite {name}: refusing to answer")
