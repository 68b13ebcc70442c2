"""The router's registry, followed on the DVC remote: decisions (a promotion, a rollback) reach a running router
within ``refresh_seconds``, without a new image.

The router reads records from a local mirror folder. Before it looks at a product, :meth:`RemoteRegistry.refresh`
asks the remote — at most once per ``refresh_seconds`` for that product, with conditional GETs (ETags), within a
short deadline — for the product's ``served.json`` first, then its history, state pointer and served version record
(``pricetrail push``, ``promote`` and ``rollback`` upload them, ``served.json`` last:
:mod:`pricetrail.registry.publish`). A file is installed only when it parses as the record it must be; a remote
that is down or stalled leaves the mirror as it was (the model keeps serving) and is asked again after
``refresh_seconds``. The image's baked-in registry, if any, seeds the mirror: the fallback until the remote answers.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pricetrail.project.config import validate_stockcode
from pricetrail.registry import records, state_pointer
from pricetrail.registry.artifacts import ArtifactError
from pricetrail.serving.s3 import S3Remote, within

logger = logging.getLogger(__name__)

REGISTRY_PREFIX = "pricetrail-registry"  # as pricetrail.registry.publish writes it (a test checks they agree)


@dataclass
class RemoteRegistry:
    remote: S3Remote
    mirror: Path  # a writable folder: <mirror>/<code>/served.json, ...
    refresh_seconds: float
    deadline_seconds: float = 1.5  # a stalled remote costs a product's request at most this, once per refresh
    _checked: dict[str, float] = field(default_factory=dict, repr=False)
    _etags: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def seed(self, baked: Path, codes: tuple[str, ...]) -> None:
        """Copy the image's registry folders of ``codes`` into the mirror (the fallback until the remote answers)."""
        for code in codes:
            source = baked / code
            if source.is_dir() and not (self.mirror / code / records.SERVED).exists():
                shutil.copytree(source, self.mirror / code, dirs_exist_ok=True)
        self.mirror.mkdir(parents=True, exist_ok=True)

    def refresh(self, code: str) -> None:
        """Bring ``code``'s records up to date with the remote, unless it was asked within ``refresh_seconds``."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked.get(code, float("-inf")) < self.refresh_seconds:
                return
            self._checked[code] = now
        try:
            within(self.deadline_seconds, lambda: self._sync(code), f"the registry records of {code}")
        except (ArtifactError, ValueError, OSError) as error:
            logger.warning("%s: registry records not refreshed from %s, serving the last ones: %s", code,
                           self.remote.settings.url, error)

    def _key(self, code: str, name: str) -> str:
        relative = f"{REGISTRY_PREFIX}/{validate_stockcode(code)}/{name}"
        prefix = self.remote.settings.prefix
        return f"{prefix}/{relative}" if prefix else relative

    def _get(self, code: str, name: str) -> tuple[bytes | None, str | None]:
        """(the file's new bytes and ETag), or (None, None) when it is unchanged since the last read or absent."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(code, name)
        etag = self._etags.get((code, name))
        try:
            response = self.remote.client().get_object(Bucket=self.remote.settings.bucket, Key=key,
                                                        **({"IfNoneMatch": etag} if etag else {}))
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (304, 404) or error.response.get("Error", {}).get("Code") in ("304", "NoSuchKey", "404"):
                return None, None  # not modified, or never published: the mirror stands
            raise ArtifactError(f"cannot read {key}: {error}") from error
        except BotoCoreError as error:  # the endpoint refused, dropped or timed out: the mirror stands
            raise ArtifactError(f"cannot reach the remote for {key}: {error}") from error
        try:
            return response["Body"].read(), response.get("ETag")
        except BotoCoreError as error:
            raise ArtifactError(f"cannot read {key}: {error}") from error

    def _sync(self, code: str) -> None:
        # served.json first: the publisher writes it last, so everything read after it is at least as new.
        fetched = {name: self._get(code, name) for name in (records.SERVED, records.HISTORY, records.STATE)}
        served, history, state = (fetched[name][0] for name in (records.SERVED, records.HISTORY, records.STATE))
        if served is not None:
            record = records.parse_record(served.decode("utf-8"), self._key(code, records.SERVED), code)
            version_name = f"{records.VERSIONS}/{record['version']}.json"
            if not (self.mirror / code / version_name).is_file():
                fetched[version_name] = self._get(code, version_name)
        if history is not None:
            records.parse_history(history.decode("utf-8"), self._key(code, records.HISTORY))
        if state is not None:
            state_pointer.parse_state_pointer(state.decode("utf-8"), self._key(code, records.STATE), code)
        # Installed in the order the router can read them safely: the served record last.
        order = [name for name in fetched if name != records.SERVED] + [records.SERVED]
        for name in order:
            content, etag = fetched[name]
            if content is not None:
                _install(self.mirror / code / name, content)
                if etag:
                    self._etags[(code, name)] = etag
        if served is not None:
            logger.info("%s: registry records refreshed from the remote: version %s", code, record["version"])


def _install(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.replace(name, path)
    finally:
        if os.path.exists(name):
            os.unlink(name)
