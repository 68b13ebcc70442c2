"""Model-behaviour tests on synthetic data with a known demand curve (Made-With-ML style).

A model trained the way the pipeline trains must (directional) predict falling demand as the price rises over
the observed range, as the truth does, and (minimum functionality) beat the naive median on the test split.
The pipeline's own price-response network (default features, tuned as the stage tunes) must keep demand
non-increasing in the price, read an elasticity near the truth with the truth inside its interval, and give a
mean expected quantity that matches the held-out mean; a model forced upward must fail the gate.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from pricetrail.data.etl import TARGET, CleaningRules, run_etl
from pricetrail.data.ingest import ingest
from pricetrail.data.preprocess import (
    PreprocessSettings,
    chronological_split,
    feature_names,
    fit_preprocessor,
    transform,
)
from pricetrail.data.price_ranges import observed_price_ranges
from pricetrail.data.synthetic.generator import generate_transactions
from pricetrail.data.synthetic.truth import expected_quantity
from pricetrail.gates.checks import verdict
from pricetrail.gates.price_checks import PriceCurve, price_response_checks
from pricetrail.modeling.bundle import ModelBundle
from pricetrail.modeling.metrics import regression_metrics
from pricetrail.modeling.network import build_network
from pricetrail.modeling.product_model import fit_product_model
from pricetrail.modeling.training import predict, train_network
from pricetrail.modeling.tuning import TuneSettings
from pricetrail.pricing.candidate import served_from_bundle
from pricetrail.pricing.decision import DecisionSettings
from pricetrail.pricing.recommend import recommend
from pricetrail.pricing.request import PriceRequest
from pricetrail.project.config import load_params

PROJECT_ROOT = Path(__file__).resolve().parents[2]

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
    # 14 lines a day, as below: at 7 this free network beat the median by only 1% in one run (since the order
    # rate changed the draws), too close to the 5% margin to say anything about the model.
    frame, truth = generate_transactions({CODE: {}}, seed=7, start="2010-12-01", end="2011-12-09",
                                         lines_per_day=14.0, filler_products=2, drift={}, drift_days=60)
    frame.to_parquet(folder / "raw.parquet", index=False)
    ingest(folder / "raw.parquet", folder / "transactions.parquet")
    features, daily, _ = run_etl(folder / "transactions.parquet", CODE, CleaningRules())
    splits = chronological_split(features, SETTINGS)
    preprocessor = fit_preprocessor(splits["train"], SETTINGS)
    x = {name: transform(preprocessor, split) for name, split in splits.items()}
    y = {name: split[TARGET].to_numpy(dtype="float32") for name, split in splits.items()}
    # The initial weights come from torch's global RNG: seed it, or the result depends on whatever ran before in
    # this test process (CI once drew an init that stopped at epoch 3 and lost to the median; 1 init in 6 does).
    torch.manual_seed(0)
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
    curve = _curve(_answer(bundle, date="2011-10-10", points=41))
    prices = curve["price"].to_numpy()
    predicted = curve["expected_quantity"].to_numpy()
    true = expected_quantity(truth, prices, is_registered=True, date="2011-10-10")
    assert np.all(np.diff(true) < 0)  # the premise: the truth falls with price
    assert spearmanr(prices, predicted).statistic < -0.8
    assert predicted[0] > 1.2 * predicted[-1]


def test_guests_are_predicted_to_buy_less_at_their_own_prices(trained) -> None:
    bundle, _, _ = trained
    registered = _answer(bundle, "registered", date="2011-10-10", points=101)
    guest = _answer(bundle, "guest", date="2011-10-10", points=101)
    assert guest["observed_range"][0] > registered["observed_range"][1]  # guests pay about twice the list price
    assert _curve(guest)["expected_quantity"].mean() < _curve(registered)["expected_quantity"].mean()


def test_model_beats_the_median_on_the_test_split(trained) -> None:
    _, _, metrics = trained
    assert metrics["model"]["rmsle"] < 0.95 * metrics["baseline"]["rmsle"], metrics


# --- the pipeline's own model: a price-response network on the default features, tuned as the stage tunes ---


def train_monotone(folder: Path, frame: pd.DataFrame, rules: CleaningRules | None = None, *, n_trials: int = 3,
                   max_epochs: int = 40) -> dict:
    """The default features and a short tuning run of the monotone network on one product's lines, as the stages
    would: bundle (with its checkpoint's records), splits, inputs and targets."""
    frame.to_parquet(folder / "raw.parquet", index=False)
    ingest(folder / "raw.parquet", folder / "transactions.parquet")
    features, daily, _ = run_etl(folder / "transactions.parquet", CODE, rules or CleaningRules())
    params = load_params(PROJECT_ROOT)
    settings = PreprocessSettings.from_params(params["preprocess"])
    splits = chronological_split(features, settings)
    preprocessor = fit_preprocessor(splits["train"], settings)
    x = {name: transform(preprocessor, split) for name, split in splits.items()}
    y = {name: split[TARGET].to_numpy(dtype="float32") for name, split in splits.items()}
    settings = dataclasses.replace(TuneSettings.from_params(params["tune_primary_model"]), n_trials=n_trials,
                                   max_epochs=max_epochs, patience=8)
    model = fit_product_model(splits["train"], splits["validation"], preprocessor, settings, seed=0)
    result, train, metadata = model.tuning, splits["train"], model.metadata()
    bundle = ModelBundle(stockcode=CODE, version="test", network=result.network,
                         checkpoint={"feature_names": feature_names(preprocessor), "metadata": metadata},
                         preprocessor=preprocessor, daily=daily, reference=train)
    return {"bundle": bundle, "splits": splits, "x": x, "y": y}


@pytest.fixture(scope="module")
def monotone(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The default features and a short tuning run of the monotone network, on a seeded synthetic product."""
    # 14 lines a day: at the default 7 the slope's sampling error alone is ~25% (seeds 7, 11, 13 read the line
    # elasticity 40%, 34% and 3% off), larger than the tolerance these tests hold the model's structure to.
    frame, truth = generate_transactions({CODE: {}}, seed=7, start="2010-12-01", end="2011-12-09",
                                         lines_per_day=14.0, filler_products=2, drift={}, drift_days=60)
    trained = train_monotone(tmp_path_factory.mktemp("monotone"), frame)
    return {**trained, "truth": truth["products"][CODE]}


def _true_elasticity(truth: dict, price: float, *, is_registered: bool, date: str) -> float:
    step = 1e-3
    q = expected_quantity(truth, np.array([price * (1 - step), price * (1 + step)]), is_registered=is_registered,
                          date=date)
    return float((np.log(q[1]) - np.log(q[0])) / (np.log1p(step) - np.log1p(-step)))


@pytest.mark.parametrize("is_registered", [True, False])
def test_predicted_demand_never_rises_with_price_on_the_grid(monotone, is_registered: bool) -> None:
    bundle = monotone["bundle"]
    answer = _answer(bundle, "registered" if is_registered else "guest", range_widening=0.5)
    quantity = _curve(answer)["expected_quantity"].to_numpy()
    assert np.all(np.diff(quantity) <= 1e-9), np.max(np.diff(quantity))
    assert quantity[0] > quantity[-1]


def test_fitted_elasticity_is_near_the_truth_and_inside_its_interval(monotone) -> None:
    bundle, truth = monotone["bundle"], monotone["truth"]
    answer = _answer(bundle)
    elasticity = answer["elasticity"]
    true = _true_elasticity(truth, elasticity["at_price"], is_registered=True, date="2011-12-12")
    low, high = elasticity["interval_90"]
    assert abs(elasticity["value"] / true - 1) <= 0.3, (elasticity, true)
    assert low <= true <= high, (elasticity, true)
    assert answer["band"] is not None and answer["band"][0] <= answer["model_price"] <= answer["band"][1]


def test_mean_expected_quantity_matches_the_mean_actual_on_held_out_rows(monotone) -> None:
    bundle, splits = monotone["bundle"], monotone["splits"]
    held_out = splits["test"]
    log_prediction = bundle.predict_log_quantity(held_out)
    smeared = bundle.expected_quantity(held_out).mean() / held_out["quantity"].mean()
    assert abs(smeared - 1) <= 0.1, smeared
    # The factor corrects the retransformation alone: it matches the held-out rows' own spread of residuals, their
    # mean offset (how far the level moved after the fitting rows) taken out. Seeded product: 1.088 recorded
    # against 1.093 on the test rows; expm1 of the mean log would fall ~8% short. (From the validation rows'
    # residuals, before the final refit, it was 1.184: their level above the fit's, not the spread.)
    residual = held_out[TARGET].to_numpy(dtype=np.float64) - log_prediction
    spread = float(np.mean(np.exp(residual - residual.mean())))
    recorded = bundle.checkpoint["metadata"]["smearing_factor"]
    assert recorded == pytest.approx(spread, rel=0.03), (recorded, spread)
    assert recorded > 1.03  # there is something to correct


def test_the_pipelines_model_beats_the_median_on_the_test_split(monotone) -> None:
    bundle, splits, y = monotone["bundle"], monotone["splits"], monotone["y"]
    model = regression_metrics(y["test"], bundle.predict_log_quantity(splits["test"]))
    median = np.log1p(np.median(splits["train"]["quantity"]))
    baseline = regression_metrics(y["test"], np.full(len(y["test"]), median))
    assert model["rmsle"] < 0.95 * baseline["rmsle"], (model, baseline)


def test_a_model_whose_demand_rises_with_price_fails_the_gate(monotone) -> None:
    bundle = monotone["bundle"]
    names = bundle.checkpoint["feature_names"]
    rising = nn.Sequential(nn.Linear(len(names), 1))
    with torch.no_grad():
        rising[0].weight.zero_()
        rising[0].weight[0, names.index("num__unit_price")] = 0.5  # demand up with the price
        rising[0].bias.fill_(1.5)
    forced = ModelBundle(stockcode=CODE, version="rising", network=rising.eval(), checkpoint=bundle.checkpoint,
                         preprocessor=bundle.preprocessor, daily=bundle.daily, reference=bundle.reference)
    curves = {}
    for group in ("registered", "guest"):
        answer = _answer(forced, group, points=101)
        curves[group] = PriceCurve(prices=_curve(answer)["price"].to_numpy(),
                                   quantity=_curve(answer)["expected_quantity"].to_numpy(),
                                   elasticity=answer["elasticity"]["value"],
                                   median_price=answer["elasticity"]["at_price"])
    checks = {c.name: c for c in price_response_checks(curves, min_elasticity=-8.0, max_elasticity=-0.05)}
    assert not checks["price_response_monotone"].passed
    assert checks["price_response_monotone"].value > 0
    assert not checks["price_elasticity_registered"].passed
    assert checks["price_elasticity_registered"].value > 0
    assert not verdict(list(checks.values()))["passed"]


# --- the price decision on the pipeline's own model: keep at the optimum, change when 30% off, test when unsure ---


def _answer(bundle: ModelBundle, customer: str = "registered", *, current_price: float | None = None,
            verdict_groups: dict | None = None, date: str = "2011-12-12", points: int = 201,
            range_widening: float = 0.0) -> dict:
    """The router's answer (the one pricing function) for the bundle as if it were promoted."""
    served = served_from_bundle(bundle, observed_price_ranges(bundle.reference),
                                {"promoted": True, "checks": [], **({"customer_groups": verdict_groups}
                                                                    if verdict_groups else {})})
    request = PriceRequest(date=date, customer=customer, points=points, current_price=current_price,
                           range_widening=range_widening)
    return recommend(served, request, (), DecisionSettings())


def _curve(answer: dict) -> pd.DataFrame:
    return pd.DataFrame(answer["curve"])


def _true_optimum(truth: dict, answer: dict) -> float:
    from pricetrail.data.synthetic.truth import optimal_price

    low, high = answer["price_range"]
    return optimal_price(truth, low, high, is_registered=answer["customer"] == "registered", date="2011-12-12")[0]


def test_a_status_quo_at_the_true_optimum_is_kept(monotone) -> None:
    bundle, truth = monotone["bundle"], monotone["truth"]
    optimum = _true_optimum(truth, _answer(bundle))
    answer = _answer(bundle, current_price=round(optimum, 2))
    assert answer["decision"]["action"] == "keep", answer["decision"]["reason"]
    assert answer["price"] == pytest.approx(round(optimum, 2))


@pytest.fixture(scope="module")
def mispriced(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A product whose list price sits 30% above its revenue optimum; its history holds price tests around it."""
    frame, truth = generate_transactions({CODE: {}}, seed=7, start="2010-12-01", end="2011-12-09",
                                         lines_per_day=14.0, filler_products=2, drift={}, drift_days=60,
                                         mispriced={CODE: 0.3})
    trained = train_monotone(tmp_path_factory.mktemp("mispriced"), frame)
    return {**trained, "truth": truth["products"][CODE]}


def test_a_price_30_percent_above_the_optimum_is_changed_toward_it(mispriced) -> None:
    import dataclasses

    bundle, truth = mispriced["bundle"], mispriced["truth"]
    answer = _answer(bundle)
    decision = answer["decision"]
    quo = decision["status_quo"]["price"]
    optimum = _true_optimum(truth, answer)
    assert quo / optimum - 1 > 0.25  # generated 30% above the optimum (37% at this date: the season moves it)
    # How the number of orders answers the price is the prior's here (one year hardly identifies it): the curves
    # disagree on whether a 20-25% cut gains, so the answer is to keep, and to test the prices that would tell.
    assert decision["action"] == "change" or decision["test_plan"] is not None, decision
    # A retailer whose earlier tests pinned the order rate down (tune_primary_model.order_rate_prior) is told to
    # move, toward the optimum, one step of at most max_step.
    metadata = bundle.checkpoint["metadata"]
    known = {**metadata, "order_rate": {**metadata["order_rate"], "elasticity": truth["order_rate_elasticity"],
                                        "sd": 0.02}}
    informed = dataclasses.replace(bundle, checkpoint={**bundle.checkpoint, "metadata": known})
    answer = _answer(informed)
    decision = answer["decision"]
    assert decision["action"] == "change", decision["reason"]
    assert abs(answer["price"] - optimum) < abs(quo - optimum)
    assert answer["price"] >= quo * 0.6 - 1e-9  # one step of at most max_step
    assert decision["probability_of_gain"] >= 0.9


def test_a_group_too_small_to_assess_is_refused_and_the_other_served(monotone) -> None:
    from pricetrail.gates.fairness import fairness_checks, group_baseline_checks

    bundle, splits, y = monotone["bundle"], monotone["splits"], monotone["y"]
    test = splits["test"]
    frame = test.assign(y_true=y["test"], y_pred=bundle.predict_log_quantity(test))
    few_guests = pd.concat([frame[frame["is_registered"]], frame[~frame["is_registered"]].head(5)])
    names = {"True": "registered", "False": "guest"}
    checks, _ = fairness_checks(few_guests, sensitive="is_registered", names=names, max_mae_difference=0.4,
                                max_mean_outcome_difference=0.25, min_group_size=20)
    checks += group_baseline_checks(few_guests, baseline_quantity=float(np.median(splits["train"]["quantity"])),
                                    names=names)
    groups = verdict(checks)["groups"]
    assert groups["registered"]["servable"] and not groups["guest"]["servable"]
    guest = _answer(bundle, "guest", verdict_groups=groups)
    assert guest["decision"]["action"] == "keep" and guest["model_price"] is None
    assert "not cleared to price guest customers: only 5 test rows" in guest["decision"]["reason"]
    registered = _answer(bundle, "registered", verdict_groups=groups)
    assert registered["model_price"] is not None and registered["curve"]


@pytest.fixture(scope="module")
def two_prices(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """The seeded product, but sold at two list prices only: a day in one of its markdowns at the markdown level
    (85% of the list price), every other day at the list price; no volume-tier lines. The price response is hardly
    identified beyond the two."""
    frame, truth = generate_transactions({CODE: {}}, seed=7, start="2010-12-01", end="2011-12-09",
                                         lines_per_day=14.0, filler_products=2, drift={}, drift_days=60)
    product = truth["products"][CODE]
    mine = (frame["StockCode"] == CODE) & (frame["UnitPrice"] > 0)
    registered = frame["CustomerID"].notna()
    day = frame["InvoiceDate"].dt.normalize()
    markdown = np.zeros(len(frame), dtype=bool)
    for first, last, _ in product["markdowns"]:
        markdown |= (day >= pd.Timestamp(first)) & (day <= pd.Timestamp(last))
    high = float(product["list_price_schedule"][0][1])
    list_price = np.where(markdown, round(high * 0.85, 2), high)
    bulk = mine & registered & (frame["Quantity"] >= product["tier_threshold"])
    frame = frame[~bulk].copy()
    keep = ~bulk.to_numpy()
    list_price, registered, mine = list_price[keep], registered[keep], mine[keep]
    guest_ratio = product["guest_price_ratio"]
    frame.loc[mine, "UnitPrice"] = np.where(registered[mine], list_price[mine.to_numpy()],
                                            np.round(list_price[mine.to_numpy()] * guest_ratio, 2))
    trained = train_monotone(tmp_path_factory.mktemp("two-prices"), frame, n_trials=2, max_epochs=30)
    return trained["bundle"]


def test_a_product_with_two_distinct_prices_gets_a_test_plan(two_prices: ModelBundle) -> None:
    assert two_prices.checkpoint["metadata"]["price_reference"]["registered"]["distinct"] == 2
    answer = _answer(two_prices)
    plan = answer["decision"]["test_plan"]
    assert plan is not None, answer["decision"]
    assert len(plan["prices"]) >= 2 and plan["days_each"] >= 7
    assert plan["band_share_after"] <= plan["band_share_before"]
    assert any("distinct price" in note for note in answer["notes"])
