"""Running DVC from pricetrail: one way to build the command, its environment, and one line for a failure.

DVC runs as ``python -m dvc`` with this interpreter, and this interpreter's folder goes first on ``PATH``: stage
commands say ``python stages/x.py``, so they run where pricetrail is installed, whether or not the user activated
the virtual environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pricetrail.project.files import ConfigError

Runner = Callable[[Sequence[str], Path], subprocess.CompletedProcess]
# The longest failure line carried into a message (DVC can print a whole traceback on one line).
MAX_ERROR_CHARS = 500


def dvc_command(args: Sequence[str]) -> list[str]:
    """``dvc <args>`` through :mod:`pricetrail.project.dvc_cli`: DVC itself, with dvc.lock read and written at
    catalogue scale and params.yaml parsed once. In a product's workspace too (its own copy of pricetrail is first
    on the path): there the lock is small, but DVC's round-trip of it after every stage, and its parse of
    params.yaml for every stage, cost a real product's chain about 1 s of its ~20 s (measured side by side)."""
    return [sys.executable, "-m", "pricetrail.project.dvc_cli", *args]


def dvc_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(extra or {}),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_dvc(args: Sequence[str], root: Path) -> subprocess.CompletedProcess:
    """``dvc <args>`` in ``root``, its output captured."""
    return subprocess.run(dvc_command(args), cwd=root, env=dvc_environment(), capture_output=True, text=True,
                          check=False)


def run_dvc_shown(args: Sequence[str], root: Path) -> int:
    """``dvc <args>`` in ``root`` with its output on the user's terminal; the exit code."""
    return subprocess.run(dvc_command(args), cwd=root, env=dvc_environment(), check=False).returncode


def checked_dvc(args: Sequence[str], root: Path, *, error: type[Exception] = ConfigError,
                runner: Runner = run_dvc, what: str | None = None) -> subprocess.CompletedProcess:
    """``dvc <args>``; a failure raises ``error`` naming the command (or ``what``) and DVC's last error line."""
    result = runner(args, root)
    if result.returncode != 0:
        raise error(f"dvc {what or ' '.join(args)} failed: {last_error(result.stderr + result.stdout)}")
    return result


def last_error(output: str) -> str:
    """DVC's last ``ERROR:`` line without its prefix, else the last line of output."""
    lines = [line.strip().removeprefix("ERROR: ").strip() for line in output.splitlines()
             if line.strip().startswith("ERROR")]
    others = [line.strip() for line in output.splitlines() if line.strip()]
    return (lines or others or ["no output"])[-1][:MAX_ERROR_CHARS]
