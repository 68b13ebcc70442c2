"""The product's newest daily history (by hash), written by every promotion run whatever it decided: a server prices
on the state of the newest ingested data even when the model was kept."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pricetrail.project.dvc_lock import out_hashes, read_stages
from pricetrail.project.files import ConfigError, write_json
from pricetrail.project.paths import ProductPaths
from pricetrail.registry.artifacts import (
    Artifact,
    ArtifactError,
    describe_file,
    local_sources,
    resolve,
)
from pricetrail.registry.records import STATE, RegistryError, kind_of, parse_json, product_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatePointer:
    """The product's newest daily history, which state features (last month's volume and prices) come from."""

    artifact: Artifact
    first_day: str
    last_day: str


def read_state_pointer(root: Path, code: str) -> StatePointer | None:
    path = product_dir(root, code) / STATE
    return parse_state_pointer(path.read_text(encoding="utf-8"), str(path), code) if path.is_file() else None


def parse_state_pointer(text: str, where: str, code: str) -> StatePointer:
    """A state.json of ``code`` from its text; ``where`` names it in messages."""
    try:
        record = parse_json(text, where)
        if not isinstance(record, dict):
            raise TypeError(f"expected a JSON object, found {kind_of(record)}")
        if record["stockcode"] != code:
            raise ValueError(f"it belongs to {record['stockcode']!r}")
        artifact = Artifact.from_dict("daily.parquet", record["artifact"])
        paths = ProductPaths(code)
        # Bound to its product by the record itself: another product's history (a copied state.json) is refused.
        if artifact.path != paths.daily.as_posix() or artifact.out not in (None, paths.features_dir.as_posix()):
            raise ValueError(f"it points at {artifact.path} (output {artifact.out}), not at {code}'s daily history "
                             f"{paths.daily.as_posix()}")
        first, last = record["first_day"], record["last_day"]
        if not (isinstance(first, str) and isinstance(last, str) and first <= last):
            raise ValueError(f"first_day {first!r} and last_day {last!r} are not two dates in order")
        return StatePointer(artifact=artifact, first_day=first, last_day=last)
    except (ConfigError, ArtifactError, KeyError, TypeError, ValueError) as error:
        raise RegistryError(f"state pointer {where} of {code} is damaged: {error}") from error


def record_state(root: Path, code: str, stages: Mapping[str, Any] | None = None) -> StatePointer | None:
    """Point state.json at the product's current daily history if DVC recorded it and it is in the cache.

    Written on every promotion run, whatever was decided: the daily history is a fact about sales, not a model,
    so a product that keeps its model still prices on the newest ingested days. Unchanged content is not
    rewritten (a weekly no-op leaves git clean).
    """
    relpath = ProductPaths(code).daily
    if not (root / relpath).is_file():
        return None
    stages = read_stages(root) if stages is None else stages
    artifact = describe_file(root, "daily.parquet", relpath, out_hashes(stages))
    if artifact.out_md5 is None:
        return None  # not committed by DVC yet: the next run records it
    try:
        resolve(artifact, local_sources(root), owner=f"{code} daily history")
    except ArtifactError as error:
        logger.warning("%s: state pointer not updated: %s", code, error)
        return None
    current = read_state_pointer(root, code)
    if current is not None and current.artifact.md5 == artifact.md5:
        return current
    try:
        days = pd.to_datetime(pd.read_parquet(root / relpath, columns=["day"])["day"])
    except (ValueError, OSError, KeyError) as error:  # pyarrow's ArrowInvalid is a ValueError
        logger.warning("%s: state pointer not updated: %s is not a daily history: %s", code, relpath, error)
        return None
    pointer = StatePointer(artifact=artifact, first_day=str(days.min().date()), last_day=str(days.max().date()))
    write_json(product_dir(root, code) / STATE, {"stockcode": code, "artifact": artifact.to_dict(),
                                                 "first_day": pointer.first_day, "last_day": pointer.last_day})
    return pointer
