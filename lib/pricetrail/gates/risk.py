"""Model risk: finite predictions, and a test RMSLE that beats the naive baseline (the median training quantity)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pricetrail.gates.checks import Check
from pricetrail.gates.predictions import (
    Y_PRED,
    Y_TRUE,
    actual_log,
    non_finite_predictions,
    numeric_column,
    predicted_quantity,
    require_columns,
    require_min_improvement,
    require_threshold,
)

logger = logging.getLogger(__name__)


def baseline_prediction(train_quantity: np.ndarray) -> float:
    """The naive baseline: median training quantity (in quantity units)."""
    values = np.asarray(train_quantity)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"train_quantity has shape {values.shape}; accepted: a non-empty one-dimensional array"
        )
    if not np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_:
        raise ValueError(f"train_quantity has dtype {values.dtype}; accepted: numeric quantities")
    values = values.astype(float)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        raise ValueError(
            f"train_quantity has {int(bad.sum())} value(s) that are NaN, inf or negative "
            f"(e.g. {[float(v) for v in values[bad][:5]]}); accepted: finite quantities >= 0"
        )
    return float(np.median(values))


def _rmsle(log_pred: np.ndarray, log_true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((log_pred - log_true) ** 2)))


def risk_checks(
    test: pd.DataFrame, *, baseline_quantity: float, min_improvement: float
) -> tuple[list[Check], dict[str, float | None]]:
    """Checks ``predictions_finite`` and ``beats_baseline``, and the metrics behind them.

    The baseline predicts ``baseline_quantity`` for every row. improvement = 1 - model_rmsle / baseline_rmsle;
    the model passes iff improvement >= ``min_improvement``. RMSLE is taken on quantities (expm1 of the log
    values, predicted quantities clipped at 0); MAE is in quantity units. Metrics that cannot be computed
    (non-finite predictions, a baseline with zero error) are ``None``.
    """
    require_columns(test, [Y_TRUE, Y_PRED])
    min_improvement = require_min_improvement(min_improvement)
    baseline_quantity = require_threshold("baseline_quantity", baseline_quantity)
    log_true = actual_log(test)
    y_pred = numeric_column(test, Y_PRED)
    true_q = np.expm1(log_true)
    n_rows = len(log_true)

    bad = non_finite_predictions(y_pred)
    n_bad = int(bad.sum())
    finite_check = Check(
        name="predictions_finite",
        passed=n_bad == 0,
        value=float(n_bad),
        threshold=0.0,
        comparison="value <= threshold",
        detail=(
            f"all {n_rows} predictions are finite"
            if n_bad == 0
            else f"{n_bad} of {n_rows} predictions are NaN or infinite (in log or quantity units); "
            "the model cannot be promoted"
        ),
    )

    # np.log1p, not math.log1p: the two can differ by one ulp, which would turn a perfect baseline imperfect.
    baseline_log = np.full(n_rows, np.log1p(baseline_quantity))
    baseline_rmsle = _rmsle(baseline_log, log_true)
    metrics: dict[str, float | None] = {
        "model_rmsle": None,
        "baseline_rmsle": baseline_rmsle,
        "improvement": None,
        "model_mae": None,
        "baseline_mae": float(np.mean(np.abs(baseline_quantity - true_q))),
    }

    rule = "value >= threshold"
    if n_bad:
        beats = Check("beats_baseline", False, None, min_improvement, rule,
                      f"model RMSLE cannot be computed: {n_bad} non-finite prediction(s)")
    else:
        pred_q = predicted_quantity(y_pred)
        # log1p(max(expm1(p), 0)) == max(p, 0): stays exact where expm1 would lose digits.
        model_rmsle = _rmsle(np.maximum(y_pred, 0.0), log_true)
        metrics["model_rmsle"] = model_rmsle
        metrics["model_mae"] = float(np.mean(np.abs(pred_q - true_q)))
        if baseline_rmsle == 0.0:
            beats = Check("beats_baseline", False, None, min_improvement, rule,
                          f"the baseline ({baseline_quantity:g} for every row) has zero RMSLE on the test "
                          "set, so improvement over it is undefined")
        else:
            improvement = 1.0 - model_rmsle / baseline_rmsle
            metrics["improvement"] = improvement
            passed = improvement >= min_improvement
            beats = Check("beats_baseline", passed, improvement, min_improvement, rule,
                          f"model RMSLE {model_rmsle:.4g} vs baseline RMSLE {baseline_rmsle:.4g} "
                          f"(median training quantity {baseline_quantity:g}): improvement {improvement:.4g} "
                          f"{'>=' if passed else '<'} required {min_improvement:g}")
    logger.debug("risk metrics: %s", metrics)
    return [finite_check, beats], metrics
