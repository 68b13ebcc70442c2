"""The registry of promoted models: small text records that point, by content hash, into the DVC cache.

Layout (git-tracked text only; no model, preprocessor or Parquet bytes)::

    registry/<code>/served.json            the version the product serves: its artifacts (path, md5, size,
                                           DVC output and its hash), verdict summary, metrics, lineage
    registry/<code>/versions/<v>.json      the same record for every version ever promoted (for rollback)
    registry/<code>/history.jsonl          one line per decision: promoted, kept, none, rollback,
                                           accepted_drift (with time, reason and git commit), oldest first
    registry/<code>/drift_reference.json   what the drift gate compares against: nothing yet (an older window
                                           of the product's own history), the served model's training rows, or
                                           an operator-accepted window of newer data
    registry/<code>/state.json             the product's newest daily history (by hash), written by every
                                           promotion run whatever it decided: a server prices on the state of
                                           the newest ingested data even when the model was kept

The artifacts themselves are the DVC outputs the pipeline wrote, found again by md5 in the DVC cache
(:mod:`pricetrail.registry.artifacts`) and verified before use. Only ``drift_reference.json`` is a DVC dependency
(of that product's drift gate), so promoting one product re-runs nothing of another. Every file is written atomically,
and a decision is recorded in an order that a crash at any point leaves a consistent record (see
:mod:`pricetrail.registry.decision_log`)."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pricetrail.project import locking
from pricetrail.project.config import STOCKCODE_PATTERN
from pricetrail.project.files import ConfigError
from pricetrail.project.paths import REGISTRY_DIR, ProductPaths
from pricetrail.registry.artifacts import (
    Artifact,
    ArtifactError,
    ArtifactSource,
    local_sources,
    resolve,
)

logger = logging.getLogger(__name__)

SCHEMA = 2
SERVED = "served.json"
HISTORY = "history.jsonl"
DRIFT_REFERENCE = "drift_reference.json"
STATE = "state.json"
VERSIONS = "versions"
VERSION_PATTERN = re.compile(r"^[0-9a-f]{8,64}$")

# The files a server needs, and the verdict key that names the hash the risk gate assessed.
SERVING_ARTIFACTS = {
    "model.pt": "checkpoint_md5",
    "preprocessor.json": "preprocessor_md5",
    "daily.parquet": "daily_md5",  # the product's daily history: state features at serving time
    "reference.parquet": "train_md5",  # the training rows: price range, and the drift gate's reference
    "serving.json": "serving_md5",  # the checkpoint's numbers as the router prices with them (numpy only)
}
# Records promoted before the served export (and versions migrated from the old layout) have no serving.json: a
# router with torch installed converts their checkpoint when it loads them (pricetrail.serving.loading).
LEGACY_OPTIONAL = frozenset({"serving.json"})
# Records promoted before the preprocessor was saved as JSON name its skops file instead.
LEGACY_NAMES = {"preprocessor.json": "preprocessor.skops"}

ACTIONS = ("promoted", "kept", "none", "rollback", "accepted_drift")


class RegistryError(ValueError):
    """The registry is missing, inconsistent or damaged for a product, or an operator request cannot be met."""


def timestamp(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="seconds")


def product_dir(root: Path, code: str) -> Path:
    return root / ProductPaths(code).registry_dir


def recorded_products(root: Path) -> list[str]:
    """Every product with a folder under registry/, listed in stockcodes.yaml or not: a product removed from the
    list (or narrowed away by a profile) still has versions that a rollback, gc and push must know about."""
    directory = root / REGISTRY_DIR
    if not directory.is_dir():
        return []
    codes = []
    for path in sorted(directory.iterdir()):
        if not path.is_dir():
            continue
        if not STOCKCODE_PATTERN.fullmatch(path.name):
            raise RegistryError(f"{path} is not a product's registry folder (a stockcode is letters and digits "
                                "only); move it out of registry/ so every record there can be read")
        codes.append(path.name)
    return codes


def registry_lock(root: Path):  # noqa: ANN201 - a context manager
    """The registry lock (see :mod:`pricetrail.project.locking`): every writer of registry/ holds it."""
    return locking.hold(root, locking.REGISTRY)


# --------------------------------------------------------------------------------------------- reading records


def read_record(path: Path, code: str) -> dict[str, Any]:
    if not path.is_file():
        raise RegistryError(f"registry record of {code} is damaged: {path} does not exist")
    return parse_record(path.read_text(encoding="utf-8"), str(path), code)


def parse_json(text: str, where: str) -> Any:
    """JSON text with the message :func:`pricetrail.project.files.read_json` gives for a file."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{where} is not valid JSON: {error}") from error


def parse_record(text: str, where: str, code: str) -> dict[str, Any]:
    """A served.json or versions/<v>.json record of ``code`` from its text (the workspace's or a git revision's);
    ``where`` names the file in messages."""
    try:
        record = parse_json(text, where)
    except ConfigError as error:
        raise RegistryError(f"registry record of {code} is damaged: {error}") from error
    if not isinstance(record, dict):
        raise RegistryError(f"registry record {where} of {code} is damaged: expected a JSON object")
    if "schema" not in record and "path" in record:
        raise RegistryError(f"{where} is in the old layout that copied binaries into registry/; convert it with "
                            "`pricetrail migrate-registry` (nothing is lost)")
    if record.get("schema") != SCHEMA:
        raise RegistryError(f"registry record {where} of {code} has schema {record.get('schema')!r}; "
                            f"this pricetrail reads schema {SCHEMA}")
    version = record.get("version")
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise RegistryError(f"registry record {where} of {code} names version {version!r}; expected a hex "
                            "content hash")
    if record.get("stockcode") != code:
        raise RegistryError(f"registry record {where} belongs to {record.get('stockcode')!r}, not {code}")
    try:
        artifacts_of(record)
    except ArtifactError as error:
        raise RegistryError(f"registry record {where} of {code} is damaged: {error}") from error
    problem = _record_problem(record)
    if problem:
        raise RegistryError(f"registry record {where} of {code} is damaged: {problem}")
    return record


def kind_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _field_problem(record: Mapping[str, Any], key: str, accepted: tuple[type, ...], *, required: bool = False,
                   label: str | None = None) -> str | None:
    name = label or key
    if key not in record:
        return f"{name} is missing" if required else None
    value = record[key]
    if isinstance(value, bool) and bool not in accepted:
        return f"{name} is {value!r}; expected {' or '.join(t.__name__ for t in accepted)}"
    if not isinstance(value, accepted):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in accepted)
        return f"{name} is {kind_of(value)} {repr(value)[:40]}; expected {names}"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _record_problem(record: Mapping[str, Any]) -> str | None:
    """The first field of a served or version record whose type a reader could not use, or None."""
    for key, accepted in (("promoted_at", (str, type(None))), ("git_commit", (str, type(None))),
                          ("git_dirty", (bool, type(None))), ("served_by", (str,)), ("served_since", (str,)),
                          ("reason", (str,)), ("drift", (str,)), ("stages", (dict,)), ("price_range", (dict,)),
                          ("metrics", (dict,)), ("training_data", (dict,))):
        problem = _field_problem(record, key, accepted)
        if problem:
            return problem
    problem = _field_problem(record, "verdict", (dict,), required=True)
    if problem:
        return problem
    verdict = record["verdict"]
    for key, accepted in (("promoted", (bool,)), ("checks", (list,)), ("params", (dict,)), ("lineage", (dict,))):
        problem = _field_problem(verdict, key, accepted, required=key in ("promoted", "checks"),
                                 label=f"verdict.{key}")
        if problem:
            return problem
    groups = verdict.get("customer_groups")
    if groups is not None:
        if not isinstance(groups, dict) or not all(isinstance(entry, dict) and isinstance(entry.get("servable"), bool)
                                                   for entry in groups.values()):
            return f"verdict.customer_groups is {repr(groups)[:60]}; expected {{group: {{servable: true|false, ...}}}}"
    for index, check in enumerate(verdict["checks"]):
        if not isinstance(check, dict):
            return f"verdict.checks[{index}] is {kind_of(check)}; expected an object with name and passed"
        for key, accepted in (("name", (str,)), ("passed", (bool,))):
            problem = _field_problem(check, key, accepted, required=True, label=f"verdict.checks[{index}].{key}")
            if problem:
                return problem
    earlier = record.get("earlier_decisions")
    if earlier is not None and not (isinstance(earlier, dict) and isinstance(earlier.get("version"), str)):
        return f"earlier_decisions is {repr(earlier)[:60]}; expected {{version: <replaced model>, decisions: {{...}}}}"
    for where, decisions in (("verdict.price_decisions", verdict.get("price_decisions")),
                             ("earlier_decisions.decisions", (earlier or {}).get("decisions"))):
        problem = _decisions_problem(decisions, where)
        if problem:
            return problem
    for key, value in (record.get("metrics") or {}).items():
        if value is not None and not _number(value):
            return f"metrics.{key} is {kind_of(value)} {repr(value)[:40]}; expected a finite number or null"
    training = record.get("training_data")
    if training is not None:
        for key, accepted in (("first_date", (str,)), ("last_date", (str,)), ("rows", (int,))):
            problem = _field_problem(training, key, accepted, required=True, label=f"training_data.{key}")
            if problem:
                return problem
    for group, bounds in (record.get("price_range") or {}).items():
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(_number(b) and b > 0 for b in bounds)
                and bounds[0] <= bounds[1]):
            return f"price_range.{group} is {str(bounds)[:60]!r}; expected [lowest, highest], prices > 0"
    return None


def _decisions_problem(decisions: Any, where: str) -> str | None:
    """A verdict's (or a replaced model's) price decisions: {group: {day, action, price, status_quo,
    probability_of_gain}}, prices > 0."""
    if decisions is None:
        return None
    expected = ("expected {group: {day: date, action: change|keep, price: > 0, status_quo: > 0, "
                "probability_of_gain: 0-1 or null}}")
    if not isinstance(decisions, dict):
        return f"{where} is {kind_of(decisions)}; {expected}"
    for group, entry in decisions.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("day"), str)
                and entry.get("action") in ("change", "keep")
                and all(_number(entry.get(key)) and entry[key] > 0 for key in ("price", "status_quo"))
                and (entry.get("probability_of_gain") is None or (_number(entry["probability_of_gain"])
                                                                   and 0 <= entry["probability_of_gain"] <= 1))
                and (entry["action"] == "keep" or entry.get("probability_of_gain") is not None)):
            return f"{where}.{group} is {repr(entry)[:80]}; {expected}"
    return None


def artifacts_of(record: Mapping[str, Any]) -> dict[str, Artifact]:
    recorded = record.get("artifacts")
    if not isinstance(recorded, Mapping):
        raise ArtifactError("no 'artifacts' mapping")
    names = [name if name in recorded else LEGACY_NAMES.get(name, name) for name in SERVING_ARTIFACTS]
    missing = sorted(name for name in names if name not in recorded and name not in LEGACY_OPTIONAL)
    if missing:
        raise ArtifactError(f"artifacts {missing} are not recorded")
    return {name: Artifact.from_dict(name, recorded[name]) for name in names if name in recorded}


@dataclass(frozen=True)
class ServedModel:
    """A product's promoted version: its record, and its artifacts by content hash."""

    stockcode: str
    version: str
    record: dict[str, Any]

    @property
    def artifacts(self) -> dict[str, Artifact]:
        return artifacts_of(self.record)

    def resolve(self, sources: Iterable[ArtifactSource]) -> dict[str, Path]:
        """Verified local paths of every serving artifact (see :func:`pricetrail.registry.artifacts.resolve`)."""
        sources = list(sources)
        owner = f"{self.stockcode} version {self.version}"
        return {name: resolve(artifact, sources, owner=owner) for name, artifact in self.artifacts.items()}


def served_model(root: Path, code: str) -> ServedModel | None:
    """The product's promoted model, or None if none ever passed its gates."""
    path = product_dir(root, code) / SERVED
    if not path.is_file():
        if (product_dir(root, code) / VERSIONS).is_dir() and any((product_dir(root, code) / VERSIONS).glob("*/")):
            raise RegistryError(f"registry/{code} is in the old layout (versions/<v>/ folders of binaries) without "
                                "a served.json; convert it with `pricetrail migrate-registry`")
        return None
    record = read_record(path, code)
    return ServedModel(stockcode=code, version=record["version"], record=record)


def version_record(root: Path, code: str, version: str) -> dict[str, Any]:
    """The record of one promoted version (any in the history, not only the served one)."""
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise RegistryError(f"version {version!r} is not a model version (a hex content hash, as "
                            f"`pricetrail history {code}` lists them)")
    path = product_dir(root, code) / VERSIONS / f"{version}.json"
    if not path.is_file():
        known = promoted_versions(root, code)
        raise RegistryError(f"{code} has never promoted version {version}; promoted versions: "
                            f"{', '.join(known) if known else 'none'}")
    return read_record(path, code)


def resolve_version(root: Path, code: str, version: str,
                    sources: Iterable[ArtifactSource] | None = None) -> dict[str, Path]:
    """Verified local files of a (product, version), fetched by hash from the cache (or the given sources)."""
    record = version_record(root, code, version)
    model = ServedModel(stockcode=code, version=version, record=record)
    return model.resolve(local_sources(root) if sources is None else sources)


def history(root: Path, code: str) -> list[dict[str, Any]]:
    """Every recorded decision of the product, oldest first."""
    path = product_dir(root, code) / HISTORY
    if not path.is_file():
        return []
    return parse_history(path.read_text(encoding="utf-8"), str(path))


def parse_history(text: str, where: str) -> list[dict[str, Any]]:
    """The decisions in a history.jsonl's text (the workspace's or a git revision's); ``where`` names it."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise RegistryError(f"{where} line {number} is not JSON ({error.msg}): {line[:80]!r}; repair or remove "
                                "that line (git diff shows what changed)") from error
        if not isinstance(entry, dict) or entry.get("action") not in ACTIONS:
            raise RegistryError(f"{where} line {number} is not a registry decision (action one of {ACTIONS}): "
                                f"{line[:80]!r}")
        problem = _history_problem(entry)
        if problem:
            raise RegistryError(f"{where} line {number} ({entry['action']}) is damaged: {problem}; repair or remove "
                                "that line (git diff shows what changed)")
        entries.append(entry)
    return entries


def _history_problem(entry: Mapping[str, Any]) -> str | None:
    """The first field of a history line that a reader could not use, or None."""
    action = entry["action"]
    serves = action in ("promoted", "rollback", "kept")  # a line that names the version served after it
    checks: list[tuple[str, tuple[type, ...], bool]] = [
        ("time", (str,), True), ("reason", (str,), True), ("candidate", (str, type(None)), False),
        ("git_commit", (str, type(None)), False), ("git_dirty", (bool, type(None)), False),
        ("metrics", (dict, type(None)), False),
        ("version", (str,) if serves else (str, type(None)), serves)]
    if action == "rollback":
        checks.append(("from_version", (str,), True))
    if action == "accepted_drift":
        checks.append(("window", (list,), True))
    for key, accepted, required in checks:
        problem = _field_problem(entry, key, accepted, required=required)
        if problem:
            return problem
    version = entry.get("version")
    if isinstance(version, str) and not VERSION_PATTERN.match(version):
        return f"version {version[:40]!r} is not a model version (a hex content hash)"
    return None


def promoted_versions(root: Path, code: str) -> list[str]:
    """Versions that were served at some time, in the order they were first served."""
    return served_versions(history(root, code))


def served_versions(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """The versions a history (as :func:`parse_history` returns it) served, in the order they were first served."""
    seen: list[str] = []
    for entry in entries:
        if entry["action"] in ("promoted", "rollback") and entry.get("version") not in seen:
            seen.append(entry["version"])
    return seen


def rolled_back_versions(root: Path, code: str) -> set[str]:
    """Versions an operator rolled back from and has not served again since: never re-promoted automatically."""
    blocked: set[str] = set()
    for entry in history(root, code):
        if entry["action"] == "rollback":
            blocked.add(str(entry.get("from_version")))
            blocked.discard(str(entry.get("version")))
    return blocked
