"""What the registry says about one product now, read from a registry folder (a Lambda image has no checkout):
its served record, newest state pointer and latest decisions; a few small JSON files, no artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricetrail.project.config import validate_stockcode
from pricetrail.registry import artifacts, records, state_pointer


@dataclass(frozen=True)
class ProductRecord:
    """What the registry says about one product now: cheap to read (a few small JSON files), no artifacts."""

    stockcode: str
    record: dict[str, Any] | None  # served.json, or None when nothing was ever promoted
    state: state_pointer.StatePointer | None  # the newest daily history recorded by a weekly run
    latest: dict[str, Any] | None  # the last history line (promoted, kept, none, rollback, accepted_drift)
    pipeline_latest: dict[str, Any] | None = None  # the last decision of a weekly run (promoted, kept, none)

    def unpromoted_candidate(self) -> dict[str, Any] | None:
        """The weekly run's latest decision if it kept the served model instead of promoting its new one (the
        reason names that model and the gate it failed)."""
        entry = self.pipeline_latest or {}
        return entry if entry.get("action") == "kept" else None

    @property
    def version(self) -> str | None:
        return self.record["version"] if self.record else None

    def daily_artifact(self) -> tuple[artifacts.Artifact, str]:
        """The daily history to take state from, and where it comes from: the newer of the served version's and
        the weekly run's (a kept model prices on the newest ingested days)."""
        assert self.record is not None
        own = records.artifacts_of(self.record)["daily.parquet"]
        if self.state is not None and self.state.artifact.md5 != own.md5 and (
                self.state.last_day >= str(self.record.get("training_data", {}).get("last_date", ""))):
            return self.state.artifact, f"history ingested by the weekly run up to {self.state.last_day}"
        return own, "history recorded with the served version"

    @property
    def key(self) -> tuple[str | None, str | None]:
        """What a loaded model must match: the served version and the daily history it prices from."""
        if self.record is None:
            return None, None
        return self.version, self.daily_artifact()[0].md5


def read_product_record(registry_dir: Path, code: str) -> ProductRecord:
    code = validate_stockcode(code)
    directory = registry_dir / code
    served_path = directory / records.SERVED
    record = records.parse_record(served_path.read_text(encoding="utf-8"), str(served_path), code) if (
        served_path.is_file()) else None
    state_path = directory / records.STATE
    state = state_pointer.parse_state_pointer(state_path.read_text(encoding="utf-8"), str(state_path), code) if (
        state_path.is_file()) else None
    history_path = directory / records.HISTORY
    entries = records.parse_history(history_path.read_text(encoding="utf-8"), str(history_path)) if (
        history_path.is_file()) else []
    decisions = [e for e in entries if e["action"] in ("promoted", "kept", "none")]
    return ProductRecord(stockcode=code, record=record, state=state, latest=entries[-1] if entries else None,
                         pipeline_latest=decisions[-1] if decisions else None)


def verdict_failures(record: dict[str, Any]) -> list[str]:
    """Why a record may not be served; empty when its verdict passed every check (with customer groups judged
    apart: when at least one group is servable and no check that blocks every group failed)."""
    verdict = record.get("verdict") or {}
    groups = verdict.get("customer_groups")
    checks = verdict.get("checks", [])
    if isinstance(groups, dict) and groups:
        checks = [c for c in checks if not str(c.get("scope", "model")).startswith("group:")]
        if not any(isinstance(entry, dict) and entry.get("servable") is True for entry in groups.values()):
            return ["no customer group is servable"]
    failures = [f"{c.get('name')}={c.get('value')} (threshold {c.get('threshold')})"
                for c in checks if not c.get("passed")]
    if verdict.get("promoted") is not True:
        failures.insert(0, "verdict.promoted is not true")
    if not verdict.get("checks"):
        failures.append("the verdict records no checks")
    return failures


def group_refusal(record: dict[str, Any], customer: str) -> str | None:
    """Why the risk gate did not clear the model for this customer group, or None when it did (a verdict from before
    groups were judged apart clears every group it passed)."""
    groups = (record.get("verdict") or {}).get("customer_groups")
    if not isinstance(groups, dict) or customer not in groups:
        return None
    entry = groups[customer]
    if not isinstance(entry, dict) or entry.get("servable") is True:
        return None
    return str(entry.get("reason") or "the risk gate did not clear the model for these customers")
