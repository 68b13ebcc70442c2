"""Export a trained model for serving (:mod:`pricetrail.modeling.exported`), checked against torch and
scikit-learn on a probe of the product's own rows before it is written: the pipeline keeps training with torch,
and what is served is proven to give torch's answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch import nn

from pricetrail.data.preprocess import UNSEEN, input_columns, model_inputs, transform
from pricetrail.modeling.bundle import ModelBundle
from pricetrail.modeling.exported import (
    ExportedNetwork,
    ExportError,
    Layer,
    Probe,
    ServingModel,
)
from pricetrail.modeling.network import PriceResponseNetwork
from pricetrail.modeling.training import predict

# Rows of the product's own data in the probe (spread over its history), plus one row of categories never seen.
PROBE_ROWS = 48


def export_network(network: nn.Module) -> ExportedNetwork:
    """The eval-mode forward pass of a demand network as arrays (Linear, BatchNorm1d, ReLU and Dropout only)."""
    mlp = network.demand if isinstance(network, PriceResponseNetwork) else network
    if not isinstance(mlp, nn.Sequential):
        raise ExportError(f"a {type(mlp).__name__} is not a network this exporter knows")
    layers: list[Layer] = []
    for module in mlp:
        if isinstance(module, nn.Linear):
            layers.append(Layer(weight=_array(module.weight), bias=_array(module.bias)))
        elif isinstance(module, nn.BatchNorm1d):
            if not layers or layers[-1].norm is not None or module.running_mean is None:
                raise ExportError("a batch normalisation that does not follow a linear layer, or has no running "
                                  "statistics, is not exported")
            norm = {"mean": _array(module.running_mean), "var": _array(module.running_var),
                    "weight": _array(module.weight) if module.affine else np.ones(module.num_features),
                    "bias": _array(module.bias) if module.affine else np.zeros(module.num_features)}
            layers[-1] = Layer(weight=layers[-1].weight, bias=layers[-1].bias, norm=norm, eps=float(module.eps))
        elif not isinstance(module, nn.ReLU | nn.Dropout):
            raise ExportError(f"a {type(module).__name__} layer is not exported")
    if isinstance(network, PriceResponseNetwork):
        return ExportedNetwork(input_dim=network.input_dim, layers=tuple(layers),
                               price_columns=tuple(network.price_columns), beta=_array(network.beta))
    return ExportedNetwork(input_dim=layers[0].weight.shape[1], layers=tuple(layers))


def probe_frame(rows: pd.DataFrame, preprocessor: object) -> pd.DataFrame:
    """Up to :data:`PROBE_ROWS` raw input rows spread over ``rows`` (the product's training data), and one whose
    categories the model never saw (scikit-learn's unknown-category branch)."""
    numerical, categorical = input_columns(preprocessor)
    inputs = model_inputs(rows, numerical, categorical)
    if inputs.empty:
        raise ExportError("the probe needs at least one row of the product's data")
    picked = inputs.iloc[np.unique(np.linspace(0, len(inputs) - 1, min(PROBE_ROWS, len(inputs))).round().astype(int))]
    unseen = picked.iloc[[0]].copy()
    for column in categorical:
        unseen[column] = UNSEEN
    return pd.concat([picked, unseen], ignore_index=True)


def export_serving_model(bundle: ModelBundle, rows: pd.DataFrame) -> ServingModel:
    """The bundle as a :class:`ServingModel`, refused unless its network gives torch's predictions on a probe of
    ``rows`` (the encoding was checked against scikit-learn when the preprocess stage fitted it)."""
    frame = probe_frame(rows, bundle.preprocessor)
    expected = transform(bundle.preprocessor, frame)
    model = ServingModel(stockcode=bundle.stockcode, version=bundle.version, network=export_network(bundle.network),
                         encoding=bundle.preprocessor, metadata=bundle.metadata,
                         probe=Probe(frame=frame, matrix=expected, log_quantity=predict(bundle.network, expected)))
    model.check_probe()
    return model


def _array(tensor: object) -> np.ndarray:
    return np.asarray(tensor.detach().cpu().numpy(), dtype=np.float64)  # type: ignore[attr-defined]
