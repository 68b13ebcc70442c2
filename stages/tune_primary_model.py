"""Stage tune_primary_model@<code>: Optuna tunes the feed-forward demand model; the best config is retrained
with early stopping (best weights restored), its price response refit by least squares, and saved as a
weights-only checkpoint with its smearing factor, the training prices of each customer group and the order-rate
elasticity (how the price moves the number of lines per day: pricetrail.order_rate)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pricetrail import stage
from pricetrail.config import load_params, section, write_json
from pricetrail.etl import TARGET
from pricetrail.hashing import file_md5
from pricetrail.model import model_version, predict, regression_metrics, save_checkpoint, set_seed, smearing_factor
from pricetrail.order_rate import OrderRatePrior, fit_order_rate
from pricetrail.paths import ProductPaths
from pricetrail.preprocess import feature_names, load_preprocessor, price_columns, transform
from pricetrail.price_response import group_prices
from pricetrail.tuning import tune

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
    order_rate = fit_order_rate(train, OrderRatePrior.from_params(settings.get("order_rate_prior")))
    set_seed(seed)
    result = tune(x_train, y_train, x_val, y_val, search_space=settings["search_space"],
                  n_trials=int(settings["n_trials"]), max_epochs=int(settings["max_epochs"]),
                  patience=int(settings["patience"]), timeout_seconds=settings.get("timeout_seconds"), seed=seed,
                  price_columns=price_columns(preprocessor) if structure == "monotone" else None,
                  pool_trials=int(settings.get("pool_trials", 1)))
    version = model_version(result.network, result.best_params)
    val_prediction = predict(result.network, x_val)
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
                        "best_epoch": result.train_result.best_epoch,
                        "seed": seed,
                        # E[q] = exp(prediction) * smearing - 1, from the validation residuals (model.smearing_factor)
                        "smearing_factor": smearing_factor(y_val, val_prediction),
                        "price_reference": {name: prices.to_dict() for name, prices in groups.items()},
                        "price_response": None if result.price_response is None else result.price_response.to_dict(),
                        "order_rate": order_rate.to_dict(),
                    })
    metrics = regression_metrics(y_val, val_prediction)
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
    })


if __name__ == "__main__":
    CODE = stage.stockcode_argument(__doc__ or "")
    stage.run(f"tune_primary_model@{CODE}", main)
