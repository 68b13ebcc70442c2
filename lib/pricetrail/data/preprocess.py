"""Chronological splits and the fitted column transformer, persisted without pickle.

The preprocessor is saved with skops, whose loader refuses any type outside an allow-list: a served model loads
it from storage, and unpickling a file from a bucket would run whatever code the file carries.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pricetrail.data.etl import PRICE_FEATURES, TARGET
from pricetrail.project.config import settings_from_params
from pricetrail.project.files import atomic_path

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer

# scikit-learn and skops are imported by the functions that fit, save or load a transformer, not by this module:
# the ETL stage runs the split arithmetic here and must not pay their ~2 s (skops also pulls in torch).

log = logging.getLogger(__name__)


class PreprocessError(ValueError):
    """Splits or the preprocessor cannot be built or loaded as asked."""


@dataclass(frozen=True)
class PreprocessSettings:
    """``params.yaml: preprocess``."""

    numerical_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    min_split_rows: int = 30
    category_min_frequency: int = 10

    def __post_init__(self) -> None:
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value < 0.5:
                raise PreprocessError(f"preprocess.{name}={value!r} makes no sense: use a fraction in (0, 0.5)")
        if self.validation_fraction + self.test_fraction >= 0.7:
            raise PreprocessError(
                f"preprocess.validation_fraction + test_fraction = {self.validation_fraction + self.test_fraction}"
                " leaves less than 30% of the rows to train on; use a smaller sum")
        if not isinstance(self.min_split_rows, int) or self.min_split_rows < 1:
            raise PreprocessError(f"preprocess.min_split_rows={self.min_split_rows!r} must be a whole number >= 1")
        if not self.numerical_features and not self.categorical_features:
            raise PreprocessError("preprocess lists no features: set numerical_features or categorical_features")
        overlap = sorted(set(self.numerical_features) & set(self.categorical_features))
        if overlap:
            raise PreprocessError(f"features {overlap} are listed as both numerical and categorical")
        if TARGET in self.numerical_features + self.categorical_features:
            raise PreprocessError(f"the target {TARGET!r} cannot be a feature")

    @classmethod
    def from_params(cls, preprocess: Mapping[str, Any]) -> PreprocessSettings:
        return settings_from_params(cls, "preprocess", preprocess, error=PreprocessError,
                                    list_fields=("numerical_features", "categorical_features"))

    @property
    def features(self) -> list[str]:
        return [*self.numerical_features, *self.categorical_features]


def split_sizes(days: np.ndarray, settings: PreprocessSettings) -> dict[str, int]:
    """Rows of each split for lines on ``days`` (one date per line, sorted): the arithmetic of
    :func:`chronological_split`, which the ETL also runs to refuse a product its splits could not hold."""
    n = len(days)
    # Row positions where a new day starts, and the end: the only places a split may begin or end.
    boundaries = np.r_[np.flatnonzero(np.r_[True, days[1:] != days[:-1]]), n] if n else np.array([0])

    def nearest_boundary(position: int) -> int:
        return int(boundaries[np.argmin(np.abs(boundaries - position))])

    n_test = math.ceil(n * settings.test_fraction)
    n_validation = math.ceil(n * settings.validation_fraction)
    validation_start = nearest_boundary(n - n_test - n_validation)
    test_start = max(validation_start, nearest_boundary(n - n_test))
    return {"train": validation_start, "validation": test_start - validation_start, "test": n - test_start}


def rows_needed(settings: PreprocessSettings) -> int:
    """The fewest lines whose smallest split share reaches ``min_split_rows`` (before whole-day rounding)."""
    return math.ceil(settings.min_split_rows / min(settings.validation_fraction, settings.test_fraction) - 1e-9)


def check_thresholds_agree(min_rows: int, settings: PreprocessSettings) -> None:
    """Refuse an ``etl.min_rows`` that admits products whose splits cannot reach ``preprocess.min_split_rows``: the
    two defaults once contradicted each other, and products passed the ETL only to fail in preprocess."""
    needed = rows_needed(settings)
    if min_rows < needed:
        share = min(settings.validation_fraction, settings.test_fraction)
        raise PreprocessError(
            f"etl.min_rows={min_rows} admits products too small to split: with preprocess.validation_fraction="
            f"{settings.validation_fraction:g} and test_fraction={settings.test_fraction:g} each split reaches "
            f"preprocess.min_split_rows={settings.min_split_rows} only from {needed} lines; raise etl.min_rows to "
            f"{needed} or lower preprocess.min_split_rows to {math.floor(min_rows * share + 1e-9)}")


def chronological_split(features: pd.DataFrame, settings: PreprocessSettings) -> dict[str, pd.DataFrame]:
    """Oldest days train, the next validate, the newest test: the model is always scored on its future.

    Splits hold whole trading days. The lines of one day share their day-level state (last month's volume, the
    28 days before, the reference prices), so a day cut in two would put the same state on both sides of a
    boundary. Each boundary is the day boundary nearest to the row count the fractions ask for.
    """
    missing = [column for column in [*settings.features, TARGET, "invoice_date"] if column not in features.columns]
    if missing:
        raise PreprocessError(f"feature table lacks columns {missing}; it has {list(features.columns)}")
    ordered = features.sort_values("invoice_date", kind="stable")
    ordered = ordered.reset_index(drop=True)
    days = pd.to_datetime(ordered["invoice_date"]).dt.normalize().to_numpy()
    sizes = split_sizes(days, settings)
    small = {name: size for name, size in sizes.items() if size < settings.min_split_rows}
    if small:
        trading_days = int(np.unique(days).size)
        raise PreprocessError(f"splits {small} of {len(ordered)} rows over {trading_days} trading days are smaller "
                              f"than preprocess.min_split_rows={settings.min_split_rows} (splits hold whole trading "
                              "days); lower the fractions' effect or add data")
    validation_start = sizes["train"]
    test_start = validation_start + sizes["validation"]
    return {
        "train": ordered.iloc[:validation_start],
        "validation": ordered.iloc[validation_start:test_start],
        "test": ordered.iloc[test_start:],
    }


def fit_preprocessor(train: pd.DataFrame, settings: PreprocessSettings) -> ColumnTransformer:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    transformer = ColumnTransformer(
        [
            ("num", StandardScaler(), list(settings.numerical_features)),
            ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", sparse_output=False,
                                  min_frequency=settings.category_min_frequency), list(settings.categorical_features)),
        ],
        verbose_feature_names_out=True,
    )
    transformer.fit(model_inputs(train, settings.numerical_features, settings.categorical_features))
    return transformer


def model_inputs(frame: pd.DataFrame, numerical: tuple[str, ...] | list[str],
                 categorical: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """The raw input columns in the dtypes the transformer expects (booleans as 0/1, categories as text)."""
    missing = [column for column in [*numerical, *categorical] if column not in frame.columns]
    if missing:
        raise PreprocessError(f"input lacks feature columns {missing}")
    data = pd.DataFrame(index=frame.index)
    for column in numerical:
        data[column] = frame[column].astype("float64")
    for column in categorical:
        data[column] = frame[column].astype("str")
    return data


def transform(preprocessor: ColumnTransformer, frame: pd.DataFrame) -> np.ndarray:
    numerical, categorical = input_columns(preprocessor)
    matrix = preprocessor.transform(model_inputs(frame, numerical, categorical))
    matrix = np.asarray(matrix, dtype="float32")
    if not np.all(np.isfinite(matrix)):
        bad = sorted({str(name) for name, ok in zip(preprocessor.get_feature_names_out(),
                                                    np.isfinite(matrix).all(axis=0), strict=True) if not ok})
        raise PreprocessError(f"features {bad} have missing or infinite values after preprocessing")
    return matrix


def input_columns(preprocessor: ColumnTransformer) -> tuple[list[str], list[str]]:
    columns = {name: list(cols) for name, _, cols in preprocessor.transformers_ if name in ("num", "cat")}
    return columns.get("num", []), columns.get("cat", [])


def feature_names(preprocessor: ColumnTransformer) -> list[str]:
    return [str(name) for name in preprocessor.get_feature_names_out()]


def price_columns(preprocessor: ColumnTransformer) -> list[int]:
    """Indices of the transformed columns that depend on the price (scaled price features: each non-decreasing in
    the price, as the scaler's scale is positive). The demand network's price term reads exactly these."""
    numerical, _ = input_columns(preprocessor)
    price_inputs = {f"num__{name}" for name in numerical if name in PRICE_FEATURES}
    columns = [i for i, name in enumerate(feature_names(preprocessor)) if name in price_inputs]
    if not columns:
        raise PreprocessError(f"the preprocessor has no price feature among {numerical}; a demand model needs one "
                              f"of {list(PRICE_FEATURES)}")
    return columns


def save_preprocessor(preprocessor: ColumnTransformer, path: Path) -> None:
    import skops.io as sio

    with atomic_path(path) as tmp:
        sio.dump(preprocessor, tmp)


def load_preprocessor(path: Path) -> ColumnTransformer:
    """Load a preprocessor saved by :func:`save_preprocessor`, refusing any type skops does not trust by default."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer

    if not path.is_file():
        raise PreprocessError(f"preprocessor {path} does not exist")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as error:  # noqa: BLE001 - skops raises many kinds (zip, json, key) for a damaged file
        raise PreprocessError(f"preprocessor {path} is not a readable skops file: {error}") from error
    if untrusted:
        raise PreprocessError(f"preprocessor {path} contains types that are not trusted: {untrusted}; refusing to load")
    try:
        loaded = sio.load(path, trusted=[])
    except Exception as error:  # noqa: BLE001 - as above; the message names the file and the cause
        raise PreprocessError(f"preprocessor {path} cannot be loaded: {error}") from error
    if not isinstance(loaded, ColumnTransformer):
        raise PreprocessError(f"preprocessor {path} holds a {type(loaded).__name__}, not a ColumnTransformer")
    return loaded
