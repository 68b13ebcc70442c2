"""Per-product demand network: build, train, predict, checkpoint, version and score.

The network maps a float32 feature matrix (output of the fitted ColumnTransformer) to
``log1p(quantity)`` per order line. Everything here runs on CPU with one torch thread.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "rmsprop")
CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_KEYS: tuple[str, ...] = (
    "format_version",
    "model_version",
    "state_dict",
    "config",
    "feature_names",
    "input_dim",
    "metadata",
)
# Momentum for "sgd": plain SGD at the learning rates of the search space barely moves in a few
# dozen epochs, which would make it a wasted option for the tuner.
SGD_MOMENTUM = 0.9
_VERSION_LENGTH = 16
# softplus(-2) = 0.13 per standardised price column: a mild response to start from (the refit replaces it).
PRICE_WEIGHT_INIT = -2.0


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not describe a valid network."""


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
    # On the 2-core CI/worker machines the default 2 intra-op threads make a small MLP 5-10x slower
    # when the machine is busy (OpenMP spin-wait, see PLATFORM-FACTS "torch"); one thread per process.
    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# plain types (checkpoint metadata, JSON records)


def to_plain_types(value: Any, where: str = "value") -> Any:
    """Return ``value`` as nested dict/list/str/int/float/bool/None (numpy scalars and arrays converted).

    Raises TypeError naming the location (``where``) of anything else, so a checkpoint stays loadable
    with ``torch.load(weights_only=True)`` and a record stays JSON-serialisable.
    """
    # numpy scalars first: np.float64 and np.str_ subclass float and str but do not unpickle with
    # weights_only=True; other subclasses (IntEnum ...) are reduced to their base type for the same reason.
    if isinstance(value, np.generic):
        return to_plain_types(value.item(), where)
    if value is None:
        return None
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, np.ndarray):
        return to_plain_types(value.tolist(), where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has key {key!r} of type {type(key).__name__}; keys must be str")
            plain[key] = to_plain_types(item, f"{where}[{key!r}]")
        return plain
    if isinstance(value, list | tuple):
        return [to_plain_types(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{where} is a {type(value).__name__} ({value!r}); accepted: None, bool, int, float, str, "
        "numpy scalars/arrays, paths, and lists/dicts of those"
    )


# ---------------------------------------------------------------------------------------------
# network


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _per_layer(config: Mapping[str, Any], key: str, n_layers: int, what: str) -> list[Any]:
    value = config[key]
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, Sequence | np.ndarray)
        or len(value) != n_layers
    ):
        raise ValueError(
            f"config {key}={value!r} is invalid; expected a list of {n_layers} {what} (one per layer)"
        )
    return list(value)


def architecture_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the architecture keys of ``config`` and return them as plain types.

    Keys: ``n_layers`` (int >= 1), ``units`` (one int >= 1 per layer), ``dropout`` (one float in
    [0, 1) per layer), ``batch_norm`` (bool). Other keys (e.g. training hyper-parameters) are ignored.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a mapping, got {type(config).__name__}")
    missing = [key for key in ("n_layers", "units", "dropout", "batch_norm") if key not in config]
    if missing:
        raise ValueError(f"config is missing {missing}; required: n_layers, units, dropout, batch_norm")
    n_layers = config["n_layers"]
    if not _is_int(n_layers) or n_layers < 1:
        raise ValueError(f"config n_layers={n_layers!r} is invalid; expected an int >= 1")
    n_layers = int(n_layers)

    units = _per_layer(config, "units", n_layers, "ints >= 1")
    for unit in units:
        if not _is_int(unit) or unit < 1:
            raise ValueError(f"config units={units!r} holds {unit!r}; each entry must be an int >= 1")
    dropout = _per_layer(config, "dropout", n_layers, "floats in [0, 1)")
    for rate in dropout:
        if not _is_real(rate) or not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"config dropout={dropout!r} holds {rate!r}; each entry must be in [0, 1)")

    batch_norm = config["batch_norm"]
    if not isinstance(batch_norm, bool | np.bool_):
        raise ValueError(f"config batch_norm={batch_norm!r} is invalid; expected true or false")

    arch: dict[str, Any] = {
        "n_layers": n_layers,
        "units": [int(unit) for unit in units],
        "dropout": [float(rate) for rate in dropout],
        "batch_norm": bool(batch_norm),
    }
    if config.get("price_columns") is not None:
        columns = config["price_columns"]
        if isinstance(columns, str | bytes) or not isinstance(columns, Sequence | np.ndarray) or not len(columns):
            raise ValueError(f"config price_columns={columns!r} is invalid; expected a non-empty list of column "
                             "indices")
        if not all(_is_int(c) and c >= 0 for c in columns) or len(set(map(int, columns))) != len(columns):
            raise ValueError(f"config price_columns={list(columns)!r} must be distinct column indices >= 0")
        arch["price_columns"] = sorted(int(c) for c in columns)
    return arch


def _mlp(input_dim: int, arch: Mapping[str, Any]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = int(input_dim)
    for units, rate in zip(arch["units"], arch["dropout"], strict=True):
        layers.append(nn.Linear(width, units))
        if arch["batch_norm"]:
            layers.append(nn.BatchNorm1d(units))
        layers.append(nn.ReLU(inplace=False))
        if rate > 0.0:
            layers.append(nn.Dropout(rate))
        width = units
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class PriceResponseNetwork(nn.Module):
    """``log1p(q) = g(context) - sum_k beta_k * z_k``, ``beta_k >= 0``: demand that cannot rise with the price.

    ``z_k`` are the input columns listed in ``price_columns`` (the standardised price features, each
    non-decreasing in the price, see :data:`pricetrail.etl.PRICE_FEATURES`); ``context`` is every other column,
    none of which depends on the price. ``g`` is the tuned MLP. The price response is a few smooth terms with
    non-negative weights, so its sign is fixed by construction and the network cannot learn the handful of
    distinct training prices as categories. After training, :func:`refit_price_response` solves the output
    layer and the ``beta`` by least squares: gradient descent with early stopping left the weak price signal
    wherever its initial value put it (bench/pricing_benchmark.py).
    """

    def __init__(self, input_dim: int, price_columns: Sequence[int], arch: Mapping[str, Any]) -> None:
        super().__init__()
        price = sorted(int(c) for c in price_columns)
        if price and price[-1] >= input_dim:
            raise ValueError(f"config price_columns={price!r} names a column beyond input_dim={input_dim}")
        context = [i for i in range(input_dim) if i not in set(price)]
        if not context:
            raise ValueError(f"config price_columns={price!r} leaves no context column of {input_dim}")
        self.input_dim = int(input_dim)
        self.price_columns = tuple(price)
        # Not persistent: the indices come from the config, so the state dict holds only learned weights.
        self.register_buffer("price_index", torch.tensor(price, dtype=torch.long), persistent=False)
        self.register_buffer("context_index", torch.tensor(context, dtype=torch.long), persistent=False)
        self.demand = _mlp(len(context), arch)
        # beta = softplus(raw) during training; the refit writes its least-squares beta back through the inverse.
        self.price_weight = nn.Parameter(torch.full((len(price),), PRICE_WEIGHT_INIT))

    @property
    def beta(self) -> torch.Tensor:
        return nn.functional.softplus(self.price_weight)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's output on the context columns (what the output layer combines)."""
        return self.demand[:-1](x.index_select(1, self.context_index))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        price = x.index_select(1, self.price_index)
        return self.demand(x.index_select(1, self.context_index)) - price @ self.beta.unsqueeze(1)


@dataclass(frozen=True)
class PriceResponseFit:
    """The least-squares price response of a :class:`PriceResponseNetwork` (weights per standardised price column).

    ``covariance`` is the sampling covariance of ``beta`` (sandwich form of the ridge solution, residual variance
    from the fitting rows); a column whose unconstrained weight came out negative is fixed at 0 (``fixed_zero``)
    and has zero variance. What the service draws its price band and elasticity interval from.
    """

    beta: list[float]
    covariance: list[list[float]]
    fixed_zero: list[int]
    residual_sd: float
    rows: int
    # Set by pool_price_responses: the least-squares covariance alone, and how many tuning trials' weights the
    # total ``covariance`` pools.
    within_covariance: list[list[float]] | None = None
    pooled_trials: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "covariance": self.covariance, "fixed_zero": self.fixed_zero,
                "residual_sd": self.residual_sd, "rows": self.rows, "within_covariance": self.within_covariance,
                "pooled_trials": self.pooled_trials}


def pool_price_responses(fit: PriceResponseFit, trial_betas: Sequence[Sequence[float]]) -> PriceResponseFit:
    """Add to ``fit``'s covariance how much the price weights move between well-scoring tuning trials.

    The least-squares covariance holds the hidden layers fixed, yet they were learned from the same rows, and
    another good architecture reads a different slope from them. Like Rubin's rules for imputations, the total
    is within + (1 + 1/M) x between, over the M trials' weights (``fit``'s own among them): the interval grows
    by what the choice of network is uncertain about, and stays as it was when the trials agree. ``beta`` stays
    the served network's own.
    """
    k = len(fit.beta)
    try:
        betas = np.asarray(trial_betas, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"trial_betas must be M rows of {k} finite price weights: {error}") from error
    if betas.ndim != 2 or betas.shape[1] != k or not np.all(np.isfinite(betas)):
        raise ValueError(f"trial_betas must be M rows of {k} finite price weights, got shape {betas.shape}")
    within = np.asarray(fit.covariance, dtype=np.float64)
    m = betas.shape[0]
    if m < 2:
        return replace(fit, within_covariance=within.tolist(), pooled_trials=m)
    between = np.atleast_2d(np.cov(betas, rowvar=False))
    total = within + (1.0 + 1.0 / m) * between
    return replace(fit, covariance=total.tolist(), within_covariance=within.tolist(), pooled_trials=m)


def _inverse_softplus(value: torch.Tensor) -> torch.Tensor:
    # softplus(-30) ~ 1e-13: a weight fixed at 0 stays 0 to every printed digit.
    safe = value.clamp(min=1e-13)
    return torch.where(safe > 20, safe, torch.log(torch.expm1(safe))).clamp(min=-30.0)


def _refit_inputs(network: nn.Module, X: np.ndarray, y: np.ndarray, ridge: float,
                  caller: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checked inputs of a closed-form refit: the last hidden layer's output, the price columns and the target,
    in float64 (one message per bad argument, named after ``caller``)."""
    if not isinstance(network, PriceResponseNetwork):
        raise ValueError(f"{caller} needs a PriceResponseNetwork, got {type(network).__name__}")
    if not (_is_real(ridge) and ridge >= 0):
        raise ValueError(f"ridge={ridge!r} is invalid; expected a number >= 0")
    features = _as_features(X, "X", network.input_dim)
    target = _as_target(y, "y", features.shape[0]).double().reshape(-1)
    _check_finite(features, "X")
    _check_finite(target, "y")
    network.eval()
    with torch.no_grad():
        hidden = network.hidden(features).double()
        price = features.index_select(1, network.price_index).double()
    return hidden, price, target


def _write_output_layer(network: PriceResponseNetwork, coef: torch.Tensor, width: int) -> None:
    """Copy a solution's first ``width`` coefficients and the next (the bias) into the output layer."""
    with torch.no_grad():
        last = network.demand[-1]
        last.weight.copy_(coef[:width].reshape(1, width).to(last.weight.dtype))
        last.bias.copy_(coef[width:width + 1].to(last.bias.dtype))


def refit_output_layer(network: PriceResponseNetwork, X: np.ndarray, y: np.ndarray, *, ridge: float = 1e-3) -> None:
    """Solve the output layer of ``network`` again by least squares on (X, y), its price weights held as they are.

    For rows the hidden layers were not trained on (the validation rows): there their output is out-of-sample,
    its misfit follows the calendar, and so do the markdowns, so a price weight solved on them would absorb
    misfit as price response (measured: refitting the weights on training + validation rows took the median
    elasticity error from 8.5% to 13.2% on the pricing benchmark). The level and the context weights are what
    the newest rows should update. Same ridge penalty as :func:`refit_price_response`.
    """
    hidden, price, target = _refit_inputs(network, X, y, ridge, "refit_output_layer")
    price_term = price @ network.beta.detach().double()
    n, width = hidden.shape
    if n <= width + 1:
        raise ValueError(f"refit_output_layer needs more than {width + 1} rows, got {n}")
    design = torch.cat([hidden, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    system = design.T @ design
    system[:width, :width] += torch.eye(width, dtype=torch.float64) * float(ridge) * n
    coef = torch.linalg.solve(system, design.T @ (target + price_term))
    _write_output_layer(network, coef, width)


def refit_price_response(network: PriceResponseNetwork, X: np.ndarray, y: np.ndarray, *,
                         ridge: float = 1e-3) -> PriceResponseFit:
    """Solve the output layer and the price weights of ``network`` by least squares on (X, y), weights >= 0.

    The hidden layers stay as trained; on their output the model is linear, so the output layer, its bias and
    the price weights have a closed-form solution: a ridge penalty (``ridge`` x rows) on the hidden weights only,
    and an active set for the sign (the most negative price weight is fixed at 0 and the rest refit). Writes
    the solution into ``network`` and returns the price weights with their covariance.
    """
    hidden, price, target = _refit_inputs(network, X, y, ridge, "refit_price_response")
    n, width = hidden.shape
    k = price.shape[1]
    if n <= width + 1 + k:
        raise ValueError(f"refit_price_response needs more than {width + 1 + k} rows, got {n}")
    active = list(range(k))
    while True:
        design = torch.cat([hidden, torch.ones(n, 1, dtype=torch.float64), -price[:, active]], dim=1)
        gram = design.T @ design
        penalty = torch.zeros_like(gram)
        penalty[:width, :width] = torch.eye(width, dtype=torch.float64) * float(ridge) * n
        system = gram + penalty
        coef = torch.linalg.solve(system, design.T @ target)
        weights = coef[width + 1:]
        if not active or bool((weights >= 0).all()):
            break
        active.pop(int(torch.argmin(weights)))
    residual = target - design @ coef
    dof = max(n - design.shape[1], 1)
    variance = float(residual @ residual) / dof
    inverse = torch.linalg.inv(system)
    full = variance * inverse @ gram @ inverse
    beta = torch.zeros(k, dtype=torch.float64)
    covariance = torch.zeros(k, k, dtype=torch.float64)
    if active:
        index = torch.tensor(active)
        beta[index] = weights
        block = full[width + 1:, width + 1:]
        covariance[index.unsqueeze(1), index.unsqueeze(0)] = block
    _write_output_layer(network, coef, width)
    with torch.no_grad():
        network.price_weight.copy_(_inverse_softplus(beta).to(network.price_weight.dtype))
    fixed = [i for i in range(k) if i not in active]
    return PriceResponseFit(beta=[float(b) for b in network.beta.detach().double()],
                            covariance=covariance.tolist(), fixed_zero=fixed, residual_sd=math.sqrt(variance),
                            rows=int(n))


def build_network(input_dim: int, config: Mapping[str, Any]) -> nn.Module:
    """Build the demand network.

    Without ``price_columns`` in the config: the plain MLP, per hidden layer Linear -> (BatchNorm1d) -> ReLU ->
    (Dropout), then Linear(., 1). With it: a :class:`PriceResponseNetwork` whose demand is non-increasing in those
    columns, the same MLP on the other columns. Each ReLU is its own non-inplace module: shap.DeepExplainer
    attaches hooks per module and breaks on shared or in-place activations (PLATFORM-FACTS "SHAP with torch").
    """
    if not _is_int(input_dim) or input_dim < 1:
        raise ValueError(f"input_dim={input_dim!r} is invalid; expected an int >= 1")
    arch = architecture_config(config)
    if "price_columns" in arch:
        return PriceResponseNetwork(int(input_dim), arch["price_columns"], arch)
    return _mlp(int(input_dim), arch)


def network_input_dim(network: nn.Module) -> int:
    """Number of input features of ``network`` (the first Linear layer's in_features)."""
    if isinstance(network, PriceResponseNetwork):
        return network.input_dim
    for module in network.modules():
        if isinstance(module, nn.Linear):
            return int(module.in_features)
    raise ValueError(f"network {type(network).__name__} has no nn.Linear layer; cannot tell its input size")


def set_seed(seed: int) -> None:
    """Seed python ``random``, numpy's global generator and torch."""
    if not _is_int(seed):
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
    if not _is_real(learning_rate) or not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate={learning_rate!r} is invalid; expected a finite float > 0")
    for name, value in (("batch_size", batch_size), ("max_epochs", max_epochs), ("patience", patience)):
        if not _is_int(value) or value < 1:
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
    if not _is_int(batch_size) or batch_size < 1:
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


# ---------------------------------------------------------------------------------------------
# version and checkpoint


def model_version(network: nn.Module, config: Mapping[str, Any]) -> str:
    """Content hash of the weights and the config: first 16 hex chars of a sha256.

    Covers every state_dict entry in key order (name, dtype, shape, bytes) and the canonical JSON of
    the config, so identical weights and config give the same version in any process.
    """
    digest = hashlib.sha256()
    for key, tensor in network.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(key.encode("utf-8"))
        digest.update(f"|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.numpy().tobytes())
    canonical = json.dumps(to_plain_types(config, "config"), sort_keys=True, separators=(",", ":"))
    digest.update(canonical.encode("utf-8"))
    return digest.hexdigest()[:_VERSION_LENGTH]


def save_checkpoint(
    path: str | os.PathLike[str],
    network: nn.Module,
    *,
    config: Mapping[str, Any],
    feature_names: Sequence[str],
    metadata: Mapping[str, Any],
) -> str:
    """Write ``network`` with its config, feature names and metadata atomically; return the model version.

    The file holds plain types only, so it loads with ``torch.load(weights_only=True)``. It is written to
    a temporary file in the same directory and renamed over ``path``, so a crash leaves no partial file.
    """
    plain_config = to_plain_types(config, "config")
    plain_metadata = to_plain_types(metadata, "metadata")
    if isinstance(feature_names, str) or not all(isinstance(name, str) for name in feature_names):
        raise ValueError(f"feature_names must be a list of str, got {feature_names!r}")
    names = [str(name) for name in feature_names]
    input_dim = network_input_dim(network)
    if len(names) != input_dim:
        raise ValueError(f"feature_names has {len(names)} names but the network takes {input_dim} features")
    state_dict = {key: tensor.detach().cpu().clone() for key, tensor in network.state_dict().items()}
    # Fail at save time, not at load time, when the config cannot rebuild this network.
    expected = build_network(input_dim, plain_config).state_dict()
    mismatch = _state_dict_mismatch(expected, state_dict)
    if mismatch:
        raise ValueError(f"config does not describe this network: {mismatch}")

    version = model_version(network, plain_config)
    checkpoint = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_version": version,
        "state_dict": state_dict,
        "config": plain_config,
        "feature_names": names,
        "input_dim": input_dim,
        "metadata": plain_metadata,
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        # Remove the partial temp file, then let the original error through.
        Path(tmp_name).unlink(missing_ok=True)
        raise
    logger.info("saved checkpoint %s (model version %s)", target, version)
    return version


def _state_dict_mismatch(expected: Mapping[str, torch.Tensor], actual: Mapping[str, Any]) -> str:
    """Describe how ``actual`` differs from ``expected`` in keys or shapes; empty string when they match."""
    missing = [key for key in expected if key not in actual]
    unexpected = [key for key in actual if key not in expected]
    if missing or unexpected:
        return f"missing keys {missing}, unexpected keys {unexpected}"
    for key, tensor in expected.items():
        value = actual[key]
        if not isinstance(value, torch.Tensor):
            return f"{key} is a {type(value).__name__}, not a tensor"
        if tuple(value.shape) != tuple(tensor.shape):
            return f"{key} has shape {tuple(value.shape)}, expected {tuple(tensor.shape)}"
    return ""


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; return (network in eval mode, checkpoint dict).

    Every failure (missing, truncated or corrupted file, wrong keys, weights that do not fit the config,
    content not matching its recorded model version) raises CheckpointError naming the path.
    """
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise CheckpointError(f"checkpoint {where}: no such file")
    try:
        checkpoint = torch.load(where, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        # Corrupted bytes surface as RuntimeError, KeyError, EOFError, UnpicklingError and more depending
        # on where the damage is; all of them mean the same thing to the caller. Chained, not swallowed.
        raise CheckpointError(f"checkpoint {where}: cannot be read ({type(exc).__name__}: {exc})") from exc

    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {where}: holds a {type(checkpoint).__name__}, expected a dict")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {where}: missing keys {missing}; expected {list(CHECKPOINT_KEYS)}")
    if checkpoint["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {where}: format_version {checkpoint['format_version']!r} is not supported; "
            f"accepted: {CHECKPOINT_FORMAT_VERSION}"
        )
    input_dim = checkpoint["input_dim"]
    names = checkpoint["feature_names"]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise CheckpointError(f"checkpoint {where}: feature_names is not a list of str")
    if not isinstance(checkpoint["state_dict"], dict):
        raise CheckpointError(
            f"checkpoint {where}: state_dict is a {type(checkpoint['state_dict']).__name__}"
        )
    try:
        network = build_network(input_dim, checkpoint["config"])
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {where}: invalid config or input_dim ({exc})") from exc
    if len(names) != input_dim:
        raise CheckpointError(f"checkpoint {where}: {len(names)} feature_names for input_dim {input_dim}")
    mismatch = _state_dict_mismatch(network.state_dict(), checkpoint["state_dict"])
    if mismatch:
        raise CheckpointError(f"checkpoint {where}: state_dict does not fit its config ({mismatch})")
    try:
        network.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {where}: state_dict does not fit its config ({exc})") from exc
    network.eval()

    try:
        version = model_version(network, checkpoint["config"])
    except TypeError as exc:
        raise CheckpointError(f"checkpoint {where}: config holds non-plain values ({exc})") from exc
    if version != checkpoint["model_version"]:
        raise CheckpointError(
            f"checkpoint {where}: content hashes to {version} but records model_version "
            f"{checkpoint['model_version']!r}; the file was altered after it was written"
        )
    return network, checkpoint


# ---------------------------------------------------------------------------------------------
# metrics


def smearing_factor(y_true_log: np.ndarray, y_pred_log: np.ndarray) -> float:
    """Duan's smearing estimate for a model of ``log1p(quantity)``: the mean of ``exp(residual)``.

    ``expm1`` of a mean log prediction is a median-like value, not an expectation: on validation rows it ran
    10-14% below the mean quantity. With a constant-spread error, ``E[1 + q] = exp(prediction) * mean(exp(r))``.
    """
    y_true = np.asarray(y_true_log, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred_log, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"smearing needs as many predictions as actual values (got {y_pred.size} and "
                         f"{y_true.size}, at least one)")
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise ValueError("smearing needs finite actual and predicted values")
    return float(np.mean(np.exp(y_true - y_pred)))


def expected_quantity(y_pred_log: np.ndarray, smearing: float = 1.0) -> np.ndarray:
    """Expected quantity per order line from predicted ``log1p(quantity)``: ``exp(prediction) * smearing - 1``,
    floored at 0. ``smearing`` is the model's :func:`smearing_factor` (1.0 gives the old ``expm1``)."""
    if not (math.isfinite(smearing) and smearing > 0):
        raise ValueError(f"smearing={smearing!r} is invalid; expected a finite number > 0")
    return np.clip(np.exp(np.asarray(y_pred_log, dtype=np.float64)) * smearing - 1.0, 0.0, None)



def regression_metrics(y_true_log: np.ndarray, y_pred_log: np.ndarray) -> dict[str, float]:
    """Score predictions of ``log1p(quantity)``.

    Returns ``mse_log`` (on the log1p scale), ``mae`` and ``rmsle`` in units of quantity (predicted
    quantities clipped at 0 first: a negative demand is never served), and ``n`` (row count).
    """
    y_true = np.asarray(y_true_log, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred_log, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true_log has {y_true.size} values but y_pred_log has {y_pred.size}; they must match"
        )
    if y_true.size == 0:
        raise ValueError("y_true_log and y_pred_log are empty; metrics need at least one row")
    for name, values in (("y_true_log", y_true), ("y_pred_log", y_pred)):
        bad = int((~np.isfinite(values)).sum())
        if bad:
            raise ValueError(f"{name} holds {bad} NaN or infinite values; metrics need finite values")
    true_q = np.expm1(y_true)
    pred_q = np.clip(np.expm1(y_pred), 0.0, None)
    return {
        "mse_log": float(np.mean((y_pred - y_true) ** 2)),
        "mae": float(np.mean(np.abs(pred_q - true_q))),
        "rmsle": float(np.sqrt(np.mean((np.log1p(pred_q) - np.log1p(true_q)) ** 2))),
        "n": int(y_true.size),
    }
