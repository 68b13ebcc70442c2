"""The server's own configuration: from the environment or a small JSON file, never from the project checkout.

In a Lambda there is no ``dvc.yaml``, ``params.yaml`` or git, only the image and ``/tmp``; the server starts from
these values alone. ``pricetrail serve`` builds the same object from the project (:func:`from_project`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pricetrail.pricing.decision import DecisionError, DecisionSettings
from pricetrail.pricing.request import POINTS_LIMIT, RecommendSettings
from pricetrail.project.config import read_yaml, validate_stockcode
from pricetrail.project.files import ConfigError

ENV_PREFIX = "PRICETRAIL_"
# API Gateway ends a request at 29 s; a remote read must end well before it.
MAX_DEADLINE_SECONDS = 25.0


@dataclass(frozen=True)
class S3Settings:
    """A DVC remote on S3, read by content hash (``<url>/files/md5/<2>/<30>``), cached under a writable directory."""

    url: str  # s3://bucket/prefix, as `dvc remote add` was given it
    cache_dir: Path  # on Lambda only /tmp is writable
    endpoint_url: str | None = None  # an S3-compatible server (moto on loopback in the tests)
    region: str | None = None
    # Every read of the remote ends by this many seconds, answered or not: below API Gateway's 29 s and a Lambda
    # function's timeout, so a stalled remote is a 503 for that product, not a timed-out invocation.
    deadline_seconds: float = 8.0

    def __post_init__(self) -> None:
        if not self.url.startswith("s3://") or len(self.url) <= len("s3://"):
            raise ConfigError(f"s3_url={self.url!r} is not accepted: use s3://bucket/prefix (the DVC remote's URL)")
        _bounded("s3_deadline_seconds", self.deadline_seconds, 0.5, MAX_DEADLINE_SECONDS)

    @property
    def bucket(self) -> str:
        return self.url[len("s3://"):].split("/", 1)[0]

    @property
    def prefix(self) -> str:
        parts = self.url[len("s3://"):].split("/", 1)
        return parts[1].strip("/") if len(parts) > 1 else ""


@dataclass(frozen=True)
class ServeConfig:
    """Where the registry and the artifacts are, which products exist, and the bounds the router keeps."""

    registry_dir: Path
    stockcodes: tuple[str, ...]
    cache_dirs: tuple[Path, ...] = ()  # local DVC caches, tried in order
    s3: S3Settings | None = None  # tried after the local caches
    max_models: int = 32
    # The loaded models' own bytes (numpy arrays and daily histories, ~0.1-1 MiB a product), not the process:
    # well inside the smallest function the deployment template allows (256 MiB).
    max_memory_mb: float = 128.0
    default_points: int = 101
    max_points: int = 501
    range_widening: float = 0.0
    failure_retry_seconds: float = 30.0  # a product whose load failed is retried after this (or a new record)
    # With an S3 remote: how stale a product's registry records may get before the router asks the remote again
    # (serving.remote_registry); 0 reads only registry_dir (the image's baked-in records).
    registry_refresh_seconds: float = 30.0
    max_request_bytes: int = 4096  # GET only: no request needs a body
    descriptions: Mapping[str, str] = field(default_factory=dict)
    # How a price decision is taken (params.yaml decision; the server's own copy, as every setting here)
    decision: DecisionSettings = field(default_factory=DecisionSettings)

    def __post_init__(self) -> None:
        for code in self.stockcodes:
            validate_stockcode(code)
        if not self.stockcodes:
            raise ConfigError("stockcodes is empty: name at least one product the server may serve")
        if not self.cache_dirs and self.s3 is None:
            raise ConfigError("no artifact source: set cache_dirs (a local DVC cache) and/or s3_url (a DVC remote)")
        _bounded("max_models", self.max_models, 1, 100_000)
        _bounded("max_memory_mb", self.max_memory_mb, 1, 1_000_000)
        _bounded("max_points", self.max_points, 3, POINTS_LIMIT)
        _bounded("default_points", self.default_points, 3, self.max_points)
        _bounded("range_widening", self.range_widening, 0, 1)
        _bounded("failure_retry_seconds", self.failure_retry_seconds, 0, 86_400)
        _bounded("registry_refresh_seconds", self.registry_refresh_seconds, 0, 86_400)
        _bounded("max_request_bytes", self.max_request_bytes, 0, 1_000_000)


def _bounded(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is not accepted: use a number from {low:g} to {high:g}")


# Keys of the JSON file; each is also PRICETRAIL_<KEY> in the environment (the environment wins).
_DECISION_KEYS = {"delta", "min_gain", "status_quo_days", "max_band_share", "max_step", "hold_probability"}
_KEYS = {"registry_dir", "stockcodes", "stockcodes_file", "cache_dirs", "s3_url", "s3_endpoint_url", "s3_region",
         "s3_cache_dir", "s3_deadline_seconds", "max_models", "max_memory_mb", "default_points", "max_points",
         "range_widening", "failure_retry_seconds", "registry_refresh_seconds", "max_request_bytes",
         *_DECISION_KEYS}
_INTS = {"max_models", "default_points", "max_points", "max_request_bytes", "status_quo_days"}
_FLOATS = {"max_memory_mb", "s3_deadline_seconds", "range_widening", "failure_retry_seconds",
           "registry_refresh_seconds", "delta", "min_gain", "max_band_share", "max_step", "hold_probability"}


def from_mapping(values: Mapping[str, Any], *, base: Path | None = None) -> ServeConfig:
    """A config from plain values (a JSON file's or the environment's); relative paths are taken from ``base``."""
    unknown = sorted(set(values) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown serve settings {unknown}; accepted: {sorted(_KEYS)}")
    base = base or Path.cwd()

    def path(value: str) -> Path:
        return (base / os.path.expanduser(value)).resolve()

    if "registry_dir" not in values:
        raise ConfigError("registry_dir is not set (PRICETRAIL_REGISTRY_DIR): the folder holding <code>/served.json")
    descriptions: dict[str, str] = {}
    if "stockcodes" in values:
        raw = values["stockcodes"]
        codes = [c.strip() for c in raw.split(",") if c.strip()] if isinstance(raw, str) else [str(c) for c in raw]
    elif "stockcodes_file" in values:
        products = read_yaml(path(str(values["stockcodes_file"]))).get("stockcodes") or {}
        codes = [str(code) for code in products]
        descriptions = {str(code): str((spec or {}).get("description", "")) for code, spec in products.items()}
    else:
        raise ConfigError("set stockcodes (PRICETRAIL_STOCKCODES=85123A,22423) or stockcodes_file "
                          "(PRICETRAIL_STOCKCODES_FILE=stockcodes.yaml)")
    raw_caches = values.get("cache_dirs", ())
    caches = raw_caches.split(os.pathsep) if isinstance(raw_caches, str) else list(raw_caches)
    s3 = None
    numbers: dict[str, Any] = {}
    for key in _INTS | _FLOATS:
        if key in values:
            try:
                numbers[key] = int(values[key]) if key in _INTS else float(values[key])
            except (TypeError, ValueError) as error:
                raise ConfigError(f"{key}={values[key]!r} is not a number") from error
    deadline = numbers.pop("s3_deadline_seconds", None)
    if values.get("s3_url"):
        s3 = S3Settings(url=str(values["s3_url"]), cache_dir=path(str(values.get("s3_cache_dir",
                                                                                  "/tmp/pricetrail-cache"))),
                        endpoint_url=values.get("s3_endpoint_url") or None, region=values.get("s3_region") or None,
                        **({} if deadline is None else {"deadline_seconds": deadline}))
    decision = {key: numbers.pop(key) for key in _DECISION_KEYS if key in numbers}
    try:
        settings = DecisionSettings(**decision)
    except DecisionError as error:
        raise ConfigError(str(error).replace("decision.", "")) from error
    return ServeConfig(registry_dir=path(str(values["registry_dir"])), stockcodes=tuple(codes),
                       cache_dirs=tuple(path(str(c)) for c in caches if str(c).strip()), s3=s3,
                       descriptions=descriptions, decision=settings, **numbers)


def from_environment(environ: Mapping[str, str] | None = None) -> ServeConfig:
    """``PRICETRAIL_SERVE_CONFIG`` (a JSON file) overlaid by ``PRICETRAIL_<KEY>`` variables."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    base = Path.cwd()
    file = environ.get(f"{ENV_PREFIX}SERVE_CONFIG")
    if file:
        config_path = Path(file)
        try:
            values = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"PRICETRAIL_SERVE_CONFIG={file}: cannot read a JSON object: {error}") from error
        if not isinstance(values, dict):
            raise ConfigError(f"PRICETRAIL_SERVE_CONFIG={file} holds {type(values).__name__}, not a JSON object")
        base = config_path.resolve().parent
    for key in _KEYS:
        if f"{ENV_PREFIX}{key.upper()}" in environ:
            values[key] = environ[f"{ENV_PREFIX}{key.upper()}"]
    return from_mapping(values, base=base)


def from_project(root: Path, cache_dir: Path, **overrides: Any) -> ServeConfig:
    """The config ``pricetrail serve`` uses: the project's registry, stockcodes.yaml and DVC cache, and the
    ``decision`` and ``recommend`` settings of its params.yaml (as ``pricetrail recommend`` answers)."""
    from pricetrail.project.config import load_params, section

    config = from_mapping({"registry_dir": str(root / "registry"), "stockcodes_file": str(root / "stockcodes.yaml"),
                           "cache_dirs": [str(cache_dir)]}, base=root)
    params = load_params(root)
    grid = RecommendSettings.from_params(section(params, "recommend"))
    overrides.setdefault("decision", DecisionSettings.from_params(section(params, "decision")))
    overrides.setdefault("default_points", grid.grid_size)
    overrides.setdefault("max_points", max(config.max_points, grid.grid_size))
    overrides.setdefault("range_widening", grid.range_widening)
    return replace(config, **overrides)
