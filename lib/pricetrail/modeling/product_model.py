"""One product's demand model as the pipeline serves it: tuned, its retransformation factor chosen, and the
records a served model carries (training prices per customer group, the order-rate elasticity)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pricetrail.data.encoding import FittedEncoding
from pricetrail.data.etl import TARGET
from pricetrail.data.preprocess import price_columns, transform
from pricetrail.modeling.metrics import smearing_factor
from pricetrail.modeling.order_rate import OrderRateFit, fit_order_rate
from pricetrail.modeling.price_response import GroupPrices, group_prices
from pricetrail.modeling.training import predict, set_seed
from pricetrail.modeling.tuning import TuneSettings, TuningResult, tune

CUSTOMER_GROUPS = (("registered", True), ("guest", False))


@dataclass(frozen=True)
class ProductModel:
    """The tuned network and what a served model records beside its weights."""

    tuning: TuningResult
    smearing: float  # E[q] = exp(prediction) * smearing - 1 (metrics.smearing_factor)
    price_reference: dict[str, GroupPrices]  # each customer group's training prices
    order_rate: OrderRateFit

    def metadata(self) -> dict[str, Any]:
        """The checkpoint's model records (the stage adds lineage: versions and input hashes)."""
        response = self.tuning.price_response
        return {
            # the rows the output layer was solved on (price weights, order rate: training rows)
            "final_fit_rows": self.tuning.final_fit_rows,
            "best_epoch": self.tuning.train_result.best_epoch,
            "smearing_factor": self.smearing,
            "price_reference": {name: prices.to_dict() for name, prices in self.price_reference.items()},
            "price_response": None if response is None else response.to_dict(),
            "order_rate": self.order_rate.to_dict(),
        }


def fit_product_model(train: pd.DataFrame, validation: pd.DataFrame, preprocessor: FittedEncoding,
                      settings: TuneSettings, seed: int) -> ProductModel:
    """Tune the network on the training rows (validation picks the trial and the stopping epoch), then the records
    the served model needs."""
    x_train, x_val = transform(preprocessor, train), transform(preprocessor, validation)
    y_train, y_val = train[TARGET].to_numpy(dtype="float32"), validation[TARGET].to_numpy(dtype="float32")
    order_rate = fit_order_rate(train, settings.order_rate_prior)
    set_seed(seed)
    result = tune(x_train, y_train, x_val, y_val, search_space=settings.search_space, n_trials=settings.n_trials,
                  max_epochs=settings.max_epochs, patience=settings.patience,
                  timeout_seconds=settings.timeout_seconds, seed=seed,
                  price_columns=price_columns(preprocessor) if settings.price_response == "monotone" else None,
                  pool_trials=settings.pool_trials, final_fit_rows=settings.final_fit_rows)
    if result.final_fit_rows == "train_and_validation":
        # Duan's estimate from the residuals of the fit that gave the served weights: their mean is 0, so the
        # factor corrects the retransformation only (the validation rows' own residuals would add their level).
        smearing = smearing_factor(np.concatenate([y_train, y_val]),
                                   predict(result.network, np.vstack([x_train, x_val])))
    else:
        # the held-out residuals of the training-row fit (the served network is the one validation scored)
        smearing = smearing_factor(y_val, result.validation_prediction)
    groups = {name: group_prices(train.loc[train["is_registered"] == registered, "unit_price"].to_numpy())
              for name, registered in CUSTOMER_GROUPS if int((train["is_registered"] == registered).sum()) > 0}
    return ProductModel(tuning=result, smearing=smearing, price_reference=groups, order_rate=order_rate)
