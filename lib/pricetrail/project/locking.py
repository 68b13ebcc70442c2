"""Locks that keep the registry, the workspace and the DVC cache consistent between pricetrail commands.

Two locks, both advisory ``flock`` locks on files under ``.dvc/tmp/pricetrail/`` (so a ``kill -9`` releases them:
the kernel drops a dead process's locks):

- ``registry``: held for the short spans that write registry records, move a run's outputs into the workspace
  and merge ``dvc.lock`` (with the promotion that reads them), so those happen as one unit. Every writer of
  ``registry/`` takes it: promote, rollback, accept-drift, migrate-registry, and the weekly run's bring-back.
- ``pipeline``: held by ``pricetrail run`` for its whole duration and by ``pricetrail gc``: the run's workspaces
  write objects into the shared DVC cache that no record names yet, so a collection must never run beside it;
  nor may two runs share the workspaces.

A second command waits up to its bound for a lock, then fails with one line naming the holder (its pid, command
and start time). Within one process the locks are reentrant, so a library function that takes a lock can be called
by a caller that already holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_DIR = Path(".dvc/tmp/pricetrail")
REGISTRY = "registry"
PIPELINE = "pipeline"
NAMES = (REGISTRY, PIPELINE)
DEFAULT_WAIT_SECONDS = 60.0
POLL_SECONDS = 0.05


class LockTimeout(ValueError):
    """Another process holds the lock and did not release it within the bound."""


@dataclass
class _Held:
    handle: int  # the open file descriptor holding the flock
    depth: int
    owner: int  # thread ident


_held: dict[tuple[str, str], _Held] = {}
_guard = threading.Lock()
_settings = {"wait": DEFAULT_WAIT_SECONDS}


def set_default_wait(seconds: float) -> None:
    """The bound every lock of this process waits for unless a call gives its own (the CLI's ``--wait``)."""
    if not 0 <= seconds <= 86_400:
        raise LockTimeout(f"--wait {seconds!r} is not accepted: seconds from 0 to 86400")
    _settings["wait"] = float(seconds)


def lock_path(root: Path, name: str) -> Path:
    if name not in NAMES:
        raise ValueError(f"lock {name!r} is not one of {NAMES}")
    return root / LOCK_DIR / f"{name}.lock"


def holder(root: Path, name: str) -> str:
    """Who holds (or last held) a lock, as its file records it."""
    try:
        info = json.loads(lock_path(root, name).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process"
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    return f"pid {info.get('pid')} ({info.get('command', '?')}, since {info.get('since', '?')})"


@contextmanager
def hold(root: Path, name: str, *, wait: float | None = None, command: str | None = None) -> Iterator[None]:
    """Hold lock ``name`` of the project at ``root``; reentrant within a thread, exclusive across processes."""
    key = (str(Path(root).resolve()), name)
    me = threading.get_ident()
    bound = _settings["wait"] if wait is None else wait
    deadline = time.monotonic() + bound
    while True:
        with _guard:
            held = _held.get(key)
            if held is None or held.owner == me:
                break
        if time.monotonic() >= deadline:  # another thread of this process holds it
            raise LockTimeout(f"the project's {name} lock is held by another thread of this process")
        time.sleep(POLL_SECONDS)
    if held is not None:
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
        return
    path = lock_path(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"the project is busy: its {name} lock is held by {holder(root, name)}; waited {bound:g} s "
                        "(--wait SECONDS waits longer; a holder that died released it)") from None
                time.sleep(POLL_SECONDS)
        record = {"pid": os.getpid(), "command": command or " ".join(["pricetrail", *sys.argv[1:2]]),
                  "since": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(record).encode(), 0)
        with _guard:
            _held[key] = _Held(handle=handle, depth=1, owner=me)
        try:
            yield
        finally:
            with _guard:
                del _held[key]
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)
