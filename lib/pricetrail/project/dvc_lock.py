"""Reading ``dvc.lock``: the record DVC keeps of what each stage last ran with (deps, params, outs and hashes)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from pricetrail.project.files import ConfigError, atomic_path, file_md5

log = logging.getLogger(__name__)

LOCK_FILE = "dvc.lock"
PARSED_LOCK = Path(".dvc/tmp/pricetrail/dvc-lock.json")  # beside the locks (pricetrail.project.locking.LOCK_DIR)
# DVC's own reading of the same bytes, kept by pricetrail.project.dvc_cli when DVC wrote or read dvc.lock.
DVC_PARSED_LOCK = Path(".dvc/tmp/pricetrail/dvc-lock.dvc.json")

_BOOL = "tag:yaml.org,2002:bool"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # C: dvc.lock grows with the catalogue
    """PyYAML's safe loader, reading booleans as DVC (YAML 1.2) does: only true/false. YAML 1.1 also reads
    on/off/yes/no as booleans, so a param ``mode: on`` (the text "on" to DVC) would come back as True, land in
    dvc.lock as ``true``, and make DVC see a changed param on every run."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


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
    kept = kept_parsed(root, digest)
    if kept is not None:
        return kept
    kept = kept_by_dvc(root, digest)
    if kept is not None:
        return kept
    stages = stages_of(data.decode("utf-8"), where=str(path))
    keep_parsed(root, digest, stages)
    return stages


def read_kept(path: Path, digest: str, key: str) -> Any | None:
    """``key`` of a kept JSON copy at ``path`` if it was made from the bytes with this sha256 (else None: absent,
    damaged or of other bytes, and the caller parses)."""
    if not path.is_file():
        return None
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("ignoring %s (%s): dvc.lock is parsed instead", path, error)
        return None
    if isinstance(kept, dict) and kept.get("sha256") == digest and isinstance(kept.get(key), dict):
        return kept[key]
    return None


def write_kept(path: Path, digest: str, key: str, value: Any) -> None:
    """Keep ``value`` under ``key`` as the copy made from the bytes with this sha256, in a project's .dvc/tmp, and
    only when JSON holds it exactly."""
    if not path.parent.parent.is_dir():  # a project's .dvc/tmp (not a bare folder holding a lockfile)
        return
    try:
        text = json.dumps({"sha256": digest, key: value})
    except (TypeError, ValueError):  # a value JSON cannot hold (a YAML date): parse it each time instead
        return
    if json.loads(text)[key] != value:  # JSON turned something into another value (a number key)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def kept_parsed(root: Path, digest: str) -> dict[str, dict[str, Any]] | None:
    """The parsed copy kept for dvc.lock bytes with this sha256, if it is the one kept."""
    return read_kept(root / PARSED_LOCK, digest, "stages")


def kept_by_dvc(root: Path, digest: str) -> dict[str, dict[str, Any]] | None:
    """The ``stages`` of DVC's own reading of the dvc.lock bytes with this sha256, if kept (the same mapping as
    :func:`stages_of` gives, but for the few plain words YAML 1.1 and 1.2 read differently, where DVC is right)."""
    data = read_kept(root / DVC_PARSED_LOCK, digest, "data")
    stages = None if data is None else data.get("stages", {})
    return stages if isinstance(stages, dict) else None


def keep_parsed(root: Path, digest: str, stages: dict[str, dict[str, Any]]) -> None:
    """Keep ``stages`` as the parsed copy of the dvc.lock bytes with this sha256 (when JSON holds it exactly)."""
    write_kept(root / PARSED_LOCK, digest, "stages", stages)


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


LOCK_HEAD = "schema: '2.0'\nstages:\n"


def _blocks(text: str) -> list[tuple[str, str]] | None:
    """dvc.lock's text as (key line, entry text) per stage, in order; None unless the layout is exactly the one
    DVC writes (the head, then each stage's key at two spaces with its fields indented further)."""
    if not text.startswith(LOCK_HEAD) or not text.endswith("\n"):
        return None
    blocks: list[tuple[str, list[str]]] = []
    for line in text[len(LOCK_HEAD):].splitlines(keepends=True):
        if line.startswith("  ") and line[2:3] not in (" ", "\n", "#"):
            blocks.append((line, [line]))
        elif line.startswith("    ") and blocks:
            blocks[-1][1].append(line)
        else:  # a comment, a blank line, anything else: leave it to a YAML round-trip
            return None
    return [(key, "".join(lines)) for key, lines in blocks]


def splice_entries(text: str, entries: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
    """dvc.lock's ``text`` with these stages' entries set, and the text of the entries alone; None when ``text`` is
    not in DVC's own layout (the caller then does the YAML round-trip).

    Byte for byte what DVC's round-trip (``modify_yaml``: load, set the keys, dump) writes, since each entry is
    dumped by DVC's own dumper at the same place in the document, and the other entries' text is kept as it is -
    but without parsing the whole file: at 800 products the round-trip takes two minutes (a 20 MB lockfile)."""
    from dvc.utils.serialize import dumps_yaml

    blocks = _blocks(text) if text else []
    dumped = dumps_yaml({"stages": dict(entries)})
    new = _blocks("schema: '2.0'\n" + dumped)
    if blocks is None or new is None or len(new) != len(entries):
        return None
    position = {key: index for index, (key, _) in enumerate(blocks)}
    merged = list(blocks)
    for key, block in new:
        if key in position:
            merged[position[key]] = (key, block)  # an entry keeps its place, as in a YAML mapping
        else:
            position[key] = len(merged)
            merged.append((key, block))
    return LOCK_HEAD + "".join(block for _, block in merged), dumped


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
