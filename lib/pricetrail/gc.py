"""Garbage collection of the DVC cache that never loses a version the registry can serve or roll back to.

``dvc gc --workspace --all-commits`` keeps what the workspace and every commit's dvc.lock reference. A version
promoted and replaced before its run was committed is referenced by neither, only by the registry, so plain
``dvc gc`` would delete it and a rollback to it would fail. Here every object the registry points at is held by
a hard link (content-addressed objects never change) while DVC collects, then linked back and verified.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pricetrail.artifacts import ArtifactError, dvc_cache_dir, local_sources, object_relpath, resolve
from pricetrail.registry import referenced_artifacts

log = logging.getLogger(__name__)

HOLD_DIR = Path(".dvc/tmp/pricetrail-gc-hold")


class GcError(ValueError):
    """Garbage collection could not keep every registry artifact."""


@dataclass(frozen=True)
class GcReport:
    held: int  # registry objects held during the collection
    restored: int  # of those, how many DVC deleted and were put back
    dvc_exit: int


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or no hard links: a copy holds the same bytes
        shutil.copyfile(source, target)


def collect(root: Path, codes: Iterable[str], run_dvc_gc: Callable[[], int]) -> GcReport:
    """Run ``run_dvc_gc`` (a ``dvc gc`` command) while holding every registry-referenced cache object."""
    cache = dvc_cache_dir(root)
    hold = root / HOLD_DIR
    _restore(hold, cache)  # a collection killed before it restored what it held
    artifacts = {a.md5: a for found in referenced_artifacts(root, codes).values() for a in found}
    held = 0
    for md5 in artifacts:
        source = cache / object_relpath(md5)
        if source.is_file():
            _link(source, hold / md5)
            held += 1
    exit_code = run_dvc_gc()
    restored = _restore(hold, cache)
    problems = []
    for artifact in artifacts.values():
        try:
            resolve(artifact, local_sources(root), owner="registry")
        except ArtifactError as error:
            problems.append(str(error))
    if problems:
        raise GcError(f"{len(problems)} registry artifacts are not in the cache after gc (they were missing "
                      f"before it too): {problems[0]}")
    return GcReport(held=held, restored=restored, dvc_exit=exit_code)


def _restore(hold: Path, cache: Path) -> int:
    if not hold.is_dir():
        return 0
    restored = 0
    for held in hold.iterdir():
        target = cache / object_relpath(held.name)
        if not target.is_file():
            _link(held, target)
            target.chmod(0o444)  # DVC keeps cache objects read-only
            restored += 1
    shutil.rmtree(hold)
    return restored
