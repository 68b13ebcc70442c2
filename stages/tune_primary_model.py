"""Stage tune_primary_model@<code>: Optuna tunes the feed-forward demand model; the best config is retrained
with early stopping (best weights restored), its price response refit by least squares, and saved as a
weights-only checkpoint with its smearing factor, the training prices of each customer group and the order-rate
elasticity (how the price moves the number of lines per day: pricetrail.modeling.order_rate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pricetrail.data.etl import TARGET
from pricetrail.data.preprocess import feature_names, load_preprocessor, price_columns, transform
from pricetrail.modeling.checkpoint import model_version, save_checkpoint
from pricetrail.modeling.metrics import regression_metrics, smearing_factor
from pricetrail.modeling.order_rate import OrderRatePrior, fit_order_rate
from pricetrail.modeling.price_response import group_prices
from pricetrail.modeling.training import predict, set_seed
from pricetrail.modeling.tuning import FINAL_FIT_ROWS, tune
from pricetrail.project import stage
from pricetrail.project.config import load_params, section
from pricetrail.project.files import file_md5, write_json
from pricetrail.project.paths import ProductPaths

# monotone: demand non-increasing in the price by construction (model.PriceResponseNetwork); free: the plain MLP
# over every feature, kept to compare against (bench/pricing_benchmark.py --set).
PRICE_RESPONSES = ("monotone", "free")


def main(root: Path) -> None:
    paths = ProductPaths(CODE)
    params = load_params(root)
    settings = section(params, "tune_primary_model")
    seed = int(section(params, "base")["seed"])
    preprocessor = load_preprocessor(root / paths.preprocessor)
    train = pd.read_parquet(root / paths.split("train"))
    validation = pd.read_parquet(root / paths.split("validation"))
    x_train, x_val = transform(preprocessor, train), transform(preprocessor, validation)
    y_train, y_val = train[TARGET].to_numpy(dtype="float32"), validation[TARGET].to_numpy(dtype="float32")
    structure = str(settings.get("price_response", "monotone"))
    if structure not in PRICE_RESPONSES:
        raise ValueError(f"tune_primary_model.price_response={structure!r} is not accepted; use one of "
                         f"{list(PRICE_RESPONSES)}")
    final_fit_rows = str(settings.get("final_fit_rows", "train"))
    if final_fit_rows not in FINAL_FIT_ROWS:
        raise ValueError(f"tune_primary_model.final_fit_rows={final_fit_rows!r} is not accepted; use one of "
                         f"{list(FINAL_FIT_ROWS)}")
    order_rate = fit_order_rate(train, OrderRatePrior.from_params(settings.get("order_rate_prior")))
    set_seed(seed)
    result = tune(x_train, y_train, x_val, y_val, search_space=settings["search_space"],
                  n_trials=int(settings["n_trials"]), max_epochs=int(settings["max_epochs"]),
                  patience=int(settings["patience"]), timeout_seconds=settings.get("timeout_seconds"), seed=seed,
                  price_columns=price_columns(preprocessor) if structure == "monotone" else None,
                  pool_trials=int(settings.get("pool_trials", 1)), final_fit_rows=final_fit_rows)
    version = model_version(result.network, result.best_params)
    if result.final_fit_rows == "train_and_validation":
        # Duan's estimate from the residuals of the fit that gave the served weights: their mean is 0, so the factor
        # corrects the retransformation only. The validation rows' own residuals would add their level (the newest
        # rows sit above the fitted average): measured on a seeded product's test split, 1.09x the mean actual
        # quantity against 1.06x from these.
        smearing = smearing_factor(np.concatenate([y_train, y_val]),
                                   predict(result.network, np.vstack([x_train, x_val])))
    else:
        # the held-out residuals of the training-row fit (the served network is the one validation scored)
        smearing = smearing_factor(y_val, result.validation_prediction)
    groups = {name: group_prices(train.loc[train["is_registered"] == registered, "unit_price"].to_numpy())
              for name, registered in (("registered", True), ("guest", False))
              if int((train["is_registered"] == registered).sum()) > 0}
    save_checkpoint(root / paths.checkpoint, result.network, config=result.best_params,
                    feature_names=feature_names(preprocessor), metadata={
                        "stockcode": CODE,
                        "model_version": version,
                        "features_md5": file_md5(root / paths.lines),
                        "preprocessor_md5": file_md5(root / paths.preprocessor),
                        "train_rows": len(train),
                        # the rows the output layer was solved on (price weights, order rate: training rows)
                        "final_fit_rows": result.final_fit_rows,
                        "best_epoch": result.train_result.best_epoch,
                        "seed": seed,
                        # E[q] = exp(prediction) * smearing - 1 (model.smearing_factor)
                        "smearing_factor": smearing,
                        "price_reference": {name: prices.to_dict() for name, prices in groups.items()},
                        "price_response": None if result.price_response is None else result.price_response.to_dict(),
                        "order_rate": order_rate.to_dict(),
                    })
    # Out-of-sample: the selected network before any final refit on the validation rows.
    metrics = regression_metrics(y_val, result.validation_prediction)
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


if __name__ == "__main__":
    CODE = stage.stockcode_argument(__doc__ or "")
    stage.run(f"tune_primary_model@{CODE}", main)
