"""Recording a decision (promoted, kept, none, rollback, accepted_drift) in an order that leaves a consistent
record whatever step a crash interrupts: the version record first, then the history line, then ``served.json``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricetrail.project.files import atomic_path, remove_stale_temporaries, write_json
from pricetrail.project.git_state import git_state
from pricetrail.registry.drift_reference import served_model_reference
from pricetrail.registry.records import (
    DRIFT_REFERENCE,
    HISTORY,
    SERVED,
    VERSIONS,
    ServedModel,
    history,
    product_dir,
    version_record,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What promotion (or an operator) did for one product, and why."""

    stockcode: str
    action: str  # promoted, kept, none, unchanged, rollback, accepted_drift, error
    served_version: str | None
    candidate_version: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def history_entry(root: Path, decision: Decision, now: str, **extra: Any) -> dict[str, Any]:
    return {"time": now, "action": decision.action, "version": decision.served_version,
            "candidate": decision.candidate_version, "reason": decision.reason, **git_state(root).to_dict(),
            **extra}


def append_history(root: Path, code: str, entry: Mapping[str, Any]) -> None:
    """Append one line, atomically: the file is rewritten beside itself and renamed, so no line is ever torn."""
    path = product_dir(root, code) / HISTORY
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(existing + json.dumps(entry, sort_keys=True, default=str) + "\n", encoding="utf-8")


def record_if_new(root: Path, code: str, decision: Decision, now: str) -> None:
    """Record a keep / none decision unless it repeats the last one (a weekly no-op adds no lines)."""
    entries = history(root, code)
    if entries and (entries[-1]["action"], entries[-1].get("candidate"), entries[-1].get("reason")) == (
            decision.action, decision.candidate_version, decision.reason):
        return
    append_history(root, code, history_entry(root, decision, now))


def commit_decision(root: Path, code: str, record: dict[str, Any], decision: Decision, now: str,
                     drift_reference_record: Mapping[str, Any] | None, **extra: Any) -> None:
    """Serve ``record``. Order: the version file, the history line, served.json, the drift reference.

    A crash before the history line leaves an unreferenced version file (rewritten identically next time); after
    it, :func:`promote` sees that served.json lags the history and completes the last two writes.
    """
    directory = product_dir(root, code)
    write_json(directory / VERSIONS / f"{record['version']}.json", _version_part(record))
    append_history(root, code, history_entry(root, decision, now, **extra))
    write_served(root, code, record, served_by=decision.action, since=now, reason=decision.reason)
    if drift_reference_record is not None:
        write_json(directory / DRIFT_REFERENCE, drift_reference_record)


def _version_part(record: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in ("served_by", "served_since", "reason")}


def write_served(root: Path, code: str, record: Mapping[str, Any], *, served_by: str, since: str,
                  reason: str) -> None:
    # What a server needs, without the dvc.lock entries (those stay in versions/<v>.json, for lineage).
    served = {key: value for key, value in _version_part(record).items() if key != "stages"}
    write_json(product_dir(root, code) / SERVED, {**served, "served_by": served_by, "served_since": since,
                                                  "reason": reason})


def keep_decision(code: str, served_version: str | None, candidate: str | None, reason: str) -> Decision:
    if served_version:
        return Decision(code, "kept", served_version, candidate, f"{reason}; still serving {served_version}")
    return Decision(code, "none", None, candidate, f"{reason}; this product serves no model yet")


def remove_interrupted_writes(root: Path, code: str) -> None:
    """Temporary files that a killed write left beside a record; a live writer's are never touched."""
    directory = product_dir(root, code)
    for leftover in [*remove_stale_temporaries(directory), *remove_stale_temporaries(directory / VERSIONS)]:
        logger.warning("%s: removed %s, left by an interrupted write", code, leftover)


def complete_interrupted(root: Path, code: str, served: ServedModel | None) -> None:
    """Finish a decision a crash interrupted after its history line: served.json must match the history."""
    entries = [e for e in history(root, code) if e["action"] in ("promoted", "rollback")]
    if not entries:
        return
    last = entries[-1]
    if served is not None and served.version == last["version"]:
        return
    record = version_record(root, code, last["version"])
    logger.warning("%s: completing an interrupted %s of %s", code, last["action"], last["version"])
    write_served(root, code, record, served_by=last["action"], since=last["time"], reason=last["reason"])
    write_json(product_dir(root, code) / DRIFT_REFERENCE, served_model_reference(code, record))
