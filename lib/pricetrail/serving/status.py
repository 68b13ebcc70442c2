"""A product's serving status and the lineage of its served model, as the router lists them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pricetrail.registry import records
from pricetrail.registry.product_record import ProductRecord, verdict_failures
from pricetrail.serving.loading import NotServable


def status(product: ProductRecord, description: str = "") -> dict[str, Any]:
    """A product's serving status for listings: servable or not and why, version, verdicts, training dates."""
    latest = product.latest or {}
    base: dict[str, Any] = {"stockcode": product.stockcode, "description": description,
                            "latest_decision": _decision(latest) if latest else None}
    if product.record is None:
        return {**base, "servable": False, "reason": "no model has passed its gates yet (nothing promoted)",
                "promoted_version": None, "verdict": None, "training_data": None}
    record = product.record
    failures = verdict_failures(record)
    reason = (f"the served record's verdict did not pass: {'; '.join(failures)}" if failures else
              f"serving {record['version']} ({record.get('served_by', 'promoted')} {record.get('served_since')})")
    kept = product.unpromoted_candidate()
    if not failures and kept:
        reason += f"; the latest weekly run ({kept.get('time')}) did not promote its model: {kept.get('reason')}"
    return {**base, "servable": not failures, "reason": reason, "promoted_version": record["version"],
            "served_by": record.get("served_by"), "served_since": record.get("served_since"),
            "verdict": {"passed": not failures, "checks": record.get("verdict", {}).get("checks", [])},
            "training_data": record.get("training_data"), "metrics": record.get("metrics")}


def _decision(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry.get(key) for key in ("time", "action", "version", "candidate", "reason")}


def lineage(registry_dir: Path, product: ProductRecord) -> dict[str, Any]:
    """What produced the served model: data, params, code and metric hashes per stage, and the git commit."""
    if product.record is None:
        raise NotServable(f"stockcode {product.stockcode} serves no model: none has passed its gates")
    version = product.record["version"]
    path = registry_dir / product.stockcode / records.VERSIONS / f"{version}.json"
    full = records.parse_record(path.read_text(encoding="utf-8"), str(path), product.stockcode) if (
        path.is_file()) else product.record
    code_prefixes = ("lib/", "stages/")
    stages = {}
    for name, entry in (full.get("stages") or {}).items():
        deps = dict(entry.get("deps") or {})  # {path: hash}, as dvclock.compact_entries stores them
        outs = dict(entry.get("outs") or {})
        stages[name] = {
            "cmd": entry.get("cmd"),
            "code": {p: h for p, h in deps.items() if p.startswith(code_prefixes)},
            "data": {p: h for p, h in deps.items() if not p.startswith(code_prefixes)},
            "params": entry.get("params", {}),
            "metrics": {p: h for p, h in outs.items() if p.startswith("metrics/")},
            "outs": {p: h for p, h in outs.items() if not p.startswith("metrics/")},
        }
    return {"stockcode": product.stockcode, "version": version, "git_commit": full.get("git_commit"),
            "git_dirty": full.get("git_dirty"), "promoted_at": full.get("promoted_at"),
            "data": dict((full.get("verdict") or {}).get("lineage", {})),
            "artifacts": {name: a.to_dict() for name, a in records.artifacts_of(full).items()},
            "training_data": full.get("training_data"), "metrics": full.get("metrics"),
            "verdict_params": (full.get("verdict") or {}).get("params", {}), "stages": stages}
