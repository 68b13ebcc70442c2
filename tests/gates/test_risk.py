"""Unit tests for the model risk gate (pricetrail.gates) on tiny inline frames."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pricetrail.gates.checks import Check, verdict
from pricetrail.gates.fairness import fairness_checks, group_baseline_checks, group_metrics
from pricetrail.gates.price_checks import PriceCurve, demand_rises, price_response_checks
from pricetrail.gates.risk import baseline_prediction, risk_checks


def frame(actual: list[float], predicted: list[float], groups: list[object]) -> pd.DataFrame:
    """A test-set frame from quantities (the model works in log1p units)."""
    return pd.DataFrame(
        {"y_true": np.log1p(actual), "y_pred": np.log1p(predicted), "is_registered": groups}
    )


# Group True: actual 1, 3, 5; predicted 2, 3, 2 -> errors 1, 0, 3.
# Group False: actual 2, 4, 6; predicted 2, 6, 7 -> errors 0, 2, 1.
HAND = frame([1, 3, 5, 2, 4, 6], [2, 3, 2, 2, 6, 7], [True, True, True, False, False, False])
LOOSE = {"max_mae_difference": 10.0, "max_mean_outcome_difference": 10.0, "min_group_size": 1}


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


# --- hand-computed values ---------------------------------------------------------------------------------


def test_group_metrics_hand_computed() -> None:
    table = group_metrics(HAND, "is_registered")
    assert list(table.columns) == ["group", "n", "mae", "mean_prediction", "mean_actual", "relative_mae",
                                   "relative_bias", "log_mae", "log_bias"]
    assert table["group"].tolist() == ["False", "True"]
    assert table["n"].tolist() == [3, 3]
    assert table["mae"].tolist() == pytest.approx([1.0, 4 / 3])
    assert table["mean_prediction"].tolist() == pytest.approx([5.0, 7 / 3])
    assert table["mean_actual"].tolist() == pytest.approx([4.0, 3.0])


def test_fairness_differences_hand_computed_log_default() -> None:
    # log errors, True: ln(3/2), 0, ln(3/6); False: 0, ln(7/5), ln(8/7).
    true_errors = [math.log(3 / 2), 0.0, math.log(3 / 6)]
    false_errors = [0.0, math.log(7 / 5), math.log(8 / 7)]
    checks, table = fairness_checks(HAND, sensitive="is_registered", **LOOSE)
    found = by_name(checks)
    assert table["log_mae"].tolist() == pytest.approx([np.mean(np.abs(false_errors)), np.mean(np.abs(true_errors))])
    assert table["log_bias"].tolist() == pytest.approx([np.mean(false_errors), np.mean(true_errors)])
    assert found["fairness_mae_difference"].value == pytest.approx(
        np.mean(np.abs(true_errors)) - np.mean(np.abs(false_errors)))  # 0.2095
    assert found["fairness_mean_outcome_difference"].value == pytest.approx(
        np.mean(false_errors) - np.mean(true_errors))  # 0.2526


def test_fairness_differences_hand_computed_relative() -> None:
    checks, _ = fairness_checks(HAND, sensitive="is_registered", scale="relative", **LOOSE)
    found = by_name(checks)
    assert found["group_assessable_True"].passed and found["group_assessable_False"].passed
    # Each group against its own demand. True: MAE 4/3 over mean actual 3 = 4/9, bias (7/3)/3 - 1 = -2/9.
    # False: MAE 1 over mean actual 4 = 1/4, bias 5/4 - 1 = 1/4.
    assert found["fairness_mae_difference"].value == pytest.approx(4 / 9 - 1 / 4)  # 7/36
    assert found["fairness_mean_outcome_difference"].value == pytest.approx(1 / 4 + 2 / 9)  # 17/36
    _, table = fairness_checks(HAND, sensitive="is_registered", scale="relative", **LOOSE)
    assert table["relative_mae"].tolist() == pytest.approx([1 / 4, 4 / 9])
    assert table["relative_bias"].tolist() == pytest.approx([1 / 4, -2 / 9])


def test_fairness_differences_hand_computed_absolute() -> None:
    checks, _ = fairness_checks(HAND, sensitive="is_registered", scale="quantity", **LOOSE)
    found = by_name(checks)
    assert found["fairness_mae_difference"].value == pytest.approx(1 / 3)
    assert found["fairness_mean_outcome_difference"].value == pytest.approx(8 / 3)


def test_risk_metrics_hand_computed_with_clipping() -> None:
    # Actual quantity 0 everywhere; predictions +-0.5 in log units, the negative ones clip to quantity 0.
    test = pd.DataFrame({"y_true": [0.0] * 4, "y_pred": [0.5, -0.5, 0.5, -0.5]})
    baseline = math.e - 1  # log1p(baseline) == 1 -> baseline RMSLE 1
    checks, metrics = risk_checks(test, baseline_quantity=baseline, min_improvement=0.5)
    assert metrics["baseline_rmsle"] == pytest.approx(1.0)
    assert metrics["model_rmsle"] == pytest.approx(math.sqrt(0.125))
    assert metrics["improvement"] == pytest.approx(1 - math.sqrt(0.125))
    assert metrics["model_mae"] == pytest.approx((math.exp(0.5) - 1) / 2)
    assert metrics["baseline_mae"] == pytest.approx(math.e - 1)
    assert by_name(checks)["beats_baseline"].passed


def test_baseline_prediction_is_median_quantity() -> None:
    assert baseline_prediction(np.array([1, 3, 4, 10])) == 3.5
    assert baseline_prediction(np.array([7.0])) == 7.0


# --- the gate matrix --------------------------------------------------------------------------------------


def shifted(n: int = 40, shift: float = 0.4, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """n rows per group; registered predictions exp(shift) times too high in log1p units, guests exact; optional
    noise on every prediction."""
    rng = np.random.default_rng(seed)
    actual = np.log1p(rng.integers(1, 20, size=2 * n).astype(float))
    registered = np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]
    predicted = actual + np.where(registered, shift, 0.0) + rng.normal(0, noise, size=2 * n)
    return pd.DataFrame({"y_true": actual, "y_pred": predicted, "is_registered": registered})


SHIFTED = shifted()  # both spreads exactly 0.4, no sampling error
BEATS = {True: 0.1, False: 0.95}
FAIRNESS = {
    "ok": (SHIFTED, LOOSE, []),
    "mae_too_large": (SHIFTED, {**LOOSE, "max_mae_difference": 0.3}, ["fairness_mae_difference"]),
    "outcome_too_large": (
        SHIFTED, {**LOOSE, "max_mean_outcome_difference": 0.3}, ["fairness_mean_outcome_difference"]
    ),
}


@pytest.mark.parametrize("beats", [True, False])
@pytest.mark.parametrize("fairness", list(FAIRNESS))
def test_gate_matrix(beats: bool, fairness: str) -> None:
    test, params, fairness_failures = FAIRNESS[fairness]
    risk, _ = risk_checks(test, baseline_quantity=100.0, min_improvement=BEATS[beats])
    fair, _ = fairness_checks(test, sensitive="is_registered", **params)
    result = verdict([*risk, *fair])

    expected = ([] if beats else ["beats_baseline"]) + fairness_failures
    assert result["passed"] == (beats and fairness == "ok")
    assert result["failed_checks"] == expected
    # A failure of the model or between the groups blocks every group.
    assert {name: entry["servable"] for name, entry in result["groups"].items()} == {
        "False": result["passed"], "True": result["passed"]}
    dicts = {d["name"]: d for d in result["checks"]}
    assert set(dicts) == {"predictions_finite", "beats_baseline", "group_assessable_False", "group_assessable_True",
                          "fairness_mae_difference", "fairness_mean_outcome_difference"}
    assert dicts["fairness_mean_outcome_difference"]["value"] == pytest.approx(0.4)
    assert dicts["beats_baseline"]["threshold"] == BEATS[beats]
    json.dumps(result, allow_nan=False)  # plain JSON, no NaN


def test_a_difference_within_its_sampling_error_does_not_block_and_a_clear_one_does() -> None:
    # 30 rows a group, log errors with sd 0.5: the spread's standard error is about 0.13.
    noisy = shifted(n=30, shift=0.3, noise=0.5, seed=3)
    found = by_name(fairness_checks(noisy, sensitive="is_registered", **{**LOOSE, "max_mean_outcome_difference": 0.25})
                    [0])
    outcome = found["fairness_mean_outcome_difference"]
    assert outcome.value > 0.25 and outcome.passed, outcome.detail  # above the threshold, within its error
    assert "standard error" in outcome.detail and "lower 90% bound" in outcome.detail
    clear = shifted(n=300, shift=0.6, noise=0.5, seed=3)
    found = by_name(fairness_checks(clear, sensitive="is_registered", **{**LOOSE, "max_mean_outcome_difference": 0.25})
                    [0])
    assert not found["fairness_mean_outcome_difference"].passed


# --- non-finite predictions -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1000.0])
def test_non_finite_predictions_never_promote(bad: float) -> None:
    test = HAND.copy()
    test.loc[2, "y_pred"] = bad  # 1000 is finite in log units but overflows to inf quantity
    risk, metrics = risk_checks(test, baseline_quantity=100.0, min_improvement=-1.0)
    fair, table = fairness_checks(test, sensitive="is_registered", **LOOSE)
    found = by_name([*risk, *fair])
    assert not found["predictions_finite"].passed
    assert found["predictions_finite"].value == 1.0
    assert not found["beats_baseline"].passed and found["beats_baseline"].value is None
    assert metrics["model_rmsle"] is None and metrics["improvement"] is None
    assert not found["fairness_computable"].passed and found["fairness_computable"].scope == "model"
    assert "NaN or infinite" in found["fairness_computable"].detail
    result = verdict([*risk, *fair])
    assert result["passed"] is False
    assert "predictions_finite" in result["failed_checks"]
    json.dumps(result, allow_nan=False)
    assert len(table) == 2


def test_baseline_with_zero_error_fails_instead_of_dividing_by_zero() -> None:
    test = pd.DataFrame({"y_true": np.log1p([2.0, 2.0]), "y_pred": np.log1p([2.0, 2.0])})
    checks, metrics = risk_checks(test, baseline_quantity=2.0, min_improvement=0.0)
    beats = by_name(checks)["beats_baseline"]
    assert not beats.passed and beats.value is None and "zero RMSLE" in beats.detail
    assert metrics["improvement"] is None


# --- groups -----------------------------------------------------------------------------------------------


def test_a_single_group_is_judged_on_its_own_checks() -> None:
    test = HAND.assign(is_registered=True)
    checks, table = fairness_checks(test, sensitive="is_registered", **LOOSE)
    assert [c.name for c in checks] == ["group_assessable_True"] and checks[0].passed
    assert table["group"].tolist() == ["True"]
    assert verdict(checks)["groups"] == {"True": {"servable": True, "failed_checks": [], "reason": ""}}


def test_a_group_too_small_to_assess_is_refused_and_blocks_no_other() -> None:
    test = pd.concat([shifted(n=30, shift=0.0), frame([1, 2], [1, 2], [False, False])], ignore_index=True)
    test["is_registered"] = [True] * 30 + [False] * 32
    test.loc[30:, "is_registered"] = [False] * 32
    small = pd.concat([test[test["is_registered"]], test[~test["is_registered"]].head(5)], ignore_index=True)
    names = {"True": "registered", "False": "guest"}
    checks, _ = fairness_checks(small, sensitive="is_registered", names=names, **{**LOOSE, "min_group_size": 20})
    found = by_name(checks)
    assert not found["group_assessable_guest"].passed and found["group_assessable_guest"].value == 5.0
    assert "only 5 test rows of guest customers" in found["group_assessable_guest"].detail
    assert found["group_assessable_guest"].scope == "group:guest"
    assert "fairness_mae_difference" not in found  # nothing to compare the registered customers with
    result = verdict(checks)
    assert result["passed"] and result["groups"]["registered"]["servable"]
    assert not result["groups"]["guest"]["servable"]
    assert result["groups"]["guest"]["failed_checks"] == ["group_assessable_guest"]


def test_a_group_the_model_forecasts_worse_than_the_median_is_refused_alone() -> None:
    # Registered: predictions exact; guests: predictions far off, worse than predicting the median for them.
    test = frame([2, 3, 4, 2, 3, 4], [2, 3, 4, 40, 50, 60], [True, True, True, False, False, False])
    names = {"True": "registered", "False": "guest"}
    checks = group_baseline_checks(test, baseline_quantity=3.0, names=names)
    found = by_name(checks)
    assert found["beats_baseline_registered"].passed and found["beats_baseline_registered"].value == pytest.approx(1)
    assert not found["beats_baseline_guest"].passed and found["beats_baseline_guest"].scope == "group:guest"
    result = verdict(checks)
    assert result["passed"] and [n for n, e in result["groups"].items() if e["servable"]] == ["registered"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([True, False, True, False], ["False", "True"]),
        (["registered", "guest", "registered", "guest"], ["guest", "registered"]),
        (pd.array(["b", "a", "b", "a"], dtype="str"), ["a", "b"]),
        ([1, 0, 1, 0], ["0", "1"]),
        (pd.array([True, None, True, False], dtype="boolean"), ["<missing>", "False", "True"]),
    ],
)
def test_group_values_come_from_the_data_as_strings(values: object, expected: list[str]) -> None:
    test = frame([1, 2, 3, 4], [1, 2, 3, 4], list(values))
    table = group_metrics(test, "is_registered")
    assert table["group"].tolist() == expected
    assert all(isinstance(g, str) for g in table["group"])
    assert table["n"].sum() == 4


def test_other_sensitive_column() -> None:
    test = HAND.rename(columns={"is_registered": "country"})
    checks, table = fairness_checks(test, sensitive="country", **LOOSE)
    assert all(c.passed for c in checks)
    assert len(table) == 2


# --- verdict and Check ------------------------------------------------------------------------------------


def test_verdict_shape() -> None:
    good = Check("a", True, 1.0, 0.0, "value >= threshold", "fine")
    bad = Check("b", False, None, 0.5, "value >= threshold", "not computable")
    result = verdict([good, bad])
    assert result == {
        "passed": False,
        "failed_checks": ["b"],
        "checks": [good.to_dict(), bad.to_dict()],
    }
    assert verdict([good])["passed"] is True


def test_check_to_dict_has_plain_types() -> None:
    check = Check("a", np.bool_(True), np.float64(0.25), np.float32(0.5), "value >= threshold", "ok")
    d = check.to_dict()
    assert type(d["passed"]) is bool and type(d["value"]) is float and type(d["threshold"]) is float


# --- errors -----------------------------------------------------------------------------------------------


def fair(test: pd.DataFrame = HAND, **overrides: object) -> object:
    sensitive = overrides.pop("sensitive", "is_registered")
    return fairness_checks(test, sensitive=sensitive, **{**LOOSE, **overrides})


def risk(test: pd.DataFrame = HAND, **overrides: object) -> object:
    return risk_checks(test, **{"baseline_quantity": 3.0, "min_improvement": 0.1, **overrides})


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: risk(HAND.drop(columns="y_pred")), r"missing column\(s\) \['y_pred'\].*present: \['y_true'"),
        (lambda: fair(HAND.drop(columns="y_true")), r"missing column\(s\) \['y_true'\]"),
        (lambda: group_metrics(HAND.drop(columns="y_true"), "is_registered"), r"\['y_true'\]"),
        (lambda: risk(HAND.iloc[0:0]), "empty"),
        (lambda: fair(HAND.iloc[0:0]), "empty"),
        (lambda: fair(sensitive="country"), r"sensitive column 'country'.*is_registered"),
        (lambda: group_metrics(HAND, "country"), "'country'"),
        (lambda: fair(max_mae_difference=-0.1), r"max_mae_difference=-0.1.*>= 0"),
        (lambda: fair(max_mae_difference=float("nan")), "max_mae_difference=nan"),
        (lambda: fair(max_mean_outcome_difference=-1), r"max_mean_outcome_difference=-1"),
        (lambda: fair(max_mean_outcome_difference=float("nan")), "max_mean_outcome_difference=nan"),
        (lambda: fair(max_mean_outcome_difference=float("inf")), "max_mean_outcome_difference=inf"),
        (lambda: fair(min_group_size=0), r"min_group_size=0.*integer >= 1"),
        (lambda: fair(min_group_size=2.5), r"min_group_size=2.5"),
        (lambda: fair(scale="yes"), "scale='yes' is not accepted"),
        (lambda: risk(min_improvement=1.0), r"min_improvement=1.0.*\[-1, 1\)"),
        (lambda: risk(min_improvement=-1.5), r"min_improvement=-1.5"),
        (lambda: risk(min_improvement=float("nan")), "min_improvement=nan"),
        (lambda: risk(baseline_quantity=-2.0), "baseline_quantity=-2.0"),
        (lambda: risk(baseline_quantity=float("nan")), "baseline_quantity=nan"),
        (lambda: risk(HAND.assign(y_true=np.nan)), r"column 'y_true' has 6 value"),
        (lambda: risk(HAND.assign(y_true=-0.5)), r"column 'y_true'.*>= 0"),
        (lambda: risk(HAND.assign(y_pred="high")), r"column 'y_pred' has dtype"),
        (lambda: group_metrics(HAND.assign(is_registered=[True, "True"] * 3), "is_registered"),
         "distinct"),
        (lambda: baseline_prediction(np.array([])), "train_quantity has shape"),
        (lambda: baseline_prediction(np.array([1.0, np.nan])), r"train_quantity.*NaN"),
        (lambda: baseline_prediction(np.array([1.0, -3.0])), r"train_quantity.*-3.0"),
        (lambda: verdict([]), "at least one Check"),
        (lambda: Check("x", True, None, 1.0, "value >= threshold", ""), "'x' cannot pass"),
        (lambda: Check("x", False, float("nan"), 1.0, "value >= threshold", ""), "value=nan"),
    ],
)
def test_errors_name_the_bad_value(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


# --- price response ---------------------------------------------------------------------------------------


def curve(quantity: list[float], elasticity: float | None = -1.2) -> PriceCurve:
    prices = np.linspace(2.0, 3.0, len(quantity))
    return PriceCurve(prices=prices, quantity=np.asarray(quantity, dtype=float), elasticity=elasticity,
                      median_price=2.5)


def test_price_response_passes_a_falling_curve_with_a_plausible_elasticity() -> None:
    checks = price_response_checks({"registered": curve([5, 4, 3]), "guest": curve([2, 2, 1], -2.0)},
                                   min_elasticity=-8, max_elasticity=-0.05)
    assert [c.name for c in checks] == ["price_response_monotone", "price_elasticity_registered",
                                        "price_elasticity_guest"]
    assert all(c.passed for c in checks)
    assert checks[0].value == 0.0


def test_demand_that_rises_anywhere_on_the_grid_blocks_promotion() -> None:
    checks = price_response_checks({"registered": curve([5, 4, 4.2, 3]), "guest": curve([2, 1])},
                                   min_elasticity=-8, max_elasticity=-0.05)
    monotone = checks[0]
    assert not monotone.passed and monotone.value == pytest.approx(0.05)
    assert "rises with the price for registered" in monotone.detail
    assert not verdict(checks)["passed"]
    assert demand_rises(np.array([0.0, 1.0])) == 1.0  # from nothing to something: finite, and a rise


@pytest.mark.parametrize(("elasticity", "threshold"), [(0.3, -0.05), (-0.01, -0.05), (-12.0, -8.0)])
def test_an_implausible_elasticity_blocks_promotion(elasticity: float, threshold: float) -> None:
    checks = price_response_checks({"registered": curve([5, 4, 3], elasticity)}, min_elasticity=-8,
                                   max_elasticity=-0.05)
    check = checks[1]
    assert not check.passed and check.value == elasticity and check.threshold == threshold
    assert "is outside [-8, -0.05]" in check.detail


def test_an_elasticity_that_cannot_be_computed_fails() -> None:
    check = price_response_checks({"guest": curve([0, 0, 0], None)}, min_elasticity=-8, max_elasticity=-0.05)[1]
    assert not check.passed and check.value is None


def test_price_response_needs_a_grid_and_ordered_bounds() -> None:
    (check,) = price_response_checks({}, min_elasticity=-8, max_elasticity=-0.05)
    assert not check.passed and check.value is None
    with pytest.raises(ValueError, match="must be below"):
        price_response_checks({"registered": curve([2, 1])}, min_elasticity=-0.05, max_elasticity=-8)
