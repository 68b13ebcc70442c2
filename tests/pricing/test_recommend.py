"""The one pricing path (pricing.recommend): the grid recomputes every price-derived feature, stays in the observed
range by default, finds known optima, and answers per day with an order-rate fit."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import lines
from torch import nn

from pricetrail.data.etl import CleaningRules, build_features, clean_lines, daily_aggregates, price_features
from pricetrail.data.preprocess import PreprocessSettings, feature_names, fit_preprocessor
from pricetrail.data.price_ranges import observed_price_ranges
from pricetrail.modeling.bundle import ModelBundle
from pricetrail.modeling.order_rate import OrderRateFit, OrderRatePrior
from pricetrail.modeling.price_response import group_prices
from pricetrail.pricing.candidate import served_from_bundle
from pricetrail.pricing.recommend import grid_inputs, recommend
from pricetrail.pricing.request import PriceRequest, RequestError

PRICE_COLUMNS = ["unit_price", "log_price", "price_squared", "reference_max_price", "price_to_max",
                 "reference_mean_price", "price_to_prev_month_mean"]
SETTINGS = PreprocessSettings(numerical_features=(*PRICE_COLUMNS, "prev_month_quantity", "is_registered"),
                              categorical_features=("country",), category_min_frequency=1)


def history() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for i, day in enumerate(pd.date_range("2011-01-03", "2011-06-30", freq="D")):
        price = 2.95 if day.month % 2 else 2.45  # a list price and a markdown month
        rows.append({"invoice_no": str(i), "invoice_date": str(day + pd.Timedelta(hours=10)), "unit_price": price,
                     "quantity": int(rng.integers(1, 20)),
                     "customer_id": float("nan") if i % 4 == 0 else 1.0})
    clean, _ = clean_lines(lines(rows), CleaningRules(min_rows=1))
    return clean


def bundle_with_weight_on(feature: str, weight: float = -1.0, bias: float = 2.0) -> ModelBundle:
    """A linear 'model' whose log1p-demand is ``weight`` x (the scaled ``feature``) + ``bias``: only that feature
    moves it."""
    clean = history()
    daily = daily_aggregates(clean)
    features = build_features(clean, daily)
    preprocessor = fit_preprocessor(features, SETTINGS)
    names = feature_names(preprocessor)
    network = nn.Sequential(nn.Linear(len(names), 1))
    with torch.no_grad():
        network[0].weight.zero_()
        network[0].weight[0, names.index(f"num__{feature}")] = weight
        network[0].bias.fill_(bias)
    network.eval()
    registered = features["is_registered"].astype(bool)
    reference = {"registered": group_prices(features.loc[registered, "unit_price"].to_numpy()).to_dict(),
                 "guest": group_prices(features.loc[~registered, "unit_price"].to_numpy()).to_dict()}
    return ModelBundle(stockcode="85123A", version="test", network=network,
                       checkpoint={"feature_names": names, "metadata": {"price_reference": reference}},
                       preprocessor=preprocessor, daily=daily, reference=features)


def answer(bundle: ModelBundle, date: str = "2011-06-15", **request: object) -> dict:
    """The router's answer for this bundle, as the risk gate asks it."""
    served = served_from_bundle(bundle, observed_price_ranges(bundle.reference))
    return recommend(served, PriceRequest(date=date, **request))


def at(result: dict, price: float) -> dict:
    """The curve's point at ``price``."""
    return min(result["curve"], key=lambda point: abs(point["price"] - price))


def test_grid_inputs_recompute_every_price_feature() -> None:
    bundle = bundle_with_weight_on("price_to_max")
    served = served_from_bundle(bundle, observed_price_ranges(bundle.reference))
    prices = np.array([2.0, 2.5, 3.0])
    numerical, categorical, as_of = grid_inputs(served, PriceRequest(date="2011-06-15"), prices)
    # The state on 2011-06-15: the highest earlier price is 2.95, and May (the previous month) sold at 2.95 only.
    assert numerical["max_price_before"] == 2.95
    assert numerical["prev_month_mean_price"] == pytest.approx(2.95)  # a mean: 2.95 + rounding
    expected = price_features(prices, 2.95, numerical["prev_month_mean_price"])
    rows = pd.DataFrame({column: np.broadcast_to(numerical[column], 3) for column in PRICE_COLUMNS})
    pd.testing.assert_frame_equal(rows, expected, check_dtype=False)
    for column in PRICE_COLUMNS:
        if column not in ("reference_mean_price",):
            assert rows[column].nunique() > 1, f"{column} did not move with the grid price"
    assert as_of == "2011-06-15" and categorical["country"] == "United Kingdom"


@pytest.mark.parametrize("feature", ["price_to_max", "log_price", "price_to_prev_month_mean"])
def test_curve_moves_through_derived_price_features(feature: str) -> None:
    """A model that reads the price only through a derived feature must still see a falling demand curve.

    Had the grid kept one sampled row's price features (the reference's bug), this curve would be flat.
    """
    result = answer(bundle_with_weight_on(feature))
    quantities = np.array([point["expected_quantity"] for point in result["curve"]])
    assert quantities[0] > quantities[-1] * 1.05
    assert np.all(np.diff(quantities) <= 1e-9)


def test_grid_defaults_to_observed_range_of_the_customer_group() -> None:
    bundle = bundle_with_weight_on("price_to_max")
    result = answer(bundle)
    assert result["observed_range"] == [2.45, 2.95] and result["within_observed_range"]
    assert result["price_range"] == [2.45, 2.95]
    beyond = answer(bundle, max_price=14.75)
    assert beyond["price_range"] == [2.45, 14.75] and not beyond["within_observed_range"]
    assert any("leaves the observed range" in note and "extrapolates" in note for note in beyond["notes"])
    widened = answer(bundle, range_widening=0.5)
    assert widened["price_range"][1] == pytest.approx(2.95 + 0.25) and not widened["within_observed_range"]


SLOPE = 0.34  # demand falls by 34% of its log1p per unit of price


def known_curve_bundle() -> tuple[ModelBundle, Callable[[np.ndarray], np.ndarray]]:
    """A model whose demand is a known curve, q(p) = expm1(2 - SLOPE * (p - mean price)), and that curve.

    Revenue p * q(p) then peaks inside the observed range 2.45-2.95, and profit (p - c) * q(p) peaks higher.
    """
    probe = bundle_with_weight_on("unit_price")
    index = list(SETTINGS.numerical_features).index("unit_price")
    mean, scale = float(probe.preprocessor.mean[index]), float(probe.preprocessor.scale[index])
    bundle = bundle_with_weight_on("unit_price", weight=-SLOPE * scale)

    def curve(price: np.ndarray) -> np.ndarray:
        return np.expm1(2.0 - SLOPE * (np.asarray(price, dtype=float) - mean))

    return bundle, curve


def true_optimum(objective: Callable[[np.ndarray], np.ndarray], low: float, high: float) -> float:
    prices = np.linspace(low, high, 100_001)
    return float(prices[np.argmax(objective(prices))])


@pytest.mark.parametrize("unit_cost", [0.15, 0.3])
def test_revenue_and_profit_optima_of_a_known_curve(unit_cost: float) -> None:
    """Both optima lie strictly inside the range and the profit optimum strictly above the revenue one; the
    recommender must find each within one grid step, and report the curve's own quantity and profit there."""
    bundle, curve = known_curve_bundle()
    low, high = 2.45, 2.95
    step = (high - low) / 100
    best_revenue = true_optimum(lambda p: p * curve(p), low, high)
    best_profit = true_optimum(lambda p: (p - unit_cost) * curve(p), low, high)
    assert low + 5 * step < best_revenue < best_profit - 5 * step < high - 10 * step  # interior and apart

    revenue = answer(bundle)
    profit = answer(bundle, unit_cost=unit_cost)
    assert revenue["objective"] == "revenue" and profit["objective"] == "profit"
    assert revenue["model_price"] == pytest.approx(best_revenue, abs=step / 2 + 1e-9)
    assert profit["model_price"] == pytest.approx(best_profit, abs=step / 2 + 1e-9)
    assert not any("edge of the grid" in note for note in revenue["notes"] + profit["notes"])
    at_profit, at_revenue = at(profit, profit["model_price"]), at(revenue, revenue["model_price"])
    assert at_profit["expected_quantity"] == pytest.approx(float(curve(profit["model_price"])), rel=1e-5)
    assert at_revenue["expected_revenue"] == pytest.approx(
        revenue["model_price"] * float(curve(revenue["model_price"])), rel=1e-5)
    assert at_profit["expected_profit"] == pytest.approx(
        (profit["model_price"] - unit_cost) * float(curve(profit["model_price"])), rel=1e-5)


def test_an_optimum_at_the_edge_is_reported() -> None:
    """Demand that barely falls with price: revenue rises over the whole range, so the best grid price is the top."""
    result = answer(bundle_with_weight_on("unit_price", weight=-0.001))
    assert result["model_price"] == pytest.approx(2.95)
    assert any("edge of the grid" in note for note in result["notes"])


def test_date_after_history_uses_last_state_and_says_so() -> None:
    result = answer(bundle_with_weight_on("price_to_max"), date="2012-03-01")
    assert result["state_as_of"] == "2011-07-01"
    assert any("after the product's history" in note for note in result["notes"])


def test_a_date_before_the_history_is_refused_by_name() -> None:
    with pytest.raises(RequestError, match=r"date 2010-12-01 is before 85123A's sales history") as caught:
        answer(bundle_with_weight_on("price_to_max"), date="2010-12-01")
    assert caught.value.parameter == "date"


@pytest.mark.parametrize(
    ("kwargs", "parameter", "message"),
    [
        ({"date": "yesterday"}, "date", "date 'yesterday' is not accepted"),
        ({"date": "2011-06-01", "hour": 25}, "hour", "hour=25"),
        ({"date": "2011-06-01", "country": ""}, "country", "country ''"),
        ({"date": "2011-06-01", "customer": "yes"}, "customer", "customer 'yes'"),
        ({"date": "2011-06-01", "points": 1}, "points", "points=1"),
        ({"date": "2011-06-01", "unit_cost": -1.0}, "unit_cost", "unit_cost=-1"),
        ({"date": "2011-06-01", "min_price": 2.9, "max_price": 2.5}, "min_price", "must be below max_price"),
    ],
)
def test_bad_requests(kwargs: dict, parameter: str, message: str) -> None:
    with pytest.raises(RequestError, match=message) as caught:
        PriceRequest(**kwargs)
    assert caught.value.parameter == parameter


def test_a_unit_cost_above_every_price_is_refused_and_a_loss_is_said() -> None:
    bundle = bundle_with_weight_on("price_to_max")
    with pytest.raises(RequestError, match=r"unit_cost=3 is at or above every price .* every price loses money"):
        answer(bundle, unit_cost=3.0)
    # Cost inside the range: the model still prices; the top of the range is the only profitable end here.
    inside = answer(bundle, unit_cost=2.9)
    assert at(inside, inside["model_price"])["expected_profit"] > 0


def test_two_distinct_prices_get_the_low_identifiability_note_and_no_band_without_uncertainty() -> None:
    """history() sells at two prices only; this hand-made model records no price-response uncertainty."""
    result = answer(bundle_with_weight_on("price_to_max"))
    assert any("2 distinct price(s) for registered customers, fewer than 4" in note for note in result["notes"])
    assert result["band"] is None
    assert any("no band" in note for note in result["notes"])
    assert result["per"] == "order line" and result["per_day"] is None
    assert result["elasticity"]["value"] < 0 and result["elasticity"]["interval_90"] is None


def with_order_rate(bundle: ModelBundle, elasticity: float, sd: float = 0.05) -> ModelBundle:
    fit = OrderRateFit(elasticity=elasticity, sd=sd, data_elasticity=0.4, data_sd=0.5, prior=OrderRatePrior(0.2, 0.1),
                       days=120, lines_per_day={"registered": 6.0, "guest": 2.0})
    metadata = {**bundle.checkpoint["metadata"], "order_rate": fit.to_dict()}
    return dataclasses.replace(bundle, checkpoint={**bundle.checkpoint, "metadata": metadata})


def test_with_an_order_rate_the_optimum_is_per_day_and_lower() -> None:
    """Revenue per day p * q(p) * (p / median) ** -a peaks below revenue per line p * q(p); the answer says what it
    is per, the expected lines and revenue per day, and that the order rate comes mostly from the prior."""
    plain, curve = known_curve_bundle()
    a = 0.5
    bundle = with_order_rate(plain, a, sd=1e-9)
    median = float(np.median(plain.reference.loc[plain.reference["is_registered"], "unit_price"]))
    low, high = 2.45, 2.95
    step = (high - low) / 100
    per_line = true_optimum(lambda p: p * curve(p), low, high)
    per_day = true_optimum(lambda p: p * curve(p) * (p / median) ** -a, low, high)
    assert per_day < per_line - 5 * step
    line_result, day_result = answer(plain), answer(bundle)
    assert line_result["per"] == "order line" and day_result["per"] == "day"
    assert line_result["model_price"] == pytest.approx(per_line, abs=step / 2 + 1e-9)
    assert day_result["model_price"] == pytest.approx(per_day, abs=step / 2 + 1e-9)
    point = at(day_result, day_result["model_price"])
    expected_lines = 6.0 * (day_result["model_price"] / median) ** -a
    assert point["expected_lines_per_day"] == pytest.approx(expected_lines, rel=1e-5)
    assert point["expected_revenue_per_day"] == pytest.approx(point["expected_revenue"] * expected_lines, rel=1e-5)
    assert line_result["per_day"] is None
    assert day_result["elasticity"]["order_rate"]["value"] == pytest.approx(-a)
    assert any("comes mostly from the prior" in note for note in day_result["notes"])
    assert any("per order line" in note for note in line_result["notes"])


def test_an_uncertain_order_rate_widens_the_band_around_the_robust_price() -> None:
    plain, _ = known_curve_bundle()
    sure = answer(with_order_rate(plain, 0.3, sd=0.01))
    unsure = answer(with_order_rate(plain, 0.3, sd=0.3))
    assert sure["band"] is not None and unsure["band"] is not None
    assert unsure["band"][1] - unsure["band"][0] > sure["band"][1] - sure["band"][0]
    assert unsure["band"][0] <= unsure["model_price"] <= unsure["band"][1]
    low, high = unsure["elasticity"]["order_rate"]["interval_90"]
    assert low < -0.3 < high


def test_an_earlier_change_in_the_record_stays_while_the_curves_do_not_doubt_it() -> None:
    """The served record carries the replaced model's decisions (promotion writes them): a change among them is the
    answer while this model's curves find it gains in at least hold_probability of them, priced at exactly that
    price; forgotten for a profit question or a range that leaves it out."""
    plain, _ = known_curve_bundle()
    bundle = with_order_rate(plain, 0.0, sd=0.1)
    served = served_from_bundle(bundle, observed_price_ranges(bundle.reference))
    afresh = recommend(served, PriceRequest(date="2011-06-15"))
    decision = afresh["decision"]
    assert decision["action"] == "keep" and decision["earlier_change"] is None
    candidate, quo = decision["candidate"], decision["status_quo"]["price"]
    assert 0.5 <= candidate["probability_of_gain"] < 0.9  # the data cannot tell: a fresh change is not sure enough
    earlier = {"version": "0123abcd", "decisions": {"registered": {
        "day": "2011-05-01", "action": "change", "price": candidate["price"], "status_quo": quo,
        "probability_of_gain": 0.93}}}
    served.product = dataclasses.replace(served.product, record={**served.product.record,
                                                                 "earlier_decisions": earlier})
    held = recommend(served, PriceRequest(date="2011-06-15"))
    assert held["decision"]["action"] == "change" and held["price"] == pytest.approx(candidate["price"])
    assert held["decision"]["earlier_change"] == {
        "version": "0123abcd", "day": "2011-05-01", "price": pytest.approx(candidate["price"]),
        "probability_of_gain_then": 0.93, "probability_of_gain_now": pytest.approx(candidate["probability_of_gain"]),
        "outcome": "kept"}
    assert held["decision"]["probability_of_gain"] == pytest.approx(candidate["probability_of_gain"])
    assert "0123abcd" in held["decision"]["reason"] and "stands" in held["decision"]["reason"]
    # The figures are at the kept price; the curve and the band are the model's, unchanged by the memory.
    assert held["curve"] == afresh["curve"] and held["band"] == afresh["band"]
    assert held["expected_quantity"] == pytest.approx(at(afresh, candidate["price"])["expected_quantity"], rel=1e-6)
    # Another group, a profit question, or a range without the earlier price: decided afresh.
    assert recommend(served, PriceRequest(date="2011-06-15", customer="guest"))["decision"]["earlier_change"] is None
    assert recommend(served, PriceRequest(date="2011-06-15", unit_cost=0.5))["decision"]["earlier_change"] is None
    outside = recommend(served, PriceRequest(date="2011-06-15", max_price=candidate["price"] - 0.01))
    assert outside["decision"]["earlier_change"] is None
