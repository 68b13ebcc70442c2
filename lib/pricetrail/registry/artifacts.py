"""Artifacts addressed by content: one seam through which every registry and server read of a binary goes.

A model's files (checkpoint, preprocessor, history, training rows) are DVC outputs. DVC stores each file of an
output in its cache under ``files/md5/<first two hex digits>/<the rest>`` (the same layout sits under a DVC
remote's URL), so a registry record needs only a file's md5 to find it again, whatever the workspace holds now.
Every resolution verifies the bytes against the recorded hash: a damaged or swapped file is refused, never served.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pricetrail.project.files import file_md5

MD5_HEX_DIGITS = 32


class ArtifactError(ValueError):
    """An artifact cannot be found, or its bytes are not the ones recorded.

    The message is for the operator (it may name paths, URLs and keys); ``public`` says the same to a caller of the
    server without them: the artifact's role and hash, and what went wrong.
    """

    def __init__(self, message: str, *, artifact: Artifact | None = None, problem: str = "") -> None:
        super().__init__(message)
        self.artifact = artifact
        self.problem = problem

    @property
    def public(self) -> str:
        if self.artifact is None:
            return "an artifact could not be read"
        return f"the {self.artifact.name} artifact (md5 {self.artifact.md5}) {self.problem or 'could not be read'}"


def public_reason(error: BaseException,
                  otherwise: str = "its files could not be loaded (the server log has the cause)") -> str:
    """What a caller may be told about ``error``: the public text of the first :class:`ArtifactError` in its chain
    of causes, else ``otherwise`` (the server log holds the full message)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ArtifactError):
            return seen.public
        seen = seen.__cause__ or seen.__context__
    return otherwise


@dataclass(frozen=True)
class Artifact:
    """A file recorded by content: where the pipeline wrote it, its md5 and size, and the DVC output it belongs to."""

    name: str
    path: str  # workspace path, relative to the project root (e.g. models/85123A/model.pt)
    md5: str
    size: int
    out: str | None = None  # the DVC output holding it (e.g. models/85123A)
    out_md5: str | None = None  # that output's hash as dvc.lock records it (e.g. 1a2b….dir)

    def __post_init__(self) -> None:
        if not is_md5(self.md5):
            raise ArtifactError(f"artifact {self.name!r} records md5 {self.md5!r}; expected 32 hex digits")
        if not isinstance(self.size, int) or self.size < 0:
            raise ArtifactError(f"artifact {self.name!r} records size {self.size!r}; expected a whole number >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "name"}

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> Artifact:
        if not isinstance(data, Mapping):
            raise ArtifactError(f"artifact {name!r} is recorded as {data!r}; expected a mapping with path, md5, size")
        missing = [key for key in ("path", "md5", "size") if key not in data]
        if missing:
            raise ArtifactError(f"artifact {name!r} lacks {missing}")
        return cls(name=name, path=str(data["path"]), md5=str(data["md5"]), size=data["size"],
                   out=data.get("out"), out_md5=data.get("out_md5"))


def is_md5(value: object) -> bool:
    return isinstance(value, str) and len(value) == MD5_HEX_DIGITS and all(c in "0123456789abcdef" for c in value)


def object_relpath(md5: str) -> Path:
    """Where DVC 3 keeps a file with this md5, below a cache directory or a remote's URL."""
    if not is_md5(md5):
        raise ArtifactError(f"{md5!r} is not an md5 (32 hex digits)")
    return Path("files") / "md5" / md5[:2] / md5[2:]


def cache_object(cache: Path, digest: str) -> Path:
    """Where DVC 3 keeps an object in a cache: a file by ``<md5>``, a folder's listing by ``<md5>.dir``."""
    if digest.endswith(".dir"):
        path = cache / object_relpath(digest[: -len(".dir")])
        return path.with_name(path.name + ".dir")
    return cache / object_relpath(digest)


class ArtifactSource(Protocol):
    """Somewhere artifacts can be fetched from by md5 (the local DVC cache; later a DVC remote)."""

    description: str

    def locate(self, md5: str) -> Path | None:
        """A local path holding the object, or None when this source does not have it."""


@dataclass(frozen=True)
class LocalCache:
    """A DVC cache directory on this machine."""

    directory: Path

    @property
    def description(self) -> str:
        return f"the DVC cache {self.directory}"

    def locate(self, md5: str) -> Path | None:
        candidate = self.directory / object_relpath(md5)
        return candidate if candidate.is_file() else None


def dvc_cache_dir(root: Path) -> Path:
    """The project's DVC cache directory: ``cache.dir`` from .dvc/config.local or .dvc/config, else .dvc/cache.

    Read from the config files rather than through DVC so that a server needs no DVC import to find it.
    """
    dvc_dir = root / ".dvc"
    cache_dir: str | None = None
    for name in ("config", "config.local"):  # later files override earlier ones, as in DVC
        path = dvc_dir / name
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as error:
            raise ArtifactError(f"{path} is not a readable DVC config: {error}") from error
        if parser.has_option("cache", "dir"):
            cache_dir = parser.get("cache", "dir").strip()
    if cache_dir is None:
        return dvc_dir / "cache"
    # DVC resolves a relative cache.dir against the .dvc directory.
    return (dvc_dir / os.path.expanduser(cache_dir)).resolve()


def local_sources(root: Path) -> list[ArtifactSource]:
    return [LocalCache(dvc_cache_dir(root))]


def resolve(artifact: Artifact, sources: Iterable[ArtifactSource], *, owner: str) -> Path:
    """A verified local path holding exactly the recorded bytes of ``artifact``.

    ``owner`` names whose artifact it is in messages (e.g. "85123A version 1a2b…").
    """
    tried = []
    for source in sources:
        tried.append(source.description)
        try:
            path = source.locate(artifact.md5)
        except ArtifactError as error:
            raise ArtifactError(f"{owner}: {artifact.name} (md5 {artifact.md5}): {error}", artifact=artifact,
                                problem="could not be read from the artifact store") from error
        if path is None:
            continue
        verify(path, artifact, owner=owner)
        return path
    raise ArtifactError(
        f"{owner}: {artifact.name} (md5 {artifact.md5}, from {artifact.path}) is in none of: {', '.join(tried)}; "
        "run `dvc pull` (or `dvc fetch`) to bring it from the DVC remote", artifact=artifact,
        problem="is in none of the server's artifact sources")


def verify(path: Path, artifact: Artifact, *, owner: str) -> None:
    """Refuse a file whose size or md5 differs from the record (a damaged cache or a swapped file)."""
    size = path.stat().st_size
    actual = file_md5(path) if size == artifact.size else None
    if actual != artifact.md5:
        found = f"md5 {actual}" if actual else f"{size} bytes instead of {artifact.size}"
        raise ArtifactError(f"{owner}: {artifact.name} at {path} is damaged: expected md5 {artifact.md5}, "
                            f"found {found}; refusing to use it (restore it with `dvc fetch` or `dvc pull`)",
                            artifact=artifact, problem="does not match its recorded md5 (damaged); refused")


def describe_file(root: Path, name: str, relpath: Path, outs: Mapping[str, str]) -> Artifact:
    """An :class:`Artifact` for a workspace file, linked to the DVC output (from ``outs``: path -> hash) holding it."""
    path = root / relpath
    if not path.is_file():
        raise ArtifactError(f"{relpath} does not exist; the stage that writes it has not run")
    # The output is the file itself or one of its folders: looked up, not scanned (a catalogue has thousands).
    out = next((candidate for candidate in (relpath.as_posix(), *(parent.as_posix() for parent in relpath.parents))
                if candidate in outs), None)
    return Artifact(name=name, path=relpath.as_posix(), md5=file_md5(path), size=path.stat().st_size, out=out,
                    out_md5=outs.get(out) if out else None)
