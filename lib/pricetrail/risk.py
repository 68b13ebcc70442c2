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


MODEL_SCOPE = "model"
BETWEEN_SCOPE = "between"
# A difference between groups must exceed its threshold by this many standard errors to fail: the lower end of
# its two-sided 90% interval (the groups' test rows are samples; 30 guest lines measure a mean log error to +-0.1).
SAMPLING_Z = 1.645


def group_scope(name: str) -> str:
    return f"group:{name}"


@dataclass(frozen=True)
class Check:
    """One gate check; ``value`` is ``None`` when it could not be computed (and then it cannot pass)."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    comparison: str
    detail: str
    # Whom a failure blocks: "model" (every customer group), "group:<name>" (that group only), or "between"
    # (every group it compares). See verdict().
    scope: str = MODEL_SCOPE

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
            "scope": self.scope,
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
                                f"the elasticity at {curve.median_price:.4g} cannot be computed (no demand there)",
                                scope=group_scope(group)))
            continue
        value = curve.elasticity
        passed = low <= value <= high
        threshold = low if value < low else high
        checks.append(Check(name, passed, value, threshold, rule,
                            f"elasticity {value:.3g} at the median {group} price {curve.median_price:.4g} "
                            + ("is within" if passed else "is outside") + f" [{low:g}, {high:g}]",
                            scope=group_scope(group)))
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
    names: dict[str, str] | None = None,
) -> tuple[list[Check], pd.DataFrame]:
    """Checks that the customer groups of ``sensitive`` get alike errors and alike predicted demand.

    Customer groups differ in how much they buy (guests pay about twice the list price and buy a fraction of
    what registered customers buy), and a demand model must say so: a raw demographic-parity gap in predicted
    quantity would fail every product for telling the truth. So each group is measured against its own demand,
    on the ``scale`` the differences are taken on:

    - ``"log"`` (default, the model's own scale, log1p of quantity): MAE difference = spread of the groups' mean
      absolute log error; mean outcome difference = spread of the groups' mean log error (prediction - actual),
      i.e. how much more one group's demand is over- or under-stated (0.1 ~ 10%).
    - ``"relative"``: spreads of group MAE / group mean actual and of group mean prediction / mean actual - 1.
    - ``"quantity"``: raw spreads of group MAE and group mean predicted quantity (quantity units).

    Per group (``names`` maps a group's label, e.g. ``"False"``, to the name its scope and checks carry, e.g.
    ``"guest"``): ``group_assessable_<name>`` needs ``min_group_size`` test rows; a group with fewer is refused
    (scope ``group:<name>``) and left out of the comparison, so it blocks no other group. Between the assessable
    groups (when there are at least two; scope ``between``): the two spreads, each failing only when it exceeds
    its threshold beyond its sampling error (the lower end of its 90% interval above the threshold): on the
    groups' few test rows a spread's standard error is of the order of the threshold itself, and the point value
    alone would block or pass models by chance. Non-finite predictions fail ``fairness_computable`` (scope model).
    Returns the checks and the group table of :func:`group_metrics`.
    """
    _require_columns(test, [Y_TRUE, Y_PRED])
    _require_sensitive(test, sensitive)
    max_mae = _require_threshold("max_mae_difference", max_mae_difference)
    max_outcome = _require_threshold("max_mean_outcome_difference", max_mean_outcome_difference)
    min_group_size = _require_min_group_size(min_group_size)
    if scale not in FAIRNESS_SCALES:
        raise ValueError(f"scale={scale!r} is not accepted; use one of {sorted(FAIRNESS_SCALES)}")
    names = names or {}

    table = group_metrics(test, sensitive)
    groups = _describe_groups(table)
    n_bad = int(_non_finite_predictions(_numeric(test, Y_PRED)).sum())
    if n_bad:
        why = f"{n_bad} prediction(s) are NaN or infinite; fairness cannot be computed (groups: {groups})"
        return [Check("fairness_computable", False, None, float(min_group_size),
                      "no non-finite prediction", why)], table

    checks: list[Check] = []
    assessable = []
    for row in table.itertuples():
        name = names.get(str(row.group), str(row.group))
        ok = int(row.n) >= min_group_size
        if ok and scale == "relative" and row.mean_actual == 0.0:
            ok = False
        checks.append(Check(
            f"group_assessable_{name}", ok, float(row.n), float(min_group_size), "value >= threshold",
            (f"{int(row.n)} test rows of {name} customers" if ok else
             f"only {int(row.n)} test rows of {name} customers, fewer than min_group_size={min_group_size}: the "
             "model cannot be assessed for them, so it does not price them")
            + ("" if not (scale == "relative" and row.mean_actual == 0.0) else
               "; their mean actual quantity is 0, so relative differences are undefined"),
            scope=group_scope(name)))
        if ok:
            assessable.append(str(row.group))
    if len(assessable) < 2:
        return checks, table
    errors = _per_line(test, sensitive, scale)
    unit = {"log": "log1p units", "relative": "(relative to each group's own mean demand)",
            "quantity": "quantity units"}[scale]
    error_column, outcome_column, error_what, outcome_what = FAIRNESS_SCALES[scale]
    compared = table[table["group"].isin(assessable)]
    for name, column, threshold, what, per_line in (
        ("fairness_mae_difference", error_column, max_mae, error_what, "error"),
        ("fairness_mean_outcome_difference", outcome_column, max_outcome, outcome_what, "outcome"),
    ):
        spread, high, low = _spread(compared, column)
        standard_error = math.sqrt(sum(errors[(group, per_line)] ** 2 for group in (high, low)))
        lower = spread - SAMPLING_Z * standard_error
        passed = lower <= threshold
        label = {group: names.get(group, group) for group in (high, low)}
        checks.append(Check(
            name, passed, spread, threshold, "value - 1.645 x standard error <= threshold",
            f"{what} ranges from {float(compared[column].min()):.4g} ({label[low]}) to "
            f"{float(compared[column].max()):.4g} ({label[high]}): difference {spread:.4g} {unit} +- "
            f"{standard_error:.3g} (standard error), lower 90% bound {lower:.4g} "
            f"{'within' if passed else 'above'} {threshold:g}", scope=BETWEEN_SCOPE))
    return checks, table


def _per_line(test: pd.DataFrame, sensitive: str, scale: str) -> dict[tuple[str, str], float]:
    """The standard error of each group's error and outcome statistics (``(group, "error" | "outcome")``), from the
    spread of its rows' own values on the scale."""
    labels = _group_labels(test, sensitive).to_numpy()
    log_true = _actual_log(test)
    y_pred = _numeric(test, Y_PRED)
    true_q = np.expm1(log_true)
    pred_q = _predicted_quantity(y_pred)
    result: dict[tuple[str, str], float] = {}
    for group in np.unique(labels):
        mask = labels == group
        n = int(mask.sum())
        if scale == "log":
            error, outcome = np.abs(y_pred[mask] - log_true[mask]), y_pred[mask] - log_true[mask]
        elif scale == "relative":
            mean_actual = float(true_q[mask].mean()) or 1.0
            error = np.abs(pred_q[mask] - true_q[mask]) / mean_actual
            outcome = (pred_q[mask] - true_q[mask]) / mean_actual
        else:
            error, outcome = np.abs(pred_q[mask] - true_q[mask]), pred_q[mask]
        for key, values in (("error", error), ("outcome", outcome)):
            result[(str(group), key)] = float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return result


def group_baseline_checks(test: pd.DataFrame, *, baseline_quantity: float, sensitive: str = DEFAULT_SENSITIVE,
                          names: dict[str, str] | None = None, min_improvement: float = 0.0) -> list[Check]:
    """``beats_baseline_<name>`` per group (scope ``group:<name>``): on the group's own test rows the model's RMSLE
    must be at least ``min_improvement`` below the median baseline's (0: no worse), up to sampling error. The
    overall ``beats_baseline`` asks the product's margin; this one makes sure no group is priced by a model that
    forecasts it worse than its typical order."""
    _require_columns(test, [Y_TRUE, Y_PRED])
    _require_sensitive(test, sensitive)
    baseline_quantity = _require_threshold("baseline_quantity", baseline_quantity)
    min_improvement = _require_min_improvement(min_improvement)
    names = names or {}
    labels = _group_labels(test, sensitive).to_numpy()
    log_true = _actual_log(test)
    y_pred = _numeric(test, Y_PRED)
    checks = []
    for group in np.unique(labels):
        mask = labels == group
        name = names.get(str(group), str(group))
        if _non_finite_predictions(y_pred[mask]).any():
            checks.append(Check(f"beats_baseline_{name}", False, None, 0.0, "value >= threshold",
                                f"non-finite predictions for {name} customers", scope=group_scope(name)))
            continue
        model_errors = (np.maximum(y_pred[mask], 0.0) - log_true[mask]) ** 2
        baseline_errors = (np.log1p(baseline_quantity) - log_true[mask]) ** 2
        model, baseline = math.sqrt(model_errors.mean()), math.sqrt(baseline_errors.mean())
        improvement = 1.0 - model / baseline if baseline > 0 else 0.0
        # Worse than the median only beyond sampling error: on its own rows a group's RMSLE against the median's
        # is a paired comparison whose noise, at a few hundred lines, is larger than a weak model's edge.
        allowed = (1.0 - min_improvement) ** 2  # RMSLE <= (1 - t) x baseline RMSLE, on squared errors
        excess = model_errors - allowed * baseline_errors
        n = int(mask.sum())
        margin = SAMPLING_Z * float(np.std(excess, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        worse = float(excess.mean()) - margin > 0
        target = "the median" if min_improvement == 0 else f"the median by {min_improvement:g}"
        checks.append(Check(
            f"beats_baseline_{name}", not worse, improvement, min_improvement,
            "value >= threshold, up to sampling error",
            f"for {name} customers: model RMSLE {model:.4g} vs baseline RMSLE {baseline:.4g} ({n} test rows): "
            + (f"short of {target} beyond sampling error" if worse else
               f"meets {target}" if improvement >= min_improvement else
               f"short of {target} within sampling error"),
            scope=group_scope(name)))
    return checks


# --- verdict ----------------------------------------------------------------------------------------------


def verdict(checks: Sequence[Check]) -> dict[str, Any]:
    """The gate's decision from its checks; no checks is an error.

    Without group-scoped checks: ``{"passed": all passed, "failed_checks", "checks"}``. With them, also
    ``"groups"``: each group is servable when no check of scope model or between failed and none of its own did;
    the model passes (is promoted) when at least one group is servable, and serves only those.
    """
    checks = list(checks)
    if not checks:
        # all([]) is True: an empty list must never promote a model.
        raise ValueError("verdict needs at least one Check; got none")
    wrong = [type(c).__name__ for c in checks if not isinstance(c, Check)]
    if wrong:
        raise ValueError(f"verdict accepts only Check objects; got {wrong}")
    failed = [c.name for c in checks if not c.passed]
    result: dict[str, Any] = {
        "passed": not failed,
        "failed_checks": failed,
        "checks": [c.to_dict() for c in checks],
    }
    names = sorted({c.scope.split(":", 1)[1] for c in checks if c.scope.startswith("group:")})
    if names:
        shared = [c for c in checks if not c.passed and not c.scope.startswith("group:")]
        groups = {}
        for name in names:
            own = [c for c in checks if c.scope == group_scope(name) and not c.passed]
            blocking = shared + own
            groups[name] = {"servable": not blocking, "failed_checks": [c.name for c in blocking],
                            "reason": "; ".join(c.detail for c in blocking)}
        result["groups"] = groups
        result["passed"] = any(entry["servable"] for entry in groups.values())
    if result["passed"]:
        logger.info("promotable (%s)", ", ".join(name for name, e in result.get("groups", {}).items()
                                                  if e["servable"]) or f"all {len(checks)} checks passed")
    else:
        logger.info("model not promoted; failed checks: %s", ", ".join(failed))
    return result
