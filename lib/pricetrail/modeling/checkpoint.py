"""Model checkpoints of plain types only (they load with ``torch.load(weights_only=True)``), and model versions."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pricetrail.modeling.network import build_network, network_input_dim
from pricetrail.project.files import atomic_path

logger = logging.getLogger(__name__)


CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_KEYS: tuple[str, ...] = (
    "format_version",
    "model_version",
    "state_dict",
    "config",
    "feature_names",
    "input_dim",
    "metadata",
)


_VERSION_LENGTH = 16


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not describe a valid network."""


def to_plain_types(value: Any, where: str = "value") -> Any:
    """Return ``value`` as nested dict/list/str/int/float/bool/None (numpy scalars and arrays converted).

    Raises TypeError naming the location (``where``) of anything else, so a checkpoint stays loadable
    with ``torch.load(weights_only=True)`` and a record stays JSON-serialisable.
    """
    # numpy scalars first: np.float64 and np.str_ subclass float and str but do not unpickle with
    # weights_only=True; other subclasses (IntEnum ...) are reduced to their base type for the same reason.
    if isinstance(value, np.generic):
        return to_plain_types(value.item(), where)
    if value is None:
        return None
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, np.ndarray):
        return to_plain_types(value.tolist(), where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has key {key!r} of type {type(key).__name__}; keys must be str")
            plain[key] = to_plain_types(item, f"{where}[{key!r}]")
        return plain
    if isinstance(value, list | tuple):
        return [to_plain_types(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{where} is a {type(value).__name__} ({value!r}); accepted: None, bool, int, float, str, "
        "numpy scalars/arrays, paths, and lists/dicts of those"
    )


def model_version(network: nn.Module, config: Mapping[str, Any]) -> str:
    """Content hash of the weights and the config: first 16 hex chars of a sha256.

    Covers every state_dict entry in key order (name, dtype, shape, bytes) and the canonical JSON of
    the config, so identical weights and config give the same version in any process.
    """
    digest = hashlib.sha256()
    for key, tensor in network.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(key.encode("utf-8"))
        digest.update(f"|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.numpy().tobytes())
    canonical = json.dumps(to_plain_types(config, "config"), sort_keys=True, separators=(",", ":"))
    digest.update(canonical.encode("utf-8"))
    return digest.hexdigest()[:_VERSION_LENGTH]


def save_checkpoint(
    path: str | os.PathLike[str],
    network: nn.Module,
    *,
    config: Mapping[str, Any],
    feature_names: Sequence[str],
    metadata: Mapping[str, Any],
) -> str:
    """Write ``network`` with its config, feature names and metadata atomically; return the model version.

    The file holds plain types only, so it loads with ``torch.load(weights_only=True)``.
    """
    plain_config = to_plain_types(config, "config")
    plain_metadata = to_plain_types(metadata, "metadata")
    if isinstance(feature_names, str) or not all(isinstance(name, str) for name in feature_names):
        raise ValueError(f"feature_names must be a list of str, got {feature_names!r}")
    names = [str(name) for name in feature_names]
    input_dim = network_input_dim(network)
    if len(names) != input_dim:
        raise ValueError(f"feature_names has {len(names)} names but the network takes {input_dim} features")
    state_dict = {key: tensor.detach().cpu().clone() for key, tensor in network.state_dict().items()}
    # Fail at save time, not at load time, when the config cannot rebuild this network.
    expected = build_network(input_dim, plain_config).state_dict()
    mismatch = _state_dict_mismatch(expected, state_dict)
    if mismatch:
        raise ValueError(f"config does not describe this network: {mismatch}")

    version = model_version(network, plain_config)
    checkpoint = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_version": version,
        "state_dict": state_dict,
        "config": plain_config,
        "feature_names": names,
        "input_dim": input_dim,
        "metadata": plain_metadata,
    }
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(checkpoint, tmp)
    logger.info("saved checkpoint %s (model version %s)", target, version)
    return version


def _state_dict_mismatch(expected: Mapping[str, torch.Tensor], actual: Mapping[str, Any]) -> str:
    """Describe how ``actual`` differs from ``expected`` in keys or shapes; empty string when they match."""
    missing = [key for key in expected if key not in actual]
    unexpected = [key for key in actual if key not in expected]
    if missing or unexpected:
        return f"missing keys {missing}, unexpected keys {unexpected}"
    for key, tensor in expected.items():
        value = actual[key]
        if not isinstance(value, torch.Tensor):
            return f"{key} is a {type(value).__name__}, not a tensor"
        if tuple(value.shape) != tuple(tensor.shape):
            return f"{key} has shape {tuple(value.shape)}, expected {tuple(tensor.shape)}"
    return ""


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; return (network in eval mode, checkpoint dict).

    Every failure (missing, truncated or corrupted file, wrong keys, weights that do not fit the config,
    content not matching its recorded model version) raises CheckpointError naming the path.
    """
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise CheckpointError(f"checkpoint {where}: no such file")
    try:
        checkpoint = torch.load(where, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        # Corrupted bytes surface as RuntimeError, KeyError, EOFError, UnpicklingError and more depending
        # on where the damage is; all of them mean the same thing to the caller. Chained, not swallowed.
        raise CheckpointError(f"checkpoint {where}: cannot be read ({type(exc).__name__}: {exc})") from exc

    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {where}: holds a {type(checkpoint).__name__}, expected a dict")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {where}: missing keys {missing}; expected {list(CHECKPOINT_KEYS)}")
    if checkpoint["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {where}: format_version {checkpoint['format_version']!r} is not supported; "
            f"accepted: {CHECKPOINT_FORMAT_VERSION}"
        )
    input_dim = checkpoint["input_dim"]
    names = checkpoint["feature_names"]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise CheckpointError(f"checkpoint {where}: feature_names is not a list of str")
    if not isinstance(checkpoint["state_dict"], dict):
        raise CheckpointError(
            f"checkpoint {where}: state_dict is a {type(checkpoint['state_dict']).__name__}"
        )
    try:
        network = build_network(input_dim, checkpoint["config"])
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {where}: invalid config or input_dim ({exc})") from exc
    if len(names) != input_dim:
        raise CheckpointError(f"checkpoint {where}: {len(names)} feature_names for input_dim {input_dim}")
    mismatch = _state_dict_mismatch(network.state_dict(), checkpoint["state_dict"])
    if mismatch:
        raise CheckpointError(f"checkpoint {where}: state_dict does not fit its config ({mismatch})")
    try:
        network.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {where}: state_dict does not fit its config ({exc})") from exc
    network.eval()

    try:
        version = model_version(network, checkpoint["config"])
    except TypeError as exc:
        raise CheckpointError(f"checkpoint {where}: config holds non-plain values ({exc})") from exc
    if version != checkpoint["model_version"]:
        raise CheckpointError(
            f"checkpoint {where}: content hashes to {version} but records model_version "
            f"{checkpoint['model_version']!r}; the file was altered after it was written"
        )
    return network, checkpoint
