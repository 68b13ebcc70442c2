"""A pipeline run in miniature for the registry tests: one product's outputs in a DVC cache and the dvc.lock
entries that name them, without running DVC."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import yaml

from pricetrail.project.files import file_md5, write_json
from pricetrail.project.paths import ProductPaths
from pricetrail.registry.artifacts import dvc_cache_dir, object_relpath

CODE = "85123A"
OTHER = "22423"


def write_daily(path: Path, start: str, days: int, marker: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dates = pd.date_range(start, periods=days, freq="D")
    pd.DataFrame({"invoice_date": dates, "unit_price": [marker] * days, "quantity": range(days)}).to_parquet(
        path, index=False)


def _cache(root: Path, path: Path) -> None:
    """Put a workspace file into the DVC cache the way `dvc commit` does (content-addressed, read-only)."""
    target = dvc_cache_dir(root) / object_relpath(file_md5(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copyfile(path, target)
        target.chmod(0o444)


def cache_listing(root: Path, folder: Path) -> str:
    """Put a folder's listing into the DVC cache the way `dvc commit` does; return its hash (``<md5>.dir``)."""
    listing = json.dumps([{"md5": file_md5(path), "relpath": path.relative_to(folder).as_posix()}
                          for path in sorted(folder.rglob("*")) if path.is_file()], sort_keys=True).encode()
    digest = hashlib.md5(listing).hexdigest()
    target = dvc_cache_dir(root) / object_relpath(digest)
    target = target.with_name(target.name + ".dir")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.write_bytes(listing)
    return f"{digest}.dir"


def make_run(root: Path, code: str = CODE, *, version: str = "aaaa0000", marker: float = 1.0,
             failed: tuple[str, ...] = (), drift: str = "passed",
             price_decisions: dict | None = None) -> None:
    """The outputs of one product's chain as the stages and DVC leave them: files, cache objects, dvc.lock."""
    paths = ProductPaths(code)
    (root / ".dvc").mkdir(exist_ok=True)
    write_daily(root / paths.lines, "2011-01-01", 60, marker)
    write_daily(root / paths.split("train"), "2011-01-01", 40, marker)
    for path in (paths.daily, paths.checkpoint, paths.preprocessor, paths.serving_model):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(f"{version} {path.name}".encode())
    files = [paths.lines, paths.split("train"), paths.daily, paths.checkpoint, paths.preprocessor,
             paths.serving_model]
    for path in files:
        _cache(root, root / path)
    lock_path = root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.is_file() else {"schema": "2.0", "stages": {}}
    outs = {"etl_pipeline": paths.features_dir, "preprocess": paths.preprocessed_dir,
            "tune_primary_model": paths.model_dir}
    for stage, out in outs.items():
        lock["stages"][f"{stage}@{code}"] = {"cmd": f"python stages/{stage}.py --stockcode {code}",
                                             "outs": [{"path": out.as_posix(), "hash": "md5",
                                                       "md5": cache_listing(root, root / out)}]}
    lock_path.write_text(yaml.safe_dump(lock))
    features_md5 = file_md5(root / paths.lines)
    write_json(root / paths.drift_metrics, {"drift_detected": drift != "passed", "drifted_columns":
                                            [] if drift == "passed" else ["unit_price"], "on_drift": drift,
                                            "features_md5": features_md5,
                                            "current": {"first_date": "2011-02-01", "last_date": "2011-03-01"}})
    if drift in ("passed", "retrain"):
        write_json(root / paths.drift_gate, {"stockcode": code, "passed": True, "features_md5": features_md5})
    else:
        (root / paths.drift_gate).unlink(missing_ok=True)
    checks = [{"name": name, "passed": name not in failed, "value": 0.9, "threshold": 0.05} for name in
              ("beats_baseline", "fairness_mean_outcome_difference")]
    write_json(root / paths.test_metrics, {"rmsle": 0.5, "mae": 1.0, "model_version": version})
    write_json(root / paths.verdict, {
        "stockcode": code, "promoted": not failed, "model_version": version, "checks": checks,
        "failed_checks": list(failed), "risk": {"baseline_rmsle": 0.7},
        "params": {"assess_model_risk": {"min_group_size": 20}},
        "lineage": {"features_md5": features_md5, "daily_md5": file_md5(root / paths.daily),
                    "checkpoint_md5": file_md5(root / paths.checkpoint),
                    "serving_md5": file_md5(root / paths.serving_model),
                    "preprocessor_md5": file_md5(root / paths.preprocessor),
                    "train_md5": file_md5(root / paths.split("train"))},
        **({} if price_decisions is None else {"price_decisions": price_decisions})})


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "registry").rglob("*")) if p.is_file()}
