"""A price grid scored without pandas on the hot path, with exactly the fitted encoding's semantics.

Building a frame and encoding it costs several milliseconds for a 100-point grid, most of it per-column pandas
overhead. Over a grid only the price varies; the categorical inputs (country, day of week) and the state are
constants. So the numerical part is standardised with the encoding's means and scales in numpy, and the one-hot
part is the encoding's row for the single (country, day), cached. The encoding itself reproduces the fitted
transformer (checked on a probe when the model is exported and again whenever it is loaded).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pricetrail.data.encoding import FittedEncoding


class GridError(ValueError):
    """The grid's features are not ones the model can be scored on."""


@dataclass
class GridEncoder:
    encoding: FittedEncoding
    _onehot: OrderedDict[tuple[str, ...], np.ndarray] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def numerical(self) -> tuple[str, ...]:
        return self.encoding.numerical

    @property
    def categorical(self) -> tuple[str, ...]:
        return self.encoding.categorical

    def category_status(self, column: str, value: str) -> str:
        """"seen", "infrequent" (grouped with rare values) or "unseen" (the model never saw it)."""
        return self.encoding.category_status(column, value)

    def onehot(self, values: Mapping[str, str]) -> np.ndarray:
        key = tuple(str(values[column]) for column in self.categorical)
        with self._lock:
            cached = self._onehot.get(key)
            if cached is not None:
                self._onehot.move_to_end(key)
                return cached
        blocks = [self.encoding.onehot(column, [value])[0] for column, value in zip(self.categorical, key, strict=True)]
        row = np.concatenate(blocks) if blocks else np.zeros(0)
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
        scaled = self.encoding.scaled(values)
        row = self.onehot(categorical)
        onehot = np.broadcast_to(row, (rows, len(row)))
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
