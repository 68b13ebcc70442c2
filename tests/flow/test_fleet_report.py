"""A run over a catalogue reads as a few lines: counts by result, decision, failed stage and gate check, the
slowest products, then every failure with its reason; the per-product table only for a few products."""

from __future__ import annotations

import pytest

from pricetrail import cli
from pricetrail.flow.summary import TABLE_LIMIT, ProductSummary, fleet_report


def rows(count: int) -> list[dict]:
    made = []
    for index in range(count):
        summary = ProductSummary(f"{10000 + index}", seconds=float(index % 97))
        if index % 10 == 0:
            summary.failed_stage, summary.reason = "etl_pipeline", f"stockcode {10000 + index} has 150 clean rows"
        elif index % 10 == 1:
            summary.failed_stage, summary.reason = "data_drift_check", "drift in unit_price"
        elif index % 10 in (2, 3):
            summary.decision = ("none: model ab12 failed its gate: beats_baseline=0.01 (threshold 0.05); "
                                "fairness_mean_outcome_difference=0.3 (threshold 0.25)")
        elif index % 10 == 4:
            summary.decision = ("kept: model cd34 failed its gate: beats_baseline=0.02 (threshold 0.05); this "
                                "product keeps serving ef56")
        else:
            summary.decision = "promoted: passed the drift gate and assess_model_risk"
        made.append(summary.row())
    return made


def test_840_products_read_as_a_few_lines_with_every_failure_named() -> None:
    report = fleet_report(rows(840))
    assert report[0] == "840 products: 672 ok, 168 failed"
    assert report[1] == "decisions: 420 promoted, 168 no decision, 168 none, 84 kept"
    assert report[2] == "failed at: 84 data_drift_check, 84 etl_pipeline"
    assert report[3] == "gate checks that kept a model out: 252 beats_baseline, 168 fairness_mean_outcome_difference"
    assert report[4].startswith("slowest: 10096 96.0 s, 10193 96.0 s")
    assert report[5] == "failures (168):" and len(report) == 6 + 168
    assert "  10000: etl_pipeline: stockcode 10000 has 150 clean rows" in report


def test_the_terminal_gets_the_table_for_a_few_products_and_the_summary_for_many(
        capsys: pytest.CaptureFixture[str]) -> None:
    cli._print_table(rows(TABLE_LIMIT))
    few = capsys.readouterr().out
    assert "product  stages run" in few and "10039" in few and "40 products:" not in few
    cli._print_table(rows(TABLE_LIMIT + 1))
    many = capsys.readouterr().out
    assert "41 products: " in many and "stages run" not in many and "logs/last-run.json" in many
    assert len(many.splitlines()) < 20
    cli._print_table([])
    assert capsys.readouterr().out == ""
