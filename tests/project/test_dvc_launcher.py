"""A DVC command forked from the launcher behaves as the same command in a new interpreter: its directory,
environment, pricetrail, output and exit code; its deadline ends it and what it started; a launcher that ends, or
whose caller ends, leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pricetrail.project import dvc_launcher
from pricetrail.project.dvc import dvc_command, dvc_environment
from pricetrail.project.files import pid_alive

pytestmark = pytest.mark.skipif(not dvc_launcher.can_launch(), reason="the launcher forks: POSIX only")

# A stand-in for pricetrail.project.dvc_cli in a workspace's own lib: what the child ran, where, with what.
FAKE_COMMAND = """import json, os, sys, time, subprocess
import pricetrail

def main(argv):
    if argv[0] == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open("grandchild.pid", "w").write(str(child.pid))
        print("hanging", flush=True)
        time.sleep(120)
    if argv[0] == "exit-with-text":
        sys.exit("a message, not a number")
    if argv[0] == "raise":
        raise ValueError("boom")
    print(json.dumps({"cwd": os.getcwd(), "pricetrail": pricetrail.__file__, "args": argv,
                      "marker": os.environ.get("MARKER"), "session": os.getsid(0) == os.getpid()}))
    print("to stderr", file=sys.stderr)
    return int(argv[1]) if len(argv) > 1 else 0
"""


def _workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    package = workspace / "lib" / "pricetrail" / "project"
    package.mkdir(parents=True)
    (workspace / "lib" / "pricetrail" / "__init__.py").write_text("", encoding="utf-8")
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "dvc_cli.py").write_text(FAKE_COMMAND, encoding="utf-8")
    return workspace


def _environment(workspace: Path) -> dict[str, str]:
    return dvc_environment({"PYTHONPATH": str(workspace / "lib"), "MARKER": "from-the-request"})


def _run(launcher: dvc_launcher.Launcher, workspace: Path, args: list[str], deadline: float = 60.0,
         lines: list[str] | None = None) -> tuple[int, str, bool]:
    return launcher.run(args, workspace, _environment(workspace), workspace / "out.log",
                        deadline=time.monotonic() + deadline, on_line=None if lines is None else lines.append)


def test_the_child_runs_in_the_requests_directory_environment_and_pricetrail(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    launcher = dvc_launcher.Launcher()
    try:
        lines: list[str] = []
        code, output, expired = _run(launcher, workspace, ["report", "3"], lines=lines)
        assert (code, expired) == (3, False)
        facts = json.loads(output.splitlines()[0])
        assert facts == {"cwd": str(workspace), "pricetrail": str(workspace / "lib" / "pricetrail" / "__init__.py"),
                         "args": ["report", "3"], "marker": "from-the-request", "session": True}
        assert "to stderr" in output and lines == output.splitlines()
        # The same launcher serves the next command (and the exit code of each is its own).
        assert _run(launcher, workspace, ["report", "0"])[0] == 0
    finally:
        launcher.close()


def test_exit_codes_a_message_and_a_traceback_are_those_of_a_new_interpreter(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    launcher = dvc_launcher.Launcher()
    try:
        code, output, _ = _run(launcher, workspace, ["exit-with-text"])
        assert code == 1 and "a message, not a number" in output
        code, output, _ = _run(launcher, workspace, ["raise"])
        assert code == 1 and "ValueError: boom" in output and "Traceback" in output
    finally:
        launcher.close()


def _gone(pid: int, seconds: float = 10.0) -> bool:
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_the_deadline_kills_the_command_and_what_it_started(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    launcher = dvc_launcher.Launcher()
    try:
        started = time.monotonic()
        code, output, expired = _run(launcher, workspace, ["hang"], deadline=2.0)
        assert expired and code == -signal.SIGKILL and "hanging" in output
        assert time.monotonic() - started < 20
        assert _gone(int((workspace / "grandchild.pid").read_text()))
    finally:
        launcher.close()


def test_a_launcher_killed_under_a_command_is_an_error_and_the_command_is_ended(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    launcher = dvc_launcher.Launcher()
    launcher_pid: list[int] = []

    def kill_the_launcher() -> None:
        while not (workspace / "grandchild.pid").is_file():
            time.sleep(0.05)
        assert launcher._process is not None
        launcher_pid.append(launcher._process.pid)
        os.kill(launcher._process.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_launcher)
    killer.start()
    try:
        with pytest.raises(dvc_launcher.LauncherError, match="launcher process ended"):
            _run(launcher, workspace, ["hang"], deadline=60.0)
    finally:
        killer.join()
        launcher.close()
    assert _gone(int((workspace / "grandchild.pid").read_text()))
    # The next command starts a new launcher.
    try:
        assert _run(launcher, workspace, ["report", "0"])[0] == 0
        assert launcher._process is not None and launcher._process.pid != launcher_pid[0]
    finally:
        launcher.close()


CALLER = """import sys, time
from pathlib import Path
from pricetrail.project import dvc_launcher
from pricetrail.project.dvc import dvc_environment
workspace = Path(sys.argv[1])
launcher = dvc_launcher.Launcher()
launcher.run(["report"], workspace, dvc_environment({"PYTHONPATH": str(workspace / "lib")}), workspace / "out.log",
             deadline=time.monotonic() + 60)
print(launcher._process.pid, flush=True)
time.sleep(120)
"""


def test_a_launcher_ends_when_its_caller_is_killed(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(workspace)], stdout=subprocess.PIPE, text=True)
    try:
        assert caller.stdout is not None
        launcher_pid = int(caller.stdout.readline())
        assert pid_alive(launcher_pid)
    finally:
        caller.kill()
        caller.wait()
    assert _gone(launcher_pid)


def test_concurrent_callers_get_launchers_of_their_own(tmp_path: Path) -> None:
    with dvc_launcher.borrowed() as first, dvc_launcher.borrowed() as second:
        assert first is not second
    with dvc_launcher.borrowed() as again:
        assert again in (first, second)


DVC_YAML = """stages:
  double:
    cmd: python -c "open('out.txt', 'w').write(open('in.txt').read() * 2)"
    deps: [in.txt]
    outs: [out.txt]
"""


@pytest.mark.integration
def test_real_dvc_commands_launched_match_a_new_interpreter(tmp_path: Path) -> None:
    """repro, then status, each way: same exit codes, same lines; and the launcher imported what they need."""
    results = {}
    for way in ("plain", "launched"):
        root = tmp_path / way
        root.mkdir()
        (root / "dvc.yaml").write_text(DVC_YAML, encoding="utf-8")
        (root / "in.txt").write_text("ab", encoding="utf-8")
        subprocess.run(dvc_command(["init", "--no-scm", "-q"]), cwd=root, env=dvc_environment(), check=True)
        outputs = []
        for args in (["repro"], ["status"], ["repro"]):
            if way == "plain":
                done = subprocess.run(dvc_command(args), cwd=root, env=dvc_environment(), capture_output=True,
                                      text=True, check=False)
                outputs.append((done.returncode, done.stdout + done.stderr))
            else:
                launcher = dvc_launcher.Launcher()
                try:
                    code, output, _ = launcher.run(args, root, dvc_environment(), root / ".dvc" / "tmp" / "out.log",
                                                   deadline=time.monotonic() + 120)
                finally:
                    launcher.close()
                outputs.append((code, output))
        assert (root / "out.txt").read_text(encoding="utf-8") == "abab"
        results[way] = outputs
    assert results["launched"] == results["plain"]


@pytest.mark.integration
def test_the_preload_covers_what_a_dvc_command_imports(tmp_path: Path) -> None:
    """Modules a no-op ``dvc repro`` and ``dvc status`` import after the preload: a few, not DVC's hundreds (a DVC
    upgrade that moves its lazy imports shows here first, as time lost, not as a failure)."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "dvc.yaml").write_text(DVC_YAML, encoding="utf-8")
    (root / "in.txt").write_text("ab", encoding="utf-8")
    subprocess.run(dvc_command(["init", "--no-scm", "-q"]), cwd=root, env=dvc_environment(), check=True)
    subprocess.run(dvc_command(["repro", "-q"]), cwd=root, env=dvc_environment(), check=True)
    probe = ("import io, json, sys, contextlib\n"
             "from pricetrail.project import dvc_launcher, dvc_cli\n"
             "assert dvc_launcher.preload() == []\n"
             "before = set(sys.modules)\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    dvc_cli.main(['repro']); dvc_cli.main(['status'])\n"
             "print(json.dumps(sorted(set(sys.modules) - before)))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=root, env=dvc_environment(), capture_output=True,
                          text=True, check=True)
    new = json.loads(done.stdout.splitlines()[-1])
    assert len(new) <= 25, new
