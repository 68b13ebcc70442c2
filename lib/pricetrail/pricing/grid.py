"""A price grid scored without pandas on the hot path, with exactly the fitted preprocessor's semantics.

The pipeline's :func:`pricetrail.data.preprocess.transform` builds a DataFrame and runs the ColumnTransformer: several
milliseconds for a 100-point grid, most of it per-column pandas overhead. Over a grid only the price varies; the
categorical inputs (country, day of week) and the state are constants. So the numerical part is standardised with
the fitted scaler's own ``mean_``/``scale_`` in numpy, and the one-hot part is the fitted encoder's output for the
single (country, day) row, cached. :func:`check_against_preprocessor` proves the two paths agree at load time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer

from pricetrail.data.preprocess import input_columns, transform


class GridError(ValueError):
    """The fitted preprocessor is not one this fast path reproduces exactly."""


@dataclass
class GridEncoder:
    preprocessor: ColumnTransformer
    numerical: list[str]
    categorical: list[str]
    mean: np.ndarray
    scale: np.ndarray
    _onehot: OrderedDict[tuple[str, ...], np.ndarray] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_preprocessor(cls, preprocessor: ColumnTransformer) -> GridEncoder:
        numerical, categorical = input_columns(preprocessor)
        scaler = preprocessor.named_transformers_.get("num")
        if scaler is None or not hasattr(scaler, "mean_") or not getattr(scaler, "with_mean", False):
            raise GridError("the preprocessor has no fitted StandardScaler 'num' with a mean")
        return cls(preprocessor=preprocessor, numerical=numerical, categorical=categorical,
                   mean=np.asarray(scaler.mean_, dtype="float64"), scale=np.asarray(scaler.scale_, dtype="float64"))

    def category_status(self, column: str, value: str) -> str:
        """"seen", "infrequent" (grouped with rare values) or "unseen" (the model never saw it)."""
        encoder = self.preprocessor.named_transformers_["cat"]
        index = self.categorical.index(column)
        infrequent = (getattr(encoder, "infrequent_categories_", None) or [None] * len(self.categorical))[index]
        if infrequent is not None and value in set(map(str, infrequent)):
            return "infrequent"
        return "seen" if value in set(map(str, encoder.categories_[index])) else "unseen"

    def onehot(self, values: Mapping[str, str]) -> np.ndarray:
        key = tuple(str(values[column]) for column in self.categorical)
        with self._lock:
            cached = self._onehot.get(key)
            if cached is not None:
                self._onehot.move_to_end(key)
                return cached
        frame = pd.DataFrame({column: [value] for column, value in zip(self.categorical, key, strict=True)})
        row = np.asarray(self.preprocessor.named_transformers_["cat"].transform(frame), dtype="float64")[0]
        with self._lock:
            self._onehot[key] = row
            while len(self._onehot) > 256:  # countries x days of week; bounded all the same
                self._onehot.popitem(last=False)
        return row

    def matrix(self, numerical: Mapping[str, np.ndarray | float], categorical: Mapping[str, str],
               rows: int) -> np.ndarray:
        """The model's float32 input matrix: standardised numerical columns, then the one-hot block."""
        values = np.empty((rows, len(self.numerical)), dtype="float64")
        for position, column in enumerate(self.numerical):
            values[:, position] = numerical[column]
        scale = np.where(self.scale == 0, 1.0, self.scale)
        scaled = (values - self.mean) / scale
        onehot = np.broadcast_to(self.onehot(categorical), (rows, len(self.onehot(categorical))))
        result = np.concatenate([scaled, onehot], axis=1).astype("float32")
        if not np.all(np.isfinite(result)):
            raise GridError("the price grid has missing or infinite feature values")
        return result


def price_columns(prices: np.ndarray, max_price_before: float, prev_month_mean_price: float) -> dict[str, np.ndarray]:
    """:func:`pricetrail.data.etl.price_features` as plain arrays (its DataFrame costs more than the network's pass);
    :func:`check_price_columns` proves the two agree for a product's state when its model loads."""
    p = np.asarray(prices, dtype="float64")
    reference_max = np.fmax(np.full_like(p, max_price_before), p)
    reference_mean = p if np.isnan(prev_month_mean_price) else np.full_like(p, prev_month_mean_price)
    return {"unit_price": p, "log_price": np.log(p), "price_squared": p ** 2, "reference_max_price": reference_max,
            "price_to_max": p / reference_max, "reference_mean_price": reference_mean,
            "price_to_prev_month_mean": p / reference_mean}


def check_price_columns(prices: np.ndarray, max_price_before: float, prev_month_mean_price: float) -> None:
    from pricetrail.data.etl import price_features

    expected = price_features(prices, max_price_before, prev_month_mean_price)
    actual = price_columns(prices, max_price_before, prev_month_mean_price)
    if sorted(expected.columns) != sorted(actual) or not all(
            np.allclose(expected[c].to_numpy(), actual[c], rtol=1e-12, equal_nan=True) for c in expected.columns):
        raise GridError("the fast price features disagree with etl.price_features; refusing to serve with them")


def check_against_preprocessor(encoder: GridEncoder, numerical: Mapping[str, np.ndarray | float],
                               categorical: Mapping[str, str], rows: int) -> None:
    """Refuse the fast path unless it gives the ColumnTransformer's own matrix (to float32 rounding)."""
    frame = pd.DataFrame({**{c: np.broadcast_to(np.asarray(numerical[c], dtype="float64"), (rows,))
                             for c in encoder.numerical},
                          **{c: [categorical[c]] * rows for c in encoder.categorical}})
    expected = transform(encoder.preprocessor, frame)
    actual = encoder.matrix(numerical, categorical, rows)
    if expected.shape != actual.shape or not np.allclose(expected, actual, rtol=1e-5, atol=1e-5):
        raise GridError("the fast grid encoder disagrees with the fitted preprocessor; refusing to serve with it")
