"""The per-product demand network: a feed-forward net on the state features plus a monotone price response.

It maps a float32 feature matrix (the fitted column transformer's output) to ``log1p(quantity)`` per order line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

# softplus(-2) = 0.13 per standardised price column: a mild response to start from (the refit replaces it).
PRICE_WEIGHT_INIT = -2.0


def is_whole_number(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_real_number(value: Any) -> bool:
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
    if not is_whole_number(n_layers) or n_layers < 1:
        raise ValueError(f"config n_layers={n_layers!r} is invalid; expected an int >= 1")
    n_layers = int(n_layers)

    units = _per_layer(config, "units", n_layers, "ints >= 1")
    for unit in units:
        if not is_whole_number(unit) or unit < 1:
            raise ValueError(f"config units={units!r} holds {unit!r}; each entry must be an int >= 1")
    dropout = _per_layer(config, "dropout", n_layers, "floats in [0, 1)")
    for rate in dropout:
        if not is_real_number(rate) or not 0.0 <= float(rate) < 1.0:
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
        if not all(is_whole_number(c) and c >= 0 for c in columns) or len(set(map(int, columns))) != len(columns):
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
    non-decreasing in the price, see :data:`pricetrail.data.etl.PRICE_FEATURES`); ``context`` is every other column,
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


def build_network(input_dim: int, config: Mapping[str, Any]) -> nn.Module:
    """Build the demand network.

    Without ``price_columns`` in the config: the plain MLP, per hidden layer Linear -> (BatchNorm1d) -> ReLU ->
    (Dropout), then Linear(., 1). With it: a :class:`PriceResponseNetwork` whose demand is non-increasing in those
    columns, the same MLP on the other columns. Each ReLU is its own non-inplace module: shap.DeepExplainer
    attaches hooks per module and breaks on shared or in-place activations.
    """
    if not is_whole_number(input_dim) or input_dim < 1:
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
