"""Bringing parallel results back into the main workspace: outputs first, then one dvc.lock write.

The entries come verbatim from the dvc.lock that DVC wrote in each product's workspace (entries of different
stages are independent keys under ``stages:``), and are written with DVC's own YAML round-trip
(``dvc.utils.serialize.modify_yaml``, what ``Lockfile.dump_stages`` uses) into a copy that then replaces dvc.lock
atomically. Outputs are in place before the lock names them: a kill between the two leaves stages that DVC sees
as changed (and the next run restores from the run-cache), never a lock that names outputs that are not there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pricetrail.config import atomic_path
from pricetrail.dvclock import LOCK_FILE
from pricetrail.flow.workspace import JobResult


def output_paths(entries: Mapping[str, Any]) -> list[str]:
    return [str(out["path"]) for entry in entries.values() for out in entry.get("outs", []) or []]


def _replace(source: Path, target: Path) -> None:
    """Move ``source`` over ``target`` (file or folder) on one filesystem, never leaving a half-moved folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        old = target.with_name(f".{target.name}.replaced")
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            target.rename(old)
        source.rename(target)
        if old.exists():
            shutil.rmtree(old)
    elif source.is_file():
        os.replace(source, target)


def bring_back(root: Path, results: Iterable[JobResult], *, move_outputs: bool) -> dict[str, Any]:
    """Put every result's outputs into ``root`` and merge its lock entries; return the merged entries."""
    entries: dict[str, Any] = {}
    for result in results:
        if move_outputs:  # this machine: the workspace shares the cache and the filesystem
            for relpath in output_paths(result.lock_entries):
                _replace(Path(result.workspace) / relpath, root / relpath)
        for relpath, content in result.files.items():
            with atomic_path(root / relpath) as tmp:
                tmp.write_bytes(content)
        entries.update(result.lock_entries)
    merge_lock_entries(root, entries)
    return entries


def merge_lock_entries(root: Path, entries: Mapping[str, Any]) -> None:
    """Set these stages' entries in dvc.lock, in one atomic write with DVC's own YAML round-trip."""
    if not entries:
        return
    from dvc.utils.serialize import modify_yaml

    lock = root / LOCK_FILE
    with atomic_path(lock) as tmp:
        if lock.is_file():
            shutil.copyfile(lock, tmp)
        else:
            tmp.write_text("", encoding="utf-8")
        with modify_yaml(str(tmp)) as data:
            if not data:
                data.update({"schema": "2.0"})
            stages = data.setdefault("stages", {})
            for name, entry in entries.items():
                stages[name] = entry
