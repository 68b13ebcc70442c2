"""Profiles: named sets of params overrides (and optionally products) applied to params.yaml in place.

The YAML is rewritten with ruamel's round-trip mode, so the comments that document every param survive.
Both files are checked and written to temporary files first and moved into place only when both are complete:
a failure (a bad profile, a full disk) leaves them as they were, never half-written.
"""

from __future__ import annotations

import io
import stat
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from pricetrail.project.config import read_yaml_as_dvc_does, validate_stockcode
from pricetrail.project.files import ConfigError, atomic_path


def available(root: Path) -> list[str]:
    return sorted(path.stem for path in (root / "profiles").glob("*.yaml"))


def _merge(target: Any, overrides: Mapping[str, Any], where: str) -> None:
    for key, value in overrides.items():
        if key not in target:
            raise ConfigError(f"profile sets {where}{key}, which params.yaml does not have")
        if isinstance(value, Mapping) and isinstance(target[key], Mapping) and value:
            _merge(target[key], value, f"{where}{key}.")
        else:
            target[key] = value


def _profile_products(name: str, products: Any) -> dict[str, str]:
    """The profile's products as ``{code: description}``: every key text in YAML (a bare ``NO`` or ``0123`` is a
    boolean or a number, never the product the user meant), every description text."""
    if not isinstance(products, Mapping):
        raise ConfigError(f"profile {name}: stockcodes must be a mapping of quoted codes to {{description: ...}}")
    result = {}
    for code, fields in products.items():
        if not isinstance(code, str):
            raise ConfigError(f"profile {name}: stockcode {code!r} is read as {type(code).__name__}, not text: quote "
                              "it (\"...\") exactly as the product's code is written")
        description = (fields or {}).get("description", "") if isinstance(fields, Mapping) else fields
        if not isinstance(description, str):
            raise ConfigError(f"profile {name}: stockcode {code} has description {description!r}; expected "
                              "{description: <text>}")
        result[validate_stockcode(code)] = description
    return result


def stockcodes_text(name: str, products: Mapping[str, str]) -> str:
    """stockcodes.yaml for these products, through a YAML emitter: codes double-quoted (text to every YAML reader,
    DVC's included), descriptions quoted wherever YAML needs it (a backslash, a colon, a quote)."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    yaml = YAML()
    yaml.width = 4096
    entries = CommentedMap()
    for code, description in products.items():
        fields = CommentedMap(description=description)
        fields.fa.set_flow_style()
        entries[DoubleQuotedScalarString(code)] = fields
    buffer = io.StringIO()
    buffer.write(f"# Products of profile {name!r} (git checkout stockcodes.yaml restores the defaults).\n")
    yaml.dump({"stockcodes": entries}, buffer)
    return buffer.getvalue()


def apply_profile(root: Path, name: str) -> list[str]:
    """Apply ``profiles/<name>.yaml``; return the files it changed."""
    if name not in available(root):
        raise ConfigError(f"profile {name!r} does not exist; available: {available(root)}")
    profile = read_yaml_as_dvc_does(root / "profiles" / f"{name}.yaml") or {}
    if not isinstance(profile, dict):
        raise ConfigError(f"profile {name} must hold a mapping with params and/or stockcodes")
    unknown = sorted(set(profile) - {"params", "stockcodes"})
    if unknown:
        raise ConfigError(f"profile {name} has unknown sections {unknown}; accepted: params, stockcodes")
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 110
    texts: dict[str, str] = {}
    if profile.get("params"):
        params = yaml.load(root / "params.yaml")
        _merge(params, profile["params"], "")
        buffer = io.StringIO()
        yaml.dump(params, buffer)
        texts["params.yaml"] = buffer.getvalue()
    if profile.get("stockcodes"):
        texts["stockcodes.yaml"] = stockcodes_text(name, _profile_products(name, profile["stockcodes"]))
    with ExitStack() as stack:
        for file_name, text in texts.items():
            target = root / file_name
            tmp = stack.enter_context(atomic_path(target))
            tmp.write_text(text, encoding="utf-8")
            if target.exists():  # keep the file's mode (the temporary file is private, 0600)
                tmp.chmod(stat.S_IMODE(target.stat().st_mode))
    return list(texts)
