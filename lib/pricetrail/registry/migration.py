"""Migrating a registry of the first layout (artifact copies in git) to pointers into the DVC cache."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from pricetrail.project.dvc_lock import compact_entries, out_hashes
from pricetrail.project.files import atomic_path, file_md5, read_json, write_json
from pricetrail.registry.artifacts import (
    Artifact,
    dvc_cache_dir,
    object_relpath,
)
from pricetrail.registry.decision_log import write_served
from pricetrail.registry.drift_reference import served_model_reference
from pricetrail.registry.promotion import workspace_paths
from pricetrail.registry.records import (
    DRIFT_REFERENCE,
    HISTORY,
    LEGACY_NAMES,
    LEGACY_OPTIONAL,
    SCHEMA,
    SERVED,
    VERSIONS,
    RegistryError,
    product_dir,
    registry_lock,
)


def migrate_layout(root: Path, codes: Iterable[str]) -> list[str]:
    """Convert registry folders of the old layout (binaries in versions/<v>/) to pointers; return what changed.

    Each binary is first put into the DVC cache under its md5 (verified), then the version's record is written,
    and only then is the old folder removed: an interruption at any point loses nothing and can be rerun.
    """
    with registry_lock(root):
        return _migrate_layout(root, codes)


def _migrate_layout(root: Path, codes: Iterable[str]) -> list[str]:
    cache = dvc_cache_dir(root)
    changed = []
    for code in codes:
        directory = product_dir(root, code)
        old_versions = sorted(p for p in (directory / VERSIONS).glob("*") if p.is_dir()) if (
            directory / VERSIONS).is_dir() else []
        if not old_versions:
            continue
        old_served = read_json(directory / SERVED) if (directory / SERVED).is_file() else None
        old_history = []
        if (directory / HISTORY).is_file():
            old_history = [json.loads(line) for line in (directory / HISTORY).read_text(encoding="utf-8").splitlines()
                           if line.strip()]
        records = {}
        for folder in old_versions:
            records[folder.name] = _migrate_version(root, code, folder, cache)
        new_history = []
        for entry in old_history:
            if "action" in entry:
                new_history.append(entry)
                continue
            version = entry.get("version")
            new_history.append({"time": entry.get("promoted_at"), "action": "promoted", "version": version,
                                "candidate": version, "reason": "promoted (migrated from the old registry layout)",
                                "git_commit": records.get(version, {}).get("git_commit"), "git_dirty": None})
        with atomic_path(directory / HISTORY) as tmp:
            tmp.write_text("".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in new_history),
                           encoding="utf-8")
        if old_served is not None and old_served.get("version") in records:
            record = records[old_served["version"]]
            write_served(root, code, record, served_by="promoted", since=str(record.get("promoted_at")),
                          reason="migrated from the old registry layout")
            write_json(directory / DRIFT_REFERENCE, served_model_reference(code, record))
        for folder in old_versions:
            shutil.rmtree(folder)
        changed.append(code)
    return changed


def _migrate_version(root: Path, code: str, folder: Path, cache: Path) -> dict[str, Any]:
    version = folder.name
    lineage = read_json(folder / "lineage.json") if (folder / "lineage.json").is_file() else {}
    verdict = read_json(folder / "verdict.json") if (folder / "verdict.json").is_file() else {}
    artifacts = {}
    for name, relpath in workspace_paths(code).items():
        if name in LEGACY_OPTIONAL:  # the old layout predates it
            continue
        if name in LEGACY_NAMES:  # and saved the preprocessor with skops
            name, relpath = LEGACY_NAMES[name], relpath.with_name(LEGACY_NAMES[name])
        source = folder / name
        if not source.is_file():
            raise RegistryError(f"{folder} lacks {name}; cannot migrate version {version} of {code} without it")
        md5 = file_md5(source)
        target = cache / object_relpath(md5)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
            target.chmod(0o444)  # DVC keeps cache objects read-only
        # The old lineage kept the run's dvc.lock entries: they name the DVC output (and its .dir hash) that held
        # this file, which is what `dvc gc --all-commits` keeps.
        outs = out_hashes(lineage.get("dvc_lock", {}) or {})
        out = next((o for o in outs if relpath.as_posix().startswith(o.rstrip("/") + "/") or relpath.as_posix() == o),
                   None)
        artifacts[name] = Artifact(name=name, path=relpath.as_posix(), md5=md5, size=source.stat().st_size, out=out,
                                   out_md5=outs.get(out) if out else None).to_dict()
    reference = pd.read_parquet(folder / "reference.parquet", columns=["invoice_date"])
    dates = pd.to_datetime(reference["invoice_date"])
    record = {
        "schema": SCHEMA, "stockcode": code, "version": version, "promoted_at": lineage.get("promoted_at"),
        "git_commit": lineage.get("git_commit"), "git_dirty": None, "artifacts": artifacts,
        "training_data": {"first_date": str(dates.min().date()), "last_date": str(dates.max().date()),
                          "rows": len(reference)},
        "verdict": {"promoted": bool(verdict.get("promoted")), "checks": verdict.get("checks", []),
                    "params": verdict.get("params", {}), "lineage": verdict.get("lineage", {})},
        "metrics": {"test_rmsle": verdict.get("risk", {}).get("model_rmsle"),
                    "test_mae": verdict.get("risk", {}).get("model_mae"),
                    "baseline_rmsle": verdict.get("risk", {}).get("baseline_rmsle")},
        "drift": "migrated from the old registry layout",
        "stages": compact_entries(lineage.get("dvc_lock", {}) or {}),
    }
    write_json(product_dir(root, code) / VERSIONS / f"{version}.json", record)
    return record
