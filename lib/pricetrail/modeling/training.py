"""Training the demand network with early stopping, and predicting with it; on CPU, one torch thread."""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pricetrail.modeling.network import is_real_number, is_whole_number, network_input_dim

logger = logging.getLogger(__name__)

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "rmsprop")


# Momentum for "sgd": plain SGD at the learning rates of the search space barely moves in a few
# dozen epochs, which would make it a wasted option for the tuner.
SGD_MOMENTUM = 0.9


class TrainingDivergedError(RuntimeError):
    """The training or validation loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train_network`; epochs are numbered from 1."""

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def _use_one_thread() -> None:
    # On a small, busy machine several intra-op threads make a small MLP several times slower (OpenMP threads
    # spin-wait for each other); one thread per process.
    torch.set_num_threads(1)


def set_seed(seed: int) -> None:
    """Seed python ``random``, numpy's global generator and torch."""
    if not is_whole_number(seed):
        raise ValueError(f"seed={seed!r} is invalid; expected an int")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


# ---------------------------------------------------------------------------------------------
# training


def _as_features(X: np.ndarray, name: str, input_dim: int | None = None) -> torch.Tensor:
    array = np.asarray(X)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-d array (rows x features), got shape {array.shape}")
    if input_dim is not None and array.shape[1] != input_dim:
        raise ValueError(f"{name} has {array.shape[1]} columns but the network expects {input_dim} features")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    # A copy: pandas 3 hands out read-only arrays, which torch.from_numpy refuses to share.
    tensor = torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
    return tensor


def _as_target(y: np.ndarray, name: str, n_rows: int) -> torch.Tensor:
    array = np.asarray(y)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.shape[0] != n_rows:
        raise ValueError(
            f"{name} must be a 1-d array of {n_rows} values (one per row), got shape {array.shape}"
        )
    tensor = torch.from_numpy(np.array(array, dtype=np.float32, copy=True)).unsqueeze(1)
    return tensor


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    bad = int((~torch.isfinite(tensor)).sum())
    if bad:
        raise ValueError(f"{name} holds {bad} NaN or infinite values; impute or drop them before training")


def _make_optimizer(name: str, params: Any, learning_rate: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate)
    if name == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=SGD_MOMENTUM)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=learning_rate)
    raise ValueError(f"optimizer={name!r} is not supported; accepted: {', '.join(OPTIMIZERS)}")


def _batch_bounds(n_rows: int, batch_size: int) -> list[tuple[int, int]]:
    bounds = [(start, min(start + batch_size, n_rows)) for start in range(0, n_rows, batch_size)]
    # BatchNorm1d cannot normalise a batch of one row in training mode: fold a trailing
    # single row into the previous batch instead of dropping it.
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2] = (bounds[-2][0], n_rows)
        bounds.pop()
    return bounds


def _mse(network: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> float:
    """Mean squared error of ``network`` on (X, y) in eval mode, accumulated in float64."""
    network.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, X.shape[0], batch_size):
            diff = network(X[start : start + batch_size]).double() - y[start : start + batch_size].double()
            total += float((diff * diff).sum())
    return total / X.shape[0]


def train_network(
    network: nn.Module,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    learning_rate: float,
    optimizer: str,
    batch_size: int,
    max_epochs: int,
    patience: int,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``network`` in place with MSE loss and early stopping; restore the best epoch's weights.

    Batches are reshuffled every epoch from a generator seeded with ``seed``; torch's global RNG
    (dropout) is seeded too, so a seed and an initial network give the same result every time.
    Training stops after ``patience`` epochs without a lower validation loss. ``on_epoch(epoch,
    val_loss)`` is called after every epoch; whatever it raises (e.g. ``optuna.TrialPruned``)
    propagates. The network is returned in eval mode. Raises TrainingDivergedError on a NaN/inf loss.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not supported; accepted: {', '.join(OPTIMIZERS)}")
    if not is_real_number(learning_rate) or not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate={learning_rate!r} is invalid; expected a finite float > 0")
    for name, value in (("batch_size", batch_size), ("max_epochs", max_epochs), ("patience", patience)):
        if not is_whole_number(value) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid; expected an int >= 1")

    input_dim = network_input_dim(network)
    x_train = _as_features(X_train, "X_train", input_dim)
    t_train = _as_target(y_train, "y_train", x_train.shape[0])
    x_val = _as_features(X_val, "X_val", input_dim)
    t_val = _as_target(y_val, "y_val", x_val.shape[0])
    for tensor, name in ((x_train, "X_train"), (t_train, "y_train"), (x_val, "X_val"), (t_val, "y_val")):
        _check_finite(tensor, name)
    if x_train.shape[0] < 2:
        raise ValueError(f"X_train has {x_train.shape[0]} row; training needs at least 2")

    _use_one_thread()
    set_seed(seed)
    generator = torch.Generator().manual_seed(int(seed))
    opt = _make_optimizer(optimizer, network.parameters(), float(learning_rate))
    loss_fn = nn.MSELoss()
    n_rows = x_train.shape[0]
    bounds = _batch_bounds(n_rows, int(batch_size))

    history: list[dict[str, float]] = []
    best_epoch = 0
    best_val_loss = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    stale_epochs = 0

    for epoch in range(1, int(max_epochs) + 1):
        network.train()
        order = torch.randperm(n_rows, generator=generator)
        loss_sum = 0.0
        for start, stop in bounds:
            idx = order[start:stop]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(network(x_train[idx]), t_train[idx])
            loss_value = float(loss.item())
            if not math.isfinite(loss_value):
                raise TrainingDivergedError(
                    f"training loss became {loss_value} at epoch {epoch} (optimizer={optimizer}, "
                    f"learning_rate={learning_rate}); lower the learning rate or check the features"
                )
            loss.backward()
            opt.step()
            loss_sum += loss_value * (stop - start)
        train_loss = loss_sum / n_rows

        val_loss = _mse(network, x_val, t_val)
        if not math.isfinite(val_loss):
            raise TrainingDivergedError(
                f"validation loss became {val_loss} at epoch {epoch} (optimizer={optimizer}, "
                f"learning_rate={learning_rate}); lower the learning rate or check the features"
            )
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        logger.debug("epoch %d train_loss=%.6f val_loss=%.6f", epoch, train_loss, val_loss)

        if val_loss < best_val_loss:
            best_epoch, best_val_loss, stale_epochs = epoch, val_loss, 0
            # deepcopy: state_dict() returns views of the live parameters, which later steps overwrite.
            best_state = copy.deepcopy(network.state_dict())
        else:
            stale_epochs += 1

        if on_epoch is not None:
            on_epoch(epoch, val_loss)
        if stale_epochs >= patience:
            logger.debug("early stop at epoch %d; best epoch %d", epoch, best_epoch)
            break

    assert best_state is not None  # the first epoch always sets it (its val loss is finite)
    network.load_state_dict(best_state)
    network.eval()
    logger.info(
        "trained %d epochs; best epoch %d with val_loss=%.6f (last %.6f)",
        len(history),
        best_epoch,
        best_val_loss,
        history[-1]["val_loss"],
    )
    return TrainResult(
        best_epoch=best_epoch, best_val_loss=best_val_loss, epochs_run=len(history), history=history
    )


def predict(network: nn.Module, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Predict ``log1p(quantity)`` for each row of ``X`` as a float64 1-d array (eval mode, no grad).

    The network's train/eval mode is restored afterwards. Raises ValueError on non-finite output.
    """
    if not is_whole_number(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is invalid; expected an int >= 1")
    features = _as_features(X, "X", network_input_dim(network))
    _use_one_thread()
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            chunks = [
                network(features[start : start + batch_size]) for start in range(0, len(features), batch_size)
            ]
    finally:
        network.train(was_training)
    predictions = torch.cat(chunks).reshape(-1).double().numpy()
    bad = ~np.isfinite(predictions)
    if bad.any():
        raise ValueError(
            f"model produced {int(bad.sum())} non-finite predictions out of {len(predictions)} "
            f"(first at row {int(np.flatnonzero(bad)[0])}); check the input features and the model weights"
        )
    return predictions
