"""Chronological splits and the fitted column transformer, persisted as its numbers.

scikit-learn fits the transformer; what it learned (means, scales, categories, the infrequent groups) is saved as
JSON (:mod:`pricetrail.data.encoding`), checked to give scikit-learn's own matrix on the training rows, and applied
with numpy by every later stage. Reading it runs no code, and no stage but this one imports scikit-learn for it
(skops' loader, which the earlier format needed, cost ~4 s of imports including torch). Transformers saved with
skops by earlier versions are still read for records promoted then (:func:`load_skops_transformer`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pricetrail.data.encoding import EncodingError, FittedEncoding
from pricetrail.data.etl import PRICE_FEATURES, TARGET
from pricetrail.project.config import settings_from_params
from pricetrail.project.files import atomic_path, read_finite_json

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer

# scikit-learn and skops are imported by the functions that fit, save or load a transformer, not by this module:
# the ETL stage runs the split arithmetic here and must not pay their ~2 s (skops also pulls in torch).

log = logging.getLogger(__name__)

ENCODING_FORMAT = "pricetrail-encoding"
# A category no training row had: the probe that checks the exported numbers takes scikit-learn's unknown branch.
UNSEEN = "__unseen__"


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


def line_days(invoice_dates: pd.Series) -> np.ndarray:
    """Each line's trading day, in time order: what :func:`split_sizes` cuts."""
    return np.sort(pd.to_datetime(invoice_dates).dt.normalize().to_numpy())


def small_splits(sizes: dict[str, int], settings: PreprocessSettings) -> dict[str, int]:
    """The splits of ``sizes`` below ``min_split_rows``."""
    return {name: rows for name, rows in sizes.items() if rows < settings.min_split_rows}


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
    days = line_days(ordered["invoice_date"])
    sizes = split_sizes(days, settings)
    small = small_splits(sizes, settings)
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


def fit_column_transformer(train: pd.DataFrame, settings: PreprocessSettings) -> ColumnTransformer:
    """scikit-learn's fit of the pipeline's transformer: standardised numerical columns, one-hot categories with
    rare ones grouped (an unseen category joins that group)."""
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


def checked_encoding(transformer: ColumnTransformer, rows: pd.DataFrame) -> FittedEncoding:
    """The fitted transformer's numbers, refused unless they give scikit-learn's own matrix on ``rows`` and on a
    row of categories it never saw."""
    encoding = FittedEncoding.from_column_transformer(transformer)
    numerical, categorical = list(encoding.numerical), list(encoding.categorical)
    inputs = model_inputs(rows, numerical, categorical)
    unseen = inputs.head(1).assign(**{column: UNSEEN for column in categorical})
    probe = pd.concat([inputs, unseen], ignore_index=True)
    expected = np.asarray(transformer.transform(probe), dtype="float32")
    actual = encoding.transform(probe)
    if expected.shape != actual.shape or not np.allclose(expected, actual, rtol=0, atol=1e-6, equal_nan=True):
        raise PreprocessError("the fitted transformer's numbers do not reproduce its own output; refusing to save them")
    return encoding


def fit_preprocessor(train: pd.DataFrame, settings: PreprocessSettings) -> FittedEncoding:
    """Fit the transformer on the training rows and keep its numbers (checked against scikit-learn on those rows):
    every later stage, the gate and the router apply them with numpy, and none imports scikit-learn to do so."""
    return checked_encoding(fit_column_transformer(train, settings), train)


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


def transform(preprocessor: FittedEncoding, frame: pd.DataFrame) -> np.ndarray:
    """The model's float32 input matrix for ``frame``; raises PreprocessError naming missing columns or the
    features with missing or infinite values."""
    try:
        return preprocessor.transform(frame)
    except EncodingError as error:
        raise PreprocessError(str(error)) from error


def input_columns(preprocessor: FittedEncoding) -> tuple[list[str], list[str]]:
    return list(preprocessor.numerical), list(preprocessor.categorical)


def feature_names(preprocessor: FittedEncoding) -> list[str]:
    return preprocessor.feature_names


def price_columns(preprocessor: FittedEncoding) -> list[int]:
    """Indices of the transformed columns that depend on the price (scaled price features: each non-decreasing in
    the price, as the scaler's scale is positive). The demand network's price term reads exactly these."""
    numerical, _ = input_columns(preprocessor)
    price_inputs = {f"num__{name}" for name in numerical if name in PRICE_FEATURES}
    columns = [i for i, name in enumerate(feature_names(preprocessor)) if name in price_inputs]
    if not columns:
        raise PreprocessError(f"the preprocessor has no price feature among {numerical}; a demand model needs one "
                              f"of {list(PRICE_FEATURES)}")
    return columns


def save_preprocessor(preprocessor: FittedEncoding, path: Path) -> None:
    """The fitted numbers as JSON (plain numbers and text: reading it runs no code and needs no scikit-learn)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"format": ENCODING_FORMAT, "format_version": 1, **preprocessor.to_dict()},
                                  allow_nan=False), encoding="utf-8")


def load_preprocessor(path: Path) -> FittedEncoding:
    """Load a preprocessor saved by :func:`save_preprocessor`; raises PreprocessError naming the file."""
    if not path.is_file():
        raise PreprocessError(f"preprocessor {path} does not exist")
    try:
        data = read_finite_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PreprocessError(f"preprocessor {path} is not readable JSON: {error}") from error
    if not isinstance(data, dict) or data.get("format") != ENCODING_FORMAT or data.get("format_version") != 1:
        raise PreprocessError(f"preprocessor {path} is not a {ENCODING_FORMAT} file (format_version 1)")
    try:
        return FittedEncoding.from_dict({k: v for k, v in data.items() if k not in ("format", "format_version")},
                                        f"preprocessor {path}")
    except EncodingError as error:
        raise PreprocessError(str(error)) from error


def load_skops_transformer(path: Path) -> ColumnTransformer:
    """A transformer saved with skops by versions before the JSON format (a record promoted then), refusing any type
    skops does not trust by default. Only a pipeline install reads these."""
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
