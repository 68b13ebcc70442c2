"""A model bundle: the checkpoint, its preprocessor and the product history it needs, loaded and cross-checked.

The same loader serves the pipeline (inference on the stage outputs) and the registry (a promoted version),
so a server and the pipeline can never disagree on how a model is read. Nothing here unpickles: the checkpoint
loads with ``torch.load(weights_only=True)``, the preprocessor is JSON numbers (a record from before that format:
its skops file, through skops' allow-list, checked against the training rows).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from pricetrail.data.encoding import FittedEncoding
from pricetrail.data.preprocess import (
    checked_encoding,
    feature_names,
    load_preprocessor,
    load_skops_transformer,
    transform,
)
from pricetrail.modeling.checkpoint import load_checkpoint
from pricetrail.modeling.metrics import expected_quantity
from pricetrail.modeling.price_response import check_recorded_response
from pricetrail.modeling.training import predict
from pricetrail.project.files import file_md5


class BundleError(ValueError):
    """The parts of a model bundle do not belong together."""


@dataclass(frozen=True)
class ModelBundle:
    stockcode: str
    version: str
    network: nn.Module
    checkpoint: dict[str, Any]
    preprocessor: FittedEncoding
    daily: pd.DataFrame | None = None
    reference: pd.DataFrame | None = None

    def predict_log_quantity(self, frame: pd.DataFrame) -> np.ndarray:
        return predict(self.network, transform(self.preprocessor, frame))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.checkpoint.get("metadata", {}))

    @property
    def smearing(self) -> float:
        """The model's retransformation factor (model.smearing_factor); 1.0 for checkpoints written before it."""
        return float(self.metadata.get("smearing_factor", 1.0))

    def expected_quantity(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected quantity per order line (smearing-corrected, not expm1 of the mean log)."""
        return expected_quantity(self.predict_log_quantity(frame), self.smearing)


def load_bundle(checkpoint: Path, preprocessor: Path, *, daily: Path | None = None,
                reference: Path | None = None) -> ModelBundle:
    """Load and cross-check a model and its preprocessor (and optionally the product's history and training rows)."""
    network, record = load_checkpoint(checkpoint)
    # Saved by a version before the JSON format: told by its content (a zip archive), as a record's files are
    # read from the DVC cache under their hash, without the name's suffix.
    if preprocessor.suffix == ".skops" or zipfile.is_zipfile(preprocessor):
        if reference is None:
            raise BundleError(f"preprocessor {preprocessor} is a skops file: its numbers are checked on the training "
                              "rows, and none were given")
        transformer = checked_encoding(load_skops_transformer(preprocessor), pd.read_parquet(reference))
    else:
        transformer = load_preprocessor(preprocessor)
    metadata = record.get("metadata", {})
    expected_md5 = metadata.get("preprocessor_md5")
    if expected_md5 and file_md5(preprocessor) != expected_md5:
        raise BundleError(f"preprocessor {preprocessor} does not match model {checkpoint}: the model was trained "
                          f"with preprocessor md5 {expected_md5}, this file has {file_md5(preprocessor)}")
    names = feature_names(transformer)
    if list(record.get("feature_names", [])) != names:
        raise BundleError(f"preprocessor {preprocessor} produces {len(names)} features that differ from the "
                          f"{len(record.get('feature_names', []))} model {checkpoint} was trained on")
    try:
        check_recorded_response(tuple(getattr(network, "price_columns", ())), metadata)
    except ValueError as error:
        raise BundleError(f"model {checkpoint}: {error}") from error
    return ModelBundle(
        stockcode=str(metadata.get("stockcode", "")),
        version=str(metadata.get("model_version", "")),
        network=network,
        checkpoint=record,
        preprocessor=transformer,
        daily=pd.read_parquet(daily) if daily is not None else None,
        reference=pd.read_parquet(reference) if reference is not None else None,
    )

