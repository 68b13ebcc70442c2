"""The pricing benchmark's own bookkeeping: which product's test runs, and how the closed loop is reported."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
pricing_benchmark = pytest.importorskip("pricing_benchmark")


def _answers() -> pd.DataFrame:
    return pd.DataFrame([
        # a registered plan: it runs as it is (the registered price is the list price)
        {"stockcode": "A", "group": "registered", "status_quo": 4.0, "test_plan": [3.0, 4.0], "test_days_each": 28,
         "plan_settles": True},
        {"stockcode": "A", "group": "guest", "status_quo": 8.0, "test_plan": [6.0, 8.0], "test_days_each": 56,
         "plan_settles": False},
        # only the guests' plan: scaled to the list price by the two status quos
        {"stockcode": "B", "group": "registered", "status_quo": 2.0, "test_plan": None, "test_days_each": None,
         "plan_settles": None},
        {"stockcode": "B", "group": "guest", "status_quo": 5.0, "test_plan": [4.0, 5.0], "test_days_each": 14,
         "plan_settles": False},
        # no plan at all
        {"stockcode": "C", "group": "registered", "status_quo": 1.0, "test_plan": None, "test_days_each": None,
         "plan_settles": None},
        {"stockcode": "-", "group": "-", "status_quo": None, "test_plan": None, "test_days_each": None,
         "plan_settles": None},
    ])


def test_the_registered_plan_runs_else_the_guests_scaled_to_the_list_price() -> None:
    table = _answers()
    chosen = pricing_benchmark.planning_rows(table)
    assert {code: row.group for code, row in chosen.items()} == {"A": "registered", "B": "guest"}
    plans = pricing_benchmark.plans_of(table)
    assert plans == {"A": {"prices": [3.0, 4.0], "days_each": 28, "block_days": 7},
                     "B": {"prices": [1.6, 2.0], "days_each": 14, "block_days": 7}}
    # The plans are written into params.yaml, whose YAML writer refuses numpy scalars.
    assert all(type(price) is float for plan in plans.values() for price in plan["prices"])


def test_the_loop_report_splits_by_whether_the_plan_expected_to_settle(capsys: pytest.CaptureFixture[str]) -> None:
    loop = pd.DataFrame([
        {"seed": 1, "stockcode": "A", "group": "registered", "test": [3.0, 4.0], "days_each": 28, "settles": True,
         "band_before_pct": 20.0, "band_predicted_pct": 10.0, "band_after_pct": 8.0, "band_control_pct": 20.0,
         "band_fall_pct": 60.0, "decision_before": "keep 4", "decision_after": "change 3.5", "earlier": None,
         "decision_afresh": "change 3.5", "quo_before": 4.0, "quo_after": 4.0,
         "regret_before": 2.0, "regret_after": 0.1, "regret_afresh": 0.1,
         "change_after_gains": True, "regret_control": 2.0},
        # the refit alone takes back a change it cannot show loses; carried, the change stands
        {"seed": 1, "stockcode": "B", "group": "registered", "test": [1.6, 2.0], "days_each": 56, "settles": False,
         "band_before_pct": 30.0, "band_predicted_pct": 29.0, "band_after_pct": 30.0, "band_control_pct": 30.0,
         "band_fall_pct": 0.0, "decision_before": "change 1.8", "decision_after": "change 1.8", "earlier": "kept",
         "decision_afresh": "keep 2", "quo_before": 2.0, "quo_after": 2.0,
         "regret_before": 0.0, "regret_after": 0.0, "regret_afresh": 1.0,
         "change_after_gains": True, "regret_control": 0.0},
        {"seed": 1, "stockcode": "B", "group": "guest", "test": [1.6, 2.0], "days_each": 56, "settles": False,
         "band_before_pct": 25.0, "band_predicted_pct": 24.0, "band_after_pct": 20.0, "band_control_pct": 25.0,
         "band_fall_pct": 20.0, "decision_before": "keep 5", "decision_after": "keep 5", "earlier": None,
         "decision_afresh": "keep 5", "quo_before": 5.0, "quo_after": 4.0,
         "regret_before": 0.5, "regret_after": 1.5, "regret_afresh": 1.5,
         "change_after_gains": None, "regret_control": 0.5},
    ])
    assert pricing_benchmark.report_loop(loop) is False  # a band fell by less than 40%, and a regret rose
    printed = capsys.readouterr().out
    assert "expected to settle the question: yes: 1 products, 1 cases; band fall median 60%" in printed
    assert "regret rose by > 0.3 points in 0 (against the control: 0), fell in 1" in printed
    assert "expected to settle the question: no: 1 products, 2 cases; band fall median 10%" in printed
    assert "regret rose by > 0.3 points in 1 (against the control: 1), fell in 0" in printed
    assert "deciding afresh (the refit alone, no memory): rose by > 0.3 points in 2 of 3" in printed
    assert "(served): rose by > 0.3 points in 1 of 3, fell in 1; largest rise +1.00" in printed
    assert "earlier changes kept: 1 cases (1 better than deciding afresh, 0 worse); changes after the test that " \
           "truly gain: 2 of 2" in printed
    assert "the control (the same period, no test, the same rule): regret rose by > 0.3 points against the first " \
           "run in 0, fell in 0" in printed
    assert "the status quo moved between the periods in 1 cases" in printed and "1 B guest 5 -> 4, regret 0.50 -> " \
           "1.50 (control 0.50)" in printed
    assert "FAIL  their regret does not rise" in printed
