"""Helpers the benchmark scripts share: ``from common import ...`` (a script run as ``python bench/x.py`` has this
folder on its path)."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

BIN = Path(sys.executable).parent  # this interpreter's scripts: dvc, prefect, moto_server


def path_with_bin() -> str:
    """PATH with this interpreter's folder first: the commands run, and the stages of a project copy, find its dvc and
    python before any other."""
    return f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def timed(function: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    """Seconds ``function(*args, **kwargs)`` took (wall time), and what it returned."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def print_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A Markdown table: the header (a blank cell, usually the first, is written ``| |``), a rule, a line per row."""
    print("|" + "|".join(f" {cell} " if cell else " " for cell in header) + "|")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def built_project(target: Path, profile: str | None, label: str) -> Path:
    """A throwaway copy of the project at ``target`` with ``profile`` applied, and a finished `pricetrail run` in it
    (a few minutes for the smoke profile); ``label`` names it in the progress line."""
    # Imported here, not at the top: a script's child processes import this module too, and must not load more
    # before they start their clocks than they did.
    from pricetrail.project.copies import make_copy, pricetrail

    project = make_copy(target, profile=profile)
    print(f"building {label} in {project} (pricetrail run) ...", flush=True)
    pricetrail("run", cwd=project)
    return project
