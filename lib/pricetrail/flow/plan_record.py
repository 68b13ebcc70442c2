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

A second fingerprint leaves out the paths only the shared stages name (the input data, the ingest's own output).
When only it matches, just those changed: the products' answer is still the record's, and the shared stages are
run (DVC, in their workspace, skips them if their inputs' bytes did not change) - a week's new data then costs no
index of every stage (two minutes at 800 products) before the ingest.

A product whose chain stopped at a gate (``GATE FAILED``: a verdict, not an error) is kept in the record with the
signature of everything its failed stage reads (``held``): while the fingerprint matches and that signature too, its
gate would give the same verdict, so it is not run again (a week with nothing new then runs nothing at all, however
many products of a catalogue fail their drift gate); any change runs it as before.

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
FORMAT = 3
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
    shared_only: tuple[str, ...] = field(default=())  # those of the paths no product's stage names
    products_fingerprint: str = ""  # the fingerprint without the shared-only paths
    # Products stopped by a gate: {code: {"stage": the failed stage, "reason": its line, "inputs": stage_inputs()}}.
    held: dict[str, dict[str, str]] = field(default_factory=dict)

    def covers(self, codes: Iterable[str]) -> bool:
        return set(codes) <= set(self.codes)


@dataclass(frozen=True)
class State:
    """The workspace's fingerprints (see the module doc) and what a record keeps to take them again cheaply."""

    fingerprint: str
    lock_digest: str
    paths: tuple[str, ...]
    shared_only: tuple[str, ...]
    products_fingerprint: str


def fingerprint(root: Path, known: PlanRecord | None = None) -> State:
    """The workspace's state. ``known``: a record, whose lists of paths are used when it was taken from a
    dvc.lock with the same digest (saving a parse of dvc.lock)."""
    head = [f"pricetrail-plan {FORMAT} dvc {_dvc_version()}\n"]
    lock_digest = ""
    for name in PROJECT_FILES:
        path = root / name
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
        if name == LOCK_FILE:
            lock_digest = content
        head.append(f"{name} {content}\n")
    if known is not None and known.lock_digest == lock_digest:
        named, shared_only = known.paths, known.shared_only
    else:
        named, shared_only = lock_paths(root)
    everything, products = hashlib.sha256(), hashlib.sha256()
    for line in head:
        everything.update(line.encode())
        products.update(line.encode())
    left_out = set(shared_only)
    for name in [*named, "registry"]:
        for entry in _signatures(root, [name]):
            everything.update(entry.encode())
            if name not in left_out:
                products.update(entry.encode())
    return State(fingerprint=everything.hexdigest(), lock_digest=lock_digest, paths=named, shared_only=shared_only,
                 products_fingerprint=products.hexdigest())


def lock_paths(root: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every dependency and output path dvc.lock records, once each; and those only shared stages name."""
    paths: set[str] = set()
    of_products: set[str] = set()
    for name, entry in read_stages(root).items():
        for item in [*(entry.get("deps") or []), *(entry.get("outs") or [])]:
            if isinstance(item, dict) and "path" in item:
                paths.add(str(item["path"]))
                if "@" in name:
                    of_products.add(str(item["path"]))
    # A path inside a folder a product names (one product's file of the split) is the product's too.
    shared_only = {path for path in paths - of_products
                   if not any(other.startswith(f"{path.rstrip('/')}/") for other in of_products)}
    return tuple(sorted(paths)), tuple(sorted(shared_only))


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
                          paths=tuple(data["paths"]), shared_only=tuple(data["shared_only"]),
                          products_fingerprint=str(data["products_fingerprint"]),
                          held={str(code): {key: str(value) for key, value in info.items()}
                                for code, info in (data.get("held") or {}).items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("ignoring the plan record %s (%s): DVC is asked instead", path, error)
        return None


def write_record(root: Path, record: PlanRecord) -> None:
    path = root / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "fingerprint": record.fingerprint, "codes": list(record.codes),
               "shared": list(record.shared), "products": record.products, "decisions": record.decisions,
               "lock_digest": record.lock_digest, "paths": list(record.paths), "shared_only": list(record.shared_only),
               "products_fingerprint": record.products_fingerprint, "held": record.held}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload), encoding="utf-8")


def current(root: Path) -> tuple[PlanRecord | None, State]:
    """The record (None if there is none), and the workspace's state."""
    record = read_record(root)
    return record, fingerprint(root, record)


def record_of(state: State, codes: Iterable[str], shared: Iterable[str], products: dict[str, list[str]],
              decisions: dict[str, dict[str, Any]] | None = None,
              held: dict[str, dict[str, str]] | None = None) -> PlanRecord:
    return PlanRecord(fingerprint=state.fingerprint, codes=tuple(codes), shared=tuple(shared), products=products,
                      decisions=decisions, lock_digest=state.lock_digest, paths=state.paths,
                      shared_only=state.shared_only, products_fingerprint=state.products_fingerprint,
                      held=held or {})


def stage_inputs(root: Path, stage: str) -> str | None:
    """A signature of what a product's stage (``name@code``) reads: its params' values and the files of its
    declared deps, resolved from dvc.yaml as DVC's ``foreach`` does for ``${key}``. None when the stage is not
    declared in that plain form (then it is never held). The fingerprint leaves these files out when no stage of
    dvc.lock names them (a failed stage has no entry): a fix to the gate's own code must run it again."""
    import yaml

    name, _, code = stage.partition("@")
    try:
        definition = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
        declared = definition["stages"][name]
        body = declared["do"]
        if declared.get("foreach") != "${stockcodes}" or not code:
            return None
        deps = [str(dep).replace("${key}", code) for dep in body.get("deps") or []]
        params = [str(param) for param in body.get("params") or []]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    if any("${" in path for path in deps) or not all(isinstance(param, str) for param in params):
        return None
    from pricetrail.project.config import load_params

    values = load_params(root)
    chosen = {}
    for dotted in params:
        value: Any = values
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        chosen[dotted] = value
    digest = hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode())
    for line in _signatures(root, deps):
        digest.update(line.encode())
    return digest.hexdigest()
