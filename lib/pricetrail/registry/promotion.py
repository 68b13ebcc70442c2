"""Promotion: a candidate that passed both gates, whose artifacts match dvc.lock, becomes the served version."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pricetrail.data.price_ranges import observed_price_ranges
from pricetrail.project.dvc_lock import compact_entries, entries_by_product, out_hashes, product_entries, read_stages
from pricetrail.project.files import file_md5, read_json, write_json
from pricetrail.project.git_state import git_state
from pricetrail.project.paths import ProductPaths
from pricetrail.registry.artifacts import (
    Artifact,
    ArtifactError,
    describe_file,
    dvc_cache_dir,
    local_sources,
    object_relpath,
    resolve,
)
from pricetrail.registry.decision_log import (
    Decision,
    commit_decision,
    complete_interrupted,
    keep_decision,
    record_if_new,
    remove_interrupted_writes,
)
from pricetrail.registry.drift_reference import served_model_reference
from pricetrail.registry.records import (
    DRIFT_REFERENCE,
    SCHEMA,
    SERVING_ARTIFACTS,
    VERSIONS,
    product_dir,
    read_record,
    registry_lock,
    rolled_back_versions,
    served_model,
    timestamp,
)
from pricetrail.registry.state_pointer import record_state

logger = logging.getLogger(__name__)


def workspace_paths(code: str) -> dict[str, Path]:
    paths = ProductPaths(code)
    return {"model.pt": paths.checkpoint, "preprocessor.json": paths.preprocessor, "daily.parquet": paths.daily,
            "reference.parquet": paths.split("train"), "serving.json": paths.serving_model}


def _drift_state(root: Path, paths: ProductPaths, features_md5: str) -> tuple[bool, str]:
    """(passed, note) of the drift gate on the current data."""
    gate = root / paths.drift_gate
    metrics_path = root / paths.drift_metrics
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    drifted = ", ".join(metrics.get("drifted_columns", []))
    if not gate.is_file() or read_json(gate).get("features_md5") != features_md5:
        if metrics.get("drift_detected"):
            return False, f"the drift gate failed on the current data (drifted: {drifted})"
        return False, "the drift gate has not passed on the current data"
    if metrics.get("drift_detected"):
        return True, (f"drift detected on the current data ({drifted}) and let through by "
                      f"data_drift_check.on_drift={metrics.get('on_drift', 'retrain')}")
    return True, ""


def _candidate(root: Path, code: str, stages: Mapping[str, Any] | None = None, *,
               served_version: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """The record a promotion would serve, built from exactly the artifacts the verdict assessed; or why not.
    When the candidate is ``served_version`` already, every check is made but the record is only its version."""
    paths = ProductPaths(code)
    if not (root / paths.lines).is_file():
        return None, "no features: etl_pipeline has not run or failed"
    features_md5 = file_md5(root / paths.lines)
    passed, drift_note = _drift_state(root, paths, features_md5)
    if not passed:
        return None, drift_note
    if not (root / paths.verdict).is_file():
        return None, "no verdict: the chain did not reach assess_model_risk"
    verdict = read_json(root / paths.verdict)
    lineage = verdict.get("lineage", {})
    if lineage.get("features_md5") != features_md5:
        return None, "the verdict is stale: it was made on other data (rerun dvc repro)"
    candidate = str(verdict.get("model_version"))
    if not verdict.get("promoted"):
        failed = "; ".join(f"{c['name']}={c['value']} (threshold {c['threshold']})"
                           for c in verdict.get("checks", []) if not c["passed"])
        return None, f"model {candidate} failed its gate: {failed}"
    # Promote exactly what the risk gate assessed: each file on disk must be the one the verdict names.
    stages = read_stages(root) if stages is None else stages
    outs = out_hashes(stages)
    artifacts = {}
    for name, relpath in workspace_paths(code).items():
        expected = lineage.get(SERVING_ARTIFACTS[name])
        artifact = describe_file(root, name, relpath, outs)
        if artifact.md5 != expected:
            return None, (f"{relpath} (md5 {artifact.md5}) is not the file assess_model_risk@{code} assessed "
                          f"(md5 {expected}); run `dvc repro assess_model_risk@{code}` before promoting")
        if artifact.out_md5 is None:
            return None, f"{relpath} is not recorded as a DVC output in dvc.lock; run `dvc repro` (or dvc commit)"
        mismatch = _lock_mismatch(root, artifact)
        if mismatch:
            return None, mismatch
        artifacts[name] = artifact
    cache = dvc_cache_dir(root)
    for artifact in artifacts.values():
        try:
            resolve(artifact, local_sources(root), owner=f"{code} candidate {candidate}")
        except ArtifactError as error:
            return None, f"{error} (the outputs must be in the DVC cache {cache} before they can be served)"
    if candidate == served_version:  # nothing to promote: its record exists (most products, most weeks)
        return {"version": candidate}, ""
    train_path = root / paths.split("train")
    wanted = [c for c in ("invoice_date", "unit_price", "is_registered") if c in pq.read_schema(train_path).names]
    train = pd.read_parquet(train_path, columns=wanted)
    dates = pd.to_datetime(train["invoice_date"])
    # The served grid is bounded by every price the product sold at up to the data's end, not the training split's
    # alone: a list-price change in the newest 30% of the data would otherwise be refused as "outside the range".
    seen = pd.concat([train] + [pd.read_parquet(root / paths.split(name), columns=["unit_price", "is_registered"])
                                for name in ("validation", "test") if (root / paths.split(name)).is_file()
                                and "is_registered" in wanted], ignore_index=True)
    test_metrics = read_json(root / paths.test_metrics) if (root / paths.test_metrics).is_file() else {}
    record = {
        "schema": SCHEMA,
        "stockcode": code,
        "version": candidate,
        "promoted_at": None,  # set when promoted
        **git_state(root).to_dict(),
        "artifacts": {name: artifact.to_dict() for name, artifact in artifacts.items()},
        "training_data": {"first_date": str(dates.min().date()), "last_date": str(dates.max().date()),
                          "rows": len(train)},
        "price_range": observed_price_ranges(seen),
        "verdict": {"promoted": True, "checks": verdict.get("checks", []), "params": verdict.get("params", {}),
                    "lineage": lineage, **({"customer_groups": verdict["customer_groups"]}
                                           if verdict.get("customer_groups") else {}),
                    **({"price_decisions": verdict["price_decisions"]} if verdict.get("price_decisions") else {})},
        "metrics": {"test_rmsle": test_metrics.get("rmsle"), "test_mae": test_metrics.get("mae"),
                    "baseline_rmsle": verdict.get("risk", {}).get("baseline_rmsle")},
        "drift": drift_note or "the drift gate passed on the current data",
        "stages": compact_entries(product_entries(stages, code)),
    }
    return record, ""


def _lock_mismatch(root: Path, artifact: Artifact) -> str | None:
    """Why dvc.lock's record of the output holding ``artifact`` does not name these bytes, or None.

    The version record carries the output's hash and the run's dvc.lock entries as lineage; promoting a file the
    lock does not name (outputs moved in, dvc.lock not yet merged: an interrupted bring-back) would record another
    run's lineage with this model for good.
    """
    assert artifact.out is not None and artifact.out_md5 is not None
    if not artifact.out_md5.endswith(".dir"):
        if artifact.out_md5 == artifact.md5:
            return None
        return (f"dvc.lock records {artifact.out} as {artifact.out_md5}, but it holds {artifact.md5}: the outputs "
                "changed without dvc.lock (an interrupted run?); `pricetrail run` settles it")
    digest = artifact.out_md5[: -len(".dir")]
    try:
        listing_path = dvc_cache_dir(root) / object_relpath(digest)
    except ArtifactError:
        return f"dvc.lock records {artifact.out} as {artifact.out_md5!r}, which is not a DVC folder hash"
    listing_path = listing_path.with_name(listing_path.name + ".dir")
    try:
        listing = json.loads(listing_path.read_text(encoding="utf-8"))
        recorded = {str(item["relpath"]): str(item["md5"]) for item in listing}
    except (OSError, ValueError, TypeError, KeyError) as error:
        return (f"the listing of {artifact.out} that dvc.lock records ({artifact.out_md5}) is not readable in the "
                f"DVC cache ({type(error).__name__}); `pricetrail run` (or `dvc commit`) records it")
    relpath = Path(artifact.path).relative_to(artifact.out).as_posix()
    if recorded.get(relpath) != artifact.md5:
        return (f"dvc.lock records {artifact.out} with {relpath} md5 {recorded.get(relpath)}, but the workspace holds "
                f"{artifact.md5}: the outputs changed without dvc.lock (an interrupted run?); `pricetrail run` "
                "settles it")
    return None


def promote(root: Path, code: str, *, now: datetime | None = None,
            stages: Mapping[str, Any] | None = None) -> Decision:
    """Serve the product's new model if it passed both gates on the current data; otherwise keep what is served.

    ``stages``: dvc.lock's entries, when the caller has them (promotion does not change dvc.lock, and parsing it
    per product made promoting a catalogue quadratic: 40 products, 55 s of YAML).
    """
    with registry_lock(root):
        return _promote(root, code, now=now, stages=read_stages(root) if stages is None else stages)


def _promote(root: Path, code: str, *, now: datetime | None, stages: Mapping[str, Any],
             dry_run: bool = False) -> Decision:
    stamp = timestamp(now)
    if not dry_run:
        remove_interrupted_writes(root, code)
        complete_interrupted(root, code, served_model(root, code))
        record_state(root, code, stages)
    served = served_model(root, code)
    served_version = served.version if served else None
    record, why_not = _candidate(root, code, stages, served_version=served_version)
    if record is None:
        decision = keep_decision(code, served_version, None, why_not)
        if not dry_run:
            record_if_new(root, code, decision, stamp)
        return decision
    candidate = record["version"]
    if candidate == served_version:
        return Decision(code, "unchanged", served_version, candidate, "the served model is already this one")
    if candidate in rolled_back_versions(root, code):
        decision = keep_decision(code, served_version, candidate,
                         f"model {candidate} was rolled back by an operator; a new model must replace it "
                         f"(or `pricetrail rollback {code} --to {candidate}`)")
        if not dry_run:
            record_if_new(root, code, decision, stamp)
        return decision
    record["promoted_at"] = stamp
    earlier = (served.record.get("verdict") or {}).get("price_decisions") if served else None
    if earlier:  # what the replaced model told the buyer: a change stays while this model does not doubt it
        record["earlier_decisions"] = {"version": served_version, "decisions": earlier}
    note = f"; {record['drift']}" if record["drift"].startswith("drift detected") else ""
    refused = {name: entry for name, entry in (record["verdict"].get("customer_groups") or {}).items()
               if not entry.get("servable")}
    if refused:
        note += "; " + "; ".join(f"{name} customers not priced by it ({', '.join(entry.get('failed_checks', []))})"
                                 for name, entry in refused.items())
    decision = Decision(code, "promoted", candidate, candidate,
                        f"passed the drift gate and assess_model_risk{note}")
    if dry_run:
        return decision
    commit_decision(root, code, record, decision, stamp, _reference_after_promotion(root, code, record),
                     from_version=served_version, metrics=record["metrics"])
    logger.info("%s: promoted model %s (was %s)", code, candidate, served_version)
    return decision


def _reference_after_promotion(root: Path, code: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The served model's training rows, unless an operator accepted newer data than the model learned from."""
    path = product_dir(root, code) / DRIFT_REFERENCE
    if path.is_file():
        current = read_json(path)
        if current.get("kind") == "accepted_drift" and str(current["window"][1]) > record["training_data"][
                "last_date"]:
            return current
    return served_model_reference(code, record)


def promote_all(root: Path, codes: Iterable[str], *, now: datetime | None = None,
                stages: Mapping[str, Any] | None = None, dry_run: bool = False) -> list[Decision]:
    """Promote each product on its own: one product's failure is reported as its decision and stops no other.
    ``dry_run``: the decisions promotion would take, with nothing written."""
    codes = list(codes)
    decisions: list[Decision] = []
    if not codes:
        return decisions
    with registry_lock(root):
        stages = read_stages(root) if stages is None else stages  # once for all: promotion leaves dvc.lock as it is
        views = entries_by_product(dict(stages), codes)  # each product's own entries: its outputs, its lineage
        for code in codes:
            try:
                decisions.append(_promote(root, code, now=now, stages=views[code], dry_run=dry_run))
            except (ValueError, OSError) as error:  # our errors are ValueErrors; a missing or unreadable file
                logger.error("%s: promotion failed: %s", code, error)
                decisions.append(Decision(code, "error", None, None, f"promotion failed: {error}"))
    return decisions


def refresh_lineage(root: Path, decisions: Iterable[Decision]) -> None:
    """After the drift gates settled, store the dvc.lock entries that will be committed with this promotion."""
    with registry_lock(root):
        _refresh_lineage(root, decisions)


def _refresh_lineage(root: Path, decisions: Iterable[Decision]) -> None:
    stages = read_stages(root)
    for decision in decisions:
        if decision.action != "promoted":
            continue
        code = decision.stockcode
        served = served_model(root, code)
        if served is None or served.version != decision.served_version:
            continue
        path = product_dir(root, code) / VERSIONS / f"{served.version}.json"
        write_json(path, {**read_record(path, code), "stages": compact_entries(product_entries(stages, code))})
