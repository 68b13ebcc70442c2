"""Stage ``assess_model_risk@<code>``: the risk and fairness gate. Writes one verdict per product; a model whose
verdict fails is never promoted (``pricetrail promote`` reads the verdict)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pricetrail.gates.assessment import RiskSettings, assess
from pricetrail.modeling.exported import load_serving_model
from pricetrail.pricing.decision import DecisionSettings
from pricetrail.project.config import load_params, section
from pricetrail.project.dvc_lock import dvc_hash
from pricetrail.project.files import atomic_path, file_md5, read_json, write_json
from pricetrail.project.paths import ProductPaths

logger = logging.getLogger(__name__)


def assess_model_risk(root: Path, code: str) -> None:
    paths = ProductPaths(code)
    params = load_params(root)
    settings = RiskSettings.from_params(section(params, "assess_model_risk"))
    decision_settings = DecisionSettings.from_params(section(params, "decision"))
    predictions = pd.read_parquet(root / paths.predictions)
    train = pd.read_parquet(root / paths.split("train"))
    # The gate prices the exported model the router will load (serving.json), not the torch checkpoint.
    model = load_serving_model(root / paths.serving_model)
    daily = pd.read_parquet(root / paths.daily)
    # Every price the product sold at up to the data's end: the grid the router will serve (promotion records it).
    seen = pd.concat([pd.read_parquet(root / paths.split(name), columns=["unit_price", "is_registered"])
                      for name in ("train", "validation", "test")], ignore_index=True)
    result = assess(predictions, train["quantity"].to_numpy(dtype="float64"), model, daily, seen, settings,
                    decision_settings)
    outcome = result.outcome
    model_version = str(read_json(root / paths.test_metrics)["model_version"])
    if model.version != model_version:
        raise ValueError(f"{paths.serving_model} is version {model.version}, the tested model {model_version}: "
                         f"rerun tune_primary_model@{code}")
    write_json(root / paths.verdict, {
        "stockcode": code,
        "promoted": outcome["passed"],
        "model_version": model_version,
        "failed_checks": outcome["failed_checks"],
        "checks": outcome["checks"],
        "customer_groups": outcome.get("groups", {}),
        "risk": result.risk_metrics,
        "baseline_quantity": result.baseline_quantity,
        "groups": result.groups.to_dict(orient="records"),
        "sensitive_feature": settings.sensitive_feature,
        "price_decisions": result.price_decisions(),
        "lineage": {
            "features_md5": file_md5(root / paths.lines),
            "daily_md5": file_md5(root / paths.daily),
            "preprocessor_md5": file_md5(root / paths.preprocessor),
            "checkpoint_md5": file_md5(root / paths.checkpoint),
            "serving_md5": file_md5(root / paths.serving_model),
            "train_md5": file_md5(root / paths.split("train")),
            "predictions_md5": file_md5(root / paths.predictions),
            # The same inputs as this stage's dvc.lock entry records them (path: md5, a folder as <md5>.dir), so
            # the verdict joins dvc.lock and the registry's out_md5 on DVC's own hashes. All are declared deps.
            "dvc_deps": {path.as_posix(): dvc_hash(root / path) for path in (
                paths.features_dir, paths.preprocessed_dir, paths.model_dir, paths.inference_dir,
                paths.test_metrics)},
        },
        # Exactly the params this stage declares, keyed as dvc.lock keys them: the other stages' params are in
        # their own dvc.lock entries, which the registry records beside this verdict.
        "params": {"assess_model_risk": settings.as_params()},
    })
    with atomic_path(root / paths.decision_plot) as tmp:
        result.decision_plot().to_csv(tmp, index=False)
    if outcome["passed"]:
        logger.info("%s: model %s passed every check", code, model_version)
    else:
        logger.warning("%s: model %s NOT promotable; failed: %s", code, model_version,
                       ", ".join(outcome["failed_checks"]))
