"""The operator commands on a small project: clear errors with nothing changed, and a real kill -9 mid-promotion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from registry_runs import CODE, OTHER, make_run, snapshot

from pricetrail import cli
from pricetrail.registry import records


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "stockcodes.yaml").write_text(f'stockcodes:\n  "{CODE}": {{}}\n  "{OTHER}": {{}}\n')
    make_run(tmp_path, CODE)
    make_run(tmp_path, OTHER)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["promote"]) == 0
    return tmp_path


def fails_cleanly(project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    before = snapshot(project)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert err.count("\n") == 1, err
    assert snapshot(project) == before


def test_bad_operator_input_is_one_line_and_changes_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails_cleanly(project, capsys, ["rollback", "99999"], "stockcode 99999 is not in stockcodes.yaml")
    fails_cleanly(project, capsys, ["history", "../etc"], "stockcode '../etc' is not accepted")
    fails_cleanly(project, capsys, ["rollback", CODE, "--to", "abcdef12"], "has never promoted version abcdef12")
    fails_cleanly(project, capsys, ["rollback", CODE], "no version promoted before aaaa0000")
    fails_cleanly(project, capsys, ["accept-drift", CODE, "--reason", ""], "accept-drift needs --reason")
    (project / "registry" / CODE / "served.json").write_text("{not json")
    fails_cleanly(project, capsys, ["rollback", CODE], "registry record of 85123A is damaged")
    fails_cleanly(project, capsys, ["recommend", CODE, "--date", "2011-01-01"], "registry record of 85123A is damaged")
    history = project / "registry" / OTHER / "history.jsonl"
    history.write_text(history.read_text() + "garbage\n")
    fails_cleanly(project, capsys, ["history", OTHER], "history.jsonl line 2 is not JSON")


def test_history_lists_every_decision(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(project, CODE, version="bbbb0000", marker=2.0)
    assert cli.main(["promote"]) == 0
    assert cli.main(["rollback", CODE, "--reason", "store test went badly"]) == 0
    capsys.readouterr()
    assert cli.main(["history", CODE]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["promoted", "promoted", "rollback"]
    assert "rolled back from bbbb0000: store test went badly" in lines[-1] and "rmsle 0.5000" in lines[0]
    assert cli.main(["history", CODE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[-1]["from_version"] == "bbbb0000"


def test_kill_9_mid_promotion_keeps_the_previous_record_and_the_rerun_promotes_all(project: Path) -> None:
    make_run(project, CODE, version="cccc0000", marker=3.0)
    make_run(project, OTHER, version="dddd0000", marker=4.0)
    served_before = (project / "registry" / CODE / "served.json").read_bytes()
    # A real SIGKILL at the moment 85123A's served.json would be renamed into place.
    killer = (
        "import os, signal, sys\n"
        "real = os.replace\n"
        "def replace(src, dst):\n"
        f"    if str(dst).endswith('{CODE}/served.json'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(src, dst)\n"
        "os.replace = replace\n"
        "from pricetrail.cli import main\n"
        "sys.exit(main(['promote']))\n")
    result = subprocess.run([sys.executable, "-c", killer], cwd=project, capture_output=True, text=True,
                            env={**os.environ}, timeout=120, check=False)
    assert result.returncode == -9, result.stderr
    assert (project / "registry" / CODE / "served.json").read_bytes() == served_before
    assert records.served_model(project, OTHER).version == "aaaa0000"  # type: ignore[union-attr]
    assert cli.main(["promote"]) == 0
    assert records.served_model(project, CODE).version == "cccc0000"  # type: ignore[union-attr]
    assert records.served_model(project, OTHER).version == "dddd0000"  # type: ignore[union-attr]
    assert not list((project / "registry").rglob("*.tmp"))
    assert [e["action"] for e in records.history(project, CODE)] == ["promoted", "promoted"]


def test_the_cli_log_handler_writes_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() can run twice in one process (tests, a notebook): a handler bound to the first, since closed, stderr
    # turned every later log line into "--- Logging error --- Traceback".
    import io
    import logging

    from pricetrail.project.stage import CurrentStderr

    handler = CurrentStderr()
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    handler.emit(logging.makeLogRecord({"msg": "one", "levelno": logging.ERROR}))
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    handler.emit(logging.makeLogRecord({"msg": "two", "levelno": logging.ERROR}))
    assert second.getvalue() == "two\n"


def test_a_root_handler_left_on_a_closed_stream_is_dropped_before_the_cli_logs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Prefect's console handler sits on the root logger, bound to the stderr of the moment it was set up.
    import io
    import logging

    from pricetrail.project.stage import log_to_stderr

    root = logging.getLogger()
    stale = io.StringIO()
    left = logging.StreamHandler(stale)
    root.addHandler(left)
    stale.close()
    current = io.StringIO()
    monkeypatch.setattr(sys, "stderr", current)
    try:
        log_to_stderr(logging.INFO)
        assert left not in root.handlers
        logging.getLogger("pricetrail.test").error("damaged record")
    finally:
        root.removeHandler(left)
    assert "Logging error" not in current.getvalue()
