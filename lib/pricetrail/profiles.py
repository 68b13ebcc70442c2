"""Profiles: named sets of params overrides (and optionally products) applied to params.yaml in place.

The YAML is rewritten with ruamel's round-trip mode, so the comments that document every param survive.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from pricetrail.config import ConfigError, read_yaml, validate_stockcode


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


def apply_profile(root: Path, name: str) -> list[str]:
    """Apply ``profiles/<name>.yaml``; return the files it changed."""
    if name not in available(root):
        raise ConfigError(f"profile {name!r} does not exist; available: {available(root)}")
    profile = read_yaml(root / "profiles" / f"{name}.yaml") or {}
    unknown = sorted(set(profile) - {"params", "stockcodes"})
    if unknown:
        raise ConfigError(f"profile {name} has unknown sections {unknown}; accepted: params, stockcodes")
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 110
    changed = []
    if profile.get("params"):
        params_path = root / "params.yaml"
        params = yaml.load(params_path)
        _merge(params, profile["params"], "")
        with params_path.open("w", encoding="utf-8") as handle:
            yaml.dump(params, handle)
        changed.append("params.yaml")
    if profile.get("stockcodes"):
        codes = {validate_stockcode(code): fields for code, fields in profile["stockcodes"].items()}
        lines = [f"# Products of profile {name!r} (git checkout stockcodes.yaml restores the defaults).",
                 "stockcodes:"]
        for code, fields in codes.items():
            description = str((fields or {}).get("description", "")).replace('"', "'")
            lines.append(f'  "{code}": {{description: "{description}"}}')
        (root / "stockcodes.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        changed.append("stockcodes.yaml")
    return changed
