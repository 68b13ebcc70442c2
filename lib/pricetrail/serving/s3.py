"""A DVC remote on S3 as an artifact source: objects fetched by md5 from ``files/md5/<2>/<30>``, no DVC needed.

A fetched object is hashed while it streams and installed under a local cache directory (DVC's layout, so
:class:`pricetrail.registry.artifacts.LocalCache` would find it too) only when its md5 is the one asked for.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pricetrail.registry.artifacts import ArtifactError, object_relpath
from pricetrail.serving.config import S3Settings

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
T = TypeVar("T")


def within(seconds: float, work: Callable[[], T], what: str) -> T:
    """``work()``, or an :class:`ArtifactError` once ``seconds`` have passed without its answer. The work goes on
    in a daemon thread until its own timeouts end it; its late result is dropped (a fetched object is installed
    only when whole and verified, so a late one is harmless)."""
    outcome: list[Any] = []
    finished = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread, which raises it
            outcome.append((False, error))
        finally:
            finished.set()

    threading.Thread(target=run, name="pricetrail-remote-read", daemon=True).start()
    if not finished.wait(seconds):
        raise ArtifactError(f"no answer for {what} within {seconds:g} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


@dataclass
class S3Remote:
    settings: S3Settings
    _client: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def description(self) -> str:
        return f"the DVC remote {self.settings.url} (cached in {self.settings.cache_dir})"

    def client(self) -> Any:
        # boto3 is imported on first use: a server with only a local cache never pays for it. Clients are
        # thread-safe; one is shared. Credentials come from boto3's usual chain (the Lambda role, AWS_* variables).
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                # Bounded waits: with the remote down, a request for a product not yet loaded should get its 503
                # in seconds (botocore's defaults: a 60 s connect timeout, legacy retries), not hold a thread.
                # A session of its own: boto3's default session resolves credentials once per process and keeps
                # them, so a source created after they changed (rotated keys, another app) would sign with old ones.
                session = boto3.session.Session()
                deadline = self.settings.deadline_seconds
                self._client = session.client("s3", endpoint_url=self.settings.endpoint_url,
                                              region_name=self.settings.region,
                                              config=Config(connect_timeout=min(2.0, deadline), read_timeout=deadline,
                                                            retries={"max_attempts": 2, "mode": "standard"}))
            return self._client

    def reachable(self, deadline: float) -> bool:
        """The bucket answers within ``deadline`` seconds (the readiness probe); why not goes to the log."""
        from botocore.exceptions import BotoCoreError, ClientError

        # One key listed below the prefix: what a role limited to the remote's prefix may do (HeadBucket is not).
        prefix = f"{self.settings.prefix}/" if self.settings.prefix else ""
        try:
            within(deadline, lambda: self.client().list_objects_v2(Bucket=self.settings.bucket, Prefix=prefix,
                                                                   MaxKeys=1),
                   f"the remote {self.settings.url}")
        except (BotoCoreError, ClientError, ArtifactError) as error:
            log.warning("%s is not reachable: %s", self.settings.url, error)
            return False
        return True

    def key(self, md5: str) -> str:
        relpath = object_relpath(md5).as_posix()
        return f"{self.settings.prefix}/{relpath}" if self.settings.prefix else relpath

    def locate(self, md5: str) -> Path | None:
        target = self.settings.cache_dir / object_relpath(md5)
        if target.is_file():
            return target
        # One deadline for the whole read, retries included: botocore's own timeouts are per attempt and per
        # socket read, so an endpoint that accepts and never answers would otherwise hold the request past it.
        return within(self.settings.deadline_seconds, lambda: self._fetch(md5, target),
                      f"{self.key(md5)} from {self.settings.url}")

    def _fetch(self, md5: str, target: Path) -> Path | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client().get_object(Bucket=self.settings.bucket, Key=self.key(md5))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise ArtifactError(f"cannot read {self.key(md5)} from {self.settings.url}: {error}") from error
        except BotoCoreError as error:
            raise ArtifactError(f"cannot reach {self.settings.url}: {error}") from error
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5()  # noqa: S324 - DVC's content address, not a security hash
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in response["Body"].iter_chunks(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != md5:
                raise ArtifactError(f"{self.settings.url}/{self.key(md5)} is damaged: its md5 is "
                                    f"{digest.hexdigest()}; refusing to cache it")
            os.replace(name, target)  # atomic: concurrent fetches of one object install the same bytes
        except (BotoCoreError, OSError) as error:
            raise ArtifactError(f"cannot fetch {self.key(md5)} from {self.settings.url}: {error}") from error
        finally:
            if os.path.exists(name):
                os.unlink(name)
        log.info("fetched %s from %s", md5, self.settings.url)
        return target
