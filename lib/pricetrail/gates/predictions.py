"""The test split's predictions as the risk checks read them, and the checks' thresholds, validated."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np
import pandas as pd

Y_TRUE = "y_true"
Y_PRED = "y_pred"
DEFAULT_SENSITIVE = "is_registered"


def require_columns(test: pd.DataFrame, required: Sequence[str]) -> None:
    if not isinstance(test, pd.DataFrame):
        raise ValueError(f"test must be a pandas DataFrame, got {type(test).__name__}")
    missing = [name for name in required if name not in test.columns]
    if missing:
        raise ValueError(
            f"test frame is missing column(s) {missing}; required: {list(required)}; "
            f"present: {[str(c) for c in test.columns]}"
        )
    if test.empty:
        raise ValueError(
            f"test frame is empty (0 rows); accepted: at least one row with columns {list(required)}"
        )


def require_sensitive(test: pd.DataFrame, sensitive: str) -> None:
    if sensitive not in test.columns:
        raise ValueError(
            f"sensitive column {sensitive!r} is not in the test frame; "
            f"accepted: one of the present columns {[str(c) for c in test.columns]}"
        )


def real_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name}={value!r} is not accepted; use a number")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name}=nan is not accepted; use a number")
    return number


def require_threshold(name: str, value: object) -> float:
    number = real_number(name, value)
    # An infinite threshold would switch the check off while it still reports "passed".
    if number < 0 or math.isinf(number):
        raise ValueError(f"{name}={value!r} is not accepted; use a finite number >= 0")
    return number


def require_min_improvement(value: object) -> float:
    number = real_number("min_improvement", value)
    # improvement = 1 - model/baseline is at most 1 (a perfect model): a threshold >= 1 could never pass.
    if not -1.0 <= number < 1.0:
        raise ValueError(f"min_improvement={value!r} is not accepted; use a fraction in [-1, 1)")
    return number


def require_min_group_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"min_group_size={value!r} is not accepted; use an integer >= 1")
    return int(value)


def numeric_column(test: pd.DataFrame, column: str) -> np.ndarray:
    series = test[column]
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        raise ValueError(
            f"column {column!r} has dtype {series.dtype}; accepted: a numeric column of log1p quantities"
        )
    return series.to_numpy(dtype=float, na_value=np.nan)


def actual_log(test: pd.DataFrame) -> np.ndarray:
    y_true = numeric_column(test, Y_TRUE)
    bad = ~np.isfinite(y_true) | (y_true < 0)
    if bad.any():
        examples = [float(v) for v in y_true[bad][:5]]
        raise ValueError(
            f"column {Y_TRUE!r} has {int(bad.sum())} value(s) that are not finite log1p quantities >= 0 "
            f"(e.g. {examples}); accepted: finite values >= 0 (quantity >= 0)"
        )
    return y_true


def non_finite_predictions(y_pred: np.ndarray) -> np.ndarray:
    """Rows whose prediction is NaN/inf in log space or overflows to inf in quantity units."""
    with np.errstate(over="ignore"):
        return ~np.isfinite(y_pred) | ~np.isfinite(np.expm1(y_pred))


def predicted_quantity(y_pred: np.ndarray) -> np.ndarray:
    # A log1p prediction below 0 means a negative quantity: no order line sells fewer than zero items.
    with np.errstate(over="ignore", invalid="ignore"):
        return np.maximum(np.expm1(y_pred), 0.0)
