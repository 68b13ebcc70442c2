"""Tests for pricetrail.modeling.explain: Deep SHAP, the permutation fallback, and names staying with values."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import pricetrail.modeling.explain as explain_module
from pricetrail.modeling.explain import ExplanationResult, deep_supported, explain, mean_abs_shap
from pricetrail.modeling.network import build_network
from pricetrail.modeling.training import predict, set_seed, train_network

FEATURES = ["unit_price", "promo", "weekday", "month", "country_uk", "country_fr"]
DEFAULT_CONFIG = {"n_layers": 2, "units": [16, 8], "dropout": [0.1, 0.0], "batch_norm": True}


def make_data(n_rows: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, len(FEATURES))).astype(np.float32)
    y = (1.0 - 0.8 * X[:, 0] + 0.3 * X[:, 1] + rng.normal(scale=0.3, size=n_rows)).astype(np.float32)
    return X, y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_data()


@pytest.fixture(scope="module")
def trained(data: tuple[np.ndarray, np.ndarray]) -> nn.Sequential:
    X, y = data
    set_seed(0)
    network = build_network(len(FEATURES), DEFAULT_CONFIG)
    train_network(
        network,
        X[:200],
        y[:200],
        X[200:],
        y[200:],
        learning_rate=1e-2,
        optimizer="adam",
        batch_size=32,
        max_epochs=10,
        patience=3,
        seed=0,
    )
    return network


def _assert_additive(result: ExplanationResult, network: nn.Module, rows: np.ndarray, atol: float) -> None:
    reconstructed = result.values.sum(axis=1).to_numpy() + result.base_value
    np.testing.assert_allclose(reconstructed, predict(network, rows), atol=atol)


def test_deep_explainer_is_used_for_the_default_architecture(
    trained: nn.Sequential, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    assert deep_supported(trained)
    result = explain(trained, X[:50], X[200:220], FEATURES)
    assert result.method == "deep"
    assert list(result.values.columns) == FEATURES
    assert result.values.shape == (20, len(FEATURES))
    assert isinstance(result.base_value, float)
    _assert_additive(result, trained, X[200:220], atol=1e-4)
    # The base value is the mean prediction over the background rows.
    assert result.base_value == pytest.approx(float(predict(trained, X[:50]).mean()), abs=1e-5)


def test_permutation_method_is_additive_and_agrees_with_deep(
    trained: nn.Sequential, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    rows = X[200:210]
    permutation = explain(trained, X[:30], rows, FEATURES, method="permutation")
    assert permutation.method == "permutation"
    _assert_additive(permutation, trained, rows, atol=1e-5)
    deep = explain(trained, X[:30], rows, FEATURES, method="deep")
    assert deep.base_value == pytest.approx(permutation.base_value, abs=1e-5)
    # Both rank the same driver first (unit_price carries the largest true effect).
    assert mean_abs_shap(permutation.values)["feature"].iloc[0] == "unit_price"
    assert mean_abs_shap(deep.values)["feature"].iloc[0] == "unit_price"


def test_auto_falls_back_to_permutation_for_unsupported_architecture(
    data: tuple[np.ndarray, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    X, _ = data
    set_seed(0)
    network = nn.Sequential(nn.Linear(len(FEATURES), 8), nn.SiLU(), nn.Linear(8, 1))
    assert not deep_supported(network)
    with caplog.at_level(logging.INFO, logger="pricetrail.modeling.explain"):
        result = explain(network, X[:20], X[200:205], FEATURES)
    assert result.method == "permutation"
    assert "not supported by DeepExplainer" in caplog.text
    _assert_additive(result, network, X[200:205], atol=1e-5)
    with pytest.raises(ValueError, match="method='deep' needs a plain nn.Sequential"):
        explain(network, X[:20], X[200:205], FEATURES, method="deep")


def test_auto_falls_back_when_deep_explainer_fails(
    trained: nn.Sequential,
    data: tuple[np.ndarray, np.ndarray],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    X, _ = data

    def failing_deep(*args: object) -> None:
        raise ValueError("DeepExplainer values miss the model output by up to 0.5")

    monkeypatch.setattr(explain_module, "_explain_deep", failing_deep)
    with caplog.at_level(logging.WARNING, logger="pricetrail.modeling.explain"):
        result = explain(trained, X[:20], X[200:205], FEATURES)
    assert result.method == "permutation"
    assert "DeepExplainer failed (ValueError: DeepExplainer values miss" in caplog.text
    _assert_additive(result, trained, X[200:205], atol=1e-5)


@pytest.mark.parametrize(
    "network",
    [
        nn.Sequential(nn.Linear(6, 4), nn.ReLU(inplace=True), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(6, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 1)),
    ],
)
def test_deep_supported_rejects_inplace_and_unknown_modules(network: nn.Sequential) -> None:
    assert not deep_supported(network)


def test_deep_supported_rejects_a_reused_relu() -> None:
    relu = nn.ReLU()
    network = nn.Sequential(nn.Linear(6, 4), relu, nn.Linear(4, 4), relu, nn.Linear(4, 1))
    assert not deep_supported(network)


def test_dominant_feature_comes_first_with_its_own_name() -> None:
    # A hand-set network that is linear on the data (the ReLU stays active): output =
    # 0.1*a + 0.2*b + 5*c + 0.3*d + const, so "unit_price" (the third column) dominates.
    names = ["promo", "weekday", "unit_price", "month"]
    network = build_network(4, {"n_layers": 1, "units": [4], "dropout": [0.0], "batch_norm": False})
    with torch.no_grad():
        network[0].weight.copy_(torch.eye(4))
        network[0].bias.fill_(10.0)
        network[2].weight.copy_(torch.tensor([[0.1, 0.2, 5.0, 0.3]]))
        network[2].bias.zero_()
    rng = np.random.default_rng(1)
    X = rng.uniform(0.0, 1.0, size=(60, 4)).astype(np.float32)
    result = explain(network, X[:30], X[30:], names)
    assert result.method == "deep"

    ranking = mean_abs_shap(result.values)
    assert list(ranking["feature"]) == ["unit_price", "month", "weekday", "promo"]
    # Each score is the mean |SHAP| of the column with that name (exact for a linear model:
    # weight * |x - mean(background x)|).
    expected = {
        name: weight * float(np.abs(X[30:, i] - X[:30, i].mean()).mean())
        for i, (name, weight) in enumerate(zip(names, [0.1, 0.2, 5.0, 0.3], strict=True))
    }
    for name, score in zip(ranking["feature"], ranking["mean_abs_shap"], strict=True):
        assert score == pytest.approx(expected[name], rel=1e-4), name


def test_mean_abs_shap_keeps_labels_attached() -> None:
    values = pd.DataFrame({"a": [0.1, -0.1], "b": [-5.0, 5.0], "c": [1.0, -1.0], "d": [0.1, 0.1]})
    ranking = mean_abs_shap(values)
    assert list(ranking.columns) == ["feature", "mean_abs_shap"]
    assert list(ranking["feature"]) == ["b", "c", "a", "d"]  # ties keep column order
    assert list(ranking["mean_abs_shap"]) == pytest.approx([5.0, 1.0, 0.1, 0.1])
    assert list(ranking.index) == [0, 1, 2, 3]


def test_mean_abs_shap_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        mean_abs_shap(pd.DataFrame())
    with pytest.raises(ValueError, match=r"columns \['b'\]"):
        mean_abs_shap(pd.DataFrame({"a": [1.0], "b": [np.nan]}))


def test_feature_name_length_mismatch_raises(
    trained: nn.Sequential, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    with pytest.raises(ValueError, match="feature_names has 5 names but the network takes 6"):
        explain(trained, X[:10], X[10:12], FEATURES[:5])
    with pytest.raises(ValueError, match="X_explain has 5 columns but 6 feature names"):
        explain(trained, X[:10], X[10:12, :5], FEATURES)
    with pytest.raises(ValueError, match="repeats"):
        explain(trained, X[:10], X[10:12], ["a"] * 6)
    with pytest.raises(ValueError, match="method='tree'"):
        explain(trained, X[:10], X[10:12], FEATURES, method="tree")


def test_explain_leaves_the_callers_network_untouched(
    trained: nn.Sequential, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    before = {key: value.clone() for key, value in trained.state_dict().items()}
    trained.train()
    try:
        explain(trained, X[:10], X[10:12], FEATURES, method="deep")
        assert trained.training
        assert not trained[0]._forward_hooks and not trained[0]._backward_hooks
    finally:
        trained.eval()
    for key, value in trained.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_price_response_network_is_explained_exactly_and_fast() -> None:
    """Deep SHAP on the MLP over the context columns, the linear term's own values for the price columns."""
    from pricetrail.modeling.network import PriceResponseNetwork

    rng = np.random.default_rng(0)
    set_seed(0)
    network = build_network(4, {"n_layers": 1, "units": [8], "dropout": [0.0], "batch_norm": False,
                                "price_columns": [0, 2]})
    assert isinstance(network, PriceResponseNetwork)
    background = rng.normal(size=(30, 4)).astype(np.float32)
    rows = rng.normal(size=(10, 4)).astype(np.float32)
    result = explain(network, background, rows, ["p0", "c1", "p2", "c3"])
    assert result.method == "deep"
    total = result.values.to_numpy().sum(axis=1) + result.base_value
    np.testing.assert_allclose(total, predict(network, rows), atol=1e-4)
    beta = network.beta.detach().numpy()
    expected = -(rows[:, 0] - background[:, 0].mean()) * beta[0]
    np.testing.assert_allclose(result.values["p0"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
