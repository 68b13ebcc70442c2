"""Stage ``preprocess@<code>``: chronological splits and the fitted column transformer, saved as its numbers
(JSON, checked against scikit-learn's own output on the training rows)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pricetrail.data.preprocess import (
    PreprocessSettings,
    chronological_split,
    feature_names,
    fit_preprocessor,
    save_preprocessor,
    transform,
)
from pricetrail.project.config import load_params, section
from pricetrail.project.files import atomic_path, write_json
from pricetrail.project.paths import ProductPaths


def preprocess(root: Path, code: str) -> None:
    paths = ProductPaths(code)
    settings = PreprocessSettings.from_params(section(load_params(root), "preprocess"))
    splits = chronological_split(pd.read_parquet(root / paths.lines), settings)
    preprocessor = fit_preprocessor(splits["train"], settings)
    for frame in splits.values():
        transform(preprocessor, frame)  # fail here, not in training, if a split cannot be transformed
    for name, frame in splits.items():
        with atomic_path(root / paths.split(name)) as tmp:
            frame.to_parquet(tmp, index=False)
    save_preprocessor(preprocessor, root / paths.preprocessor)
    write_json(root / paths.preprocess_metrics, {
        "feature_names": feature_names(preprocessor),
        "n_features": len(feature_names(preprocessor)),
        "splits": {name: {"rows": len(frame), "first_date": str(frame["invoice_date"].min().date()),
                          "last_date": str(frame["invoice_date"].max().date())} for name, frame in splits.items()},
    })
