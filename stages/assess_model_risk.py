"""Stage assess_model_risk@<code>: the risk and fairness gate. Writes one verdict per product; a model whose
verdict fails is never promoted (``pricetrail promote`` reads the verdict)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd
from dvc_data.hashfile.hash_info import HashInfo
from dvc_data.hashfile.meta import Meta
from dvc_data.hashfile.tree import Tree

from pricetrail.modeling.bundle import ModelBundle, load_bundle
from pricetrail.pricing.decision import DecisionSettings
from pricetrail.project import stage
from pricetrail.project.config import load_params, section
from pricetrail.project.files import atomic_path, file_md5, read_json, write_json
from pricetrail.project.paths import ProductPaths
from pricetrail.recommend import PriceContext, observed_price_range, recommend_price
from pricetrail.registry import observed_price_ranges
from pricetrail.risk import (
    PriceCurve,
    baseline_prediction,
    fairness_checks,
    group_baseline_checks,
    price_response_checks,
    risk_checks,
    verdict,
)
from pricetrail.service import PriceRequest, recommend, served_from_bundle

log = logging.getLogger("pricetrail.assess")


def dvc_hash(path: Path) -> str:
    """The hash dvc.lock records for a dependency: a file's md5, or a folder's ``<md5>.dir``, built by DVC's own
    tree code from its files' md5s (so it is the hash DVC computes, whatever DVC version serialises it)."""
    if path.is_file():
        return file_md5(path)
    tree = Tree()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        tree.add(file.relative_to(path).parts, Meta(), HashInfo("md5", file_md5(file)))
    tree.digest()
    return str(tree.hash_info.value)


# Grid points of the price-response check: twice the served default, so a rise between two served points shows.
GATE_GRID = 201
CUSTOMER_GROUPS = {"True": "registered", "False": "guest"}


def price_curves(bundle: ModelBundle, settings: dict) -> dict[str, PriceCurve]:
    """Each customer group's predicted demand over the prices it paid (``bundle.reference``: every split, as the
    router's grid), the day after the history ends (the state a served model prices from), and its elasticity at
    the group's median training price (recorded in the checkpoint)."""
    assert bundle.daily is not None and bundle.reference is not None
    day = str((pd.to_datetime(bundle.daily["day"]).max() + pd.Timedelta(days=1)).date())
    curves = {}
    for group, registered in (("registered", True), ("guest", False)):
        if int((bundle.reference["is_registered"] == registered).sum()) < 2:
            continue
        low, high = observed_price_range(bundle.reference, registered)
        if high - low < 0.005:  # one price only: no grid to check (the detail lists the groups that were)
            log.info("%s: %s customers paid one price (%g); no price-response curve to check", CODE, group, low)
            continue
        result = recommend_price(bundle, PriceContext(date=day, is_registered=registered), grid_size=GATE_GRID,
                                 min_distinct_prices=int(settings["min_distinct_prices"]),
                                 max_band_share=float(settings["max_band_share"]))
        curves[group] = PriceCurve(prices=result.curve["price"].to_numpy(),
                                   quantity=result.curve["expected_quantity"].to_numpy(),
                                   elasticity=result.elasticity.get("value"),
                                   median_price=float(result.elasticity["at_price"]))
    return curves


def decision_curves(bundle: ModelBundle, groups: dict, settings: DecisionSettings) -> pd.DataFrame:
    """Each customer group's revenue (or profit) per day over its prices, with the plausible curves' 90% band, the
    status quo and the decided price, as the router would answer the day after the history (the decision plot)."""
    assert bundle.reference is not None and bundle.daily is not None
    served = served_from_bundle(bundle, observed_price_ranges(bundle.reference),
                                {"promoted": True, "checks": [], "customer_groups": groups})
    day = str((pd.to_datetime(bundle.daily["day"]).max() + pd.Timedelta(days=1)).date())
    frames = []
    for group in ("registered", "guest"):
        if groups and not (groups.get(group) or {}).get("servable"):
            continue
        answer = recommend(served, PriceRequest(date=day, customer=group, points=101), (), settings)
        curve = pd.DataFrame(answer["curve"])
        if "expected_revenue_per_day_p05" not in curve.columns:
            continue
        decision = answer["decision"]
        frames.append(pd.DataFrame({
            "customer": group, "price": curve["price"], "revenue_per_day": curve["expected_revenue_per_day"],
            "revenue_per_day_p05": curve["expected_revenue_per_day_p05"],
            "revenue_per_day_p95": curve["expected_revenue_per_day_p95"],
            "status_quo": (decision.get("status_quo") or {}).get("price"), "decided": decision["price"],
            "decision": decision["action"]}))
    columns = ["customer", "price", "revenue_per_day", "revenue_per_day_p05", "revenue_per_day_p95", "status_quo",
               "decided", "decision"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def main(root: Path) -> None:
    paths = ProductPaths(CODE)
    params = load_params(root)
    settings = section(params, "assess_model_risk")
    sensitive = str(settings["sensitive_feature"])
    predictions = pd.read_parquet(root / paths.predictions)
    train = pd.read_parquet(root / paths.split("train"))
    baseline = baseline_prediction(train["quantity"].to_numpy(dtype="float64"))
    risk, risk_metrics = risk_checks(predictions, baseline_quantity=baseline,
                                     min_improvement=float(settings["min_improvement_over_baseline"]))
    # The router prices registered customers and guests apart: with is_registered as the sensitive feature each
    # group is judged on its own, and one that cannot be assessed blocks no other.
    names = CUSTOMER_GROUPS if sensitive == "is_registered" else None
    fairness, groups = fairness_checks(predictions, sensitive=sensitive,
                                       max_mae_difference=float(settings["max_mae_difference"]),
                                       max_mean_outcome_difference=float(settings["max_mean_outcome_difference"]),
                                       min_group_size=int(settings["min_group_size"]),
                                       scale=str(settings.get("fairness_scale", "log")), names=names)
    by_group = group_baseline_checks(predictions, baseline_quantity=baseline, sensitive=sensitive, names=names,
                                     min_improvement=float(settings["min_group_improvement"])) if names else []
    bundle = load_bundle(root / paths.checkpoint, root / paths.preprocessor, daily=root / paths.daily)
    # The grid the router serves: every price the product sold at up to the data's end (registry.price_range).
    seen = pd.concat([pd.read_parquet(root / paths.split(name), columns=["unit_price", "is_registered"])
                      for name in ("train", "validation", "test")], ignore_index=True)
    bundle = dataclasses.replace(bundle, reference=seen)
    response = price_response_checks(price_curves(bundle, settings),
                                     min_elasticity=float(settings["min_elasticity"]),
                                     max_elasticity=float(settings["max_elasticity"]))
    outcome = verdict([*risk, *by_group, *fairness, *response])
    model_version = str(read_json(root / paths.test_metrics)["model_version"])
    record = {
        "stockcode": CODE,
        "promoted": outcome["passed"],
        "model_version": model_version,
        "failed_checks": outcome["failed_checks"],
        "checks": outcome["checks"],
        "customer_groups": outcome.get("groups", {}),
        "risk": risk_metrics,
        "baseline_quantity": baseline,
        "groups": groups.to_dict(orient="records"),
        "sensitive_feature": sensitive,
        "lineage": {
            "features_md5": file_md5(root / paths.lines),
            "daily_md5": file_md5(root / paths.daily),
            "preprocessor_md5": file_md5(root / paths.preprocessor),
            "checkpoint_md5": file_md5(root / paths.checkpoint),
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
        "params": {"assess_model_risk": settings},
    }
    write_json(root / paths.verdict, record)
    decision_settings = DecisionSettings.from_params(section(params, "decision"))
    with atomic_path(root / paths.decision_plot) as tmp:
        decision_curves(bundle, outcome.get("groups", {}), decision_settings).to_csv(tmp, index=False)
    if outcome["passed"]:
        log.info("%s: model %s passed every check", CODE, model_version)
    else:
        log.warning("%s: model %s NOT promotable; failed: %s", CODE, model_version, ", ".join(outcome["failed_checks"]))


if __name__ == "__main__":
    CODE = stage.stockcode_argument(__doc__ or "")
    stage.run(f"assess_model_risk@{CODE}", main)
