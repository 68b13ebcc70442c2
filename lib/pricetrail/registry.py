"""The registry of promoted models: what each product serves, with its history and lineage.

Layout (plain files committed with git, beside dvc.lock)::

    registry/<code>/served.json                 the promoted version, its verdict and lineage
    registry/<code>/history.jsonl               one line per promotion, oldest first
    registry/<code>/versions/<version>/         everything a server needs, no pickle:
        model.pt (weights_only checkpoint), preprocessor.skops, daily.parquet (history for state features),
        reference.parquet (the training rows: the drift gate's reference), verdict.json, lineage.json

The registry is written only by :func:`promote`, never by a DVC stage, so a ``dvc repro`` never deletes it.
The drift gate reads it as a declared dependency; see the README ("Promotion and the loop") for why the
pipeline still settles.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pricetrail.config import ConfigError, read_json, write_json
from pricetrail.hashing import file_md5
from pricetrail.paths import ProductPaths

log = logging.getLogger(__name__)

SERVED = "served.json"
HISTORY = "history.jsonl"
VERSION_FILES = ("model.pt", "preprocessor.skops", "daily.parquet", "reference.parquet", "verdict.json",
                 "lineage.json")


class RegistryError(ValueError):
    """The registry is missing or inconsistent for a product."""


@dataclass(frozen=True)
class ServedModel:
    stockcode: str
    version: str
    directory: Path
    record: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.directory / name


def served_model(root: Path, code: str) -> ServedModel | None:
    """The product's promoted model, or None if it never passed its gates."""
    paths = ProductPaths(code)
    record_path = root / paths.registry_dir / SERVED
    if not record_path.is_file():
        return None
    try:
        record = read_json(record_path)
    except ConfigError as error:
        raise RegistryError(f"registry record for {code} is damaged: {error}") from error
    version = record.get("version")
    if not isinstance(version, str) or not version.isalnum():
        raise RegistryError(f"{record_path} names version {version!r}; expected a hex content hash")
    directory = root / paths.registry_dir / "versions" / version
    missing = [name for name in VERSION_FILES if not (directory / name).is_file()]
    if missing:
        raise RegistryError(f"registry version {code}/{version} lacks {missing} in {directory}")
    return ServedModel(stockcode=code, version=version, directory=directory, record=record)


def drift_reference(root: Path, code: str) -> tuple[pd.DataFrame, str] | None:
    """The training rows of the served model and a label for reports, or None when nothing is served."""
    served = served_model(root, code)
    if served is None:
        return None
    return pd.read_parquet(served.file("reference.parquet")), f"training data of served model {served.version}"


@dataclass(frozen=True)
class Decision:
    """What promotion did for one product, and why."""

    stockcode: str
    action: str  # "promoted", "kept", "unchanged", "none"
    served_version: str | None
    candidate_version: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _candidate_state(root: Path, code: str) -> tuple[dict[str, Any] | None, str]:
    """The current verdict if it belongs to the current, drift-checked data; otherwise None and why not."""
    paths = ProductPaths(code)
    features = root / paths.lines
    if not features.is_file():
        return None, "no features: etl_pipeline has not run or failed"
    features_md5 = file_md5(features)
    gate = root / paths.drift_gate
    drift_metrics = root / paths.drift_metrics
    if not gate.is_file() or read_json(gate).get("features_md5") != features_md5:
        if drift_metrics.is_file() and read_json(drift_metrics).get("drift_detected"):
            columns = ", ".join(read_json(drift_metrics).get("drifted_columns", []))
            return None, f"the drift gate failed on the current data (drifted: {columns})"
        return None, "the drift gate has not passed on the current data"
    verdict_path = root / paths.verdict
    if not verdict_path.is_file():
        return None, "no verdict: the chain did not reach assess_model_risk"
    verdict = read_json(verdict_path)
    if verdict.get("lineage", {}).get("features_md5") != features_md5:
        return None, "the verdict is stale: it was made on other data (rerun dvc repro)"
    return verdict, ""


def promote(root: Path, code: str, *, now: datetime | None = None) -> Decision:
    """Promote the product's new model if it passed both gates; otherwise keep what is served."""
    served = served_model(root, code)
    served_version = served.version if served else None
    verdict, why_not = _candidate_state(root, code)
    if verdict is None:
        return _keep(code, served_version, None, why_not)
    candidate = str(verdict["model_version"])
    if not verdict.get("promoted"):
        failed = "; ".join(f"{c['name']}={c['value']} (threshold {c['threshold']})"
                           for c in verdict.get("checks", []) if not c["passed"])
        return _keep(code, served_version, candidate, f"model {candidate} failed its gate: {failed}")
    if candidate == served_version:
        return Decision(code, "unchanged", served_version, candidate, "the served model is already this one")
    directory = _write_version(root, code, candidate, verdict, now or datetime.now(UTC))
    log.info("%s: promoted model %s (was %s)", code, candidate, served_version)
    return Decision(code, "promoted", candidate, candidate,
                    f"passed the drift gate and assess_model_risk; stored in {directory.relative_to(root)}")


def _keep(code: str, served_version: str | None, candidate: str | None, reason: str) -> Decision:
    if served_version:
        return Decision(code, "kept", served_version, candidate, f"{reason}; still serving {served_version}")
    return Decision(code, "none", None, candidate, f"{reason}; this product serves no model yet")


def _write_version(root: Path, code: str, version: str, verdict: dict[str, Any], now: datetime) -> Path:
    paths = ProductPaths(code)
    product_dir = root / paths.registry_dir
    final = product_dir / "versions" / version
    staging = product_dir / "versions" / f".{version}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    # Everything is copied first and the directory renamed last: a crash leaves no half-written version.
    shutil.copy2(root / paths.checkpoint, staging / "model.pt")
    shutil.copy2(root / paths.preprocessor, staging / "preprocessor.skops")
    shutil.copy2(root / paths.daily, staging / "daily.parquet")
    shutil.copy2(root / paths.split("train"), staging / "reference.parquet")
    (staging / "verdict.json").write_text(json.dumps(verdict, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    lineage = {
        "stockcode": code,
        "version": version,
        "promoted_at": now.isoformat(timespec="seconds"),
        **verdict.get("lineage", {}),
        "dvc_lock": _lock_entries(root, code),
    }
    (staging / "lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)  # an earlier promotion of the same content: identical files
    staging.rename(final)
    record = {"stockcode": code, "version": version, "promoted_at": lineage["promoted_at"],
              "path": str(final.relative_to(root)), "checks": verdict.get("checks", []),
              "lineage": verdict.get("lineage", {})}
    write_json(product_dir / SERVED, record)
    with (product_dir / HISTORY).open("a", encoding="utf-8") as history:
        history.write(json.dumps({"version": version, "promoted_at": lineage["promoted_at"],
                                  "features_md5": verdict.get("lineage", {}).get("features_md5")},
                                 sort_keys=True) + "\n")
    return final


def _lock_entries(root: Path, code: str) -> dict[str, Any]:
    """The dvc.lock entries of the product's stages (and the shared ingest): the run that made the model."""
    import yaml

    lock_path = root / "dvc.lock"
    if not lock_path.is_file():
        return {}
    stages = (yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}).get("stages", {})
    return {name: entry for name, entry in stages.items() if name == "ingest" or name.endswith(f"@{code}")}


def history(root: Path, code: str) -> list[dict[str, Any]]:
    path = root / ProductPaths(code).registry_dir / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
