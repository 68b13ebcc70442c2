"""Model risk gate: decide whether a product's demand model may be promoted (served).

The model predicts ``log1p(quantity)`` per order line. Before promotion it must

* produce finite predictions (``predictions_finite``),
* beat the naive baseline -- the median training quantity for every row -- on test RMSLE by a required
  fraction (``beats_baseline``),
* treat the customer groups of a sensitive feature alike (``fairness_computable``,
  ``fairness_mae_difference``, ``fairness_mean_outcome_difference``),
* answer the price sensibly (``price_response_monotone``: predicted demand never rises with the price on a
  group's grid; ``price_elasticity_<group>``: the elasticity at the group's median price paid lies within
  plausible bounds). A model that fits quantities well but reads the price response wrong would otherwise
  recommend prices with full confidence.

Unlike the reference implementation, which computed a demographic-parity-style number and never acted on it,
every check here blocks: any failed check means the model is not promoted. A check that cannot be computed
fails (its value is ``None``); it never passes silently.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

Y_TRUE = "y_true"
Y_PRED = "y_pred"
DEFAULT_SENSITIVE = "is_registered"
# Label of rows whose sensitive value is missing: they form their own group rather than vanish from the table.
MISSING_GROUP = "<missing>"
GROUP_COLUMNS = ["group", "n", "mae", "mean_prediction", "mean_actual", "relative_mae", "relative_bias", "log_mae",
                 "log_bias"]
# scale -> (error column, outcome column, their descriptions)
FAIRNESS_SCALES: dict[str, tuple[str, str, str, str]] = {
    "log": ("log_mae", "log_bias", "mean |log error|", "mean log error (prediction - actual)"),
    "relative": ("relative_mae", "relative_bias", "MAE / mean actual", "mean prediction / mean actual - 1"),
    "quantity": ("mae", "mean_prediction", "MAE", "mean predicted quantity"),
}


@dataclass(frozen=True)
class Check:
    """One gate check; ``value`` is ``None`` when it could not be computed (and then it cannot pass)."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    comparison: str
    detail: str

    def __post_init__(self) -> None:
        # Coerce numpy scalars so to_dict() yields plain JSON types, and refuse NaN/inf: JSON has no such
        # values and "could not be computed" is spelled None.
        object.__setattr__(self, "passed", bool(self.passed))
        for field in ("value", "threshold"):
            raw = getattr(self, field)
            if raw is None:
                continue
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError(
                    f"check {self.name!r}: {field}={raw!r} is not accepted; use a finite number or None"
                )
            object.__setattr__(self, field, number)
        if self.passed and self.value is None:
            raise ValueError(
                f"check {self.name!r} cannot pass without a value; a check with value None must fail"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "detail": self.detail,
        }


# --- validation -------------------------------------------------------------------------------------------


def _require_columns(test: pd.DataFrame, required: Sequence[str]) -> None:
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


def _require_sensitive(test: pd.DataFrame, sensitive: str) -> None:
    if sensitive not in test.columns:
        raise ValueError(
            f"sensitive column {sensitive!r} is not in the test frame; "
            f"accepted: one of the present columns {[str(c) for c in test.columns]}"
        )


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name}={value!r} is not accepted; use a number")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name}=nan is not accepted; use a number")
    return number


def _require_threshold(name: str, value: object) -> float:
    number = _real(name, value)
    # An infinite threshold would switch the check off while it still reports "passed".
    if number < 0 or math.isinf(number):
        raise ValueError(f"{name}={value!r} is not accepted; use a finite number >= 0")
    return number


def _require_min_improvement(value: object) -> float:
    number = _real("min_improvement", value)
    # improvement = 1 - model/baseline is at most 1 (a perfect model): a threshold >= 1 could never pass.
    if not -1.0 <= number < 1.0:
        raise ValueError(f"min_improvement={value!r} is not accepted; use a fraction in [-1, 1)")
    return number


def _require_min_group_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"min_group_size={value!r} is not accepted; use an integer >= 1")
    return int(value)


def _numeric(test: pd.DataFrame, column: str) -> np.ndarray:
    series = test[column]
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        raise ValueError(
            f"column {column!r} has dtype {series.dtype}; accepted: a numeric column of log1p quantities"
        )
    return series.to_numpy(dtype=float, na_value=np.nan)


def _actual_log(test: pd.DataFrame) -> np.ndarray:
    y_true = _numeric(test, Y_TRUE)
    bad = ~np.isfinite(y_true) | (y_true < 0)
    if bad.any():
        examples = [float(v) for v in y_true[bad][:5]]
        raise ValueError(
            f"column {Y_TRUE!r} has {int(bad.sum())} value(s) that are not finite log1p quantities >= 0 "
            f"(e.g. {examples}); accepted: finite values >= 0 (quantity >= 0)"
        )
    return y_true


def _non_finite_predictions(y_pred: np.ndarray) -> np.ndarray:
    """Rows whose prediction is NaN/inf in log space or overflows to inf in quantity units."""
    with np.errstate(over="ignore"):
        return ~np.isfinite(y_pred) | ~np.isfinite(np.expm1(y_pred))


def _predicted_quantity(y_pred: np.ndarray) -> np.ndarray:
    # A log1p prediction below 0 means a negative quantity: no order line sells fewer than zero items.
    with np.errstate(over="ignore", invalid="ignore"):
        return np.maximum(np.expm1(y_pred), 0.0)


# --- baseline and risk ------------------------------------------------------------------------------------


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
    _require_columns(test, [Y_TRUE, Y_PRED])
    min_improvement = _require_min_improvement(min_improvement)
    baseline_quantity = _require_threshold("baseline_quantity", baseline_quantity)
    log_true = _actual_log(test)
    y_pred = _numeric(test, Y_PRED)
    true_q = np.expm1(log_true)
    n_rows = len(log_true)

    bad = _non_finite_predictions(y_pred)
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
        pred_q = _predicted_quantity(y_pred)
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


# --- price response ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceCurve:
    """A model's expected demand over one customer group's price grid, and its elasticity at the median price."""

    prices: np.ndarray
    quantity: np.ndarray
    elasticity: float | None
    median_price: float


def demand_rises(quantity: np.ndarray, tolerance: float = 1e-9) -> float:
    """The largest relative rise of demand from one grid price to the next higher one (0 when it never rises)."""
    q = np.asarray(quantity, dtype=np.float64)
    if q.size < 2:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        # From no demand to some counts as a 100% rise (a finite value: checks refuse infinities).
        rise = np.where(q[:-1] > 0, (q[1:] - q[:-1]) / q[:-1], np.where(q[1:] > 0, 1.0, 0.0))
    worst = float(np.max(rise))
    return worst if worst > tolerance else 0.0


def price_response_checks(curves: dict[str, PriceCurve], *, min_elasticity: float,
                          max_elasticity: float) -> list[Check]:
    """``price_response_monotone`` over every group's grid, and ``price_elasticity_<group>`` per group."""
    low = _real("min_elasticity", min_elasticity)
    high = _real("max_elasticity", max_elasticity)
    if not low < high:
        raise ValueError(f"min_elasticity={low:g} must be below max_elasticity={high:g}")
    if not curves:
        return [Check("price_response_monotone", False, None, 0.0, "value <= threshold",
                      "no customer group has a price grid: the price response cannot be checked")]
    rises = {group: demand_rises(curve.quantity) for group, curve in curves.items()}
    worst_group = max(rises, key=lambda group: rises[group])
    worst = rises[worst_group]
    detail = "; ".join(f"{group}: {len(c.prices)} prices {c.prices[0]:.4g}-{c.prices[-1]:.4g}, largest rise "
                       f"{rises[group]:.3g}" for group, c in curves.items())
    checks = [Check("price_response_monotone", worst <= 0.0, worst, 0.0, "value <= threshold",
                    ("predicted demand never rises with the price; " if worst <= 0 else
                     f"predicted demand rises with the price for {worst_group} customers; ") + detail)]
    for group, curve in curves.items():
        name = f"price_elasticity_{group}"
        rule = f"{low:g} <= value <= {high:g}"
        if curve.elasticity is None:
            checks.append(Check(name, False, None, high, rule,
                                f"the elasticity at {curve.median_price:.4g} cannot be computed (no demand there)"))
            continue
        value = curve.elasticity
        passed = low <= value <= high
        threshold = low if value < low else high
        checks.append(Check(name, passed, value, threshold, rule,
                            f"elasticity {value:.3g} at the median {group} price {curve.median_price:.4g} "
                            + ("is within" if passed else "is outside") + f" [{low:g}, {high:g}]"))
    return checks


# --- fairness ---------------------------------------------------------------------------------------------


def _group_labels(test: pd.DataFrame, sensitive: str) -> pd.Series:
    raw = test[sensitive]
    labels = raw.map(lambda v: MISSING_GROUP if pd.isna(v) else str(v)).astype(object)
    n_raw = raw.nunique(dropna=False)
    n_labels = labels.nunique()
    if n_raw != n_labels:
        # e.g. True and "True" in one object column would silently merge into one group.
        raise ValueError(
            f"sensitive column {sensitive!r} holds {n_raw} distinct values that print as only {n_labels} "
            f"distinct labels {sorted(labels.unique())}; accepted: values with distinct string forms"
        )
    return labels


def group_metrics(test: pd.DataFrame, sensitive: str = DEFAULT_SENSITIVE) -> pd.DataFrame:
    """Per group of ``sensitive``: group (as str), n, mae, mean_prediction, mean_actual, sorted by group.

    All but n are in quantity units. Missing sensitive values form the group ``<missing>``; a group with
    non-finite predictions shows NaN/inf rather than dropping rows.
    """
    _require_columns(test, [Y_TRUE, Y_PRED])
    _require_sensitive(test, sensitive)
    true_q = np.expm1(_actual_log(test))
    pred_q = _predicted_quantity(_numeric(test, Y_PRED))
    frame = pd.DataFrame(
        {
            "group": _group_labels(test, sensitive).to_numpy(),
            "abs_error": np.abs(pred_q - true_q),
            "prediction": pred_q,
            "actual": true_q,
            "log_error": _numeric(test, Y_PRED) - _actual_log(test),
        }
    )
    table = (
        frame.groupby("group", sort=True)
        .agg(
            n=("actual", "size"),
            mae=("abs_error", "mean"),
            mean_prediction=("prediction", "mean"),
            mean_actual=("actual", "mean"),
            log_mae=("log_error", lambda errors: float(np.mean(np.abs(errors)))),
            log_bias=("log_error", "mean"),
        )
        .reset_index()
    )
    table["group"] = table["group"].astype(str)
    table["n"] = table["n"].astype(int)
    # Scale-free views of the same numbers: guests buy a fraction of what registered customers buy, so raw
    # quantity gaps measure the groups' scale, not how fairly the model treats them.
    with np.errstate(divide="ignore", invalid="ignore"):
        table["relative_mae"] = table["mae"] / table["mean_actual"]
        table["relative_bias"] = table["mean_prediction"] / table["mean_actual"] - 1.0
    return table[GROUP_COLUMNS]


def _describe_groups(table: pd.DataFrame) -> str:
    return ", ".join(f"{row.group} ({row.n} rows)" for row in table.itertuples())


def _spread(table: pd.DataFrame, column: str) -> tuple[float, str, str]:
    """max - min of ``column`` with the groups that hold the max and the min."""
    high = table.loc[table[column].idxmax()]
    low = table.loc[table[column].idxmin()]
    return float(high[column] - low[column]), str(high["group"]), str(low["group"])


def fairness_checks(
    test: pd.DataFrame,
    *,
    sensitive: str = DEFAULT_SENSITIVE,
    max_mae_difference: float,
    max_mean_outcome_difference: float,
    min_group_size: int,
    scale: str = "log",
) -> tuple[list[Check], pd.DataFrame]:
    """Checks that the customer groups of ``sensitive`` get alike errors and alike predicted demand.

    Customer groups differ in how much they buy (guests pay about twice the list price and buy a fraction of
    what registered customers buy), and a demand model must say so: a raw demographic-parity gap in predicted
    quantity would fail every product for telling the truth. So each group is measured against its own demand,
    on the ``scale`` the differences are taken on:

    - ``"log"`` (default, the model's own scale, log1p of quantity): MAE difference = spread of the groups' mean
      absolute log error; mean outcome difference = spread of the groups' mean log error (prediction - actual),
      i.e. how much more one group's demand is over- or under-stated (0.1 ~ 10%). Unaffected by the bias of
      turning a mean log prediction back into quantities, which differs between groups of different spread.
    - ``"relative"``: spreads of group MAE / group mean actual and of group mean prediction / mean actual - 1.
    - ``"quantity"``: raw spreads of group MAE and group mean predicted quantity (quantity units).

    Fewer than two groups, a group smaller than ``min_group_size``, non-finite predictions or (relative) a
    group whose mean actual quantity is 0 fail ``fairness_computable``; the two difference checks then fail
    with value None.
    Returns the checks and the group table of :func:`group_metrics`.
    """
    _require_columns(test, [Y_TRUE, Y_PRED])
    _require_sensitive(test, sensitive)
    max_mae = _require_threshold("max_mae_difference", max_mae_difference)
    max_outcome = _require_threshold("max_mean_outcome_difference", max_mean_outcome_difference)
    min_group_size = _require_min_group_size(min_group_size)
    if scale not in FAIRNESS_SCALES:
        raise ValueError(f"scale={scale!r} is not accepted; use one of {sorted(FAIRNESS_SCALES)}")

    table = group_metrics(test, sensitive)
    groups = _describe_groups(table)
    n_bad = int(_non_finite_predictions(_numeric(test, Y_PRED)).sum())

    reasons = []
    if n_bad:
        reasons.append(f"{n_bad} prediction(s) are NaN or infinite")
    if len(table) < 2:
        reasons.append(f"only one customer group in the test set: {groups}")
    small = table[table["n"] < min_group_size]
    if len(small):
        reasons.append(f"group(s) smaller than min_group_size={min_group_size}: {_describe_groups(small)}")
    if scale == "relative" and (table["mean_actual"] == 0.0).any():
        zero = table[table["mean_actual"] == 0.0]
        reasons.append(f"group(s) with a mean actual quantity of 0, so relative differences are undefined: "
                       f"{_describe_groups(zero)}")
    smallest = int(table["n"].min())
    unit = {"log": "log1p units", "relative": "(relative to each group's own mean demand)",
            "quantity": "quantity units"}[scale]
    error_column, outcome_column, error_what, outcome_what = FAIRNESS_SCALES[scale]

    if reasons:
        detail = f"{'; '.join(reasons)}; fairness cannot be computed (groups: {groups})"
        computable = Check("fairness_computable", False, float(smallest), float(min_group_size),
                           "value >= threshold and at least 2 groups", detail)
        why = "fairness not computable: " + "; ".join(reasons)
        checks = [
            computable,
            Check("fairness_mae_difference", False, None, max_mae, "value <= threshold", why),
            Check("fairness_mean_outcome_difference", False, None, max_outcome, "value <= threshold", why),
        ]
        logger.info("fairness on %r not computable: %s", sensitive, detail)
        return checks, table

    computable = Check("fairness_computable", True, float(smallest), float(min_group_size),
                       "value >= threshold and at least 2 groups",
                       f"{len(table)} groups, each with at least {min_group_size} rows: {groups}")
    checks = [computable]
    for name, column, threshold, what in (
        ("fairness_mae_difference", error_column, max_mae, error_what),
        ("fairness_mean_outcome_difference", outcome_column, max_outcome, outcome_what),
    ):
        spread, high, low = _spread(table, column)
        lowest, highest = float(table[column].min()), float(table[column].max())
        passed = spread <= threshold
        checks.append(
            Check(name, passed, spread, threshold, "value <= threshold",
                  f"{what} ranges from {lowest:.4g} ({low}) to {highest:.4g} ({high}): "
                  f"difference {spread:.4g} {unit}, {'within' if passed else 'above'} {threshold:g}")
        )
    return checks, table


# --- verdict ----------------------------------------------------------------------------------------------


def verdict(checks: Sequence[Check]) -> dict[str, Any]:
    """``{"passed": all passed, "failed_checks": [names], "checks": [dicts]}``; no checks is an error."""
    checks = list(checks)
    if not checks:
        # all([]) is True: an empty list must never promote a model.
        raise ValueError("verdict needs at least one Check; got none")
    wrong = [type(c).__name__ for c in checks if not isinstance(c, Check)]
    if wrong:
        raise ValueError(f"verdict accepts only Check objects; got {wrong}")
    failed = [c.name for c in checks if not c.passed]
    result = {
        "passed": not failed,
        "failed_checks": failed,
        "checks": [c.to_dict() for c in checks],
    }
    if failed:
        logger.info("model not promoted; failed checks: %s", ", ".join(failed))
    else:
        logger.info("all %d risk checks passed", len(checks))
    return result
