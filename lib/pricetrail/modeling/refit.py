"""Refitting a trained network's output layer and price weights in closed form on the newest rows."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from pricetrail.modeling.network import PriceResponseFit, PriceResponseNetwork, is_real_number
from pricetrail.modeling.training import _as_features, _as_target, _check_finite

log = logging.getLogger(__name__)


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
    if not (is_real_number(ridge) and ridge >= 0):
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


def identifiable_price_columns(price: torch.Tensor, rtol: float = 1e-9) -> list[int]:
    """The price columns whose weights the rows can tell apart from the level and from each other: in order, each
    column that adds a dimension to the ones kept (centred, so a constant column adds none). A product that sold at
    one price in its training rows has none; at two prices, its price and log price columns are one line (both are
    a function of which price was paid), so only the first is kept."""
    centred = price - price.mean(dim=0, keepdim=True)
    scale = float(centred.abs().max()) if centred.numel() else 0.0
    kept: list[int] = []
    for column in range(price.shape[1]):
        candidate = centred[:, [*kept, column]]
        if scale > 0 and int(torch.linalg.matrix_rank(candidate / scale, rtol=rtol)) == len(kept) + 1:
            kept.append(column)
    return kept


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
    misfit as price response (the pricing benchmark's elasticity error grows when they are). The level and the
    context weights are what the newest rows should update. Same ridge penalty as :func:`refit_price_response`.
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
    and an active set for the sign (the most negative price weight is fixed at 0 and the rest refit). A price
    column the rows cannot tell from the level or from the other price columns (one price, or two: see
    :func:`identifiable_price_columns`) has no least-squares weight; it is fixed at 0 too, so a product that never
    changed its price gets a model that reads no price response, which the risk gate's elasticity check refuses
    with that reason. Writes the solution into ``network`` and returns the price weights with their covariance.
    """
    hidden, price, target = _refit_inputs(network, X, y, ridge, "refit_price_response")
    n, width = hidden.shape
    k = price.shape[1]
    if n <= width + 1 + k:
        raise ValueError(f"refit_price_response needs more than {width + 1 + k} rows, got {n}")
    active = identifiable_price_columns(price)
    if len(active) < k:
        distinct = int(torch.unique(price[:, 0]).numel()) if k else 0
        log.warning("price columns %s do not vary apart from the others on these %d rows (%d distinct price%s): "
                    "their weights are fixed at 0", [i for i in range(k) if i not in active], n, distinct,
                    "" if distinct == 1 else "s")
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
