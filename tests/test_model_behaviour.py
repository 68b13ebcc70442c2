"""Model-behaviour tests on synthetic data with a known demand curve (Made-With-ML style).

A model trained the way the pipeline trains must (directional) predict falling demand as the price rises over
the observed range, as the truth does, and (minimum functionality) beat the naive median on the test split.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from pricetrail.bundle import ModelBundle
from pricetrail.etl import TARGET, CleaningRules, run_etl
from pricetrail.ingest import ingest
from pricetrail.model import build_network, predict, regression_metrics, train_network
from pricetrail.preprocess import PreprocessSettings, chronological_split, feature_names, fit_preprocessor, transform
from pricetrail.recommend import PriceContext, recommend_price
from pricetrail.synthetic import expected_quantity, generate_transactions

CODE = "85123A"
SETTINGS = PreprocessSettings(
    numerical_features=("unit_price", "log_price", "price_squared", "price_to_max", "price_to_prev_month_mean",
                        "reference_max_price", "reference_mean_price", "log_prev_month_quantity",
                        "log_quantity_28d_before", "is_registered", "hour"),
    categorical_features=("country", "day_of_week"),
)
CONFIG = {"n_layers": 2, "units": [64, 32], "dropout": [0.1, 0.0], "batch_norm": False}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelBundle, dict, dict]:
    folder = tmp_path_factory.mktemp("behaviour")
    frame, truth = generate_transactions({CODE: {}}, seed=7, start="2010-12-01", end="2011-12-09",
                                         lines_per_day=7.0, filler_products=2, drift={}, drift_days=60)
    frame.to_parquet(folder / "raw.parquet", index=False)
    ingest(folder / "raw.parquet", folder / "transactions.parquet")
    features, daily, _ = run_etl(folder / "transactions.parquet", CODE, CleaningRules())
    splits = chronological_split(features, SETTINGS)
    preprocessor = fit_preprocessor(splits["train"], SETTINGS)
    x = {name: transform(preprocessor, split) for name, split in splits.items()}
    y = {name: split[TARGET].to_numpy(dtype="float32") for name, split in splits.items()}
    network = build_network(x["train"].shape[1], CONFIG)
    train_network(network, x["train"], y["train"], x["validation"], y["validation"], learning_rate=3e-3,
                  optimizer="adam", batch_size=128, max_epochs=60, patience=8, seed=0)
    bundle = ModelBundle(stockcode=CODE, version="test", network=network,
                         checkpoint={"feature_names": feature_names(preprocessor), "metadata": {}},
                         preprocessor=preprocessor, daily=daily, reference=splits["train"])
    test_metrics = regression_metrics(y["test"], predict(network, x["test"]))
    median = np.log1p(np.median(splits["train"]["quantity"]))
    baseline = regression_metrics(y["test"], np.full(len(y["test"]), median))
    return bundle, truth["products"][CODE], {"model": test_metrics, "baseline": baseline}


def test_predicted_demand_falls_with_price_over_the_observed_range(trained) -> None:
    bundle, truth, _ = trained
    result = recommend_price(bundle, PriceContext(date="2011-10-10"), grid_size=41)
    prices = result.curve["price"].to_numpy()
    predicted = result.curve["expected_quantity"].to_numpy()
    true = expected_quantity(truth, prices, is_registered=True, date="2011-10-10")
    assert np.all(np.diff(true) < 0)  # the premise: the truth falls with price
    assert spearmanr(prices, predicted).statistic < -0.8
    assert predicted[0] > 1.2 * predicted[-1]


def test_guests_are_predicted_to_buy_less_at_their_own_prices(trained) -> None:
    bundle, _, _ = trained
    registered = recommend_price(bundle, PriceContext(date="2011-10-10", is_registered=True))
    guest = recommend_price(bundle, PriceContext(date="2011-10-10", is_registered=False))
    assert guest.observed_range[0] > registered.observed_range[1]  # guests pay about twice the list price
    assert guest.curve["expected_quantity"].mean() < registered.curve["expected_quantity"].mean()


def test_model_beats_the_median_on_the_test_split(trained) -> None:
    _, _, metrics = trained
    assert metrics["model"]["rmsle"] < 0.95 * metrics["baseline"]["rmsle"], metrics
