"""Tests for pricetrail.modeling.tuning: a tiny seeded Optuna search and search-space validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pytest
import torch

from pricetrail.modeling.metrics import regression_metrics
from pricetrail.modeling.network import PriceResponseNetwork
from pricetrail.modeling.training import predict
from pricetrail.modeling.tuning import TuningResult, tune, validate_search_space

SEARCH_SPACE: dict[str, Any] = {
    "n_layers": [1, 3],
    "units": [16, 128],
    "dropout": [0.0, 0.4],
    "batch_norm": [True, False],
    "learning_rate": [1.0e-4, 1.0e-2],
    "optimizer": ["adam", "adamw", "rmsprop", "sgd"],
    "batch_size": [32, 64, 128, 256],
}


def make_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    y = (1.0 + 0.8 * X[:, 0] - 0.3 * X[:, 1] + rng.normal(scale=0.3, size=300)).astype(np.float32)
    return X[:200], y[:200], X[200:], y[200:]


def run(seed: int = 7, **overrides: Any) -> TuningResult:
    kwargs: dict[str, Any] = {
        "search_space": SEARCH_SPACE,
        "n_trials": 3,
        "max_epochs": 6,
        "patience": 2,
        "timeout_seconds": None,
        "seed": seed,
    }
    kwargs.update(overrides)
    return tune(*make_split(), **kwargs)


@pytest.fixture(scope="module")
def result() -> TuningResult:
    return run()


def _assert_plain(value: Any, where: str = "best_params") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, where
            _assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _assert_plain(item, f"{where}[{index}]")
    else:
        assert type(value) in (int, float, str, bool, type(None)), f"{where} is {type(value).__name__}"


def test_tune_runs_and_returns_plain_best_params(result: TuningResult) -> None:
    params = result.best_params
    _assert_plain(params)
    assert set(params) == set(SEARCH_SPACE)
    assert 1 <= params["n_layers"] <= 3
    assert len(params["units"]) == len(params["dropout"]) == params["n_layers"]
    assert all(16 <= units <= 128 for units in params["units"])
    assert all(0.0 <= rate <= 0.4 for rate in params["dropout"])
    assert 1e-4 <= params["learning_rate"] <= 1e-2
    assert params["optimizer"] in SEARCH_SPACE["optimizer"]
    assert params["batch_size"] in SEARCH_SPACE["batch_size"]

    assert result.n_trials_complete + result.n_trials_pruned + result.n_trials_failed == 3
    assert result.n_trials_complete >= 1
    assert [trial["number"] for trial in result.trials] == [0, 1, 2]
    for trial in result.trials:
        _assert_plain(trial, "trial")
        assert trial["state"] in {"COMPLETE", "PRUNED", "FAIL"}


def test_retrained_best_network_reproduces_the_best_trial(result: TuningResult) -> None:
    complete = [trial["value"] for trial in result.trials if trial["state"] == "COMPLETE"]
    # Same seed and config as the best trial: the refit from scratch lands on the same loss.
    assert result.train_result.best_val_loss == pytest.approx(min(complete), rel=1e-9)
    _, _, X_val, y_val = make_split()
    mse = regression_metrics(y_val, predict(result.network, X_val))["mse_log"]
    assert mse == pytest.approx(result.train_result.best_val_loss, rel=1e-6)  # best weights restored


def test_tune_is_deterministic_for_a_seed(result: TuningResult) -> None:
    again = run()
    assert again.best_params == result.best_params
    assert again.trials == result.trials
    for a, b in zip(result.network.state_dict().values(), again.network.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = run(seed=8)
    assert other.trials[0]["params"] != result.trials[0]["params"]


def test_tune_restores_optuna_verbosity() -> None:
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        run(n_trials=1, max_epochs=1, patience=1)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_diverging_trials_are_failed_and_reported() -> None:
    # SGD with momentum at this learning rate blows up within the first epoch.
    space = {**SEARCH_SPACE, "learning_rate": [1.0e4, 1.0e4], "optimizer": ["sgd"], "batch_norm": [False]}
    with pytest.raises(RuntimeError, match=r"no tuning trial completed \(0 pruned, 2 failed of 2\)"):
        run(search_space=space, n_trials=2, max_epochs=2)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"units": [128, 16]}, r"search_space\['units'\]"),
        ({"n_layers": [0, 2]}, r"search_space\['n_layers'\]"),
        ({"n_layers": [1.5, 2]}, r"search_space\['n_layers'\]"),
        ({"dropout": [0.0, 1.0]}, r"search_space\['dropout'\]"),
        ({"learning_rate": [0.0, 1.0e-2]}, r"search_space\['learning_rate'\]"),
        ({"learning_rate": ["1e-4", 1.0e-2]}, r"search_space\['learning_rate'\].*1\.0e-4, not 1e-4"),
        ({"optimizer": ["adam", "adagrad"]}, r"search_space\['optimizer'\] holds \['adagrad'\]"),
        ({"batch_norm": ["yes"]}, r"search_space\['batch_norm'\]"),
        ({"batch_size": []}, r"search_space\['batch_size'\]"),
        ({"batch_size": [32, 0]}, r"search_space\['batch_size'\]"),
        ({"units": 64}, r"search_space\['units'\]"),
        ({"epochs": [1, 2]}, r"unknown keys \['epochs'\]"),
    ],
)
def test_search_space_errors_name_the_key(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_search_space({**SEARCH_SPACE, **changes})


def test_search_space_missing_key_is_named() -> None:
    space = {key: value for key, value in SEARCH_SPACE.items() if key != "optimizer"}
    with pytest.raises(ValueError, match=r"missing keys \['optimizer'\]"):
        validate_search_space(space)


def test_tune_validates_before_searching() -> None:
    with pytest.raises(ValueError, match=r"search_space\['units'\]"):
        run(search_space={**SEARCH_SPACE, "units": [128, 16]})
    with pytest.raises(ValueError, match="n_trials=0"):
        run(n_trials=0)
    with pytest.raises(ValueError, match="timeout_seconds=-1"):
        run(timeout_seconds=-1)


def test_a_time_limit_that_holds_changes_nothing(result: TuningResult) -> None:
    limited = run(timeout_seconds=3600)
    assert limited.best_params == result.best_params and limited.trials == result.trials


def test_exceeding_the_time_limit_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from pricetrail.modeling import tuning

    readings = iter([0.0, 100.0, 200.0, 300.0])
    monkeypatch.setattr(tuning.time, "monotonic", lambda: next(readings))
    with pytest.raises(tuning.TuningTimeout, match=r"for 1 of 3 trials, over tune_primary_model.timeout_seconds=50"):
        run(timeout_seconds=50)


def test_price_response_trials_record_their_weights_and_pool_the_best() -> None:
    pooled = run(n_trials=4, price_columns=[0], pool_trials=3)
    single = run(n_trials=4, price_columns=[0], pool_trials=1)
    assert isinstance(pooled.network, PriceResponseNetwork)
    complete = [t for t in pooled.trials if t["state"] == "COMPLETE"]
    assert complete and all(len(t["price_weights"]) == 1 for t in complete)
    assert pooled.price_response is not None and single.price_response is not None
    assert pooled.price_response.beta == single.price_response.beta  # pooling widens, it does not move the weights
    assert pooled.price_response.pooled_trials == min(3, len(complete))
    assert pooled.price_response.within_covariance == single.price_response.covariance
    assert pooled.price_response.covariance[0][0] >= single.price_response.covariance[0][0]
    with pytest.raises(ValueError, match="pool_trials=0"):
        run(pool_trials=0)


def test_the_final_fit_on_train_and_validation_rows_keeps_the_choice_and_the_held_out_figures() -> None:
    X_train, y_train, X_val, y_val = make_split()
    train_only = run(n_trials=3, price_columns=[1], final_fit_rows="train")
    both = run(n_trials=3, price_columns=[1], final_fit_rows="train_and_validation")
    assert both.best_params == train_only.best_params and both.trials == train_only.trials  # validation chose
    assert train_only.final_fit_rows == "train" and both.final_fit_rows == "train_and_validation"
    assert train_only.price_response is not None and both.price_response is not None
    # The price weights are the training rows' in both: only the output layer sees the validation rows.
    assert both.price_response == train_only.price_response and both.price_response.rows == len(y_train)
    assert isinstance(both.network, PriceResponseNetwork)
    torch.testing.assert_close(both.network.beta, train_only.network.beta)
    assert not torch.equal(both.network.demand[-1].bias, train_only.network.demand[-1].bias)
    # The validation figures are the selected network's before the refit saw those rows: the same in both runs.
    np.testing.assert_array_equal(both.validation_prediction, train_only.validation_prediction)
    np.testing.assert_array_equal(train_only.validation_prediction, predict(train_only.network, X_val))
    # The served output layer is the least squares on all 300 rows: it fits the validation rows at least as well.
    refit_loss = float(np.mean((predict(both.network, X_val) - y_val) ** 2))
    held_out_loss = float(np.mean((both.validation_prediction - y_val) ** 2))
    assert refit_loss <= held_out_loss
    assert both.price_response.beta[0] > 0  # y falls with column 1: a positive price weight


def test_an_unknown_final_fit_rows_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"final_fit_rows='all' is not accepted; use one of \['train', "):
        run(final_fit_rows="all")
