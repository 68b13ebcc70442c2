"""Scores of log-quantity predictions, and the retransformation from log to quantities."""

from __future__ import annotations

import math

import numpy as np


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
