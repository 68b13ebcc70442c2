"""Files written whole or not at all, and read with one clear error: the project's small file primitives."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A params or stockcodes file, or a value in it, is not acceptable."""


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds.

    A crash or an error then leaves the previous file (or nothing), never a half-written one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the name, so a clean-up removes only temporaries no live process owns.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file gets the mode a plain write would
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[^.]+\.tmp$")


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files (``atomic_path``'s) in ``directory`` whose writer is no longer alive: a write
    interrupted by ``kill -9`` leaves one. A live writer's file is never touched."""
    removed = []
    if not directory.is_dir():
        return removed
    for path in directory.glob(".*.tmp"):
        match = TEMPORARY.match(path.name)
        if match and pid_alive(int(match.group("pid"))) and int(match.group("pid")) != os.getpid():
            continue
        if match and int(match.group("pid")) == os.getpid():
            continue  # this process's own write in progress (another thread)
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask sets as it reads, which would race with threads writing files.
_UMASK = _read_umask()


def write_json(path: Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from error


def read_finite_json(path: Path) -> Any:
    """JSON in which every number is finite: a model file's numbers must compute, and Python's reader would take
    NaN and Infinity. Raises OSError, UnicodeDecodeError or ValueError; the caller names the file's role."""
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a model file may hold")


def file_md5(path: Path) -> str:
    """The md5 DVC records for a file: the same bytes always give the same hash."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
