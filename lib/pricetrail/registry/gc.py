"""Garbage collection of the DVC cache (and remote) that never drops an object a registry record names.

``dvc gc --workspace --all-commits`` keeps what the workspace and every commit's dvc.lock reference. A version
promoted and replaced before its run was committed, or a product since removed from ``stockcodes.yaml``, is
referenced by neither, only by the registry: plain ``dvc gc`` would delete it, and with ``--cloud`` from the remote
too, so a rollback, a fresh clone's pull or a server reading the remote would fail. Here DVC itself keeps them: for
the collection, the workspace holds a ``.dvc`` file whose outputs are every registry object (by hash, the folder
listings included), which DVC counts as used like any other output, locally and on the remote. It is removed when
DVC is done (and by the next collection if a kill left it).

The collection holds the pipeline lock (no run may write into the cache meanwhile: its workspaces' objects are
named by no record yet) and the registry lock (no record may change while the set to keep is computed).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from pricetrail.project import locking
from pricetrail.registry import references
from pricetrail.registry.artifacts import Artifact, ArtifactError, cache_object, dvc_cache_dir, local_sources, resolve

log = logging.getLogger(__name__)

# Exists only while a collection runs (under the pipeline lock). Not git-ignored: DVC skips .dvc files in
# git-ignored folders when it collects what the workspace uses.
KEEP_DIR = Path(".pricetrail-gc-keep")
KEEP_FILE = "registry-objects.dvc"


class GcError(ValueError):
    """Garbage collection would lose, or has lost, an object the registry names."""


@dataclass(frozen=True)
class GcReport:
    kept: int  # objects registry records name (files, and the folder listings of their outputs)
    unreferenced: int  # of those, how many no committed dvc.lock or the workspace's names
    dvc_exit: int


def registry_objects(root: Path) -> dict[str, Artifact]:
    """Every object any registry record names, by hash: each artifact, and the listing of the output holding it
    (lineage reads the folder's listing). A record that cannot be read refuses the collection."""
    try:
        found = references.referenced_artifacts(root)
    except (ValueError, OSError) as error:
        raise GcError(f"refusing to collect: a registry record cannot be read, so what it names cannot be kept: "
                      f"{error}") from error
    objects: dict[str, Artifact] = {}
    for artifacts in found.values():
        for artifact in artifacts:
            objects.setdefault(artifact.md5, artifact)
            if artifact.out_md5 and artifact.out_md5.endswith(".dir"):
                objects.setdefault(artifact.out_md5, artifact)
    return objects


def _keep_file(root: Path, hashes: list[str]) -> Path:
    outs = [{"md5": digest, "path": f"object{index}", "hash": "md5"} for index, digest in enumerate(hashes)]
    folder = root / KEEP_DIR
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / KEEP_FILE
    path.write_text("# pricetrail gc: registry objects DVC must keep; removed when the collection ends\n"
                    + yaml.safe_dump({"outs": outs}, sort_keys=False), encoding="utf-8")
    return folder


def _in_lock_or_commits(root: Path) -> set[str]:
    """Hashes the workspace's dvc.lock names (what plain gc would keep of the registry's objects, roughly)."""
    from pricetrail.project.dvc_lock import read_stages

    named: set[str] = set()
    for entry in read_stages(root).values():
        for item in [*(entry.get("outs") or []), *(entry.get("deps") or [])]:
            if isinstance(item, dict) and item.get("md5"):
                named.add(str(item["md5"]))
    return named


def collect(root: Path, run_dvc_gc: Callable[[], int], *, cloud: bool = False) -> GcReport:
    """Run ``run_dvc_gc`` (a ``dvc gc`` command) with every registry object kept; verify them afterwards."""
    with locking.hold(root, locking.PIPELINE), locking.hold(root, locking.REGISTRY):
        stale = root / KEEP_DIR
        if stale.exists():  # a collection killed before its clean-up
            shutil.rmtree(stale)
        objects = registry_objects(root)
        cache = dvc_cache_dir(root)
        present = {digest for digest in objects if _cached(cache, digest)}
        named = _in_lock_or_commits(root)
        folder = _keep_file(root, sorted(objects)) if objects else None
        try:
            exit_code = run_dvc_gc()
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        lost = []
        for digest in sorted(present):
            if not _cached(cache, digest):
                lost.append(digest)
            elif not digest.endswith(".dir"):
                try:
                    resolve(objects[digest], local_sources(root), owner="registry")
                except ArtifactError as error:
                    lost.append(f"{digest} ({error})")
        if lost:
            raise GcError(f"{len(lost)} registry objects are gone from the DVC cache after dvc gc: {lost[0]}")
        missing = sorted(set(objects) - present)
        if missing:
            log.warning("%d registry objects were not in the DVC cache before gc either (e.g. %s); `pricetrail pull` "
                        "brings them from the remote", len(missing), missing[0])
    return GcReport(kept=len(objects), unreferenced=len(set(objects) - named), dvc_exit=exit_code)


def _cached(cache: Path, digest: str) -> bool:
    return cache_object(cache, digest).is_file()
