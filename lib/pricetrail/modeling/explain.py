"""SHAP explanations of the demand network, with names kept attached to their values."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shap
import torch
from torch import nn

from pricetrail.modeling.network import PriceResponseNetwork, network_input_dim
from pricetrail.modeling.training import predict

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("auto", "deep", "permutation")
# Module types DeepExplainer handles exactly (it hooks each module; others break its attribution).
_DEEP_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout)
# Largest accepted |sum(SHAP) + base_value - prediction| on the log1p scale (shap's own tolerance).
ADDITIVITY_TOLERANCE = 1e-2
# Permutation evaluations per explained row: shap's default, raised when a row has many features
# (shap needs at least 2 * n_features + 1).
_PERMUTATION_MAX_EVALS = 500
# Seed of the permutation order, so a fallback explanation is reproducible.
_PERMUTATION_SEED = 0


class InferenceSettingsError(ValueError):
    """``params.yaml: inference_primary_model`` holds a value that is not accepted."""


@dataclass(frozen=True)
class InferenceSettings:
    """``params.yaml: inference_primary_model``: how many rows SHAP uses as its background and explains."""

    shap_background_rows: int
    shap_explain_rows: int
    shap_method: str

    def __post_init__(self) -> None:
        for name in ("shap_background_rows", "shap_explain_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InferenceSettingsError(f"inference_primary_model.{name}={value!r} is not accepted: a whole "
                                             "number >= 1")
        if self.shap_method not in METHODS:
            raise InferenceSettingsError(f"inference_primary_model.shap_method={self.shap_method!r} is not "
                                         f"accepted; use one of {list(METHODS)}")

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> InferenceSettings:
        from pricetrail.project.config import settings_from_params

        return settings_from_params(cls, "inference_primary_model", values, error=InferenceSettingsError)


@dataclass(frozen=True)
class ExplanationResult:
    """Raw SHAP values (one row per explained row, columns = feature names), base value and method."""

    values: pd.DataFrame
    base_value: float
    method: str


def deep_supported(network: nn.Module) -> bool:
    """True for a plain Sequential of Linear/BatchNorm1d/ReLU/Dropout with one non-inplace ReLU per layer."""
    if type(network) is not nn.Sequential:
        return False
    # Iterate the Sequential itself: .children() hides a module registered twice.
    modules = list(network)
    if not modules or len({id(module) for module in modules}) != len(modules):
        return False
    for module in modules:
        if type(module) not in _DEEP_MODULES:
            return False
        if isinstance(module, nn.ReLU | nn.Dropout) and module.inplace:
            return False
    return True


def _explain_price_response(network: PriceResponseNetwork, background: np.ndarray,
                            rows: np.ndarray) -> tuple[np.ndarray, float]:
    """Exact SHAP values of ``g(context) - b . z``: Deep SHAP of the MLP ``g`` on the context columns, and for the
    price columns the linear term's own, ``-b_k (z_k - mean background z_k)`` (the permutation explainer took as
    long as the tuning)."""
    context = network.context_index.numpy()
    price = list(network.price_columns)
    context_values, context_base = _explain_deep(network.demand, np.ascontiguousarray(background[:, context]),
                                                 np.ascontiguousarray(rows[:, context]))
    beta = network.beta.detach().double().numpy()
    centre = background[:, price].astype(np.float64).mean(axis=0)
    values = np.zeros(rows.shape, dtype=np.float64)
    values[:, context] = context_values
    values[:, price] = -(rows[:, price].astype(np.float64) - centre) * beta
    base_value = float(context_base - centre @ beta)
    gap = float(np.max(np.abs(values.sum(axis=1) + base_value - predict(network, rows))))
    if gap > ADDITIVITY_TOLERANCE:
        raise ValueError(f"price-response SHAP values miss the model output by up to {gap:.4g}")
    return values, base_value


def _features(X: np.ndarray, name: str, n_features: int) -> np.ndarray:
    array = np.asarray(X)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-d array (rows x features), got shape {array.shape}")
    if array.shape[1] != n_features:
        raise ValueError(f"{name} has {array.shape[1]} columns but {n_features} feature names were given")
    # A float32 copy: the network's dtype, and writable (pandas 3 arrays can be read-only).
    array = np.array(array, dtype=np.float32, copy=True)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ValueError(f"{name} holds {bad} NaN or infinite values; explain finite feature rows only")
    return array


def _explain_deep(network: nn.Module, background: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, float]:
    # A copy: DeepExplainer switches the model to eval mode and attaches hooks; if it fails half-way
    # the caller's network must not keep them.
    model = copy.deepcopy(network)
    explainer = shap.DeepExplainer(model, torch.from_numpy(background))
    # shap's own additivity check mixes tensors and numpy arrays (a NumPy 2 DeprecationWarning);
    # the same check is done below on plain arrays.
    values = explainer.shap_values(torch.from_numpy(rows), check_additivity=False)
    values = np.asarray(values, dtype=np.float64).reshape(rows.shape[0], rows.shape[1])
    base_value = float(np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)[0])
    gap = float(np.max(np.abs(values.sum(axis=1) + base_value - predict(model, rows))))
    if gap > ADDITIVITY_TOLERANCE:
        raise ValueError(
            f"DeepExplainer values miss the model output by up to {gap:.4g} (tolerance "
            f"{ADDITIVITY_TOLERANCE}); an operation in the network is not supported by Deep SHAP"
        )
    return values, base_value


def _explain_permutation(
    network: nn.Module, background: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, float]:
    n_features = rows.shape[1]
    # All background rows, not shap's default sample of 100, so the base value is their mean prediction.
    masker = shap.maskers.Independent(background, max_samples=background.shape[0])
    # PermutationExplainer reseeds numpy's global generator; put the caller's state back afterwards.
    numpy_state = np.random.get_state()
    try:
        explainer = shap.PermutationExplainer(lambda x: predict(network, x), masker, seed=_PERMUTATION_SEED)
        explanation = explainer(rows, max_evals=max(_PERMUTATION_MAX_EVALS, 2 * n_features + 1), silent=True)
    finally:
        np.random.set_state(numpy_state)
    values = np.asarray(explanation.values, dtype=np.float64).reshape(rows.shape[0], n_features)
    base_value = float(np.mean(explanation.base_values))
    return values, base_value


def explain(
    network: nn.Module,
    X_background: np.ndarray,
    X_explain: np.ndarray,
    feature_names: Sequence[str],
    *,
    method: str = "auto",
) -> ExplanationResult:
    """SHAP values of ``network`` for each row of ``X_explain`` against ``X_background``.

    ``method="auto"`` uses shap.DeepExplainer when the architecture supports it and falls back to
    the permutation explainer when it does not, or when DeepExplainer raises or fails its additivity
    check. ``"deep"`` insists on DeepExplainer (errors propagate); ``"permutation"`` skips it.
    The values are on the model's output scale (``log1p(quantity)``): row sum + base_value = prediction.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; accepted: {', '.join(METHODS)}")
    if isinstance(feature_names, str) or not all(isinstance(name, str) for name in feature_names):
        raise ValueError(f"feature_names must be a list of str, got {feature_names!r}")
    names = list(feature_names)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"feature_names repeats {duplicates}; each column needs its own name")
    input_dim = network_input_dim(network)
    if len(names) != input_dim:
        raise ValueError(f"feature_names has {len(names)} names but the network takes {input_dim} features")
    background = _features(X_background, "X_background", len(names))
    rows = _features(X_explain, "X_explain", len(names))
    # One torch thread: on a busy machine more threads spin-wait for each other instead of working.
    torch.set_num_threads(1)

    used = "permutation"
    if method in ("auto", "deep") and isinstance(network, PriceResponseNetwork) and deep_supported(network.demand):
        try:
            values, base_value = _explain_price_response(network, background, rows)
            used = "deep"
        except (AssertionError, RuntimeError, ValueError, TypeError) as exc:
            if method == "deep":
                raise
            logger.warning("DeepExplainer failed (%s: %s); falling back to permutation", type(exc).__name__, exc)
    elif method == "deep":
        if not deep_supported(network):
            raise ValueError(
                "method='deep' needs a plain nn.Sequential of Linear/BatchNorm1d/ReLU/Dropout with a "
                "separate non-inplace ReLU per layer; use method='auto' or 'permutation' for this network"
            )
        values, base_value = _explain_deep(network, background, rows)
        used = "deep"
    elif method == "auto" and deep_supported(network):
        try:
            values, base_value = _explain_deep(network, background, rows)
            used = "deep"
        except (AssertionError, RuntimeError, ValueError, TypeError) as exc:
            # Failed additivity (ValueError) and graphs shap cannot hook (torch RuntimeError, shap
            # assertions) both mean "Deep SHAP is not exact here"; the permutation explainer does not care.
            logger.warning(
                "DeepExplainer failed (%s: %s); falling back to permutation", type(exc).__name__, exc
            )
    elif method == "auto":
        logger.info("architecture not supported by DeepExplainer; using the permutation explainer")
    if used == "permutation":
        values, base_value = _explain_permutation(network, background, rows)
    logger.info(
        "SHAP (%s) for %d rows x %d features against %d background rows",
        used,
        rows.shape[0],
        rows.shape[1],
        background.shape[0],
    )
    frame = pd.DataFrame(values, columns=names)
    return ExplanationResult(values=frame, base_value=base_value, method=used)


def mean_abs_shap(values: pd.DataFrame) -> pd.DataFrame:
    """Global importance: columns ``feature`` and ``mean_abs_shap``, most important first.

    Computed per named column, so each score stays with its own feature name; ties keep column order.
    """
    if not isinstance(values, pd.DataFrame) or values.empty:
        raise ValueError("values must be a non-empty DataFrame of SHAP values (rows x features)")
    numeric = values.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    bad = [str(column) for column in numeric.columns if not np.isfinite(numeric[column]).all()]
    if bad:
        raise ValueError(f"SHAP values in columns {bad} are missing, non-numeric or infinite")
    scores = numeric.abs().mean(axis=0).sort_values(ascending=False, kind="stable")
    return pd.DataFrame(
        {"feature": [str(name) for name in scores.index], "mean_abs_shap": scores.to_numpy(dtype=np.float64)}
    )
