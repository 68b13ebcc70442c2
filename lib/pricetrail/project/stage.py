"""What every stage script shares: logging, the project root, and one clear line on failure.

A failing stage prints exactly one line naming the stage (``GATE FAILED <stage>: ...`` for a gate, ``ERROR
<stage>: ...`` for anything else) and exits 1. An error we did not foresee (a tuning RuntimeError, a DuckDB
error) says its type; its traceback is logged at DEBUG, which ``PRICETRAIL_DEBUG=1`` switches on.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from pricetrail.project.config import validate_stockcode

log = logging.getLogger("pricetrail.project.stage")

DEBUG_ENV = "PRICETRAIL_DEBUG"


class GateFailed(Exception):
    """A gate decided the product's chain must stop here (not a bug: the outputs explain why)."""


class CurrentStderr(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is emitted, not when the handler was made: ``main`` may run
    again in one process (tests, a notebook) after ``sys.stderr`` was replaced and the old one closed."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; the property ignores it
        pass


def log_to_stderr(level: int) -> None:
    """Log records to stderr, one line each. A handler left on the root logger that writes to a closed stream (bound
    to an earlier stderr: a library's console handler, a previous caller's) is dropped first: it could only turn
    every record into '--- Logging error --- Traceback'."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
            root.removeHandler(handler)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", handlers=[CurrentStderr()])


def stockcode_argument(description: str, argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--stockcode", required=True, help="the product's stockcode, as in stockcodes.yaml")
    return validate_stockcode(parser.parse_args(argv).stockcode)


def run_product_stage(name: str, description: str | None, step: Callable[[Path, str], None],
                      argv: list[str] | None = None) -> None:
    """A per-product stage script's whole body: ``step(project_root, stockcode)`` for ``--stockcode``, as
    ``name@<stockcode>``."""
    code = stockcode_argument(description or name, argv)
    run(f"{name}@{code}", lambda root: step(root, code))


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(error: BaseException) -> str:
    """The first non-empty line of an error's message (DuckDB's messages go on with the query and a caret)."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return "(no message)"


def process_age_seconds() -> float | None:
    """Seconds since this process started (Linux: /proc), None where the system does not say."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def run(stage: str, main: Callable[[Path], None]) -> None:
    """Run ``main(project_root)``; turn any error into one line naming the stage, and exit 1. Logs the stage's
    start-up (process start to its own work: the interpreter and its imports) and its work time, so a stage that
    pays for a library it does not run shows up in every run's log."""
    log_to_stderr(logging.DEBUG if debug_enabled() else logging.INFO)
    startup = process_age_seconds()
    began = time.perf_counter()
    try:
        main(Path.cwd())
        log.info("%s: start-up %s, work %.2f s", stage, "unknown" if startup is None else f"{startup:.2f} s",
                 time.perf_counter() - began)
    except GateFailed as gate:
        _fail(f"GATE FAILED {stage}: {gate}")
    except ValueError as error:  # our error classes are ValueErrors with one clear message each
        log.debug("%s failed", stage, exc_info=True)
        _fail(f"ERROR {stage}: {one_line(error)}")
    except Exception as error:  # noqa: BLE001 - the last line of defence: a stage never ends in a traceback
        log.debug("%s failed", stage, exc_info=True)
        hint = "" if debug_enabled() else f" ({DEBUG_ENV}=1 shows the traceback)"
        _fail(f"ERROR {stage}: unexpected {type(error).__name__}: {one_line(error)}{hint}")


def _fail(line: str) -> NoReturn:
    sys.stderr.write(line + "\n")
    sys.exit(1)
