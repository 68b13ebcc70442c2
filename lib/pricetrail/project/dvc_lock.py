"""Reading ``dvc.lock``: the record DVC keeps of what each stage last ran with (deps, params, outs and hashes)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from pricetrail.project.files import ConfigError, atomic_path, file_md5

log = logging.getLogger(__name__)

LOCK_FILE = "dvc.lock"
PARSED_LOCK = Path(".dvc/tmp/pricetrail/dvc-lock.json")  # beside the locks (pricetrail.project.locking.LOCK_DIR)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: dvc.lock grows with the catalogue


def read_stages(root: Path) -> dict[str, dict[str, Any]]:
    """The ``stages`` mapping of the workspace's dvc.lock (empty when nothing has run yet).

    A catalogue's dvc.lock is megabytes of YAML (10 s to parse at 800 products), read by planning, promotion and
    the landing of every batch: the parsed mapping is kept as JSON beside the locks, under the hash of the bytes
    it was parsed from, and used only while dvc.lock still has exactly those bytes."""
    path = root / LOCK_FILE
    if not path.is_file():
        return {}
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    parsed = root / PARSED_LOCK
    if parsed.is_file():
        try:
            kept = json.loads(parsed.read_text(encoding="utf-8"))
            if isinstance(kept, dict) and kept.get("sha256") == digest and isinstance(kept.get("stages"), dict):
                return kept["stages"]
        except (OSError, ValueError) as error:
            log.warning("ignoring %s (%s): dvc.lock is parsed instead", parsed, error)
    stages = stages_of(data.decode("utf-8"), where=str(path))
    if parsed.parent.parent.is_dir():  # a project's .dvc/tmp (not a bare folder holding a lockfile)
        try:
            text = json.dumps({"sha256": digest, "stages": stages})
        except (TypeError, ValueError):  # a value JSON cannot hold (a YAML date): parse it each time instead
            return stages
        if json.loads(text)["stages"] != stages:  # JSON turned something into another value (a number key)
            return stages
        parsed.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(parsed) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return stages


def stages_of(text: str, *, where: str = LOCK_FILE) -> dict[str, dict[str, Any]]:
    """The ``stages`` mapping of a dvc.lock's text (from the workspace or a git revision)."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise ConfigError(f"{where} is not valid YAML: {error}") from error
    if data is None:
        return {}
    stages = data.get("stages", {}) if isinstance(data, dict) else None
    if not isinstance(stages, dict):
        raise ConfigError(f"{where} has no 'stages' mapping; is it a DVC 3 lockfile?")
    return stages


def product_entries(stages: dict[str, dict[str, Any]], code: str) -> dict[str, dict[str, Any]]:
    """The entries of one product's stages (``name@code``) and of the shared stages it builds on."""
    return {name: entry for name, entry in stages.items() if "@" not in name or name.endswith(f"@{code}")}


def entries_by_product(stages: dict[str, dict[str, Any]], codes: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """:func:`product_entries` for each of ``codes``, in one pass over the lockfile (per product it would be
    quadratic in the catalogue: 800 products, 5,600 entries scanned 800 times)."""
    shared = {name: entry for name, entry in stages.items() if "@" not in name}
    own: dict[str, dict[str, dict[str, Any]]] = {code: {} for code in codes}
    for name, entry in stages.items():
        if "@" in name and (code := name.split("@", 1)[1]) in own:
            own[code][name] = entry
    return {code: {**shared, **entries} for code, entries in own.items()}


def compact_entries(entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Lockfile entries as ``{stage: {cmd, deps: {path: hash}, params, outs: {path: hash}}}``: the lineage, minus
    DVC's bookkeeping (sizes, file counts), small enough to keep with every promoted version."""
    def hashes(items: Any) -> dict[str, str]:
        return {str(item["path"]): str(item.get("md5")) for item in items or [] if isinstance(item, dict)}

    return {name: {"cmd": entry.get("cmd"), "deps": hashes(entry.get("deps")),
                   "params": (entry.get("params") or {}).get("params.yaml", {}), "outs": hashes(entry.get("outs"))}
            for name, entry in entries.items()}


def out_hashes(stages: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Every output path recorded in the lockfile, with its hash as DVC records it (``<md5>`` or ``<md5>.dir``)."""
    hashes: dict[str, str] = {}
    for entry in stages.values():
        for out in entry.get("outs", []) or []:
            if isinstance(out, dict) and "path" in out and "md5" in out:
                hashes[str(out["path"])] = str(out["md5"])
    return hashes


def dvc_hash(path: Path) -> str:
    """The hash dvc.lock records for a dependency: a file's md5, or a folder's ``<md5>.dir``, built by DVC's own
    tree code from its files' md5s (so it is the hash DVC computes, whatever DVC version serialises it)."""
    if path.is_file():
        return file_md5(path)
    # DVC's data layer is imported here, not at the top: the router's image reads dvc.lock hashes without DVC.
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    tree = Tree()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        tree.add(file.relative_to(path).parts, Meta(), HashInfo("md5", file_md5(file)))
    tree.digest()
    return str(tree.hash_info.value)
