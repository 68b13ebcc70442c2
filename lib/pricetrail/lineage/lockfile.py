"""A fast reader for dvc.lock as DVC 3 writes it, falling back to YAML for anything else.

PyYAML builds its objects in Python (about 1 MB/s here, even with the C scanner), and a catalogue's dvc.lock
grows by ~8 KB per product: 100 products took seconds per revision. DVC writes the lockfile in one regular block
layout (``stages: <name>: cmd/deps/params/outs``, each dep and out a flat mapping of scalars), so this reader
walks its lines and hands only each ``params`` block to YAML, once per distinct block (every product's stage
of one kind has the same params). A line it does not expect — flow style, a multi-line scalar, an unknown key,
a comment — makes it return the full YAML parse instead, so the result is always what
:func:`pricetrail.dvclock.stages_of` gives.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import yaml

from pricetrail.dvclock import stages_of

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN = re.compile(r"^[A-Za-z0-9_./@+-][A-Za-z0-9_./@+ -]*$")  # plain scalars a lockfile's paths and names use
_ITEM_KEYS = {"path", "hash", "md5", "size", "nfiles", "isexec", "cache", "persist", "push", "checkpoint"}
_INTEGERS = {"size", "nfiles"}
_HASH = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


class _Unexpected(Exception):
    """The text is not in the layout DVC writes; parse it as YAML."""


def read_lock(text: str, *, where: str, params_cache: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The ``stages`` mapping of a dvc.lock's text, as :func:`pricetrail.dvclock.stages_of` returns it."""
    try:
        return _fast(text, {} if params_cache is None else params_cache)
    except _Unexpected:
        return stages_of(text, where=where)


_RESOLVER = yaml.resolver.Resolver()
_IMPLICIT = frozenset(key for key in _RESOLVER.yaml_implicit_resolvers if key)  # first characters of non-strings
_STR = "tag:yaml.org,2002:str"


def _scalar(text: str) -> Any:
    if _PLAIN.match(text) and not text.endswith(" "):
        if text[0] in _IMPLICIT and _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) != _STR:
            raise _Unexpected(text)  # a number, a date, true or null: YAML decides
        return text
    if len(text) >= 2 and text[0] == text[-1] == "'" and "'" not in text[1:-1].replace("''", ""):
        return text[1:-1].replace("''", "'")
    raise _Unexpected(text)


def _key_value(line: str, indent: int) -> tuple[str, str]:
    body = line[indent:]
    key, colon, value = body.partition(":")
    if not colon or (value and not value.startswith(" ")):
        raise _Unexpected(line)
    return key, value.strip()


def _fast(text: str, params_cache: dict[str, Any]) -> dict[str, dict[str, Any]]:
    lines = text.split("\n")
    if not lines or not lines[0].startswith("schema:"):
        raise _Unexpected("schema")
    if len(lines) < 2 or lines[1] != "stages:":
        raise _Unexpected("stages")
    stages: dict[str, dict[str, Any]] = {}
    entry: dict[str, Any] | None = None
    section: str | None = None
    items: list[dict[str, Any]] = []
    params_lines: list[str] = []

    def close_params() -> None:
        if entry is not None and section == "params":
            block = "\n".join(params_lines)
            if block not in params_cache:
                try:
                    params_cache[block] = yaml.load(textwrap.dedent(block), Loader=_Loader)  # noqa: S506 - safe
                except yaml.YAMLError as error:  # an alias to another block, say: let YAML read the whole file
                    raise _Unexpected(block) from error
            entry["params"] = params_cache[block]
            params_lines.clear()

    for line in lines[2:]:
        if not line:
            continue
        if "#" in line and section != "params":
            raise _Unexpected(line)
        indent = len(line) - len(line.lstrip(" "))
        if section == "params" and indent >= 6:
            params_lines.append(line)
            continue
        if indent == 2:
            close_params()
            key, value = _key_value(line, 2)
            if value:
                raise _Unexpected(line)
            entry = stages.setdefault(_scalar(key), {})
            section = None
        elif indent == 4 and entry is not None and not line.startswith("    - "):
            close_params()
            key, value = _key_value(line, 4)
            section = key
            if key == "cmd":
                if not value:
                    raise _Unexpected(line)  # a list of commands, or a multi-line one
                entry["cmd"] = _scalar(value)
            elif key in ("deps", "outs"):
                if value:
                    raise _Unexpected(line)
                items = entry.setdefault(key, [])
            elif key == "params":
                if value:
                    raise _Unexpected(line)
            elif key == "frozen" and value in ("true", "false"):
                entry["frozen"] = value == "true"
            else:
                raise _Unexpected(line)
        elif section in ("deps", "outs") and (line.startswith("    - ") or indent == 6):
            if line.startswith("    - "):
                items.append({})
                key, value = _key_value(line, 6)
            else:
                key, value = _key_value(line, 6)
            if key not in _ITEM_KEYS or not value or not items:
                raise _Unexpected(line)
            if key in _INTEGERS:
                if not value.isdigit():
                    raise _Unexpected(line)
                items[-1][key] = int(value)
            elif value in ("true", "false"):
                items[-1][key] = value == "true"
            elif key == "md5" and _HASH.match(value) and not value.isdigit():
                items[-1][key] = value  # the common case, without asking YAML's resolver
            else:
                items[-1][key] = _scalar(value)
        else:
            raise _Unexpected(line)
    close_params()
    return stages
