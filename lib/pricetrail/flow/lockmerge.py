"""Bringing parallel results back into the main workspace, and the promotion that reads them, as one unit.

The entries come verbatim from the dvc.lock that DVC wrote in each product's workspace (entries of different
stages are independent keys under ``stages:``). They are written as DVC's own YAML round-trip
(``dvc.utils.serialize.modify_yaml``, what ``Lockfile.dump_stages`` uses) would write them, spliced into the text
(the round-trip itself takes two minutes at 800 products), into a copy that then replaces dvc.lock atomically.

A landing is journalled: under the registry lock, the entries and the small uncached files are first written to
``.dvc/tmp/pricetrail/landing.json``, then the outputs are moved in, the files written, dvc.lock merged and the
products promoted; only then is the journal removed. A kill at any step leaves the journal, and the next command
that takes the lock (``pricetrail run``, ``promote``, ``gc``) completes it: it merges the same entries again,
restores the outputs they name from the DVC cache (whatever a half-finished move left) and promotes. So a
promotion never reads outputs that dvc.lock does not name, nor records the lineage of another run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pricetrail.flow.workspace import JobResult
from pricetrail.project import dvc_cli, locking
from pricetrail.project.dvc import checked_dvc
from pricetrail.project.dvc_lock import LOCK_FILE, keep_parsed, kept_parsed, splice_entries, stages_of
from pricetrail.project.files import ConfigError, atomic_path, remove_stale_temporaries, write_json

log = logging.getLogger(__name__)

JOURNAL = locking.LOCK_DIR / "landing.json"
# Records the main workspace owns (the drift_reference stage's output): never taken from a product's workspace.
MAIN_OWNED = ("registry/",)

Promote = Callable[[list[str]], Any]


def output_paths(entries: Mapping[str, Any]) -> list[str]:
    return [str(out["path"]) for entry in entries.values() for out in entry.get("outs", []) or []]


def _replaced(target: Path) -> Path:
    return target.with_name(f".{target.name}.replaced")


def _replace(source: Path, target: Path) -> None:
    """Move ``source`` over ``target`` (file or folder) on one filesystem."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        old = _replaced(target)
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            target.rename(old)
        source.rename(target)
        if old.exists():
            shutil.rmtree(old)
    elif source.is_file():
        os.replace(source, target)


def land(root: Path, results: Iterable[JobResult], *, move_outputs: bool, promote: Promote,
         promote_codes: list[str], pull: bool = False, stages: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bring every result back (outputs, uncached files, lock entries), then ``promote(promote_codes)``, as one
    journalled unit under the registry lock; return the merged lock entries. ``stages``, the caller's copy of
    dvc.lock's entries, is updated before the promotion reads it."""
    results = list(results)
    entries: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for result in results:
        entries.update(result.lock_entries)
        files.update(result.files)
    with locking.hold(root, locking.REGISTRY):
        write_json(root / JOURNAL, {"entries": entries, "codes": promote_codes, "pull": pull,
                                    "files": {path: base64.b64encode(content).decode("ascii")
                                              for path, content in files.items()}})
        if move_outputs:  # this machine: the workspace shares the cache and the filesystem
            for result in results:
                for relpath in output_paths(result.lock_entries):
                    if not relpath.startswith(MAIN_OWNED):
                        _replace(Path(result.workspace) / relpath, root / relpath)
        _write_files(root, files)
        merge_lock_entries(root, entries)
        if stages is not None:
            stages.update(entries)
        if pull and entries:
            checked_dvc(["pull", "--allow-missing"], root)  # the outputs the cluster's workers pushed
        promote(promote_codes)
        (root / JOURNAL).unlink()
    return entries


def recover(root: Path, promote: Promote | None = None) -> list[str]:
    """Complete a landing a kill interrupted (see the module doc); return the products it promoted."""
    with locking.hold(root, locking.REGISTRY):
        for leftover in remove_stale_temporaries(root):  # dvc.lock's, from a killed merge
            log.warning("removed %s, left by an interrupted write", leftover)
        path = root / JOURNAL
        if not path.is_file():
            return []
        try:
            journal = json.loads(path.read_text(encoding="utf-8"))
            entries = dict(journal["entries"])
            codes = [str(code) for code in journal["codes"]]
            files = {str(p): base64.b64decode(content) for p, content in journal["files"].items()}
        except (ValueError, KeyError, TypeError) as error:  # written atomically: only an edit damages it
            raise ConfigError(f"{path} (an interrupted run's landing) is damaged: {error}; remove it and run "
                              "`pricetrail run` again") from error
        log.warning("completing an interrupted landing of %d stages (%s)", len(entries), ", ".join(codes) or "-")
        merge_lock_entries(root, entries)
        _write_files(root, files)
        for relpath in output_paths(entries):
            leftover = _replaced(root / relpath)
            if leftover.exists():
                shutil.rmtree(leftover)
        if entries:
            targets = sorted(entries)
            # Whatever the move left (old, new or nothing), the outputs become exactly what the lock names.
            command = ["pull", "--allow-missing"] if journal.get("pull") else ["checkout", "--force"]
            checked_dvc([*command, *targets], root, what=" ".join(command))
        if promote is None:
            from pricetrail.registry import promotion

            promotion.promote_all(root, codes)
        else:
            promote(codes)
        path.unlink()
        return codes


def _write_files(root: Path, files: Mapping[str, bytes]) -> None:
    for relpath, content in files.items():
        with atomic_path(root / relpath) as tmp:
            tmp.write_bytes(content)


def merge_lock_entries(root: Path, entries: Mapping[str, Any]) -> None:
    """Set these stages' entries in dvc.lock, in one atomic write: spliced into the text as DVC's own YAML
    round-trip would write them (:func:`pricetrail.project.dvc_lock.splice_entries`), or by that round-trip when the
    file is not in DVC's layout. The parsed copy of the lock is carried over to the new bytes."""
    if not entries:
        return
    lock = root / LOCK_FILE
    before = lock.read_bytes() if lock.is_file() else b""
    spliced = splice_entries(before.decode("utf-8"), dict(entries))
    with atomic_path(lock) as tmp:
        if spliced is not None:
            tmp.write_text(spliced[0], encoding="utf-8")
        else:
            _round_trip(lock, tmp, entries)
        after = tmp.read_bytes()
    if spliced is None:
        return
    old_digest, new_digest = hashlib.sha256(before).hexdigest(), hashlib.sha256(after).hexdigest()
    kept = kept_parsed(root, old_digest) if before else {}
    # The copy stays exact only if the entries read back as they were given (YAML 1.1 and 1.2 disagree on a few
    # plain words, e.g. "on").
    if kept is not None and stages_of(spliced[1]) == dict(entries):
        keep_parsed(root, new_digest, {**kept, **entries})
    dvc_cli.carry_kept(root, old_digest if before else None, new_digest, spliced[1])


def _round_trip(lock: Path, tmp: Path, entries: Mapping[str, Any]) -> None:
    from dvc.utils.serialize import modify_yaml

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
