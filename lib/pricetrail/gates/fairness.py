"""Fairness between customer groups: per-group errors and outcomes, their spreads beyond sampling error, and
whether the model beats the median for each group it prices."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pricetrail.gates.checks import BETWEEN_SCOPE, Check, group_scope
from pricetrail.gates.predictions import (
    DEFAULT_SENSITIVE,
    Y_PRED,
    Y_TRUE,
    actual_log,
    non_finite_predictions,
    numeric_column,
    predicted_quantity,
    require_columns,
    require_min_group_size,
    require_min_improvement,
    require_sensitive,
    require_threshold,
)

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


# A difference between groups must exceed its threshold by this many standard errors to fail: the lower end of
# its two-sided 90% interval (the groups' test rows are samples; 30 guest lines measure a mean log error to +-0.1).
SAMPLING_Z = 1.645


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
    require_columns(test, [Y_TRUE, Y_PRED])
    require_sensitive(test, sensitive)
    true_q = np.expm1(actual_log(test))
    pred_q = predicted_quantity(numeric_column(test, Y_PRED))
    frame = pd.DataFrame(
        {
            "group": _group_labels(test, sensitive).to_numpy(),
            "abs_error": np.abs(pred_q - true_q),
            "prediction": pred_q,
            "actual": true_q,
            "log_error": numeric_column(test, Y_PRED) - actual_log(test),
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
    require_columns(test, [Y_TRUE, Y_PRED])
    require_sensitive(test, sensitive)
    max_mae = require_threshold("max_mae_difference", max_mae_difference)
    max_outcome = require_threshold("max_mean_outcome_difference", max_mean_outcome_difference)
    min_group_size = require_min_group_size(min_group_size)
    if scale not in FAIRNESS_SCALES:
        raise ValueError(f"scale={scale!r} is not accepted; use one of {sorted(FAIRNESS_SCALES)}")
    names = names or {}

    table = group_metrics(test, sensitive)
    groups = _describe_groups(table)
    n_bad = int(non_finite_predictions(numeric_column(test, Y_PRED)).sum())
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
    log_true = actual_log(test)
    y_pred = numeric_column(test, Y_PRED)
    true_q = np.expm1(log_true)
    pred_q = predicted_quantity(y_pred)
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
    require_columns(test, [Y_TRUE, Y_PRED])
    require_sensitive(test, sensitive)
    baseline_quantity = require_threshold("baseline_quantity", baseline_quantity)
    min_improvement = require_min_improvement(min_improvement)
    names = names or {}
    labels = _group_labels(test, sensitive).to_numpy()
    log_true = actual_log(test)
    y_pred = numeric_column(test, Y_PRED)
    checks = []
    for group in np.unique(labels):
        mask = labels == group
        name = names.get(str(group), str(group))
        if non_finite_predictions(y_pred[mask]).any():
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
