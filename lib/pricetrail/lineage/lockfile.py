"""A fast reader for dvc.lock as DVC 3 writes it, falling back to YAML for anything else.

PyYAML builds its objects in Python (about 1 MB/s here, even with the C scanner), and a catalogue's dvc.lock
grows by ~8 KB per product: 100 products took seconds per revision. DVC writes the lockfile in one regular block
layout (``stages: <name>: cmd/deps/params/outs``, each dep and out a flat mapping of scalars), so this reader
walks its lines and hands only each ``params`` block to YAML, once per distinct block (every product's stage
of one kind has the same params). A line it does not expect — flow style, a multi-line scalar, an unknown key,
a comment — makes it return the full YAML parse instead, so the result is always what
:func:`pricetrail.project.dvc_lock.stages_of` gives.
"""

from __future__ import annotations

import re
import textwrap
from functools import lru_cache
from typing import Any

import yaml

from pricetrail.project.dvc_lock import stages_of

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN = re.compile(r"^[A-Za-z0-9_./@+-][A-Za-z0-9_./@+ -]*$")  # plain scalars a lockfile's paths and names use
_ITEM_KEYS = {"path", "hash", "md5", "size", "nfiles", "isexec", "cache", "persist", "push", "checkpoint"}
_INTEGERS = {"size", "nfiles"}
_HASH = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


class _Unexpected(Exception):
    """The text is not in the layout DVC writes; parse it as YAML."""


def read_lock(text: str, *, where: str, params_cache: dict[str, Any] | None = None,
              stage_cache: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The ``stages`` mapping of a dvc.lock's text, as :func:`pricetrail.project.dvc_lock.stages_of` returns it.

    The caches (a params block's text, a stage's text -> what they hold) are shared between revisions.
    """
    try:
        return _fast(text, {} if params_cache is None else params_cache, stage_cache)
    except _Unexpected:
        return stages_of(text, where=where)


_RESOLVER = yaml.resolver.Resolver()
_IMPLICIT = frozenset(key for key in _RESOLVER.yaml_implicit_resolvers if key)  # first characters of non-strings
_STR = "tag:yaml.org,2002:str"


@lru_cache(maxsize=1 << 16)  # paths and commands repeat in every revision
def _scalar(text: str) -> Any:
    if _PLAIN.match(text) and not text.endswith(" "):
        if text[0] in _IMPLICIT and _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) != _STR:
            raise _Unexpected(text)  # a number, a date, true or null: YAML decides
        return text
    if len(text) >= 2 and text[0] == text[-1] == "'" and "'" not in text[1:-1].replace("''", ""):
        return text[1:-1].replace("''", "'")
    raise _Unexpected(text)


_STAGE_START = re.compile(r"\n(?=  \S)")


def _key_value(line: str, indent: int) -> tuple[str, str]:
    key, colon, value = line[indent:].partition(":")
    if not colon or (value and value[0] != " "):
        raise _Unexpected(line)
    return key, value.strip()


def _fast(text: str, params_cache: dict[str, Any],
          stage_cache: dict[str, tuple[str, dict[str, Any]]] | None = None) -> dict[str, dict[str, Any]]:
    """Each stage's lines parsed once: a stage whose entry did not change since another revision is not re-read."""
    header, newline, body = text.partition("\n")
    if not header.startswith("schema:") or not newline:
        raise _Unexpected("schema")
    if not body.startswith("stages:\n"):
        raise _Unexpected("stages")
    cache = {} if stage_cache is None else stage_cache
    stages: dict[str, dict[str, Any]] = {}
    for chunk in _STAGE_START.split(body[len("stages:\n"):].rstrip("\n")):
        if not chunk:
            continue
        if chunk not in cache:
            cache[chunk] = _stage(chunk, params_cache)
        name, entry = cache[chunk]
        stages[name] = entry
    return stages


def _stage(chunk: str, params_cache: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    lines = chunk.split("\n")
    key, value = _key_value(lines[0], 2)
    if value or not lines[0].startswith("  ") or lines[0][2] == " ":
        raise _Unexpected(lines[0])
    name = _scalar(key)
    entry: dict[str, Any] = {}
    section: str | None = None
    items: list[dict[str, Any]] = []
    params_lines: list[str] = []
    for line in lines[1:]:
        if not line:
            continue
        if section == "params" and line.startswith("      "):
            params_lines.append(line)
            continue
        if "#" in line:
            raise _Unexpected(line)
        if line.startswith("      ") and line[6] != " " and section in ("deps", "outs") and items:
            item = items[-1]
        elif line.startswith("    - ") and section in ("deps", "outs"):
            item = {}
            items.append(item)
        elif line.startswith("    ") and line[4] != " " and line[4] != "-":
            key, value = _key_value(line, 4)
            section = key
            if key == "cmd":
                if not value:
                    raise _Unexpected(line)  # a list of commands, or a multi-line one
                entry["cmd"] = _scalar(value)
            elif key in ("deps", "outs") and not value:
                items = entry.setdefault(key, [])
            elif key == "params" and not value:
                pass
            elif key == "frozen" and value in ("true", "false"):
                entry["frozen"] = value == "true"
            else:
                raise _Unexpected(line)
            continue
        else:
            raise _Unexpected(line)
        key, colon, value = line[6:].partition(": ")
        if not colon or key not in _ITEM_KEYS or not value or value[0] == " ":
            raise _Unexpected(line)
        if key == "md5" and _HASH.match(value) and not value.isdigit():
            item[key] = value  # the common case, without asking YAML's resolver
        elif key in _INTEGERS:
            if not value.isdigit():
                raise _Unexpected(line)
            item[key] = int(value)
        elif value in ("true", "false"):
            item[key] = value == "true"
        else:
            item[key] = _scalar(value)
    if section == "params" or params_lines:
        block = "\n".join(params_lines)
        if block not in params_cache:
            try:
                params_cache[block] = yaml.load(textwrap.dedent(block), Loader=_Loader)  # noqa: S506 - safe loader
            except yaml.YAMLError as error:  # an alias to another block, say: let YAML read the whole file
                raise _Unexpected(block) from error
        if not isinstance(params_cache[block], dict):
            raise _Unexpected(block)
        entry["params"] = params_cache[block]
    return name, entry
