"""The drift gate's re-check after a promotion reuses the result the gate checked ahead (no Evidently start), and
that result is Evidently's own for the same frames: compared here with a fresh check, and with the stage run
again without the kept result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pricetrail.gates.drift import DriftSettings, check_drift, current_window
from pricetrail.project.config import load_params, section
from pricetrail.project.copies import clone_project
from pricetrail.project.paths import ProductPaths
from pricetrail.registry import records
from pricetrail.registry.drift_reference import drift_reference
from pricetrail.steps.drift import REUSED

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CODES = ("85123A", "22423")


def fresh_metrics(root: Path, code: str) -> dict:
    settings = DriftSettings.from_params(section(load_params(root), "data_drift_check"))
    served = drift_reference(root, code)
    assert served is not None
    reference, source = served
    features = pd.read_parquet(root / ProductPaths(code).lines)
    return check_drift(reference, current_window(features, settings), settings,
                       reference_source=source).to_metrics(settings)


def assert_same_result(stored: dict, fresh: dict) -> None:
    """Equal, with scores equal to the last few bits: Evidently sums in an order that varies from one process to
    the next (string hashing), so two checks of the same frames by two processes differ there too."""
    for key, value in fresh.items():
        if key == "per_column":
            assert set(stored[key]) == set(value)
            for column, entry in value.items():
                kept = stored[key][column]
                assert {k: v for k, v in kept.items() if k != "score"} == {k: v for k, v in entry.items()
                                                                          if k != "score"}, column
                assert kept["score"] == pytest.approx(entry["score"], rel=1e-9, abs=1e-12), column
        else:
            assert stored[key] == value, key


def run_stage(root: Path, code: str) -> str:
    """The drift stage as DVC runs it, reporting whether Evidently was imported."""
    script = ("import runpy, sys\nsys.argv = ['stages/data_drift_check.py', '--stockcode', sys.argv[1]]\n"
              "try:\n    runpy.run_path('stages/data_drift_check.py', run_name='__main__')\nfinally:\n"
              "    print('EVIDENTLY' if 'evidently' in sys.modules else 'NO-EVIDENTLY')\n")
    result = subprocess.run([sys.executable, "-c", script, code], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.parametrize("code", CODES)
def test_the_re_check_after_promotion_reused_the_gates_result_and_it_is_evidentlys(smoke_week1, code: str) -> None:  # noqa: ANN001
    root = smoke_week1.root
    served = records.served_model(root, code)
    assert served is not None
    metrics = json.loads((root / ProductPaths(code).drift_metrics).read_text())
    assert metrics["reference"]["source"] == f"training data of served model {served.version}"
    assert REUSED in (root / "logs" / f"{code}.log").read_text()  # the flow's re-check started no Evidently
    assert_same_result(metrics, fresh_metrics(root, code))


def test_the_stage_reuses_only_for_the_same_frames_and_both_ways_agree(smoke_week1, tmp_path: Path) -> None:  # noqa: ANN001
    root = clone_project(smoke_week1.root, tmp_path / "project")
    paths = ProductPaths(CODES[0])
    before = json.loads((root / paths.drift_metrics).read_text())
    gate = (root / paths.drift_gate).read_bytes()
    assert "NO-EVIDENTLY" in run_stage(root, CODES[0])
    assert json.loads((root / paths.drift_metrics).read_text()) == before
    # Without the kept result (or with another's), Evidently checks again, and says the same.
    kept = root / paths.drift_recheck / "result.json"
    kept.unlink()
    output = run_stage(root, CODES[0])
    assert "EVIDENTLY" in output.replace("NO-EVIDENTLY", "")
    assert_same_result(json.loads((root / paths.drift_metrics).read_text()), before)
    assert (root / paths.drift_gate).read_bytes() == gate
    assert "NO-EVIDENTLY" in run_stage(root, CODES[0])  # kept again by that run
