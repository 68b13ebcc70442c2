"""The fitted column transformer as plain numbers: what scikit-learn learned in
:func:`pricetrail.data.preprocess.fit_column_transformer` (the scaler's means and scales, the encoder's categories
and which of them are infrequent), applied with numpy.

Reading it needs neither scikit-learn nor a deserialiser that can run code, so a process that only prices (the
router, the Lambda handler, every stage after preprocess) starts without them. It is only ever built from a fitted
transformer whose own output it has reproduced (:func:`pricetrail.data.preprocess.checked_encoding` checks that on
the training rows and a row of unseen categories)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# The one-hot column scikit-learn adds for a column's infrequent (and, with handle_unknown="infrequent_if_exist",
# unknown) categories.
INFREQUENT = "infrequent_sklearn"


class EncodingError(ValueError):
    """A fitted encoding is malformed, or is not one this module reproduces exactly."""


@dataclass(frozen=True)
class FittedEncoding:
    """Standardised numerical columns, then one one-hot block per categorical column, in that order."""

    numerical: tuple[str, ...]
    mean: np.ndarray = field(repr=False)
    scale: np.ndarray = field(repr=False)
    categorical: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]  # every category seen in training, per categorical column
    infrequent: tuple[tuple[str, ...] | None, ...]  # those grouped as infrequent (None: the column has no group)

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.numerical) or len(self.scale) != len(self.numerical):
            raise EncodingError(f"the encoding has {len(self.numerical)} numerical columns but {len(self.mean)} means "
                                f"and {len(self.scale)} scales")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.scale)) and np.all(self.scale > 0)):
            raise EncodingError("the encoding's means must be finite and its scales finite and > 0")
        if len(self.categories) != len(self.categorical) or len(self.infrequent) != len(self.categorical):
            raise EncodingError(f"the encoding has {len(self.categorical)} categorical columns but categories for "
                                f"{len(self.categories)} and infrequent groups for {len(self.infrequent)}")
        for column, seen, rare in zip(self.categorical, self.categories, self.infrequent, strict=True):
            if not seen:
                raise EncodingError(f"categorical column {column!r} has no category")
            if rare is not None and (not rare or not set(rare) <= set(seen)):
                raise EncodingError(f"the infrequent group of {column!r} must be a non-empty subset of its categories")

    # ------------------------------------------------------------------------------------------ construction

    @classmethod
    def from_column_transformer(cls, transformer: Any) -> FittedEncoding:
        """The numbers of a fitted ColumnTransformer of the pipeline's kind ('num': StandardScaler, 'cat':
        OneHotEncoder without drop); anything else is refused, never approximated."""
        parts = {name: (step, list(columns)) for name, step, columns in transformer.transformers_
                 if name in ("num", "cat")}
        others = [name for name, step, _ in transformer.transformers_ if name not in ("num", "cat") and step != "drop"]
        if others:
            raise EncodingError(f"the transformer has parts {others} beside 'num' and 'cat'; only those are exported")
        numerical: list[str] = []
        mean = scale = np.zeros(0)
        if "num" in parts:
            scaler, numerical = parts["num"]
            if type(scaler).__name__ != "StandardScaler" or not scaler.with_mean or not scaler.with_std:
                raise EncodingError("the 'num' part is not a StandardScaler with mean and scale")
            mean = np.asarray(scaler.mean_, dtype=np.float64)
            scale = np.asarray(scaler.scale_, dtype=np.float64)
        categorical: list[str] = []
        categories: list[tuple[str, ...]] = []
        infrequent: list[tuple[str, ...] | None] = []
        if "cat" in parts:
            encoder, categorical = parts["cat"]
            if type(encoder).__name__ != "OneHotEncoder" or encoder.drop is not None:
                raise EncodingError("the 'cat' part is not a OneHotEncoder without drop")
            if encoder.handle_unknown not in ("infrequent_if_exist", "ignore"):
                raise EncodingError(f"the encoder's handle_unknown={encoder.handle_unknown!r} is not exported")
            rare = getattr(encoder, "infrequent_categories_", None) or [None] * len(categorical)
            for seen, group in zip(encoder.categories_, rare, strict=True):
                categories.append(tuple(str(value) for value in seen))
                infrequent.append(None if group is None else tuple(str(value) for value in group))
        encoding = cls(numerical=tuple(numerical), mean=mean, scale=scale, categorical=tuple(categorical),
                       categories=tuple(categories), infrequent=tuple(infrequent))
        expected = [str(name) for name in transformer.get_feature_names_out()]
        if encoding.feature_names != expected:
            raise EncodingError(f"the exported encoding names its {len(encoding.feature_names)} features differently "
                                f"from the transformer's {len(expected)}")
        return encoding

    def to_dict(self) -> dict[str, Any]:
        return {"numerical": list(self.numerical), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "categorical": list(self.categorical), "categories": [list(seen) for seen in self.categories],
                "infrequent": [None if rare is None else list(rare) for rare in self.infrequent]}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> FittedEncoding:
        try:
            if not isinstance(data, Mapping):
                raise TypeError("not a mapping")
            numerical = _strings(data["numerical"])
            categorical = _strings(data["categorical"])
            categories = tuple(_strings(seen) for seen in _list(data["categories"]))
            infrequent = tuple(None if rare is None else _strings(rare) for rare in _list(data["infrequent"]))
            return cls(numerical=numerical, mean=_numbers(data["mean"]), scale=_numbers(data["scale"]),
                       categorical=categorical, categories=categories, infrequent=infrequent)
        except (KeyError, TypeError, ValueError) as error:
            raise EncodingError(f"{source}: the fitted encoding is malformed: {error}") from error

    # -------------------------------------------------------------------------------------------- applying

    def kept(self, index: int) -> tuple[str, ...]:
        """The categories of column ``index`` that have a one-hot column of their own."""
        rare = set(self.infrequent[index] or ())
        return tuple(value for value in self.categories[index] if value not in rare)

    @property
    def feature_names(self) -> list[str]:
        names = [f"num__{column}" for column in self.numerical]
        for index, column in enumerate(self.categorical):
            names.extend(f"cat__{column}_{value}" for value in self.kept(index))
            if self.infrequent[index] is not None:
                names.append(f"cat__{column}_{INFREQUENT}")
        return names

    def category_status(self, column: str, value: str) -> str:
        """"seen", "infrequent" (grouped with rare values) or "unseen" (the model never saw it)."""
        index = self.categorical.index(column)
        if value in set(self.infrequent[index] or ()):
            return "infrequent"
        return "seen" if value in set(self.categories[index]) else "unseen"

    def onehot(self, column: str, values: Sequence[str] | np.ndarray) -> np.ndarray:
        """The one-hot block of one categorical column: an unseen value counts as infrequent where the column has
        an infrequent group, and as all zeros where it has none (scikit-learn's "infrequent_if_exist")."""
        index = self.categorical.index(column)
        kept = self.kept(index)
        position = {value: i for i, value in enumerate(kept)}
        has_group = self.infrequent[index] is not None
        width = len(kept) + int(has_group)
        block = np.zeros((len(values), width), dtype=np.float64)
        for row, value in enumerate(values):
            where = position.get(str(value))
            if where is not None:
                block[row, where] = 1.0
            elif has_group:
                block[row, width - 1] = 1.0
        return block

    def scaled(self, values: np.ndarray) -> np.ndarray:
        """(rows, numerical columns) raw values, standardised."""
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.scale

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's float32 input matrix for a frame of raw inputs (what the fitted transformer returns)."""
        missing = [column for column in [*self.numerical, *self.categorical] if column not in frame.columns]
        if missing:
            raise EncodingError(f"input lacks feature columns {missing}")
        # Numbers as float64 (booleans as 0/1) and categories as text: what the transformer was fitted on.
        with np.errstate(invalid="ignore"):
            blocks = [self.scaled(frame[list(self.numerical)].to_numpy(dtype=np.float64))]
        blocks.extend(self.onehot(column, frame[column].astype("str").to_numpy()) for column in self.categorical)
        matrix = np.concatenate(blocks, axis=1).astype(np.float32)
        finite = np.isfinite(matrix).all(axis=0)
        if not finite.all():
            bad = [name for name, ok in zip(self.feature_names, finite, strict=True) if not ok]
            raise EncodingError(f"features {bad} have missing or infinite values after preprocessing")
        return matrix


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _strings(value: Any) -> tuple[str, ...]:
    items = _list(value)
    if not all(isinstance(item, str) for item in items):
        raise TypeError("expected a list of strings")
    return tuple(items)


def _numbers(value: Any) -> np.ndarray:
    items = _list(value)
    if not all(isinstance(item, int | float) and not isinstance(item, bool) and math.isfinite(item) for item in items):
        raise ValueError("expected a list of finite numbers")
    return np.asarray(items, dtype=np.float64)
