"""A product a gate stopped is not run again while nothing its failed stage reads changed (the plan record's
``held``), and is run again as soon as anything does; an error is never held."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pricetrail.flow import plan_record, planning

CHAIN = ("etl_pipeline", "data_drift_check")
GATE = {"stage": "data_drift_check@A1", "reason": "GATE FAILED: A1: 3 of 5 monitored columns drifted"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """dvc.yaml's per-product stages as the project declares them, their files, an empty dvc.lock."""
    stage = {"foreach": "${stockcodes}", "do": {"cmd": "python stages/gate.py --stockcode ${key}",
                                                "deps": ["data/features/${key}", "lib/gate.py"],
                                                "params": ["data_drift_check"]}}
    etl = {"foreach": "${stockcodes}", "do": {"cmd": "true", "outs": ["data/features/${key}"]}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"etl_pipeline": etl, "data_drift_check": stage}}))
    (tmp_path / "params.yaml").write_text("data_drift_check:\n  drift_share: 0.5\n")
    (tmp_path / "stockcodes.yaml").write_text('stockcodes:\n  "A1": {}\n  "B2": {}\n')
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    for code in ("A1", "B2"):
        (tmp_path / "data" / "features" / code).mkdir(parents=True)
        (tmp_path / "data" / "features" / code / "lines.parquet").write_bytes(b"lines")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "gate.py").write_text("THRESHOLD = 0.3\n")
    return tmp_path


def test_a_stopped_gate_is_held_while_what_it_reads_is_unchanged(project: Path) -> None:
    planning.record_after_run(project, ["A1", "B2"], {"A1"}, CHAIN, {"A1": GATE})
    planned = planning.plan(project, ["A1", "B2"])
    assert planned.held == {"A1": GATE} and planned.products == {} and not planned.shared
    # Asked about the other product only: nothing held, nothing to run.
    assert planning.plan(project, ["B2"]).held == {}


@pytest.mark.parametrize("change", ["gate code", "its data", "a param"])
def test_any_change_to_what_the_failed_stage_reads_runs_it_again(project: Path, change: str) -> None:
    """The gate's own code is named by no dvc.lock entry (the stage failed), so the fingerprint alone would miss
    it: the held record's own signature does not."""
    planning.record_after_run(project, ["A1", "B2"], {"A1"}, CHAIN, {"A1": GATE})
    if change == "gate code":
        path = project / "lib" / "gate.py"
        path.write_text("THRESHOLD = 0.4\n")
        os.utime(path, ns=(1, 1))
    elif change == "its data":
        (project / "data" / "features" / "A1" / "new.parquet").write_bytes(b"more")
    else:
        (project / "params.yaml").write_text("data_drift_check:\n  drift_share: 0.6\n")
    recorded = plan_record.read_record(project)
    assert recorded is not None and plan_record.stage_inputs(project, GATE["stage"]) != recorded.held["A1"]["inputs"]
    if change == "a param":  # params.yaml is in the fingerprint too: DVC is asked (not here: no DVC project)
        assert plan_record.current(project)[1].fingerprint != recorded.fingerprint
        return
    planned = planning.plan(project, ["A1", "B2"])  # the fingerprint matches (no dvc.lock entry names these)
    assert planned.held == {} and planned.products == {"A1": [f"{stage}@A1" for stage in CHAIN]}


def test_an_error_or_an_unresolvable_stage_is_never_held(project: Path) -> None:
    planning.record_after_run(project, ["A1", "B2"], {"A1"}, CHAIN, {})  # a failure that is not a gate's verdict
    assert planning.plan(project, ["A1", "B2"]).products == {"A1": [f"{stage}@A1" for stage in CHAIN]}
    assert plan_record.stage_inputs(project, "no_such_stage@A1") is None
    assert plan_record.stage_inputs(project, "data_drift_check") is None  # not a product's stage
    planning.record_after_run(project, ["A1", "B2"], {"A1"}, CHAIN, {"A1": {**GATE, "stage": "no_such_stage@A1"}})
    assert planning.plan(project, ["A1", "B2"]).held == {}


def test_the_no_op_path_keeps_the_held_products_with_its_decisions(project: Path) -> None:
    planning.record_after_run(project, ["A1", "B2"], {"A1"}, CHAIN, {"A1": GATE})
    decisions = {code: {"decision": "none: nothing served yet", "served_version": None} for code in ("A1", "B2")}
    planning.record_decisions(project, ["A1", "B2"], decisions, {"A1": GATE}, CHAIN)
    planned = planning.plan(project, ["A1", "B2"])
    assert planned.held == {"A1": GATE} and planned.products == {} and planned.decisions == decisions
    record = plan_record.read_record(project)
    assert record is not None and record.products == {"A1": [f"{stage}@A1" for stage in CHAIN]}
