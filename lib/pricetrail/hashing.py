"""Content hashes that make lineage checkable: the same bytes or values always give the same hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def value_hash(value: Any) -> str:
    """sha256 of canonical JSON: params sections hash equal whatever their key order."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
