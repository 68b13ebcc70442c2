"""The pipeline's record files as one revision holds them: the workspace, or a git commit read from git objects.

A revision is never checked out. ``git ls-tree`` lists the record files of each commit and one ``git cat-file
--batch`` reads every distinct blob once, so twenty commits that share most of their files cost little more
than one.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pricetrail.lineage.errors import LineageError

WORKSPACE = "workspace"
LOCK = "dvc.lock"
# What the views are built from: DVC's record, the params and products, the metrics, the registry.
RECORD_PATHS = (LOCK, "params.yaml", "stockcodes.yaml", "metrics", "registry")
_COUNT = re.compile(r"^[0-9]{1,4}$")  # --revisions 20: the last 20 commits (a longer number is a commit prefix)


@dataclass(frozen=True)
class Revision:
    """One snapshot of the records: a commit (its full sha, time and subject) or the workspace."""

    revision: str
    commit_time: datetime | None = None
    subject: str | None = None

    @property
    def label(self) -> str:
        return self.revision if self.revision == WORKSPACE else self.revision[:10]


@dataclass
class Snapshot:
    """The record files of one revision: relative path -> key of its bytes in the shared :class:`Blobs`."""

    revision: Revision
    files: dict[str, str]
    root: Path

    def where(self, relpath: str) -> str:
        """How messages name a file: its path in the workspace, ``<commit>:<path>`` in git."""
        if self.revision.revision == WORKSPACE:
            return str(self.root / relpath)
        return f"{self.revision.label}:{relpath}"


@dataclass
class Blobs:
    """File contents by key (a git blob id, or ``w:<path>`` for the workspace), each read once."""

    root: Path
    data: dict[str, bytes] = field(default_factory=dict)

    def get(self, key: str) -> bytes:
        if key not in self.data:
            if not key.startswith("w:"):
                raise KeyError(key)
            self.data[key] = (self.root / key[2:]).read_bytes()
        return self.data[key]

    def forget(self, key: str) -> None:
        """Drop bytes that will not be read again (a version record, once its rows are built)."""
        self.data.pop(key, None)

    def text(self, key: str, where: str) -> str:
        try:
            return self.get(key).decode("utf-8")
        except UnicodeDecodeError as error:
            raise LineageError(f"{where} is not UTF-8 text: {error}") from error


def _git(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True, check=False, timeout=300)
    except FileNotFoundError as error:
        raise LineageError("git is not installed; revisions are read from git history") from error


def _require_repository(root: Path) -> None:
    if _git(root, "rev-parse", "--git-dir").returncode != 0:
        raise LineageError(f"{root} is not in a git repository; revisions are read from git history")


def resolve_revisions(root: Path, spec: str | Sequence[str] | None) -> list[Revision]:
    """The revisions a spec names, newest first as git lists them.

    ``None`` or ``workspace``: the files as they are now. ``20``: the last 20 commits of HEAD. ``A..B``: a git
    range. Anything else: one commit (``HEAD~3``, a tag, a sha). A comma-separated list combines them.
    """
    if spec is None:
        return [Revision(WORKSPACE)]
    items = [item.strip() for item in (spec.split(",") if isinstance(spec, str) else spec)]
    shas: list[str] = []
    wanted: list[str] = []
    for item in items:
        if not item:
            raise LineageError(f"empty revision in {spec!r}; give a count (20), a range (A..B) or a commit")
        if item == WORKSPACE:
            wanted.append(WORKSPACE)
            continue
        if item.startswith("-"):
            raise LineageError(f"revision {item!r} is not accepted: give a count (20), a range (A..B) or a commit")
        _require_repository(root)
        if _COUNT.match(item):
            if int(item) < 1:
                raise LineageError(f"--revisions {item}: the count must be at least 1")
            found = _rev_list(root, "-n", item, "HEAD", what=f"the last {item} commits")
        elif ".." in item:
            found = _rev_list(root, "--end-of-options", item, what=f"range {item!r}")
        else:
            found = [_rev_parse(root, item)]
        for sha in found:
            wanted.append(sha)
            shas.append(sha)
    metadata = _commit_metadata(root, shas)
    revisions: list[Revision] = []
    for name in wanted:
        revision = Revision(WORKSPACE) if name == WORKSPACE else metadata[name]
        if revision not in revisions:
            revisions.append(revision)
    return revisions


def _rev_parse(root: Path, item: str) -> str:
    result = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{item}^{{commit}}")
    if result.returncode != 0:
        raise LineageError(f"unknown git revision {item!r}: give a commit, a tag, HEAD~3, a range A..B or a count "
                           "such as 20 (git log --oneline lists the commits)")
    return result.stdout.decode().strip()


def _rev_list(root: Path, *args: str, what: str) -> list[str]:
    result = _git(root, "rev-list", *args)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise LineageError(f"git cannot list {what}: {message[0] if message else 'no commits'} (git log --oneline "
                           "lists the commits)")
    shas = result.stdout.decode().split()
    if not shas:
        raise LineageError(f"{what} holds no commits")
    return shas


def _commit_metadata(root: Path, shas: Iterable[str]) -> dict[str, Revision]:
    unique = list(dict.fromkeys(shas))
    if not unique:
        return {}
    result = _git(root, "show", "-s", "--no-walk=unsorted", "--format=%H%x00%cI%x00%s%x00", *unique)
    if result.returncode != 0:
        raise LineageError(f"git show failed: {result.stderr.decode(errors='replace').strip()}")
    fields = result.stdout.decode("utf-8", errors="replace").split("\x00")
    metadata = {}
    for index in range(0, len(fields) - 2, 3):
        sha, when, subject = (value.strip() for value in fields[index:index + 3])
        metadata[sha] = Revision(sha, datetime.fromisoformat(when), subject)
    return metadata


def read_snapshots(root: Path, revisions: Sequence[Revision]) -> tuple[list[Snapshot], Blobs]:
    """Every revision's record files, and the store holding their bytes (git blobs fetched in one batch)."""
    blobs = Blobs(root)
    commits = [revision.revision for revision in revisions if revision.revision != WORKSPACE]
    # One `git ls-tree` per commit, a few at a time: each is a short process that mostly waits on its start-up.
    with ThreadPoolExecutor(max_workers=min(4, len(commits) or 1)) as pool:
        trees = dict(zip(commits, pool.map(lambda sha: _tree_files(root, sha), commits), strict=True))
    snapshots = []
    wanted: list[str] = []
    for revision in revisions:
        if revision.revision == WORKSPACE:
            files = _workspace_files(root)
        else:
            files = trees[revision.revision]
            wanted.extend(files.values())
        snapshots.append(Snapshot(revision, files, root))
    _fetch_blobs(root, list(dict.fromkeys(wanted)), blobs)
    return snapshots, blobs


def _workspace_files(root: Path) -> dict[str, str]:
    files = {}
    for name in RECORD_PATHS:
        path = root / name
        if path.is_file():
            files[name] = f"w:{name}"
        elif path.is_dir():
            for folder, subfolders, names in os.walk(path):
                subfolders.sort()
                relative = Path(folder).relative_to(root).as_posix()
                for file_name in sorted(names):
                    if not file_name.startswith("."):
                        files[f"{relative}/{file_name}"] = f"w:{relative}/{file_name}"
    return files


def _tree_files(root: Path, sha: str) -> dict[str, str]:
    result = _git(root, "ls-tree", "-r", "-z", "--end-of-options", sha, "--", *RECORD_PATHS)
    if result.returncode != 0:
        raise LineageError(f"git ls-tree {sha[:10]} failed: {result.stderr.decode(errors='replace').strip()}")
    files = {}
    for entry in result.stdout.decode("utf-8", errors="surrogateescape").split("\x00"):
        if not entry:
            continue
        meta, relpath = entry.split("\t", 1)
        _mode, kind, blob = meta.split()
        if kind == "blob" and not Path(relpath).name.startswith("."):
            files[relpath] = blob
    return files


def _fetch_blobs(root: Path, keys: list[str], blobs: Blobs) -> None:
    if not keys:
        return
    result = _git(root, "cat-file", "--batch", stdin="".join(f"{key}\n" for key in keys).encode())
    if result.returncode != 0:
        raise LineageError(f"git cat-file failed: {result.stderr.decode(errors='replace').strip()}")
    out = result.stdout
    position = 0
    for key in keys:
        end = out.index(b"\n", position)
        header = out[position:end].split()
        if len(header) < 3 or header[1] == b"missing":
            raise LineageError(f"git object {key} is missing from the repository (a shallow or damaged clone?)")
        size = int(header[2])
        blobs.data[key] = out[end + 1:end + 1 + size]
        position = end + 1 + size + 1
