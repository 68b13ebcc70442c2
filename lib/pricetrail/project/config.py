"""The project's configuration: ``params.yaml`` (every threshold and seed) and ``stockcodes.yaml`` (the products),
read and validated the way DVC reads them."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pricetrail.project.files import ConfigError

T = TypeVar("T")

STOCKCODE_PATTERN = re.compile(r"^[A-Za-z0-9]+$")


def validate_stockcode(code: object) -> str:
    """Return ``code`` as a string if it is letters and digits only; such codes are safe in paths and stage names."""
    text = str(code)
    if not STOCKCODE_PATTERN.fullmatch(text):  # fullmatch: "$" alone lets a trailing newline through
        raise ConfigError(f"stockcode {text!r} is not accepted: use letters and digits only (e.g. 85123A)")
    return text


def read_yaml(path: Path) -> Any:
    """A YAML file as pricetrail reads it (PyYAML, YAML 1.1); malformed YAML is one ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(error)}") from error


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_problem(error: Exception) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else str(problem)


def read_yaml_as_dvc_does(path: Path) -> Any:
    """A YAML file read as pricetrail reads it, refused where DVC would read it differently.

    DVC reads ``dvc.yaml``'s vars files and params with ruamel (YAML 1.2), pricetrail with PyYAML (YAML 1.1):
    ``1e5`` is text to one and a number to the other, ``no`` a boolean to one and text to the other. A product
    key or a param that the two read differently would make the stages run on other values than pricetrail
    checks, so it is refused by name.
    """
    ours = read_yaml(path)
    try:
        from ruamel.yaml import YAML
        from ruamel.yaml import YAMLError as RuamelError
    except ImportError:  # a server image without DVC: nobody else reads the file
        return ours
    try:
        theirs = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except RuamelError as error:
        raise ConfigError(f"{path} is not valid YAML for DVC: {_yaml_problem(error)}") from error
    difference = _first_difference(ours, theirs, "")
    if difference is not None:
        where, mine, dvcs = difference
        raise ConfigError(f"{path}: {where or 'the document'} reads as {mine!r} to pricetrail but {dvcs!r} to DVC "
                          "(YAML 1.1 and 1.2 differ); quote it (e.g. \"1e5\") or write the number with a dot "
                          "(1.0e-4) so both read the same")
    return ours


def _key_label(key: Any, where: str) -> str:
    return f"key {key!r}" + (f" under {where.rstrip('.')}" if where else "")


def _first_difference(ours: Any, theirs: Any, where: str) -> tuple[str, Any, Any] | None:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if list(ours) != list(theirs):
            for mine, dvcs in zip(list(ours), list(theirs), strict=False):
                if mine != dvcs or type(mine) is not type(dvcs):
                    return (_key_label(mine, where), mine, dvcs)
            return (f"the keys under {where.rstrip('.') or 'the document'}", list(ours), list(theirs))
        for key in ours:
            if type(key) is not type(next(k for k in theirs if k == key)):
                return (_key_label(key, where), key, next(k for k in theirs if k == key))
            found = _first_difference(ours[key], theirs[key], f"{where}{key}.")
            if found is not None:
                return found
        return None
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (mine, dvcs) in enumerate(zip(ours, theirs, strict=True)):
            found = _first_difference(mine, dvcs, f"{where.rstrip('.')}[{index}].")
            if found is not None:
                return found
        return None
    same_type = type(ours) is type(theirs) or (isinstance(ours, int | float) and isinstance(theirs, int | float)
                                              and not isinstance(ours, bool) and not isinstance(theirs, bool))
    if not same_type or ours != theirs:
        return (where.rstrip("."), ours, theirs)
    return None


def load_params(root: Path) -> dict[str, Any]:
    params = read_yaml_as_dvc_does(root / "params.yaml")
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
    if not isinstance(values, Mapping):
        raise error(f"params.yaml {name} is {values!r}: a mapping of settings is required")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    known = {item.name for item in fields}
    unknown = sorted(set(values) - known)
    if unknown:
        raise error(f"params.yaml {name} has unknown keys {unknown}; accepted: {sorted(known)}")
    required = {item.name for item in fields
                if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
                and item.name not in list_fields}  # an absent list is an empty one
    missing = sorted(required - set(values))
    if missing:
        raise error(f"params.yaml {name} lacks keys {missing}; every one of {sorted(required)} must be set")
    data = dict(values)
    for key in list_fields:  # YAML lists become tuples: settings are frozen and hashable
        data[key] = tuple(str(item) for item in (data.get(key) or ()))
    return cls(**data)


@dataclasses.dataclass(frozen=True)
class BaseSettings:
    """``params.yaml: base``: what every seeded stage shares."""

    seed: int

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"base.seed={self.seed!r} is not accepted: a whole number from 0 to 2**32 - 1")

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> BaseSettings:
        return settings_from_params(cls, "base", values, error=ConfigError)


def seed_of(params: Mapping[str, Any]) -> int:
    """``base.seed`` of a params mapping, checked."""
    return BaseSettings.from_params(section(params, "base")).seed


def load_stockcodes(root: Path) -> dict[str, dict[str, Any]]:
    """The products of ``stockcodes.yaml``: ``{code: {description: ...}}`` keyed by validated string codes."""
    path = root / "stockcodes.yaml"
    data = read_yaml_as_dvc_does(path)
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
        description = (fields or {}).get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"stockcode {code!r} in {path} has description {description!r}: quote it as text")
        result[validate_stockcode(code)] = dict(fields or {})
    return result


def project_root() -> Path:
    """The project root: the nearest parent holding dvc.yaml (stages run there; tests run in copies)."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    raise ConfigError(f"no dvc.yaml found in {here} or its parents; run from inside a pricetrail project")
