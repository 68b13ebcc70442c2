"""Project configuration: where files live, and validated params/stockcodes.

One configuration story (STYLE.md): ``params.yaml`` holds every threshold and seed, ``stockcodes.yaml`` the
products. Paths are rooted at the project root so stage scripts, tests and the CLI agree on them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

STOCKCODE_PATTERN = re.compile(r"^[A-Za-z0-9]+$")


class ConfigError(ValueError):
    """A params or stockcodes file, or a value in it, is not acceptable."""


def validate_stockcode(code: object) -> str:
    """Return ``code`` as a string if it is letters and digits only; such codes are safe in paths and stage names."""
    text = str(code)
    if not STOCKCODE_PATTERN.fullmatch(text):  # fullmatch: "$" alone lets a trailing newline through
        raise ConfigError(f"stockcode {text!r} is not accepted: use letters and digits only (e.g. 85123A)")
    return text


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_params(root: Path) -> dict[str, Any]:
    params = read_yaml(root / "params.yaml")
    if not isinstance(params, dict):
        raise ConfigError(f"{root / 'params.yaml'} must hold a mapping of sections, got {type(params).__name__}")
    return params


def section(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"params.yaml has no section {name!r}; present sections: {sorted(params)}")
    return value


def settings_from_params(cls: type[T], name: str, values: Mapping[str, Any], *, error: type[ValueError],
                         list_fields: tuple[str, ...] = ()) -> T:
    """Build the settings dataclass of params section ``name``; unknown keys are an error, not silently ignored."""
    known = {item.name for item in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise error(f"params.yaml {name} has unknown keys {unknown}; accepted: {sorted(known)}")
    data = dict(values)
    for key in list_fields:  # YAML lists become tuples: settings are frozen and hashable
        data[key] = tuple(str(item) for item in (data.get(key) or ()))
    return cls(**data)


def load_stockcodes(root: Path) -> dict[str, dict[str, Any]]:
    """The products of ``stockcodes.yaml``: ``{code: {description: ...}}`` keyed by validated string codes."""
    path = root / "stockcodes.yaml"
    data = read_yaml(path)
    products = data.get("stockcodes") if isinstance(data, dict) else None
    if not isinstance(products, dict) or not products:
        raise ConfigError(f"{path} must hold a non-empty mapping 'stockcodes: {{<code>: {{description: ...}}}}'")
    result: dict[str, dict[str, Any]] = {}
    for code, fields in products.items():
        if not isinstance(code, str):
            # YAML reads 22423 as an int; DVC would then see a different key than the one we write in paths.
            raise ConfigError(f"stockcode {code!r} in {path} must be quoted so YAML reads it as text: '{code}'")
        if fields is not None and not isinstance(fields, dict):
            raise ConfigError(f"stockcode {code!r} in {path} has {fields!r}: use a mapping such as "
                              "{description: WHITE HANGING HEART T-LIGHT HOLDER}")
        result[validate_stockcode(code)] = dict(fields or {})
    return result


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds.

    A crash or an error then leaves the previous file (or nothing), never a half-written one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file gets the mode a plain write would
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask sets as it reads, which would race with threads writing files.
_UMASK = _read_umask()


def write_json(path: Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from error


def project_root() -> Path:
    """The project root: the nearest parent holding dvc.yaml (stages run there; tests run in copies)."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    raise ConfigError(f"no dvc.yaml found in {here} or its parents; run from inside a pricetrail project")
