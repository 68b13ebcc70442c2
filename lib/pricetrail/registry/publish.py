"""The router's records on the DVC remote: decisions reach a deployed router without a new image.

A product's router records (``history.jsonl``, ``state.json``, its version records and ``served.json``) are
uploaded to ``<remote>/pricetrail-registry/<code>/``, beside the content-addressed objects they name. ``served.json``
goes last: a router reads it first, so whatever it reads after is at least as new. Only records whose artifacts are
all on the remote are published — a router must never be told to serve a model it cannot fetch. DVC's own
filesystem for the remote is used, so its URL, endpoint and credentials are the ones ``dvc push`` uses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pricetrail.project.config import validate_stockcode
from pricetrail.registry import records
from pricetrail.registry.remote import Remote, RemoteError, cause, read_remote

logger = logging.getLogger(__name__)

REGISTRY_PREFIX = "pricetrail-registry"
# The order a product's records are uploaded in: served.json last (see the module doc).
RECORD_FILES = (records.HISTORY, records.STATE)


@dataclass(frozen=True)
class Published:
    remote: Remote
    products: tuple[str, ...]
    files: int
    held_back: tuple[str, ...] = ()  # products whose served artifacts are not all on the remote yet


def record_key(code: str, name: str) -> str:
    """Where a product's record lies below the remote's URL (the router reads the same path)."""
    return f"{REGISTRY_PREFIX}/{validate_stockcode(code)}/{name}"


def publish_records(root: Path, codes: Iterable[str] | None = None, *, name: str | None = None) -> Published:
    """Upload the router records of ``codes`` (every registry product when None) to the DVC remote ``name`` (the
    default remote when None). A product whose served artifacts are not all on the remote is held back, named."""
    from dvc.repo import Repo

    remote = read_remote(root, name)
    wanted = sorted(records.recorded_products(root) if codes is None else set(codes))
    files, done, held = 0, [], []
    try:
        with Repo(str(root)) as repo:
            cloud = repo.cloud.get_remote(remote.name)
            fs, base = cloud.fs, cloud.path
            for code in wanted:
                directory = records.product_dir(root, code)
                served = directory / records.SERVED
                if not served.is_file():
                    continue
                record = records.read_record(served, code)
                missing = [artifact.name for artifact in records.artifacts_of(record).values()
                           if not fs.exists(fs.join(base, "files", "md5", artifact.md5[:2], artifact.md5[2:]))]
                if missing:
                    held.append(f"{code} ({', '.join(sorted(missing))} not on the remote)")
                    continue
                version = directory / records.VERSIONS / f"{record['version']}.json"
                local = [directory / name for name in RECORD_FILES if (directory / name).is_file()]
                local += [version] if version.is_file() else []
                for path in [*local, served]:
                    target = fs.join(base, *record_key(code, path.relative_to(directory).as_posix()).split("/"))
                    fs.put_file(str(path), target)
                    files += 1
                done.append(code)
    except records.RegistryError:
        raise
    except Exception as error:  # noqa: BLE001 - DVC's filesystems raise many types: each becomes one RemoteError
        raise RemoteError(f"publishing the registry records to {remote.description} failed: "
                          f"{cause(f'ERROR: {error}', remote)}; `pricetrail push` publishes them again") from error
    if held:
        logger.warning("not published (push the objects first: pricetrail push): %s", "; ".join(held))
    return Published(remote=remote, products=tuple(done), files=files, held_back=tuple(held))
