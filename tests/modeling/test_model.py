"""Unit and behaviour tests for pricetrail.modeling (network, training, checkpoint, version, metrics)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import root_mean_squared_log_error
from torch import nn

from pricetrail.modeling.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_version,
    save_checkpoint,
    to_plain_types,
)
from pricetrail.modeling.metrics import expected_quantity, regression_metrics, smearing_factor
from pricetrail.modeling.network import (
    PriceResponseFit,
    PriceResponseNetwork,
    build_network,
    network_input_dim,
    pool_price_responses,
)
from pricetrail.modeling.refit import identifiable_price_columns, refit_output_layer, refit_price_response
from pricetrail.modeling.training import TrainingDivergedError, predict, set_seed, train_network

N_FEATURES = 6
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
CONFIG = {"n_layers": 2, "units": [16, 8], "dropout": [0.1, 0.0], "batch_norm": True}


def make_data(n_rows: int = 300, noise: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiny synthetic demand data: log1p(quantity) driven mostly by f0 and f1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, N_FEATURES)).astype(np.float32)
    y = (1.0 + 0.8 * X[:, 0] - 0.3 * X[:, 1] + rng.normal(scale=noise, size=n_rows)).astype(np.float32)
    return X, y


def fit(
    config: dict = CONFIG, seed: int = 0, *, max_epochs: int = 8, **overrides: object
) -> tuple[nn.Sequential, object]:
    X, y = make_data()
    set_seed(seed)
    network = build_network(N_FEATURES, config)
    kwargs = {
        "learning_rate": 1e-2,
        "optimizer": "adam",
        "batch_size": 32,
        "max_epochs": max_epochs,
        "patience": 3,
        "seed": seed,
    }
    kwargs.update(overrides)
    result = train_network(network, X[:200], y[:200], X[200:], y[200:], **kwargs)
    return network, result


@pytest.fixture(scope="module")
def trained() -> nn.Sequential:
    network, _ = fit()
    return network


# ---------------------------------------------------------------------------------------------- network


def test_build_network_layer_order_and_separate_relus() -> None:
    network = build_network(N_FEATURES, CONFIG)
    kinds = [type(module).__name__ for module in network]
    assert kinds == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
    ]
    relus = [module for module in network if isinstance(module, nn.ReLU)]
    assert len({id(relu) for relu in relus}) == 2
    assert not any(relu.inplace for relu in relus)
    assert network[-1].out_features == 1
    assert network(torch.zeros(4, N_FEATURES)).shape == (4, 1)


def test_build_network_without_batch_norm_or_dropout() -> None:
    network = build_network(3, {"n_layers": 1, "units": [5], "dropout": [0.0], "batch_norm": False})
    assert [type(module).__name__ for module in network] == ["Linear", "ReLU", "Linear"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"n_layers": 0, "units": [], "dropout": [], "batch_norm": False}, "n_layers"),
        ({"n_layers": 2, "units": [8], "dropout": [0.0, 0.0], "batch_norm": False}, "units"),
        ({"n_layers": 1, "units": [0], "dropout": [0.0], "batch_norm": False}, "units"),
        ({"n_layers": 1, "units": [8], "dropout": [1.0], "batch_norm": False}, "dropout"),
        ({"n_layers": 1, "units": [8], "dropout": [0.0], "batch_norm": "yes"}, "batch_norm"),
        ({"n_layers": 1, "units": [8], "dropout": [0.0]}, "batch_norm"),
        ({"n_layers": True, "units": [8], "dropout": [0.0], "batch_norm": False}, "n_layers"),
    ],
)
def test_build_network_rejects_bad_config(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_network(N_FEATURES, config)


def test_build_network_rejects_bad_input_dim() -> None:
    with pytest.raises(ValueError, match="input_dim"):
        build_network(0, CONFIG)


# ---------------------------------------------------------------------------------------------- training


def test_early_stopping_restores_best_epoch_weights() -> None:
    # Few noisy rows and a wide network: the validation loss bottoms out, then rises as it overfits.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, N_FEATURES)).astype(np.float32)
    y = (0.5 * X[:, 0] + rng.normal(scale=1.0, size=80)).astype(np.float32)
    config = {"n_layers": 2, "units": [64, 64], "dropout": [0.0, 0.0], "batch_norm": False}
    set_seed(0)
    network = build_network(N_FEATURES, config)
    result = train_network(
        network,
        X[:40],
        y[:40],
        X[40:],
        y[40:],
        learning_rate=1e-3,
        optimizer="adam",
        batch_size=8,
        max_epochs=80,
        patience=5,
        seed=0,
    )
    val_losses = [row["val_loss"] for row in result.history]
    assert result.epochs_run == len(result.history) == result.best_epoch + 5  # stopped by patience
    assert result.best_epoch > 1
    assert result.best_val_loss == min(val_losses) == result.history[result.best_epoch - 1]["val_loss"]
    assert val_losses[-1] > result.best_val_loss * 1.02  # the last epoch really was worse

    # The returned weights are the best epoch's, not the last epoch's.
    returned_loss = regression_metrics(y[40:], predict(network, X[40:]))["mse_log"]
    assert returned_loss == pytest.approx(result.best_val_loss, rel=1e-6)
    assert returned_loss != pytest.approx(val_losses[-1], rel=1e-3)
    assert not network.training


def test_training_is_deterministic_for_a_seed() -> None:
    first, first_result = fit(seed=3)
    second, second_result = fit(seed=3)
    assert first_result == second_result
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_batches_are_reshuffled_every_epoch_and_depend_on_the_seed() -> None:
    X, y = make_data(n_rows=64)
    config = {"n_layers": 1, "units": [4], "dropout": [0.0], "batch_norm": False}

    def first_batches(seed: int) -> list[torch.Tensor]:
        set_seed(0)  # same initial weights; only the training seed differs
        network = build_network(N_FEATURES, config)
        seen: list[torch.Tensor] = []

        def record(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
            if module.training:
                seen.append(inputs[0].clone())

        network[0].register_forward_pre_hook(record)
        train_network(
            network,
            X[:48],
            y[:48],
            X[48:],
            y[48:],
            learning_rate=1e-3,
            optimizer="sgd",
            batch_size=16,
            max_epochs=2,
            patience=5,
            seed=seed,
        )
        return seen

    seed_a = first_batches(1)
    assert len(seed_a) == 6  # 3 batches x 2 epochs
    epoch1, epoch2 = torch.cat(seed_a[:3]), torch.cat(seed_a[3:])
    # Every training row is used once per epoch ...
    rows = torch.from_numpy(X[:48])
    assert torch.equal(epoch1[torch.argsort(epoch1[:, 0])], rows[torch.argsort(rows[:, 0])])
    # ... in a new order each epoch, and not in file order.
    assert not torch.equal(epoch1, epoch2)
    assert not torch.equal(epoch1, rows)
    # A different seed gives a different order; the same seed the same order.
    assert not torch.equal(epoch1, torch.cat(first_batches(2)[:3]))
    assert torch.equal(epoch1, torch.cat(first_batches(1)[:3]))


def test_trailing_batch_of_one_row_does_not_break_batch_norm() -> None:
    X, y = make_data(n_rows=50)
    set_seed(0)
    network = build_network(N_FEATURES, CONFIG)
    result = train_network(
        network,
        X[:33],
        y[:33],
        X[33:],
        y[33:],
        learning_rate=1e-2,
        optimizer="rmsprop",
        batch_size=32,
        max_epochs=2,
        patience=2,
        seed=0,
    )
    assert result.epochs_run == 2


def test_on_epoch_receives_every_epoch_and_its_exception_propagates() -> None:
    calls: list[tuple[int, float]] = []

    class Stop(Exception):
        pass

    def on_epoch(epoch: int, val_loss: float) -> None:
        calls.append((epoch, val_loss))
        if epoch == 3:
            raise Stop

    with pytest.raises(Stop):
        fit(on_epoch=on_epoch, max_epochs=10)
    assert [epoch for epoch, _ in calls] == [1, 2, 3]
    assert all(math.isfinite(loss) for _, loss in calls)


def test_nan_loss_raises_training_diverged() -> None:
    X, y = make_data(n_rows=40)
    network = build_network(N_FEATURES, CONFIG)
    with torch.no_grad():
        network[0].weight[0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        train_network(
            network,
            X[:30],
            y[:30],
            X[30:],
            y[30:],
            learning_rate=1e-2,
            optimizer="adamw",
            batch_size=8,
            max_epochs=3,
            patience=2,
            seed=0,
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optimizer": "adagrad"}, "optimizer='adagrad'"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"patience": 0}, "patience"),
    ],
)
def test_train_network_rejects_bad_arguments(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit(**overrides)


def test_train_network_rejects_bad_data() -> None:
    X, y = make_data(n_rows=40)
    network = build_network(N_FEATURES, CONFIG)
    kwargs = {
        "learning_rate": 1e-2,
        "optimizer": "adam",
        "batch_size": 8,
        "max_epochs": 1,
        "patience": 1,
        "seed": 0,
    }
    with pytest.raises(ValueError, match="y_train"):
        train_network(network, X[:30], y[:29], X[30:], y[30:], **kwargs)
    with pytest.raises(ValueError, match="X_val has 5 columns"):
        train_network(network, X[:30], y[:30], X[30:, :5], y[30:], **kwargs)
    X_nan = X.copy()
    X_nan[3, 2] = np.nan
    with pytest.raises(ValueError, match="X_train holds 1 NaN"):
        train_network(network, X_nan[:30], y[:30], X[30:], y[30:], **kwargs)


def test_train_accepts_read_only_arrays() -> None:
    X, y = make_data(n_rows=40)
    X.setflags(write=False)
    y.setflags(write=False)
    network = build_network(N_FEATURES, CONFIG)
    train_network(
        network,
        X[:30],
        y[:30],
        X[30:],
        y[30:],
        learning_rate=1e-2,
        optimizer="adam",
        batch_size=8,
        max_epochs=1,
        patience=1,
        seed=0,
    )


# ---------------------------------------------------------------------------------------------- predict


def test_predict_returns_float64_vector_and_keeps_mode(trained: nn.Sequential) -> None:
    X, _ = make_data(n_rows=10)
    trained.train()
    predictions = predict(trained, X, batch_size=3)
    assert predictions.dtype == np.float64
    assert predictions.shape == (10,)
    assert trained.training  # mode restored
    trained.eval()
    np.testing.assert_allclose(predictions, predict(trained, X), rtol=1e-5, atol=1e-6)  # float32 batching


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_predict_raises_on_non_finite_output(bad: float) -> None:
    network = build_network(N_FEATURES, {"n_layers": 1, "units": [4], "dropout": [0.0], "batch_norm": False})
    with torch.no_grad():
        network[-1].bias[0] = bad
    X, _ = make_data(n_rows=5)
    with pytest.raises(ValueError, match="model produced 5 non-finite predictions"):
        predict(network, X)


def test_predict_rejects_wrong_column_count(trained: nn.Sequential) -> None:
    with pytest.raises(ValueError, match="X has 4 columns but the network expects 6"):
        predict(trained, np.zeros((3, 4), dtype=np.float32))


# ---------------------------------------------------------------------------------------------- version


def test_model_version_is_a_stable_content_hash(trained: nn.Sequential) -> None:
    version = model_version(trained, CONFIG)
    assert len(version) == 16 and int(version, 16) >= 0
    assert model_version(trained, CONFIG) == version
    clone = build_network(N_FEATURES, CONFIG)
    clone.load_state_dict(trained.state_dict())
    assert model_version(clone, dict(reversed(list(CONFIG.items())))) == version  # key order irrelevant

    with torch.no_grad():
        clone[0].weight[0, 0] += 1e-3
    assert model_version(clone, CONFIG) != version
    assert model_version(trained, {**CONFIG, "dropout": [0.2, 0.0]}) != version


# ---------------------------------------------------------------------------------------------- checkpoint


def test_checkpoint_round_trip(trained: nn.Sequential, tmp_path: Path) -> None:
    path = tmp_path / "models" / "85123A" / "model.pt"
    metadata = {
        "stockcode": np.str_("85123A"),
        "seed": np.int64(7),
        "val_loss": np.float32(0.25),
        "mae": np.float64(1.5),
        "path": tmp_path,
    }
    version = save_checkpoint(path, trained, config=CONFIG, feature_names=FEATURES, metadata=metadata)

    assert version == model_version(trained, CONFIG)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left behind

    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["model_version"] == version
    assert raw["feature_names"] == FEATURES
    assert raw["input_dim"] == N_FEATURES
    assert raw["config"] == CONFIG
    assert raw["metadata"] == {
        "stockcode": "85123A",
        "seed": 7,
        "val_loss": 0.25,
        "mae": 1.5,
        "path": str(tmp_path),
    }
    assert [type(raw["metadata"][key]) for key in ("stockcode", "seed", "val_loss", "mae")] == [
        str,
        int,
        float,
        float,
    ]

    network, checkpoint = load_checkpoint(path)
    assert not network.training
    assert checkpoint["model_version"] == version == model_version(network, checkpoint["config"])
    X, _ = make_data(n_rows=20)
    np.testing.assert_array_equal(predict(network, X), predict(trained, X))


def test_save_overwrites_atomically_and_rejects_mismatched_config(
    trained: nn.Sequential, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(path, trained, config=CONFIG, feature_names=FEATURES, metadata={})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="config does not describe this network"):
        save_checkpoint(
            path, trained, config={**CONFIG, "units": [32, 8]}, feature_names=FEATURES, metadata={}
        )
    with pytest.raises(ValueError, match="feature_names has 2 names"):
        save_checkpoint(path, trained, config=CONFIG, feature_names=["a", "b"], metadata={})
    with pytest.raises(TypeError, match=r"metadata\['when'\]"):
        save_checkpoint(path, trained, config=CONFIG, feature_names=FEATURES, metadata={"when": object()})
    assert path.read_bytes() == before  # failed saves leave the existing checkpoint alone
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_truncated_garbage_and_missing_files_raise_checkpoint_error(
    trained: nn.Sequential, tmp_path: Path
) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(good, trained, config=CONFIG, feature_names=FEATURES, metadata={})
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint\n" * 20)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (truncated, garbage, empty, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            load_checkpoint(path)
    assert issubclass(CheckpointError, ValueError)


def _rewrite(path: Path, **changes: object) -> None:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint.update(changes)
    torch.save(checkpoint, path)


def test_state_dict_not_fitting_its_config_raises_checkpoint_error(
    trained: nn.Sequential, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(path, trained, config=CONFIG, feature_names=FEATURES, metadata={})
    _rewrite(path, config={**CONFIG, "units": [32, 8]})
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: state_dict does not fit its config")):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"config": {"n_layers": 2}}, "invalid config"),
        ({"format_version": 99}, "format_version 99"),
        ({"feature_names": ["a"]}, "1 feature_names for input_dim 6"),
        ({"model_version": "0000000000000000"}, "altered"),
    ],
)
def test_inconsistent_checkpoints_raise_checkpoint_error(
    trained: nn.Sequential, tmp_path: Path, changes: dict, message: str
) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(path, trained, config=CONFIG, feature_names=FEATURES, metadata={})
    _rewrite(path, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_checkpoint_missing_keys_raises(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(path)


def test_to_plain_types_converts_numpy_and_rejects_objects() -> None:
    plain = to_plain_types({"a": np.array([1, 2]), "b": (np.float64(0.5), np.bool_(True))})
    assert plain == {"a": [1, 2], "b": [0.5, True]}
    assert [type(plain["a"][0]), type(plain["b"][0]), type(plain["b"][1])] == [int, float, bool]
    with pytest.raises(TypeError, match=r"value\['x'\] is a set"):
        to_plain_types({"x": {1}})


# ---------------------------------------------------------------------------------------------- metrics


def test_regression_metrics_hand_computed() -> None:
    true_q = np.array([0.0, 1.0, 3.0])
    y_true = np.log1p(true_q)
    y_pred = np.array([math.log(2.0), math.log(2.0), -0.5])  # quantities 1, 1, -0.39 (clipped to 0)
    metrics = regression_metrics(y_true, y_pred)

    assert metrics["n"] == 3
    assert metrics["mse_log"] == pytest.approx((math.log(2) ** 2 + 0.0 + (-0.5 - math.log(4)) ** 2) / 3)
    assert metrics["mae"] == pytest.approx((1.0 + 0.0 + 3.0) / 3)
    assert metrics["rmsle"] == pytest.approx(math.sqrt((math.log(2) ** 2 + math.log(4) ** 2) / 3))
    assert metrics["rmsle"] == pytest.approx(root_mean_squared_log_error(true_q, [1.0, 1.0, 0.0]))
    assert all(isinstance(value, float) for key, value in metrics.items() if key != "n")


def test_regression_metrics_perfect_prediction() -> None:
    y = np.log1p(np.array([2.0, 5.0, 10.0]))
    assert regression_metrics(y, y) == {"mse_log": 0.0, "mae": pytest.approx(0.0), "rmsle": 0.0, "n": 3}


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([1.0, 2.0], [1.0], "2 values but y_pred_log has 1"),
        ([], [], "empty"),
        ([1.0, np.nan], [1.0, 2.0], "y_true_log holds 1 NaN"),
        ([1.0, 2.0], [np.inf, 2.0], "y_pred_log holds 1 NaN or infinite"),
    ],
)
def test_regression_metrics_rejects_bad_input(y_true: list, y_pred: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        regression_metrics(np.array(y_true), np.array(y_pred))


# ---------------------------------------------------------------------------------------------- price response

PRICE_CONFIG = {**CONFIG, "price_columns": [0, 2]}


def price_data(slopes: tuple[float, float] = (0.6, 0.2), n_rows: int = 600, seed: int = 1) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """log1p(q) = 1.5 + 0.5 f1 - slopes . (f0, f2) + noise: the price columns are 0 and 2."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, N_FEATURES)).astype(np.float32)
    y = 1.5 + 0.5 * X[:, 1] - slopes[0] * X[:, 0] - slopes[1] * X[:, 2] + rng.normal(scale=0.3, size=n_rows)
    return X, y.astype(np.float32)


def test_price_response_network_cannot_raise_demand_with_a_price_column() -> None:
    set_seed(0)
    network = build_network(N_FEATURES, PRICE_CONFIG)
    assert isinstance(network, PriceResponseNetwork)
    assert network_input_dim(network) == N_FEATURES
    with torch.no_grad():
        network.price_weight.normal_()  # any weights: the sign comes from softplus, not from training
    base = np.random.default_rng(0).normal(size=(1, N_FEATURES)).astype(np.float32)
    grid = np.repeat(base, 50, axis=0)
    grid[:, 0] = np.linspace(-3, 3, 50)
    assert np.all(np.diff(predict(network, grid)) <= 1e-6)


def test_refit_recovers_the_price_slopes_and_their_uncertainty() -> None:
    X, y = price_data()
    set_seed(0)
    network = build_network(N_FEATURES, PRICE_CONFIG)
    train_network(network, X[:500], y[:500], X[500:], y[500:], learning_rate=1e-2, optimizer="adam", batch_size=64,
                  max_epochs=15, patience=5, seed=0)
    fit = refit_price_response(network, X[:500], y[:500])
    sd = np.sqrt(np.diag(fit.covariance))
    assert fit.beta == pytest.approx([0.6, 0.2], abs=0.08)
    assert np.all(sd > 0) and np.all(sd < 0.05)
    assert fit.fixed_zero == [] and fit.rows == 500
    # The network now predicts with the refit weights.
    assert network.beta.detach().numpy() == pytest.approx(fit.beta, abs=1e-5)


def test_refit_fixes_a_rising_price_column_at_zero() -> None:
    X, y = price_data(slopes=(0.6, -0.4))  # column 2 raises demand: the structure cannot, so its weight is 0
    set_seed(0)
    network = build_network(N_FEATURES, PRICE_CONFIG)
    fit = refit_price_response(network, X, y)
    assert fit.fixed_zero == [1]
    assert fit.beta[1] == pytest.approx(0.0, abs=1e-9)
    assert fit.covariance[1] == [0.0, 0.0]
    assert fit.beta[0] > 0.3


def test_refit_of_a_product_sold_at_one_price_fixes_its_price_weights_at_zero() -> None:
    """A real product (22045) sold at 0.42 on every training row: the price columns are the level's twin, so least
    squares had no solution and tuning ended in torch's "input matrix is singular". Now the model reads no price
    response, and says so, and the risk gate's elasticity check refuses it."""
    X, y = price_data()
    for price, log_price in ((0.0, 0.0), (0.42, math.log(0.42))):  # as the fitted scaler gives it; as paid
        X[:, 0], X[:, 2] = price, log_price
        set_seed(0)
        network = build_network(N_FEATURES, PRICE_CONFIG)
        fit = refit_price_response(network, X, y)
        assert fit.fixed_zero == [0, 1]
        assert fit.beta == pytest.approx([0.0, 0.0], abs=1e-9)
        assert np.all(np.isfinite(predict(network, X)))


def test_refit_of_a_product_sold_at_two_prices_keeps_one_price_weight() -> None:
    X, y = price_data(slopes=(0.6, 0.0))
    two_prices = np.where(X[:, 0] > 0, 1.0, -1.0).astype(np.float32)
    X[:, 0] = two_prices
    X[:, 2] = np.log(two_prices + 3.0)  # the log price: at two prices, a line through the price column
    y = (1.5 + 0.5 * X[:, 1] - 0.6 * two_prices
         + np.random.default_rng(2).normal(scale=0.3, size=len(y))).astype(np.float32)
    set_seed(0)
    network = build_network(N_FEATURES, PRICE_CONFIG)
    fit = refit_price_response(network, X, y)
    assert fit.fixed_zero == [1]
    assert fit.beta[0] == pytest.approx(0.6, abs=0.1)
    assert 0 < fit.covariance[0][0] < 0.01


def test_identifiable_price_columns() -> None:
    price = torch.tensor([[1.0, 0.0, 5.0], [2.0, 0.69, 5.0], [3.0, 1.1, 5.0]], dtype=torch.float64)
    assert identifiable_price_columns(price) == [0, 1]  # the constant third column adds nothing
    assert identifiable_price_columns(price[:, [2]]) == []
    assert identifiable_price_columns(torch.stack([price[:, 0], 2 * price[:, 0] + 1], dim=1)) == [0]
    assert identifiable_price_columns(torch.zeros(4, 0, dtype=torch.float64)) == []


def test_refitting_the_output_layer_moves_the_level_and_keeps_the_price_weights() -> None:
    X, y = price_data()
    set_seed(0)
    network = build_network(N_FEATURES, PRICE_CONFIG)
    fit = refit_price_response(network, X[:400], y[:400])
    shifted = y[400:] + 0.5  # newer rows at a higher level
    before = float(np.mean(shifted - predict(network, X[400:])))
    refit_output_layer(network, X, np.concatenate([y[:400], shifted]))
    assert network.beta.detach().numpy() == pytest.approx(fit.beta, abs=1e-6)  # the price weights as they were
    after = float(np.mean(shifted - predict(network, X[400:])))
    assert before == pytest.approx(0.5, abs=0.1) and 0.1 < after < before  # the level moved towards the new rows
    residual = np.concatenate([y[:400], shifted]) - predict(network, X)
    assert abs(float(residual.mean())) < 1e-3  # the level is unpenalised: residuals of the fit average 0


def test_refit_output_layer_refuses_what_it_cannot_solve() -> None:
    X, y = price_data(n_rows=40)
    set_seed(0)
    with pytest.raises(ValueError, match="needs a PriceResponseNetwork, got Sequential"):
        refit_output_layer(build_network(N_FEATURES, CONFIG), X, y)  # type: ignore[arg-type]
    network = build_network(N_FEATURES, PRICE_CONFIG)
    with pytest.raises(ValueError, match="ridge=-1 is invalid"):
        refit_output_layer(network, X, y, ridge=-1)
    with pytest.raises(ValueError, match=r"needs more than \d+ rows, got 5"):
        refit_output_layer(network, X[:5], y[:5])
    y_bad = y.copy()
    y_bad[3] = np.nan
    with pytest.raises(ValueError, match="y"):
        refit_output_layer(network, X, y_bad)


def test_pooling_adds_the_spread_between_trials_to_the_covariance() -> None:
    fit = PriceResponseFit(beta=[0.5, 0.2], covariance=[[0.01, 0.0], [0.0, 0.02]], fixed_zero=[], residual_sd=0.3,
                           rows=100)
    betas = [[0.5, 0.2], [0.7, 0.2], [0.3, 0.2]]  # the first weight differs between trials, the second does not
    pooled = pool_price_responses(fit, betas)
    between = np.var([0.5, 0.7, 0.3], ddof=1)
    assert pooled.covariance[0][0] == pytest.approx(0.01 + (1 + 1 / 3) * between)
    assert pooled.covariance[1][1] == pytest.approx(0.02)  # agreement adds nothing
    assert pooled.beta == fit.beta and pooled.within_covariance == fit.covariance and pooled.pooled_trials == 3
    assert pooled.to_dict()["pooled_trials"] == 3
    single = pool_price_responses(fit, betas[:1])
    assert single.covariance == fit.covariance and single.pooled_trials == 1


@pytest.mark.parametrize("betas", [[[0.5]], [[0.5, 0.2, 0.1]], [[0.5, float("nan")]], [0.5, 0.2]])
def test_pooling_refuses_weights_of_another_shape(betas: object) -> None:
    fit = PriceResponseFit(beta=[0.5, 0.2], covariance=[[0.01, 0.0], [0.0, 0.02]], fixed_zero=[], residual_sd=0.3,
                           rows=100)
    with pytest.raises(ValueError, match="trial_betas must be M rows of 2 finite price weights"):
        pool_price_responses(fit, betas)  # type: ignore[arg-type]


def test_price_response_checkpoint_round_trip(tmp_path: Path) -> None:
    set_seed(0)
    network = build_network(N_FEATURES, PRICE_CONFIG)
    path = tmp_path / "model.pt"
    version = save_checkpoint(path, network, config=PRICE_CONFIG, feature_names=FEATURES, metadata={"a": 1})
    loaded, checkpoint = load_checkpoint(path)
    assert isinstance(loaded, PriceResponseNetwork) and checkpoint["model_version"] == version
    X, _ = price_data(n_rows=20)
    assert predict(loaded, X) == pytest.approx(predict(network, X))
    assert "price_index" not in checkpoint["state_dict"]  # indices come from the config, not the weights


@pytest.mark.parametrize(("columns", "message"), [
    ([], "non-empty list"),
    ("0", "non-empty list"),
    ([0, 0], "distinct column indices"),
    ([-1], "distinct column indices"),
    ([N_FEATURES], "beyond input_dim"),
    (list(range(N_FEATURES)), "leaves no context column"),
])
def test_price_columns_are_validated(columns: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_network(N_FEATURES, {**CONFIG, "price_columns": columns})


def test_smearing_turns_a_mean_log_into_an_expectation() -> None:
    rng = np.random.default_rng(0)
    log_true = 2.0 + rng.normal(scale=0.5, size=20000)
    prediction = np.full_like(log_true, 2.0)  # the mean of the log: expm1 of it is a median, not a mean
    factor = smearing_factor(log_true, prediction)
    assert factor == pytest.approx(math.exp(0.5**2 / 2), rel=0.02)
    assert expected_quantity(prediction, factor).mean() == pytest.approx(np.expm1(log_true).mean(), rel=0.02)
    assert expected_quantity(np.array([-5.0])) == pytest.approx([0.0])
    with pytest.raises(ValueError, match="smearing"):
        expected_quantity(prediction, 0.0)
    with pytest.raises(ValueError, match="as many predictions"):
        smearing_factor(log_true, prediction[:3])
