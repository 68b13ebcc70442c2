"""DVC's last plan, kept with a fingerprint of everything its answer depends on, so a week in which nothing
changed does not ask DVC again.

Asking DVC which stages changed reads all of dvc.yaml and dvc.lock and checks every dependency and output of
every stage: minutes at 800 products. Its answer is a function of

- the bytes of ``dvc.yaml``, ``params.yaml``, ``stockcodes.yaml`` and ``dvc.lock`` (stages, params, the products,
  the hashes recorded);
- the files each stage depends on and writes, which DVC itself does not re-read while their size, modification
  time and inode stay as they were (its state database): the same signature is taken here for every file under
  every path dvc.lock names;
- the DVC version.

The fingerprint hashes all of these, plus the registry (the promotion decisions the no-op path reuses depend on it).
When it matches the record's, DVC would give the record's answer; anything else (a changed byte, a touched file, a
file added to an output folder) asks DVC again. Reading the fingerprint at 800 products takes a second.

The record lives beside the locks (``.dvc/tmp/pricetrail/plan.json``, not in git): it is this workspace's, and a
missing or unreadable record only means DVC is asked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pricetrail.project.dvc_lock import LOCK_FILE, read_stages
from pricetrail.project.files import atomic_path
from pricetrail.project.locking import LOCK_DIR

log = logging.getLogger(__name__)

RECORD = LOCK_DIR / "plan.json"
FORMAT = 1
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stockcodes.yaml", LOCK_FILE)


@dataclass(frozen=True)
class PlanRecord:
    fingerprint: str
    codes: tuple[str, ...]  # the products DVC was asked about
    shared: tuple[str, ...]  # DVC's answer: the shared stages to run (all or none)
    products: dict[str, list[str]]  # ... and each product's changed stages
    # The promotion decisions taken in this very state (the no-op path's rows), when it was promoted as well.
    decisions: dict[str, dict[str, Any]] | None = None
    lock_digest: str = ""  # dvc.lock's hash, and the paths it names: a match needs no parse of dvc.lock
    paths: tuple[str, ...] = field(default=())

    def covers(self, codes: Iterable[str]) -> bool:
        return set(codes) <= set(self.codes)


def fingerprint(root: Path, known: PlanRecord | None = None) -> tuple[str, str, tuple[str, ...]]:
    """(the fingerprint, dvc.lock's digest, the paths dvc.lock names). ``known``: a record, whose list of those
    paths is used when it was taken from a dvc.lock with the same digest (saving a parse of dvc.lock)."""
    digest = hashlib.sha256(f"pricetrail-plan {FORMAT} dvc {_dvc_version()}\n".encode())
    lock_digest = ""
    for name in PROJECT_FILES:
        path = root / name
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
        if name == LOCK_FILE:
            lock_digest = content
        digest.update(f"{name} {content}\n".encode())
    named = known.paths if known is not None and known.lock_digest == lock_digest else lock_paths(root)
    for entry in _signatures(root, [*named, "registry"]):
        digest.update(entry.encode())
    return digest.hexdigest(), lock_digest, named


def lock_paths(root: Path) -> tuple[str, ...]:
    """Every dependency and output path dvc.lock records, once each."""
    paths: set[str] = set()
    for entry in read_stages(root).values():
        for item in [*(entry.get("deps") or []), *(entry.get("outs") or [])]:
            if isinstance(item, dict) and "path" in item:
                paths.add(str(item["path"]))
    return tuple(sorted(paths))


def _signatures(root: Path, paths: Iterable[str]) -> Iterable[str]:
    """One line per file: its name as dvc.lock spells it (relative to the project, so the same workspace gives the
    same fingerprint however its root is spelled), size, modification time and inode."""
    for name in paths:
        path = Path(name) if os.path.isabs(name) else root / name
        if path.is_dir():
            # Sorted walk: a folder's files in a stable order; a file added or removed changes the entries.
            for folder, subfolders, files in os.walk(path):
                subfolders.sort()
                for file in sorted(files):
                    full = os.path.join(folder, file)
                    yield _signature(full, os.path.join(name, os.path.relpath(full, path)))
        else:
            yield _signature(str(path), name)


def _signature(path: str, name: str) -> str:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return f"{name} missing\n"
    return f"{name} {stat.st_size} {stat.st_mtime_ns} {stat.st_ino}\n"


def _dvc_version() -> str:
    try:
        return version("dvc")
    except PackageNotFoundError:
        return "none"


def read_record(root: Path) -> PlanRecord | None:
    """The workspace's record, or None (none yet, or unreadable: then DVC is asked, and the record rewritten)."""
    path = root / RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            return None
        return PlanRecord(fingerprint=str(data["fingerprint"]), codes=tuple(data["codes"]),
                          shared=tuple(data["shared"]), products={str(k): list(v) for k, v in data["products"].items()},
                          decisions=data.get("decisions"), lock_digest=str(data["lock_digest"]),
                          paths=tuple(data["paths"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("ignoring the plan record %s (%s): DVC is asked instead", path, error)
        return None


def write_record(root: Path, record: PlanRecord) -> None:
    path = root / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "fingerprint": record.fingerprint, "codes": list(record.codes),
               "shared": list(record.shared), "products": record.products, "decisions": record.decisions,
               "lock_digest": record.lock_digest, "paths": list(record.paths)}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload), encoding="utf-8")


def current(root: Path) -> tuple[PlanRecord | None, tuple[str, str, tuple[str, ...]]]:
    """The record if it still describes the workspace (else None), and the workspace's fingerprint."""
    record = read_record(root)
    state = fingerprint(root, record)
    return (record if record is not None and record.fingerprint == state[0] else None), state
