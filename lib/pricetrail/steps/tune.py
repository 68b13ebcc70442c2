"""Stage ``tune_primary_model@<code>``: Optuna tunes the feed-forward demand model; the best config is retrained
with early stopping (best weights restored), its price response refit by least squares, and saved as a
weights-only checkpoint with its smearing factor, the training prices of each customer group and the order-rate
elasticity (how the price moves the number of lines per day: :mod:`pricetrail.modeling.order_rate`); and exported
as the numbers the router serves (``serving.json``: :mod:`pricetrail.modeling.export`), checked against torch and
the fitted transformer on a probe of the training rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pricetrail.data.etl import TARGET
from pricetrail.data.preprocess import feature_names, load_preprocessor
from pricetrail.modeling.bundle import load_bundle
from pricetrail.modeling.checkpoint import model_version, save_checkpoint
from pricetrail.modeling.export import export_serving_model
from pricetrail.modeling.metrics import regression_metrics
from pricetrail.modeling.product_model import fit_product_model
from pricetrail.modeling.tuning import TuneSettings
from pricetrail.project.config import load_params, section, seed_of
from pricetrail.project.files import file_md5, write_json
from pricetrail.project.paths import ProductPaths


def tune_primary_model(root: Path, code: str) -> None:
    paths = ProductPaths(code)
    params = load_params(root)
    settings = TuneSettings.from_params(section(params, "tune_primary_model"))
    seed = seed_of(params)
    preprocessor = load_preprocessor(root / paths.preprocessor)
    train = pd.read_parquet(root / paths.split("train"))
    validation = pd.read_parquet(root / paths.split("validation"))
    model = fit_product_model(train, validation, preprocessor, settings, seed)
    result = model.tuning
    version = model_version(result.network, result.best_params)
    records = model.metadata()
    save_checkpoint(root / paths.checkpoint, result.network, config=result.best_params,
                    feature_names=feature_names(preprocessor), metadata={
                        "stockcode": code,
                        "model_version": version,
                        "features_md5": file_md5(root / paths.lines),
                        "preprocessor_md5": file_md5(root / paths.preprocessor),
                        "train_rows": len(train),
                        "final_fit_rows": records.pop("final_fit_rows"),
                        "best_epoch": records.pop("best_epoch"),
                        "seed": seed,
                        **records,
                    })
    # Read back as every later stage reads it, then exported: the served numbers are proven from the saved file.
    export_serving_model(load_bundle(root / paths.checkpoint, root / paths.preprocessor), train).save(
        root / paths.serving_model)
    # Out-of-sample: the selected network before any final refit on the validation rows.
    metrics = regression_metrics(validation[TARGET].to_numpy(dtype="float32"), result.validation_prediction)
    write_json(root / paths.tuning_record, {"best_params": result.best_params, "trials": result.trials,
                                            "history": result.train_result.history})
    write_json(root / paths.validation_metrics, {
        **metrics,
        "model_version": version,
        "best_epoch": result.train_result.best_epoch,
        "epochs_run": result.train_result.epochs_run,
        "trials_complete": result.n_trials_complete,
        "trials_pruned": result.n_trials_pruned,
        "trials_failed": result.n_trials_failed,
        "final_fit_rows": result.final_fit_rows,
    })
