"""A trained demand model as what pricing needs and nothing more: the network's weights as arrays, the fitted
encoding as numbers, the checkpoint's records, and a probe that proves the numbers still give the model's answers.

The file (``serving.json``) is plain JSON, written by the tuning stage beside the torch checkpoint
(:mod:`pricetrail.modeling.export`, which checks it against torch and scikit-learn on the probe) and read here
with numpy alone: loading it cannot run code, and a process that only prices never imports torch or
scikit-learn. Every load re-runs the probe, so a file whose numbers no longer give the recorded answers is
refused, never served.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pricetrail.data.encoding import EncodingError, FittedEncoding
from pricetrail.project.files import atomic_path, read_finite_json

FORMAT = "pricetrail-serving-model"
FORMAT_VERSION = 1
# How far the numpy forward pass may be from torch's on the probe (log1p(quantity) per line; float32 torch
# against float64 numpy differ by ~1e-6 on these networks). The same bound holds every served log prediction.
PROBE_TOLERANCE = 1e-4
# The encoding must give the transformer's own float32 matrix on the probe to within float32 rounding.
ENCODING_TOLERANCE = 1e-5
# Bounds a damaged or hostile file cannot exceed (the pipeline's networks are a few thousand weights).
MAX_WEIGHTS = 5_000_000
MAX_PROBE_ROWS = 1_000


class ExportError(ValueError):
    """A serving model file is malformed, or its numbers no longer give the answers it records."""


@dataclass(frozen=True)
class Layer:
    """``x @ weight.T + bias``, then (hidden layers) batch normalisation in eval mode and ReLU."""

    weight: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)
    norm: dict[str, np.ndarray] | None = field(default=None, repr=False)  # mean, var, weight, bias (+ eps)
    eps: float = 1e-5


@dataclass(frozen=True)
class ExportedNetwork:
    """The demand network's eval-mode forward pass in numpy: ``g(context) - z . beta`` (see
    :class:`pricetrail.modeling.network.PriceResponseNetwork`), or the plain MLP when ``price_columns`` is empty."""

    input_dim: int
    layers: tuple[Layer, ...]
    price_columns: tuple[int, ...] = ()
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ExportError("the network has no layer")
        context = self.context_columns
        width = len(context)
        for position, layer in enumerate(self.layers):
            if layer.weight.ndim != 2 or layer.weight.shape[1] != width or layer.bias.shape != (layer.weight.shape[0],):
                raise ExportError(f"layer {position} has weights {layer.weight.shape} and bias {layer.bias.shape}; "
                                  f"its input is {width} wide")
            if layer.norm is not None and any(part.shape != layer.bias.shape for part in layer.norm.values()):
                raise ExportError(f"layer {position}'s batch normalisation does not match its {len(layer.bias)} units")
            width = layer.weight.shape[0]
        if width != 1:
            raise ExportError(f"the network's output is {width} wide, not 1")
        if self.layers[-1].norm is not None:
            raise ExportError("the output layer cannot be normalised")
        if len(self.beta) != len(self.price_columns) or np.any(self.beta < 0):
            raise ExportError(f"the network has {len(self.price_columns)} price columns and {len(self.beta)} price "
                              "weights; every weight must be >= 0")

    @property
    def context_columns(self) -> list[int]:
        price = set(self.price_columns)
        return [i for i in range(self.input_dim) if i not in price]

    @property
    def nbytes(self) -> int:
        arrays = [self.beta] + [a for layer in self.layers for a in (layer.weight, layer.bias,
                                                                     *(layer.norm or {}).values())]
        return int(sum(array.nbytes for array in arrays))

    def predict_log(self, matrix: np.ndarray) -> np.ndarray:
        """``log1p(quantity)`` per row of a model-input matrix, as a float64 1-d array."""
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ExportError(f"the network takes {self.input_dim} features per row, got shape {x.shape}")
        hidden = x[:, self.context_columns]
        for layer in self.layers[:-1]:
            hidden = hidden @ layer.weight.T + layer.bias
            if layer.norm is not None:
                norm = layer.norm
                hidden = (hidden - norm["mean"]) / np.sqrt(norm["var"] + layer.eps) * norm["weight"] + norm["bias"]
            hidden = np.maximum(hidden, 0.0)
        last = self.layers[-1]
        out = (hidden @ last.weight.T + last.bias)[:, 0]
        if self.price_columns:
            out = out - x[:, list(self.price_columns)] @ self.beta
        if not np.all(np.isfinite(out)):
            raise ExportError("the network gave a non-finite prediction")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "price_columns": list(self.price_columns), "beta": self.beta.tolist(),
                "layers": [{"weight": layer.weight.tolist(), "bias": layer.bias.tolist(), "eps": layer.eps,
                            "norm": None if layer.norm is None else {k: v.tolist() for k, v in layer.norm.items()}}
                           for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: Any) -> ExportedNetwork:
        if not isinstance(data, Mapping):
            raise TypeError("the network is not a mapping")
        layers = []
        total = 0
        for entry in _list(data["layers"]):
            if not isinstance(entry, Mapping):
                raise TypeError("a layer is not a mapping")
            weight = _array(entry["weight"], 2)
            total += weight.size
            if total > MAX_WEIGHTS:
                raise ValueError(f"the network holds more than {MAX_WEIGHTS} weights")
            norm = entry.get("norm")
            if norm is not None:
                if not isinstance(norm, Mapping) or set(norm) != {"mean", "var", "weight", "bias"}:
                    raise ValueError("a layer's norm must hold mean, var, weight and bias")
                norm = {key: _array(norm[key], 1) for key in ("mean", "var", "weight", "bias")}
                if np.any(norm["var"] < 0):
                    raise ValueError("a batch normalisation variance is negative")
            eps = entry.get("eps", 1e-5)
            if not _is_number(eps) or eps < 0:
                raise ValueError(f"a layer's eps={eps!r} is not a number >= 0")
            layers.append(Layer(weight=weight, bias=_array(entry["bias"], 1), norm=norm, eps=float(eps)))
        input_dim = data["input_dim"]
        if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
            raise ValueError(f"input_dim={input_dim!r} is not a whole number >= 1")
        columns = _list(data["price_columns"])
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < input_dim for c in columns):
            raise ValueError(f"price_columns {columns!r} are not column indices below {input_dim}")
        return cls(input_dim=input_dim, layers=tuple(layers), price_columns=tuple(columns),
                   beta=_array(data["beta"], 1))


@dataclass(frozen=True)
class Probe:
    """Raw input rows, the matrix the fitted transformer made of them and the torch network's answers on it."""

    frame: pd.DataFrame
    matrix: np.ndarray
    log_quantity: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"frame": {column: self.frame[column].tolist() for column in self.frame.columns},
                "matrix": self.matrix.astype(np.float64).tolist(), "log_quantity": self.log_quantity.tolist()}

    @classmethod
    def from_dict(cls, data: Any, encoding: FittedEncoding) -> Probe:
        if not isinstance(data, Mapping) or not isinstance(data.get("frame"), Mapping):
            raise TypeError("the probe is not a mapping with a frame")
        columns = {}
        for column in [*encoding.numerical, *encoding.categorical]:
            values = _list(data["frame"][column])
            if len(values) > MAX_PROBE_ROWS:
                raise ValueError(f"the probe has more than {MAX_PROBE_ROWS} rows")
            if column in encoding.numerical:
                columns[column] = _array(values, 1)
            else:
                if not all(isinstance(value, str) for value in values):
                    raise TypeError(f"probe column {column!r} must hold text")
                columns[column] = values
        frame = pd.DataFrame(columns)
        matrix = _array(data["matrix"], 2)
        log_quantity = _array(data["log_quantity"], 1)
        if not (len(frame) == matrix.shape[0] == len(log_quantity)) or len(frame) == 0:
            raise ValueError(f"the probe's frame ({len(frame)} rows), matrix ({matrix.shape[0]}) and answers "
                             f"({len(log_quantity)}) must be the same, non-zero length")
        return cls(frame=frame, matrix=matrix, log_quantity=log_quantity)


@dataclass(frozen=True)
class ServingModel:
    """Everything an answer needs from a trained model: ``metadata`` is the checkpoint's records (smearing factor,
    price weights and their covariance, order rate, the groups' training prices)."""

    stockcode: str
    version: str
    network: ExportedNetwork
    encoding: FittedEncoding
    metadata: dict[str, Any]
    probe: Probe

    def __post_init__(self) -> None:
        if len(self.encoding.feature_names) != self.network.input_dim:
            raise ExportError(f"the encoding makes {len(self.encoding.feature_names)} features, the network takes "
                              f"{self.network.input_dim}")

    @property
    def price_columns(self) -> tuple[int, ...]:
        return self.network.price_columns

    def predict_log(self, matrix: np.ndarray) -> np.ndarray:
        return self.network.predict_log(matrix)

    def check_probe(self) -> None:
        """Refuse the model unless its numbers give the probe's recorded matrix and answers."""
        matrix = self.encoding.transform(self.probe.frame)
        if matrix.shape != self.probe.matrix.shape or not np.allclose(matrix, self.probe.matrix, rtol=0,
                                                                      atol=ENCODING_TOLERANCE):
            raise ExportError(f"the fitted encoding of {self.stockcode} {self.version} no longer gives the probe's "
                              "recorded features")
        predicted = self.network.predict_log(self.probe.matrix)
        gap = float(np.max(np.abs(predicted - self.probe.log_quantity)))
        if not gap <= PROBE_TOLERANCE:
            raise ExportError(f"the network of {self.stockcode} {self.version} is {gap:.3g} away from its recorded "
                              f"answers on the probe (tolerance {PROBE_TOLERANCE:g})")

    @property
    def nbytes(self) -> int:
        return self.network.nbytes + int(self.probe.matrix.nbytes)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "stockcode": self.stockcode,
                "version": self.version, "network": self.network.to_dict(), "encoding": self.encoding.to_dict(),
                "metadata": self.metadata, "probe": self.probe.to_dict()}

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), allow_nan=False), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: Any, source: str) -> ServingModel:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ExportError(f"{source} is not a {FORMAT} file")
        if data.get("format_version") != FORMAT_VERSION:
            raise ExportError(f"{source} has format_version {data.get('format_version')!r}; this reader knows "
                              f"{FORMAT_VERSION}")
        try:
            encoding = FittedEncoding.from_dict(data["encoding"], source)
            model = cls(stockcode=_text(data["stockcode"]), version=_text(data["version"]),
                        network=ExportedNetwork.from_dict(data["network"]), encoding=encoding,
                        metadata=dict(_mapping(data["metadata"])), probe=Probe.from_dict(data["probe"], encoding))
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, ExportError | EncodingError):
                raise ExportError(f"{source}: {error}") from error
            raise ExportError(f"{source} is malformed: {error!r}") from error
        return model


def load_serving_model(path: Path) -> ServingModel:
    """Read a serving model file and re-run its probe; raises :class:`ExportError` naming the file."""
    try:
        data = read_finite_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ExportError(f"serving model {path} is not readable JSON: {error}") from error
    model = ServingModel.from_dict(data, f"serving model {path}")
    try:
        model.check_probe()
    except (ExportError, EncodingError) as error:
        raise ExportError(f"serving model {path}: {error}") from error
    return model


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping, got {type(value).__name__}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected non-empty text, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _array(value: Any, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"expected a {ndim}-d array of numbers: {error}") from error
    if array.ndim != ndim or (ndim == 2 and array.size == 0) or not np.all(np.isfinite(array)):
        raise ValueError(f"expected a {ndim}-d array of finite numbers, got shape {array.shape}")
    return array
