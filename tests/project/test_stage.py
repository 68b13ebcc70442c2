"""Stage failures: one line naming the stage and the error, exit 1, never a traceback (injected failures)."""

from __future__ import annotations

import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT

from pricetrail.data.etl import CleaningRules, run_etl
from pricetrail.modeling.tuning import tune
from pricetrail.project import stage

DEBUG_ENV = "PRICETRAIL_DEBUG"
SPACE = {"n_layers": [1, 1], "units": [4, 4], "dropout": [0.0, 0.0], "batch_norm": [False],
         "learning_rate": [1e-3, 1e-3], "optimizer": ["adam"], "batch_size": [32]}


def diverging_tuning(root: Path) -> None:
    """The real tuner on a target it cannot fit: every trial diverges, and tune raises RuntimeError."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = np.full(40, 1e30, dtype="float32")  # finite, but its squared error overflows: every trial diverges
    tune(x, y, x, y, search_space=SPACE, n_trials=2, max_epochs=2, patience=1, timeout_seconds=None, seed=0)


def damaged_parquet(root: Path) -> None:
    """The real ETL on a file that is not Parquet: DuckDB raises its own (non-ValueError) error."""
    path = root / "transactions.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    run_etl(path, "85123A", CleaningRules())


def missing_file(root: Path) -> None:
    (root / "nowhere" / "x.json").read_text()


def failure(main: Callable[[Path], None], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> list[str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as exited:
        stage.run(name, main)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith(("ERROR", "GATE FAILED"))]


@pytest.mark.parametrize(
    ("main", "name", "expected"),
    [
        (diverging_tuning, "tune_primary_model@85123A",
         "ERROR tune_primary_model@85123A: unexpected RuntimeError: no tuning trial completed (0 pruned, 2 failed"),
        (damaged_parquet, "etl_pipeline@85123A", "ERROR etl_pipeline@85123A: unexpected InvalidInputException: "),
        (missing_file, "inference_primary_model@85123A",
         "ERROR inference_primary_model@85123A: unexpected FileNotFoundError: [Errno 2] No such file"),
    ],
)
def test_unexpected_errors_give_one_line_naming_stage_and_type(main, name: str, expected: str, monkeypatch,
                                                                tmp_path: Path, capsys) -> None:
    lines = failure(main, name, monkeypatch, tmp_path, capsys)
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert lines[0].endswith(f"({DEBUG_ENV}=1 shows the traceback)")


def test_multi_line_messages_are_cut_to_their_first_line(monkeypatch, tmp_path: Path, capsys) -> None:
    def main(root: Path) -> None:
        raise ValueError("Binder Error: column x not found\n\nLINE 1: SELECT x FROM t\n               ^")

    assert failure(main, "ingest", monkeypatch, tmp_path, capsys) == ["ERROR ingest: Binder Error: column x not found"]


def test_gate_and_expected_errors_keep_their_lines(monkeypatch, tmp_path: Path, capsys) -> None:
    def gate(root: Path) -> None:
        raise stage.GateFailed("85123A: 3 of 5 monitored columns drifted")

    def expected(root: Path) -> None:
        raise ValueError("stockcode 99999 is not in the data")

    assert failure(gate, "data_drift_check@85123A", monkeypatch, tmp_path, capsys) == [
        "GATE FAILED data_drift_check@85123A: 85123A: 3 of 5 monitored columns drifted"]
    assert failure(expected, "etl_pipeline@99999", monkeypatch, tmp_path, capsys) == [
        "ERROR etl_pipeline@99999: stockcode 99999 is not in the data"]


def test_debug_switch_logs_the_traceback(monkeypatch, tmp_path: Path, capsys, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DEBUG_ENV, "1")
    with caplog.at_level(logging.DEBUG, logger="pricetrail.project.stage"), pytest.raises(SystemExit):
        stage.run("ingest", missing_file)
    assert any(record.exc_info and record.exc_info[0] is FileNotFoundError for record in caplog.records)
    assert capsys.readouterr().err.splitlines()[-1].startswith("ERROR ingest: unexpected FileNotFoundError")


def test_real_stage_script_on_a_damaged_input(monkeypatch, tmp_path: Path, capsys) -> None:
    """stages/etl_pipeline.py itself, as DVC runs it, on an ingested file that is not Parquet."""
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "interim").mkdir(parents=True)
    (tmp_path / "data" / "interim" / "transactions.parquet").write_bytes(b"garbage")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(sys, "argv", ["etl_pipeline.py", "--stockcode", "85123A"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(PROJECT_ROOT / "stages" / "etl_pipeline.py"), run_name="__main__")
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and errors[0].startswith("ERROR etl_pipeline@85123A: unexpected "), err
    assert not (tmp_path / "data" / "features").exists() or not os.listdir(tmp_path / "data" / "features")


def test_a_finished_stage_logs_its_start_up_and_its_work_time(tmp_path: Path) -> None:
    script = ("import time\nfrom pricetrail.project.stage import run\n"
              "run('demo@85123A', lambda root: time.sleep(0.3))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            check=True)
    line = next(line for line in result.stderr.splitlines() if "demo@85123A: start-up" in line)
    startup, work = re.search(r"start-up ([0-9.]+) s, work ([0-9.]+) s", line).groups()
    assert 0 < float(startup) < 30 and 0.3 <= float(work) < 30, line


def test_the_etl_refuses_a_product_its_splits_could_not_hold_naming_what_it_lacks(monkeypatch, tmp_path: Path,
                                                                                  capsys) -> None:
    """240 clean lines (over etl.min_rows) on 3 trading days of 20, 200 and 20 lines: whole-day splits leave
    the validation split no line and the test split 20."""
    from conftest import lines

    from pricetrail.project.paths import ProductPaths

    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    days = ["2011-03-01"] * 20 + ["2011-03-02"] * 200 + ["2011-03-03"] * 20
    rows = [{"invoice_no": str(600000 + i), "invoice_date": f"{day} 10:00:00", "customer_id": 17850.0 + i % 7}
            for i, day in enumerate(days)]
    path = tmp_path / ProductPaths("85123A").interim_lines
    path.parent.mkdir(parents=True)
    lines(rows).to_parquet(path, index=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["etl_pipeline.py", "--stockcode", "85123A"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(PROJECT_ROOT / "stages" / "etl_pipeline.py"), run_name="__main__")
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert ("ERROR etl_pipeline@85123A: stockcode 85123A has 240 clean lines over 3 trading days: its validation "
            "split would hold 0 and test split would hold 20 lines") in err, err
    assert "fewer than preprocess.min_split_rows=30" in err and "about 200 lines" in err, err
    assert not (tmp_path / ProductPaths("85123A").lines).exists()  # nothing half-written
