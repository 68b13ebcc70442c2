"""Price recommendation: the grid recomputes every price-derived feature, stays in the observed range by default."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import lines
from torch import nn

from pricetrail.bundle import ModelBundle
from pricetrail.etl import CleaningRules, build_features, clean_lines, daily_aggregates, price_features
from pricetrail.preprocess import PreprocessSettings, feature_names, fit_preprocessor
from pricetrail.recommend import PriceContext, RecommendError, grid_rows, recommend_price

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


def bundle_with_weight_on(feature: str) -> ModelBundle:
    """A linear 'model' whose log-demand is -1 x (the scaled ``feature``) + 2: only that feature moves it."""
    clean = history()
    daily = daily_aggregates(clean)
    features = build_features(clean, daily)
    preprocessor = fit_preprocessor(features, SETTINGS)
    names = feature_names(preprocessor)
    network = nn.Sequential(nn.Linear(len(names), 1))
    with torch.no_grad():
        network[0].weight.zero_()
        network[0].weight[0, names.index(f"num__{feature}")] = -1.0
        network[0].bias.fill_(2.0)
    network.eval()
    return ModelBundle(stockcode="85123A", version="test", network=network,
                       checkpoint={"feature_names": names, "metadata": {}}, preprocessor=preprocessor,
                       daily=daily, reference=features)


def test_grid_rows_recompute_every_price_feature() -> None:
    bundle = bundle_with_weight_on("price_to_max")
    prices = np.array([2.0, 2.5, 3.0])
    rows, as_of = grid_rows(bundle, PriceContext(date="2011-06-15"), prices)
    expected = price_features(prices, rows["max_price_before"].iloc[0], rows["prev_month_mean_price"].iloc[0])
    pd.testing.assert_frame_equal(rows[PRICE_COLUMNS].reset_index(drop=True), expected)
    for column in PRICE_COLUMNS:
        if column not in ("reference_mean_price",):
            assert rows[column].nunique() > 1, f"{column} did not move with the grid price"
    assert as_of == "2011-06-15"


@pytest.mark.parametrize("feature", ["price_to_max", "log_price", "price_to_prev_month_mean"])
def test_curve_moves_through_derived_price_features(feature: str) -> None:
    """A model that reads the price only through a derived feature must still see a falling demand curve.

    Had the grid kept one sampled row's price features (the reference's bug), this curve would be flat.
    """
    bundle = bundle_with_weight_on(feature)
    result = recommend_price(bundle, PriceContext(date="2011-06-15"))
    quantities = result.curve["expected_quantity"].to_numpy()
    assert quantities[0] > quantities[-1] * 1.05
    assert np.all(np.diff(quantities) <= 1e-9)


def test_grid_defaults_to_observed_range_of_the_customer_group() -> None:
    bundle = bundle_with_weight_on("price_to_max")
    result = recommend_price(bundle, PriceContext(date="2011-06-15"))
    assert result.observed_range == (2.45, 2.95) and result.within_observed_range
    assert result.price_range == (2.45, 2.95)
    with pytest.raises(RecommendError, match=r"leaves the allowed range"):
        recommend_price(bundle, PriceContext(date="2011-06-15"), high=14.75)
    widened = recommend_price(bundle, PriceContext(date="2011-06-15"), range_widening=0.5)
    assert widened.price_range[1] == pytest.approx(2.95 + 0.25) and not widened.within_observed_range
    assert any("extrapolates" in note for note in widened.notes)


def test_profit_objective_moves_the_optimum_up() -> None:
    bundle = bundle_with_weight_on("log_price")
    revenue = recommend_price(bundle, PriceContext(date="2011-06-15"))
    profit = recommend_price(bundle, PriceContext(date="2011-06-15"), unit_cost=2.0)
    assert profit.objective == "profit" and profit.price >= revenue.price
    assert profit.expected_profit == pytest.approx((profit.price - 2.0) * profit.expected_quantity)


def test_date_after_history_uses_last_state_and_says_so() -> None:
    result = recommend_price(bundle_with_weight_on("price_to_max"), PriceContext(date="2012-03-01"))
    assert result.state_as_of == "2011-07-01"
    assert any("after the product's history" in note for note in result.notes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"date": "yesterday"}, "date 'yesterday' is not a date"),
        ({"date": "2011-06-01", "hour": 25}, "hour=25"),
        ({"date": "2011-06-01", "country": ""}, "country=''"),
        ({"date": "2011-06-01", "is_registered": "yes"}, "is_registered='yes'"),
    ],
)
def test_bad_context(kwargs: dict, message: str) -> None:
    with pytest.raises(RecommendError, match=message):
        PriceContext(**kwargs)


def test_bad_ranges_and_settings() -> None:
    bundle = bundle_with_weight_on("price_to_max")
    context = PriceContext(date="2011-06-15")
    with pytest.raises(RecommendError, match=r"need 0 < low < high"):
        recommend_price(bundle, context, low=2.9, high=2.5)
    with pytest.raises(RecommendError, match="grid_size=1"):
        recommend_price(bundle, context, grid_size=1)
    with pytest.raises(RecommendError, match="unit_cost=-1"):
        recommend_price(bundle, context, unit_cost=-1.0)
    with pytest.raises(RecommendError, match="range_widening=3"):
        recommend_price(bundle, context, range_widening=3)
