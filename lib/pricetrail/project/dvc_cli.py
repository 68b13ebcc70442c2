"""DVC's own command line, run by pricetrail, with the project's dvc.lock read and written at catalogue scale.

At 800 products dvc.lock is 20 MB of YAML. A plain ``dvc repro`` parses it with ruamel's Python constructor (16 s)
several times before it runs anything, and after each stage rewrites it by a YAML round-trip (75 s to load, 43 s
to dump), so the shared stages alone took 6.5 minutes. Here DVC runs unchanged except for two methods of its
``Lockfile``, and only for the project's own dvc.lock:

- ``_load_yaml``: what DVC's loader returned for these exact bytes (sha256) is kept as JSON beside the locks and
  reused; other bytes are parsed by DVC's loader, and the result kept.
- ``dump_stages``: the stages' entries (DVC's ``serialize.to_lockfile``) are spliced into the text as its
  round-trip would write them (:func:`pricetrail.project.dvc_lock.splice_entries`, tested byte for byte against
  ``modify_yaml``), in one atomic write; a file not in DVC's layout takes DVC's own method.

Also, within one process, ``params.yaml`` is parsed once while its size, mtime and inode stay, instead of once
per stage. A plain ``dvc`` in the same project stays correct: the kept parse belongs to the bytes it was made from.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path
from typing import Any

from pricetrail.project.dvc_lock import DVC_PARSED_LOCK, LOCK_FILE, read_kept, splice_entries, write_kept
from pricetrail.project.files import atomic_path

log = logging.getLogger("dvc.dvcfile")  # DVC's logger: "Updating lock file" is its line, as the CLI prints it


def _project_lock(lockfile: Any) -> tuple[Path, Path] | None:
    """(root, dvc.lock) when ``lockfile`` is the project's own dvc.lock on the local filesystem."""
    from dvc.fs import LocalFileSystem

    if not isinstance(lockfile.repo.fs, LocalFileSystem):  # a git revision's files: DVC reads them itself
        return None
    root = Path(lockfile.repo.root_dir)
    path = Path(lockfile.path)
    if path != root / LOCK_FILE or not (root / ".dvc" / "tmp").is_dir():
        return None
    return root, path


def _kept(root: Path, digest: str) -> dict[str, Any] | None:
    return read_kept(root / DVC_PARSED_LOCK, digest, "data")


def _keep(root: Path, digest: str, data: Any) -> None:
    write_kept(root / DVC_PARSED_LOCK, digest, "data", data)


def carry_kept(root: Path, old_digest: str | None, new_digest: str, entries_text: str) -> None:
    """After entries were spliced into dvc.lock (``entries_text``: their text alone), carry DVC's kept reading of
    the old bytes (``None``: there were none) over to the new ones, reading only the entries' text as DVC would."""
    from dvc.utils.serialize import loads_yaml

    old = {"schema": "2.0", "stages": {}} if old_digest is None else _kept(root, old_digest)
    if old is None or set(old) - {"schema", "stages"}:
        return
    read_back = (loads_yaml(entries_text) or {}).get("stages", {})
    _keep(root, new_digest, {**old, "stages": {**(old.get("stages") or {}), **read_back}})


def install() -> None:
    """Replace the two ``Lockfile`` methods in this process (idempotent)."""
    from dvc.dvcfile import Lockfile

    if getattr(Lockfile, "_pricetrail", False):
        return
    load_yaml, dump_stages = Lockfile._load_yaml, Lockfile.dump_stages

    def _load_yaml(self: Any, **kwargs: Any) -> tuple[Any, str]:
        project = _project_lock(self)
        if project is None:
            return load_yaml(self, **kwargs)
        root, path = project
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        kept = _kept(root, digest)
        if kept is not None:
            return kept, data.decode("utf-8")
        parsed, text = load_yaml(self, **kwargs)
        if text.encode("utf-8") == data:  # nothing changed it between the two reads
            _keep(root, digest, parsed)
        return parsed, text

    def _dump_stages(self: Any, stages: Any, **kwargs: Any) -> None:
        from dvc.stage import serialize
        from dvc.utils.serialize import loads_yaml

        project = _project_lock(self)
        if not stages or project is None:
            return dump_stages(self, stages, **kwargs)
        root, path = project
        entries: dict[str, Any] = {}
        for stage in stages:
            entries.update(serialize.to_lockfile(stage, **kwargs))
        before = path.read_bytes() if path.is_file() else b""
        old = (_load_yaml(self) if before else ({}, ""))[0] or {}
        spliced = splice_entries(before.decode("utf-8"), entries)
        if spliced is None or (old and set(old) != {"schema", "stages"}):
            return dump_stages(self, stages, **kwargs)
        old_stages = old.get("stages") or {}
        modified = any(old_stages.get(name, {}) != entry for name, entry in entries.items())
        if modified:
            log.info("Updating lock file '%s'", self.relpath)
        with atomic_path(path) as tmp:
            tmp.write_text(spliced[0], encoding="utf-8")
            after = tmp.read_bytes()
        # The entries as DVC's loader reads them back from the text (a tuple becomes a list, as it would).
        read_back = (loads_yaml(spliced[1]) or {}).get("stages", {})
        _keep(root, hashlib.sha256(after).hexdigest(), {**old, "stages": {**old_stages, **read_back}})
        if modified:
            self.repo.scm_context.track_file(self.relpath)
        return None

    Lockfile._load_yaml = _load_yaml
    Lockfile.dump_stages = _dump_stages
    Lockfile._pricetrail = True
    _install_params_memo()


def _install_params_memo() -> None:
    """DVC parses params.yaml again for every stage that declares params (4,800 parses, about a third of a plan
    at 800 products): a local file's parse is reused while its size, mtime and inode are unchanged, as a copy."""
    import copy
    import os

    from dvc.dependency import param
    from dvc.fs import LocalFileSystem

    load_path = param.load_path
    memo: dict[tuple[Any, ...], Any] = {}

    def _load_path(fs_path: str, fs: Any, **kwargs: Any) -> Any:
        if not isinstance(fs, LocalFileSystem) or kwargs:
            return load_path(fs_path, fs, **kwargs)
        try:
            stat = os.stat(fs_path)
        except OSError:
            return load_path(fs_path, fs, **kwargs)
        key = (os.path.abspath(fs_path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if key not in memo:
            memo[key] = load_path(fs_path, fs)
        return copy.deepcopy(memo[key])

    param.load_path = _load_path


def main(argv: list[str]) -> int:
    install()
    from dvc.cli import main as dvc_main

    return int(dvc_main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
