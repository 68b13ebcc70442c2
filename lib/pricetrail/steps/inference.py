"""Stage ``inference_primary_model@<code>``: test-set predictions and metrics, SHAP values and their summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pricetrail.data.etl import TARGET
from pricetrail.data.preprocess import transform
from pricetrail.modeling.bundle import load_bundle
from pricetrail.modeling.explain import InferenceSettings, explain, mean_abs_shap
from pricetrail.modeling.metrics import expected_quantity, regression_metrics
from pricetrail.modeling.training import set_seed
from pricetrail.project.config import load_params, section, seed_of
from pricetrail.project.files import atomic_path, write_json
from pricetrail.project.paths import ProductPaths


def inference_primary_model(root: Path, code: str) -> None:
    paths = ProductPaths(code)
    params = load_params(root)
    settings = InferenceSettings.from_params(section(params, "inference_primary_model"))
    sensitive = str(section(params, "assess_model_risk")["sensitive_feature"])
    seed = seed_of(params)
    set_seed(seed)
    bundle = load_bundle(root / paths.checkpoint, root / paths.preprocessor)
    train = pd.read_parquet(root / paths.split("train"))
    test = pd.read_parquet(root / paths.split("test"))
    y_pred = bundle.predict_log_quantity(test)
    metrics = regression_metrics(test[TARGET].to_numpy(), y_pred)

    rng = np.random.default_rng(seed)
    background = train.iloc[np.sort(rng.choice(len(train), min(len(train), settings.shap_background_rows),
                                               replace=False))]
    explained = test.iloc[: settings.shap_explain_rows]
    explanation = explain(bundle.network, transform(bundle.preprocessor, background),
                          transform(bundle.preprocessor, explained), bundle.checkpoint["feature_names"],
                          method=settings.shap_method)
    importance = mean_abs_shap(explanation.values)

    predictions = pd.DataFrame({
        "invoice_date": test["invoice_date"].to_numpy(),
        "unit_price": test["unit_price"].to_numpy(),
        sensitive: test[sensitive].to_numpy(),
        "y_true": test[TARGET].to_numpy(),
        "y_pred": y_pred,
        "quantity": test["quantity"].to_numpy(),
        # The expectation (smearing-corrected), what revenue is computed from; not expm1 of the mean log.
        "predicted_quantity": expected_quantity(y_pred, bundle.smearing),
    })
    with atomic_path(root / paths.predictions) as tmp:
        predictions.to_parquet(tmp, index=False)
    with atomic_path(root / paths.shap_values) as tmp:
        explanation.values.assign(invoice_date=explained["invoice_date"].to_numpy()).to_parquet(tmp, index=False)
    with atomic_path(root / paths.shap_plot) as tmp:
        importance.to_csv(tmp, index=False)
    with atomic_path(root / paths.prediction_plot) as tmp:
        predictions[["quantity", "predicted_quantity"]].round(4).to_csv(tmp, index=False)
    # Calibration of the level on held-out rows: mean expected quantity / mean actual quantity (1.0 is exact).
    metrics["mean_quantity_ratio"] = float(predictions["predicted_quantity"].mean() / predictions["quantity"].mean())
    write_json(root / paths.test_metrics, {**metrics, "model_version": bundle.version,
                                           "shap_method": explanation.method,
                                           "shap_base_value": explanation.base_value,
                                           "top_feature": str(importance.iloc[0]["feature"])})
