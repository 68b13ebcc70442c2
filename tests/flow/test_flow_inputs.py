"""The flow refuses what cannot work before anything is touched: one message, a non-zero exit."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT

from pricetrail import cli


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "stockcodes.yaml").write_text('stockcodes:\n  "85123A": {}\n  "22423": {}\n')
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    remote = local\n['remote \"local\"']\n    url = /tmp/r\n")
    for args in (["init", "-q"], ["config", "user.email", "t@example.invalid"], ["config", "user.name", "t"],
                 ["add", "-A"], ["commit", "-qm", "start"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return tmp_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_bad_run_input_is_refused_before_anything_changes(project: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    before = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if ".git/" not in p.as_posix())
    refused(capsys, ["run", "99999"], "unknown products ['99999']: not in stockcodes.yaml")
    refused(capsys, ["run", "../x"], "stockcode '../x' is not accepted")
    refused(capsys, ["run", "--workers", "0"], "--workers: '0' is not accepted: a whole number from 1 to 256")
    refused(capsys, ["run", "--timeout", "-1"], "--timeout: '-1' is not accepted: a number above 0")
    refused(capsys, ["run", "--timeout", "nan"], "--timeout: 'nan' is not accepted")
    refused(capsys, ["run", "--dask-address", "localhost:8786"], "use tcp://HOST:PORT")
    refused(capsys, ["run", "--dask-address", f"tcp://127.0.0.1:{free_port()}"], "no Dask scheduler answers at")
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    refused(capsys, ["run"], "does not answer")
    monkeypatch.delenv("PREFECT_API_URL")
    (project / "dvc.yaml").write_text("stages: {}\n# an edit\n")
    refused(capsys, ["run"], "dvc.yaml has uncommitted edits")
    after = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if ".git/" not in p.as_posix())
    assert after == before


def test_schedule_needs_a_real_server_and_a_cron(project: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    refused(capsys, ["schedule"], "schedules fire only against a running Prefect server")
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    refused(capsys, ["schedule", "--cron", "every monday"], "is not a cron expression")
    refused(capsys, ["schedule"], "does not answer")


def test_stage_times_come_from_dvcs_own_lines() -> None:
    from pricetrail.flow.workspace import StageTimer

    clock = iter([0.0, 0.5, 3.0, 3.2, 4.0, 9.0]).__next__
    timer = StageTimer(clock)
    for line in ["Running stage 'etl_pipeline@X':", "> python stages/etl_pipeline.py --stockcode X",
                 "Updating lock file 'dvc.lock'", "Running stage 'data_drift_check@X':", "> python ...",
                 "GATE FAILED data_drift_check@X: 3 of 5 monitored columns drifted"]:
        timer.line(line)
    assert timer.seconds == {"etl_pipeline@X": 3.0, "data_drift_check@X": 5.8}


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "--port", "70000"], "--port: '70000' is not accepted: a whole number from 1 to 65535"),
    (["serve", "--threads", "0"], "--threads: '0' is not accepted: a whole number from 1 to 256"),
    (["serve", "--max-memory-mb", "nan"], "--max-memory-mb: 'nan' is not accepted"),
    (["recommend", "85123A", "--date", "2011-01-01", "--widen", "5"], "--widen: '5' is not accepted"),
    (["recommend", "85123A", "--date", "2011-01-01", "--low", "1e-300"], "--low: '1e-300' is not accepted"),
    (["--wait", "-1", "gc"], "--wait: '-1' is not accepted"),
    (["schedule", "--workers", "x"], "--workers: 'x' is not a whole number"),
])
def test_bad_command_line_numbers_are_one_usage_error(project: Path, capsys: pytest.CaptureFixture[str],
                                                      argv: list[str], message: str) -> None:
    refused(capsys, argv, message)


def test_params_whose_etl_and_split_thresholds_contradict_are_refused_once_before_any_chain(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["preprocess"]["min_split_rows"] = 50  # the old default: 200 lines at 15% hold 30
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "add", "params.yaml"], cwd=project, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "params"], cwd=project, check=True, capture_output=True)
    refused(capsys, ["run"], "params.yaml: etl.min_rows=200 admits products too small to split")
    assert not (project / ".dvc" / "tmp").exists()  # no lock taken, no workspace made
