"""The operator's actions: roll a product back to an earlier promoted version, or accept its drift."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pricetrail.project.dvc_lock import out_hashes, read_stages
from pricetrail.project.files import read_json, write_json
from pricetrail.project.paths import ProductPaths
from pricetrail.registry.artifacts import (
    ArtifactError,
    describe_file,
    local_sources,
    resolve,
)
from pricetrail.registry.decision_log import (
    Decision,
    append_history,
    commit_decision,
    complete_interrupted,
    history_entry,
    remove_interrupted_writes,
)
from pricetrail.registry.drift_reference import served_model_reference
from pricetrail.registry.records import (
    DRIFT_REFERENCE,
    RegistryError,
    product_dir,
    promoted_versions,
    registry_lock,
    resolve_version,
    served_model,
    timestamp,
    version_record,
)


def rollback(root: Path, code: str, *, to: str | None = None, reason: str = "",
             now: datetime | None = None) -> Decision:
    """Serve an earlier promoted version; its artifacts must still resolve (they are verified first)."""
    with registry_lock(root):
        return _rollback(root, code, to=to, reason=reason, now=now)


def _rollback(root: Path, code: str, *, to: str | None, reason: str, now: datetime | None) -> Decision:
    remove_interrupted_writes(root, code)
    complete_interrupted(root, code, served_model(root, code))
    served = served_model(root, code)
    if served is None:
        raise RegistryError(f"{code} serves no model; there is nothing to roll back")
    versions = promoted_versions(root, code)
    if to is None:
        earlier = versions[: versions.index(served.version)] if served.version in versions else versions
        if not earlier:
            raise RegistryError(f"{code} has no version promoted before {served.version}; nothing to roll back to "
                                f"(promoted versions: {', '.join(versions)})")
        to = earlier[-1]
    if to == served.version:
        raise RegistryError(f"{code} already serves version {to}")
    record = version_record(root, code, to)
    try:
        resolve_version(root, code, to)
    except ArtifactError as error:
        raise RegistryError(f"cannot roll {code} back to {to}: {error}") from error
    stamp = timestamp(now)
    why = reason.strip() or "operator rollback"
    decision = Decision(code, "rollback", to, to, f"rolled back from {served.version}: {why}")
    commit_decision(root, code, record, decision, stamp, served_model_reference(code, record),
                     from_version=served.version)
    return decision


def accept_drift(root: Path, code: str, *, reason: str, now: datetime | None = None) -> Decision:
    """Make the product's newest data window the drift reference for the next run (a genuine regime change)."""
    if not reason or not reason.strip():
        raise RegistryError("accept-drift needs --reason: say why the new data is right (it goes in the history)")
    with registry_lock(root):
        return _accept_drift(root, code, reason=reason, now=now)


def _accept_drift(root: Path, code: str, *, reason: str, now: datetime | None) -> Decision:
    remove_interrupted_writes(root, code)
    complete_interrupted(root, code, served_model(root, code))
    paths = ProductPaths(code)
    metrics_path = root / paths.drift_metrics
    if not metrics_path.is_file():
        raise RegistryError(f"{code} has no drift result ({paths.drift_metrics}); run the pipeline first")
    metrics = read_json(metrics_path)
    window = metrics.get("current", {})
    first, last = window.get("first_date"), window.get("last_date")
    if not first or not last:
        raise RegistryError(f"{paths.drift_metrics} does not say which window was checked; rerun the drift gate")
    stages = read_stages(root)
    artifact = describe_file(root, "features", paths.lines, out_hashes(stages))
    if metrics.get("features_md5") != artifact.md5:
        raise RegistryError(f"{paths.drift_metrics} is not about the current data of {code} ({paths.lines}); "
                            f"rerun its drift gate (`dvc repro data_drift_check@{code}`) first")
    try:
        resolve(artifact, local_sources(root), owner=f"{code} current data")
    except ArtifactError as error:
        raise RegistryError(f"cannot accept {code}'s current data: {error}") from error
    stamp = timestamp(now)
    served = served_model(root, code)
    decision = Decision(code, "accepted_drift", served.version if served else None, None,
                        f"data of {first} to {last} accepted as the drift reference: {reason.strip()}")
    write_json(product_dir(root, code) / DRIFT_REFERENCE,
               {"stockcode": code, "kind": "accepted_drift", "artifact": artifact.to_dict(), "window": [first, last],
                "since": stamp, "reason": reason.strip(),
                "drifted_columns": metrics.get("drifted_columns", [])})
    append_history(root, code, history_entry(root, decision, stamp, window=[first, last],
                                               drifted_columns=metrics.get("drifted_columns", [])))
    return decision
