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

from pricetrail.config import ConfigError, atomic_path, read_yaml, validate_stockcode


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
    texts: dict[str, str] = {}
    if profile.get("params"):
        params = yaml.load(root / "params.yaml")
        _merge(params, profile["params"], "")
        buffer = io.StringIO()
        yaml.dump(params, buffer)
        texts["params.yaml"] = buffer.getvalue()
    if profile.get("stockcodes"):
        codes = {validate_stockcode(code): fields for code, fields in profile["stockcodes"].items()}
        lines = [f"# Products of profile {name!r} (git checkout stockcodes.yaml restores the defaults).",
                 "stockcodes:"]
        for code, fields in codes.items():
            description = str((fields or {}).get("description", "")).replace('"', "'")
            lines.append(f'  "{code}": {{description: "{description}"}}')
        texts["stockcodes.yaml"] = "\n".join(lines) + "\n"
    with ExitStack() as stack:
        for file_name, text in texts.items():
            target = root / file_name
            tmp = stack.enter_context(atomic_path(target))
            tmp.write_text(text, encoding="utf-8")
            if target.exists():  # keep the file's mode (the temporary file is private, 0600)
                tmp.chmod(stat.S_IMODE(target.stat().st_mode))
    return list(texts)
