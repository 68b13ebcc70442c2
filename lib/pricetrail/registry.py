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
(:mod:`pricetrail.registry_artifacts`) and verified before use. Only ``drift_reference.json`` is a DVC dependency (of that
product's drift gate), so promoting one product re-runs nothing of another. Every file is written atomically,
and a decision is recorded in an order that a crash at any point leaves a consistent record (see
:func:`_commit_decision`).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pricetrail.project import locking
from pricetrail.project.config import STOCKCODE_PATTERN
from pricetrail.project.dvc_lock import compact_entries, out_hashes, product_entries, read_stages
from pricetrail.project.files import ConfigError, atomic_path, file_md5, read_json, remove_stale_temporaries, write_json
from pricetrail.project.git_state import git_state
from pricetrail.project.paths import REGISTRY_DIR, ProductPaths
from pricetrail.registry_artifacts import (
    Artifact,
    ArtifactError,
    ArtifactSource,
    describe_file,
    dvc_cache_dir,
    local_sources,
    object_relpath,
    resolve,
)

log = logging.getLogger(__name__)

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
    "preprocessor.skops": "preprocessor_md5",
    "daily.parquet": "daily_md5",  # the product's daily history: state features at serving time
    "reference.parquet": "train_md5",  # the training rows: price range, and the drift gate's reference
}

ACTIONS = ("promoted", "kept", "none", "rollback", "accepted_drift")


class RegistryError(ValueError):
    """The registry is missing, inconsistent or damaged for a product, or an operator request cannot be met."""


def _workspace_paths(code: str) -> dict[str, Path]:
    paths = ProductPaths(code)
    return {"model.pt": paths.checkpoint, "preprocessor.skops": paths.preprocessor, "daily.parquet": paths.daily,
            "reference.parquet": paths.split("train")}


def _now(now: datetime | None) -> str:
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


def _read_record(path: Path, code: str) -> dict[str, Any]:
    if not path.is_file():
        raise RegistryError(f"registry record of {code} is damaged: {path} does not exist")
    return parse_record(path.read_text(encoding="utf-8"), str(path), code)


def _parse_json(text: str, where: str) -> Any:
    """JSON text with the message :func:`pricetrail.config.read_json` gives for a file."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{where} is not valid JSON: {error}") from error


def parse_record(text: str, where: str, code: str) -> dict[str, Any]:
    """A served.json or versions/<v>.json record of ``code`` from its text (the workspace's or a git revision's);
    ``where`` names the file in messages."""
    try:
        record = _parse_json(text, where)
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


def _kind(value: Any) -> str:
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
        return f"{name} is {_kind(value)} {repr(value)[:40]}; expected {names}"
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
            return f"verdict.checks[{index}] is {_kind(check)}; expected an object with name and passed"
        for key, accepted in (("name", (str,)), ("passed", (bool,))):
            problem = _field_problem(check, key, accepted, required=True, label=f"verdict.checks[{index}].{key}")
            if problem:
                return problem
    for key, value in (record.get("metrics") or {}).items():
        if value is not None and not _number(value):
            return f"metrics.{key} is {_kind(value)} {repr(value)[:40]}; expected a finite number or null"
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


def artifacts_of(record: Mapping[str, Any]) -> dict[str, Artifact]:
    recorded = record.get("artifacts")
    if not isinstance(recorded, Mapping):
        raise ArtifactError("no 'artifacts' mapping")
    missing = sorted(set(SERVING_ARTIFACTS) - set(recorded))
    if missing:
        raise ArtifactError(f"artifacts {missing} are not recorded")
    return {name: Artifact.from_dict(name, recorded[name]) for name in SERVING_ARTIFACTS}


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
        """Verified local paths of every serving artifact (see :func:`pricetrail.registry_artifacts.resolve`)."""
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
    record = _read_record(path, code)
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
    return _read_record(path, code)


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


# --------------------------------------------------------------------------------------------- drift reference


@dataclass(frozen=True)
class DriftReference:
    """What a product's drift gate compares its newest data against."""

    kind: str  # "none" (an older window of the product's own history), "served_model", "accepted_drift"
    label: str
    artifact: Artifact | None = None
    window: tuple[str, str] | None = None  # first and last day taken from the artifact (accepted drift)


def read_drift_reference(root: Path, code: str) -> DriftReference:
    path = product_dir(root, code) / DRIFT_REFERENCE
    if not path.is_file():
        raise RegistryError(f"{path} does not exist; `pricetrail run` (or `pricetrail promote`) creates it for "
                            "every product in stockcodes.yaml")
    return parse_drift_reference(path.read_text(encoding="utf-8"), str(path), code)


def parse_drift_reference(text: str, where: str, code: str) -> DriftReference:
    """A drift_reference.json of ``code`` from its text (the workspace's or a git revision's)."""
    try:
        record = _parse_json(text, where)
        if not isinstance(record, dict):
            raise TypeError(f"expected a JSON object, found {_kind(record)}")
        if record.get("stockcode", code) != code:
            raise ValueError(f"it belongs to {record.get('stockcode')!r}")
        kind = record["kind"]
        if kind == "none":
            return DriftReference(kind="none", label="older window of history (no served model yet)")
        artifact = Artifact.from_dict("drift reference", record["artifact"])
        if kind == "served_model":
            return DriftReference(kind=kind, label=f"training data of served model {record['version']}",
                                  artifact=artifact)
        if kind == "accepted_drift":
            first, last = record["window"]
            if not all(isinstance(v, str) for v in (first, last, record["since"], record["reason"])):
                raise TypeError("window, since and reason must be text")
            return DriftReference(kind=kind, label=f"data of {first} to {last} accepted on {record['since']}: "
                                  f"{record['reason']}", artifact=artifact, window=(str(first), str(last)))
    except (ConfigError, ArtifactError, KeyError, TypeError, ValueError) as error:
        raise RegistryError(f"drift reference {where} of {code} is damaged: {error!r}") from error
    raise RegistryError(f"drift reference {where} of {code} has kind {kind!r}; expected none, served_model or "
                        "accepted_drift")


def drift_reference(root: Path, code: str) -> tuple[pd.DataFrame, str] | None:
    """The drift gate's reference rows and a label for reports, or None when nothing is served yet."""
    reference = read_drift_reference(root, code)
    if reference.artifact is None:
        return None
    path = resolve(reference.artifact, local_sources(root), owner=f"{code} drift reference")
    frame = pd.read_parquet(path)
    if reference.window is not None:
        days = pd.to_datetime(frame["invoice_date"]).dt.normalize()
        frame = frame[(days >= pd.Timestamp(reference.window[0])) & (days <= pd.Timestamp(reference.window[1]))]
    return frame, reference.label


def initial_drift_reference(code: str) -> dict[str, Any]:
    """The drift reference of a product that serves nothing yet (what the ``drift_reference`` stage writes too)."""
    return {"stockcode": code, "kind": "none",
            "reason": "no model served yet: the gate compares an older window of the product's own history with "
                      "the newest one"}


def ensure_records(root: Path, codes: Iterable[str]) -> list[str]:
    """Give every product a drift reference record (the drift gate's declared dependency); return the new ones.

    ``dvc repro`` needs no pricetrail command first: the product's ``drift_reference`` stage writes the same record
    when it is missing. This is for commands that read the record before DVC has run.
    """
    created = []
    with registry_lock(root):
        for code in codes:
            path = product_dir(root, code) / DRIFT_REFERENCE
            if not path.is_file():
                write_json(path, initial_drift_reference(code))
                created.append(code)
    return created


def _served_model_reference(code: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"stockcode": code, "kind": "served_model", "version": record["version"],
            "artifact": record["artifacts"]["reference.parquet"]}


# --------------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Decision:
    """What promotion (or an operator) did for one product, and why."""

    stockcode: str
    action: str  # promoted, kept, none, unchanged, rollback, accepted_drift, error
    served_version: str | None
    candidate_version: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _history_entry(root: Path, decision: Decision, now: str, **extra: Any) -> dict[str, Any]:
    return {"time": now, "action": decision.action, "version": decision.served_version,
            "candidate": decision.candidate_version, "reason": decision.reason, **git_state(root).to_dict(),
            **extra}


def _append_history(root: Path, code: str, entry: Mapping[str, Any]) -> None:
    """Append one line, atomically: the file is rewritten beside itself and renamed, so no line is ever torn."""
    path = product_dir(root, code) / HISTORY
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(existing + json.dumps(entry, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _record_if_new(root: Path, code: str, decision: Decision, now: str) -> None:
    """Record a keep / none decision unless it repeats the last one (a weekly no-op adds no lines)."""
    entries = history(root, code)
    if entries and (entries[-1]["action"], entries[-1].get("candidate"), entries[-1].get("reason")) == (
            decision.action, decision.candidate_version, decision.reason):
        return
    _append_history(root, code, _history_entry(root, decision, now))


def _commit_decision(root: Path, code: str, record: dict[str, Any], decision: Decision, now: str,
                     drift_reference_record: Mapping[str, Any] | None, **extra: Any) -> None:
    """Serve ``record``. Order: the version file, the history line, served.json, the drift reference.

    A crash before the history line leaves an unreferenced version file (rewritten identically next time); after
    it, :func:`promote` sees that served.json lags the history and completes the last two writes.
    """
    directory = product_dir(root, code)
    write_json(directory / VERSIONS / f"{record['version']}.json", _version_part(record))
    _append_history(root, code, _history_entry(root, decision, now, **extra))
    _write_served(root, code, record, served_by=decision.action, since=now, reason=decision.reason)
    if drift_reference_record is not None:
        write_json(directory / DRIFT_REFERENCE, drift_reference_record)


def _version_part(record: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in ("served_by", "served_since", "reason")}


def _write_served(root: Path, code: str, record: Mapping[str, Any], *, served_by: str, since: str,
                  reason: str) -> None:
    # What a server needs, without the dvc.lock entries (those stay in versions/<v>.json, for lineage).
    served = {key: value for key, value in _version_part(record).items() if key != "stages"}
    write_json(product_dir(root, code) / SERVED, {**served, "served_by": served_by, "served_since": since,
                                                  "reason": reason})


def _keep(code: str, served_version: str | None, candidate: str | None, reason: str) -> Decision:
    if served_version:
        return Decision(code, "kept", served_version, candidate, f"{reason}; still serving {served_version}")
    return Decision(code, "none", None, candidate, f"{reason}; this product serves no model yet")


def _drift_state(root: Path, paths: ProductPaths, features_md5: str) -> tuple[bool, str]:
    """(passed, note) of the drift gate on the current data."""
    gate = root / paths.drift_gate
    metrics_path = root / paths.drift_metrics
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    drifted = ", ".join(metrics.get("drifted_columns", []))
    if not gate.is_file() or read_json(gate).get("features_md5") != features_md5:
        if metrics.get("drift_detected"):
            return False, f"the drift gate failed on the current data (drifted: {drifted})"
        return False, "the drift gate has not passed on the current data"
    if metrics.get("drift_detected"):
        return True, (f"drift detected on the current data ({drifted}) and let through by "
                      f"data_drift_check.on_drift={metrics.get('on_drift', 'retrain')}")
    return True, ""


def _candidate(root: Path, code: str, stages: Mapping[str, Any] | None = None) -> tuple[dict[str, Any] | None, str]:
    """The record a promotion would serve, built from exactly the artifacts the verdict assessed; or why not."""
    paths = ProductPaths(code)
    if not (root / paths.lines).is_file():
        return None, "no features: etl_pipeline has not run or failed"
    features_md5 = file_md5(root / paths.lines)
    passed, drift_note = _drift_state(root, paths, features_md5)
    if not passed:
        return None, drift_note
    if not (root / paths.verdict).is_file():
        return None, "no verdict: the chain did not reach assess_model_risk"
    verdict = read_json(root / paths.verdict)
    lineage = verdict.get("lineage", {})
    if lineage.get("features_md5") != features_md5:
        return None, "the verdict is stale: it was made on other data (rerun dvc repro)"
    candidate = str(verdict.get("model_version"))
    if not verdict.get("promoted"):
        failed = "; ".join(f"{c['name']}={c['value']} (threshold {c['threshold']})"
                           for c in verdict.get("checks", []) if not c["passed"])
        return None, f"model {candidate} failed its gate: {failed}"
    # Promote exactly what the risk gate assessed: each file on disk must be the one the verdict names.
    stages = read_stages(root) if stages is None else stages
    outs = out_hashes(stages)
    artifacts = {}
    for name, relpath in _workspace_paths(code).items():
        expected = lineage.get(SERVING_ARTIFACTS[name])
        artifact = describe_file(root, name, relpath, outs)
        if artifact.md5 != expected:
            return None, (f"{relpath} (md5 {artifact.md5}) is not the file assess_model_risk@{code} assessed "
                          f"(md5 {expected}); run `dvc repro assess_model_risk@{code}` before promoting")
        if artifact.out_md5 is None:
            return None, f"{relpath} is not recorded as a DVC output in dvc.lock; run `dvc repro` (or dvc commit)"
        mismatch = _lock_mismatch(root, artifact)
        if mismatch:
            return None, mismatch
        artifacts[name] = artifact
    cache = dvc_cache_dir(root)
    for artifact in artifacts.values():
        try:
            resolve(artifact, local_sources(root), owner=f"{code} candidate {candidate}")
        except ArtifactError as error:
            return None, f"{error} (the outputs must be in the DVC cache {cache} before they can be served)"
    train_path = root / paths.split("train")
    wanted = [c for c in ("invoice_date", "unit_price", "is_registered") if c in pq.read_schema(train_path).names]
    train = pd.read_parquet(train_path, columns=wanted)
    dates = pd.to_datetime(train["invoice_date"])
    # The served grid is bounded by every price the product sold at up to the data's end, not the training split's
    # alone: a list-price change in the newest 30% of the data would otherwise be refused as "outside the range".
    seen = pd.concat([train] + [pd.read_parquet(root / paths.split(name), columns=["unit_price", "is_registered"])
                                for name in ("validation", "test") if (root / paths.split(name)).is_file()
                                and "is_registered" in wanted], ignore_index=True)
    test_metrics = read_json(root / paths.test_metrics) if (root / paths.test_metrics).is_file() else {}
    record = {
        "schema": SCHEMA,
        "stockcode": code,
        "version": candidate,
        "promoted_at": None,  # set when promoted
        **git_state(root).to_dict(),
        "artifacts": {name: artifact.to_dict() for name, artifact in artifacts.items()},
        "training_data": {"first_date": str(dates.min().date()), "last_date": str(dates.max().date()),
                          "rows": len(train)},
        "price_range": observed_price_ranges(seen),
        "verdict": {"promoted": True, "checks": verdict.get("checks", []), "params": verdict.get("params", {}),
                    "lineage": lineage, **({"customer_groups": verdict["customer_groups"]}
                                           if verdict.get("customer_groups") else {})},
        "metrics": {"test_rmsle": test_metrics.get("rmsle"), "test_mae": test_metrics.get("mae"),
                    "baseline_rmsle": verdict.get("risk", {}).get("baseline_rmsle")},
        "drift": drift_note or "the drift gate passed on the current data",
        "stages": compact_entries(product_entries(stages, code)),
    }
    return record, ""


def _lock_mismatch(root: Path, artifact: Artifact) -> str | None:
    """Why dvc.lock's record of the output holding ``artifact`` does not name these bytes, or None.

    The version record carries the output's hash and the run's dvc.lock entries as lineage; promoting a file the
    lock does not name (outputs moved in, dvc.lock not yet merged: an interrupted bring-back) would record another
    run's lineage with this model for good.
    """
    assert artifact.out is not None and artifact.out_md5 is not None
    if not artifact.out_md5.endswith(".dir"):
        if artifact.out_md5 == artifact.md5:
            return None
        return (f"dvc.lock records {artifact.out} as {artifact.out_md5}, but it holds {artifact.md5}: the outputs "
                "changed without dvc.lock (an interrupted run?); `pricetrail run` settles it")
    digest = artifact.out_md5[: -len(".dir")]
    try:
        listing_path = dvc_cache_dir(root) / object_relpath(digest)
    except ArtifactError:
        return f"dvc.lock records {artifact.out} as {artifact.out_md5!r}, which is not a DVC folder hash"
    listing_path = listing_path.with_name(listing_path.name + ".dir")
    try:
        listing = json.loads(listing_path.read_text(encoding="utf-8"))
        recorded = {str(item["relpath"]): str(item["md5"]) for item in listing}
    except (OSError, ValueError, TypeError, KeyError) as error:
        return (f"the listing of {artifact.out} that dvc.lock records ({artifact.out_md5}) is not readable in the "
                f"DVC cache ({type(error).__name__}); `pricetrail run` (or `dvc commit`) records it")
    relpath = Path(artifact.path).relative_to(artifact.out).as_posix()
    if recorded.get(relpath) != artifact.md5:
        return (f"dvc.lock records {artifact.out} with {relpath} md5 {recorded.get(relpath)}, but the workspace holds "
                f"{artifact.md5}: the outputs changed without dvc.lock (an interrupted run?); `pricetrail run` "
                "settles it")
    return None


def observed_price_ranges(train: pd.DataFrame) -> dict[str, list[float]]:
    """Lowest and highest price per customer group (guests pay about twice the list price) of the rows given (a
    promotion passes every split), so that a server bounds its price grid from the record instead of reading the
    splits."""
    ranges = {"all": [float(train["unit_price"].min()), float(train["unit_price"].max())]}
    if "is_registered" not in train.columns:
        return {**ranges, "registered": ranges["all"], "guest": ranges["all"]}
    for name, registered in (("registered", True), ("guest", False)):
        group = train.loc[train["is_registered"] == registered, "unit_price"]
        ranges[name] = [float(group.min()), float(group.max())] if len(group) >= 2 else ranges["all"]
    return ranges


@dataclass(frozen=True)
class StatePointer:
    """The product's newest daily history, which state features (last month's volume and prices) come from."""

    artifact: Artifact
    first_day: str
    last_day: str


def read_state_pointer(root: Path, code: str) -> StatePointer | None:
    path = product_dir(root, code) / STATE
    return parse_state_pointer(path.read_text(encoding="utf-8"), str(path), code) if path.is_file() else None


def parse_state_pointer(text: str, where: str, code: str) -> StatePointer:
    """A state.json of ``code`` from its text; ``where`` names it in messages."""
    try:
        record = _parse_json(text, where)
        if not isinstance(record, dict):
            raise TypeError(f"expected a JSON object, found {_kind(record)}")
        if record["stockcode"] != code:
            raise ValueError(f"it belongs to {record['stockcode']!r}")
        artifact = Artifact.from_dict("daily.parquet", record["artifact"])
        paths = ProductPaths(code)
        # Bound to its product by the record itself: another product's history (a copied state.json) is refused.
        if artifact.path != paths.daily.as_posix() or artifact.out not in (None, paths.features_dir.as_posix()):
            raise ValueError(f"it points at {artifact.path} (output {artifact.out}), not at {code}'s daily history "
                             f"{paths.daily.as_posix()}")
        first, last = record["first_day"], record["last_day"]
        if not (isinstance(first, str) and isinstance(last, str) and first <= last):
            raise ValueError(f"first_day {first!r} and last_day {last!r} are not two dates in order")
        return StatePointer(artifact=artifact, first_day=first, last_day=last)
    except (ConfigError, ArtifactError, KeyError, TypeError, ValueError) as error:
        raise RegistryError(f"state pointer {where} of {code} is damaged: {error}") from error


def record_state(root: Path, code: str, stages: Mapping[str, Any] | None = None) -> StatePointer | None:
    """Point state.json at the product's current daily history if DVC recorded it and it is in the cache.

    Written on every promotion run, whatever was decided: the daily history is a fact about sales, not a model,
    so a product that keeps its model still prices on the newest ingested days. Unchanged content is not
    rewritten (a weekly no-op leaves git clean).
    """
    relpath = ProductPaths(code).daily
    if not (root / relpath).is_file():
        return None
    stages = read_stages(root) if stages is None else stages
    artifact = describe_file(root, "daily.parquet", relpath, out_hashes(stages))
    if artifact.out_md5 is None:
        return None  # not committed by DVC yet: the next run records it
    try:
        resolve(artifact, local_sources(root), owner=f"{code} daily history")
    except ArtifactError as error:
        log.warning("%s: state pointer not updated: %s", code, error)
        return None
    current = read_state_pointer(root, code)
    if current is not None and current.artifact.md5 == artifact.md5:
        return current
    try:
        days = pd.to_datetime(pd.read_parquet(root / relpath, columns=["day"])["day"])
    except (ValueError, OSError, KeyError) as error:  # pyarrow's ArrowInvalid is a ValueError
        log.warning("%s: state pointer not updated: %s is not a daily history: %s", code, relpath, error)
        return None
    pointer = StatePointer(artifact=artifact, first_day=str(days.min().date()), last_day=str(days.max().date()))
    write_json(product_dir(root, code) / STATE, {"stockcode": code, "artifact": artifact.to_dict(),
                                                 "first_day": pointer.first_day, "last_day": pointer.last_day})
    return pointer


def promote(root: Path, code: str, *, now: datetime | None = None,
            stages: Mapping[str, Any] | None = None) -> Decision:
    """Serve the product's new model if it passed both gates on the current data; otherwise keep what is served.

    ``stages``: dvc.lock's entries, when the caller has them (promotion does not change dvc.lock, and parsing it
    per product made promoting a catalogue quadratic: 40 products, 55 s of YAML).
    """
    with registry_lock(root):
        return _promote(root, code, now=now, stages=read_stages(root) if stages is None else stages)


def _promote(root: Path, code: str, *, now: datetime | None, stages: Mapping[str, Any],
             dry_run: bool = False) -> Decision:
    stamp = _now(now)
    if not dry_run:
        _remove_interrupted_writes(root, code)
        _complete_interrupted(root, code, served_model(root, code))
        record_state(root, code, stages)
    served = served_model(root, code)
    served_version = served.version if served else None
    record, why_not = _candidate(root, code, stages)
    if record is None:
        decision = _keep(code, served_version, None, why_not)
        if not dry_run:
            _record_if_new(root, code, decision, stamp)
        return decision
    candidate = record["version"]
    if candidate == served_version:
        return Decision(code, "unchanged", served_version, candidate, "the served model is already this one")
    if candidate in rolled_back_versions(root, code):
        decision = _keep(code, served_version, candidate,
                         f"model {candidate} was rolled back by an operator; a new model must replace it "
                         f"(or `pricetrail rollback {code} --to {candidate}`)")
        if not dry_run:
            _record_if_new(root, code, decision, stamp)
        return decision
    record["promoted_at"] = stamp
    note = f"; {record['drift']}" if record["drift"].startswith("drift detected") else ""
    refused = {name: entry for name, entry in (record["verdict"].get("customer_groups") or {}).items()
               if not entry.get("servable")}
    if refused:
        note += "; " + "; ".join(f"{name} customers not priced by it ({', '.join(entry.get('failed_checks', []))})"
                                 for name, entry in refused.items())
    decision = Decision(code, "promoted", candidate, candidate,
                        f"passed the drift gate and assess_model_risk{note}")
    if dry_run:
        return decision
    _commit_decision(root, code, record, decision, stamp, _reference_after_promotion(root, code, record),
                     from_version=served_version, metrics=record["metrics"])
    log.info("%s: promoted model %s (was %s)", code, candidate, served_version)
    return decision


def _reference_after_promotion(root: Path, code: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The served model's training rows, unless an operator accepted newer data than the model learned from."""
    path = product_dir(root, code) / DRIFT_REFERENCE
    if path.is_file():
        current = read_json(path)
        if current.get("kind") == "accepted_drift" and str(current["window"][1]) > record["training_data"][
                "last_date"]:
            return current
    return _served_model_reference(code, record)


def _remove_interrupted_writes(root: Path, code: str) -> None:
    """Temporary files that a killed write left beside a record; a live writer's are never touched."""
    directory = product_dir(root, code)
    for leftover in [*remove_stale_temporaries(directory), *remove_stale_temporaries(directory / VERSIONS)]:
        log.warning("%s: removed %s, left by an interrupted write", code, leftover)


def _complete_interrupted(root: Path, code: str, served: ServedModel | None) -> None:
    """Finish a decision a crash interrupted after its history line: served.json must match the history."""
    entries = [e for e in history(root, code) if e["action"] in ("promoted", "rollback")]
    if not entries:
        return
    last = entries[-1]
    if served is not None and served.version == last["version"]:
        return
    record = version_record(root, code, last["version"])
    log.warning("%s: completing an interrupted %s of %s", code, last["action"], last["version"])
    _write_served(root, code, record, served_by=last["action"], since=last["time"], reason=last["reason"])
    write_json(product_dir(root, code) / DRIFT_REFERENCE, _served_model_reference(code, record))


def promote_all(root: Path, codes: Iterable[str], *, now: datetime | None = None,
                stages: Mapping[str, Any] | None = None, dry_run: bool = False) -> list[Decision]:
    """Promote each product on its own: one product's failure is reported as its decision and stops no other.
    ``dry_run``: the decisions promotion would take, with nothing written."""
    codes = list(codes)
    decisions: list[Decision] = []
    if not codes:
        return decisions
    with registry_lock(root):
        stages = read_stages(root) if stages is None else stages  # once for all: promotion leaves dvc.lock as it is
        for code in codes:
            try:
                decisions.append(_promote(root, code, now=now, stages=stages, dry_run=dry_run))
            except (ValueError, OSError) as error:  # our errors are ValueErrors; a missing or unreadable file
                log.error("%s: promotion failed: %s", code, error)
                decisions.append(Decision(code, "error", None, None, f"promotion failed: {error}"))
    return decisions


def refresh_lineage(root: Path, decisions: Iterable[Decision]) -> None:
    """After the drift gates settled, store the dvc.lock entries that will be committed with this promotion."""
    with registry_lock(root):
        _refresh_lineage(root, decisions)


def _refresh_lineage(root: Path, decisions: Iterable[Decision]) -> None:
    stages = read_stages(root)
    for decision in decisions:
        if decision.action != "promoted":
            continue
        code = decision.stockcode
        served = served_model(root, code)
        if served is None or served.version != decision.served_version:
            continue
        path = product_dir(root, code) / VERSIONS / f"{served.version}.json"
        write_json(path, {**_read_record(path, code), "stages": compact_entries(product_entries(stages, code))})


# --------------------------------------------------------------------------------------------- operator actions


def rollback(root: Path, code: str, *, to: str | None = None, reason: str = "",
             now: datetime | None = None) -> Decision:
    """Serve an earlier promoted version; its artifacts must still resolve (they are verified first)."""
    with registry_lock(root):
        return _rollback(root, code, to=to, reason=reason, now=now)


def _rollback(root: Path, code: str, *, to: str | None, reason: str, now: datetime | None) -> Decision:
    _remove_interrupted_writes(root, code)
    _complete_interrupted(root, code, served_model(root, code))
    served = served_model(root, code)
    if served is None:
        raise RegistryError(f"{code} serves no model; there is nothing to roll back")
    versions = promoted_versions(root, code)
    if to is None:
        earlier = versions[: versions.index(served.version)] if served.version in versions else versions
        if not earlier:
            raise RegistryError(f"{code} has no version promoted before {served.version}; nothing to roll back to "
                                f"(promoted versions: {', '.join(versions)})")
        to = earlier[-1]
    if to == served.version:
        raise RegistryError(f"{code} already serves version {to}")
    record = version_record(root, code, to)
    try:
        resolve_version(root, code, to)
    except ArtifactError as error:
        raise RegistryError(f"cannot roll {code} back to {to}: {error}") from error
    stamp = _now(now)
    why = reason.strip() or "operator rollback"
    decision = Decision(code, "rollback", to, to, f"rolled back from {served.version}: {why}")
    _commit_decision(root, code, record, decision, stamp, _served_model_reference(code, record),
                     from_version=served.version)
    return decision


def accept_drift(root: Path, code: str, *, reason: str, now: datetime | None = None) -> Decision:
    """Make the product's newest data window the drift reference for the next run (a genuine regime change)."""
    if not reason or not reason.strip():
        raise RegistryError("accept-drift needs --reason: say why the new data is right (it goes in the history)")
    with registry_lock(root):
        return _accept_drift(root, code, reason=reason, now=now)


def _accept_drift(root: Path, code: str, *, reason: str, now: datetime | None) -> Decision:
    _remove_interrupted_writes(root, code)
    _complete_interrupted(root, code, served_model(root, code))
    paths = ProductPaths(code)
    metrics_path = root / paths.drift_metrics
    if not metrics_path.is_file():
        raise RegistryError(f"{code} has no drift result ({paths.drift_metrics}); run the pipeline first")
    metrics = read_json(metrics_path)
    window = metrics.get("current", {})
    first, last = window.get("first_date"), window.get("last_date")
    if not first or not last:
        raise RegistryError(f"{paths.drift_metrics} does not say which window was checked; rerun the drift gate")
    stages = read_stages(root)
    artifact = describe_file(root, "features", paths.lines, out_hashes(stages))
    if metrics.get("features_md5") != artifact.md5:
        raise RegistryError(f"{paths.drift_metrics} is not about the current data of {code} ({paths.lines}); "
                            f"rerun its drift gate (`dvc repro data_drift_check@{code}`) first")
    try:
        resolve(artifact, local_sources(root), owner=f"{code} current data")
    except ArtifactError as error:
        raise RegistryError(f"cannot accept {code}'s current data: {error}") from error
    stamp = _now(now)
    served = served_model(root, code)
    decision = Decision(code, "accepted_drift", served.version if served else None, None,
                        f"data of {first} to {last} accepted as the drift reference: {reason.strip()}")
    write_json(product_dir(root, code) / DRIFT_REFERENCE,
               {"stockcode": code, "kind": "accepted_drift", "artifact": artifact.to_dict(), "window": [first, last],
                "since": stamp, "reason": reason.strip(),
                "drifted_columns": metrics.get("drifted_columns", [])})
    _append_history(root, code, _history_entry(root, decision, stamp, window=[first, last],
                                               drifted_columns=metrics.get("drifted_columns", [])))
    return decision


# --------------------------------------------------------------------------------------------- gc and migration


def referenced_artifacts(root: Path, codes: Iterable[str] | None = None) -> dict[str, list[Artifact]]:
    """Every artifact any registry record points at, per product: every version file (promoted at some time, or
    written by a promotion a crash interrupted), the served record, the drift reference and the serving state.

    ``codes`` None: every product with a registry folder, listed in stockcodes.yaml or not. A record that cannot
    be read raises: what it names cannot be known, so nothing may be collected on its account.
    """
    result: dict[str, list[Artifact]] = {}
    for code in recorded_products(root) if codes is None else codes:
        found: list[Artifact] = []
        directory = product_dir(root, code)
        versions = set(promoted_versions(root, code))
        if (directory / VERSIONS).is_dir():
            versions |= {path.stem for path in (directory / VERSIONS).glob("*.json")}
        for version in sorted(versions):
            found.extend(artifacts_of(version_record(root, code, version)).values())
        served = served_model(root, code)
        if served is not None:
            found.extend(served.artifacts.values())
        if (directory / DRIFT_REFERENCE).is_file():
            reference = read_drift_reference(root, code)
            if reference.artifact is not None:
                found.append(reference.artifact)
        state = read_state_pointer(root, code)
        if state is not None:
            found.append(state.artifact)
        result[code] = found
    return result


def migrate_layout(root: Path, codes: Iterable[str]) -> list[str]:
    """Convert registry folders of the old layout (binaries in versions/<v>/) to pointers; return what changed.

    Each binary is first put into the DVC cache under its md5 (verified), then the version's record is written,
    and only then is the old folder removed: an interruption at any point loses nothing and can be rerun.
    """
    with registry_lock(root):
        return _migrate_layout(root, codes)


def _migrate_layout(root: Path, codes: Iterable[str]) -> list[str]:
    cache = dvc_cache_dir(root)
    changed = []
    for code in codes:
        directory = product_dir(root, code)
        old_versions = sorted(p for p in (directory / VERSIONS).glob("*") if p.is_dir()) if (
            directory / VERSIONS).is_dir() else []
        if not old_versions:
            continue
        old_served = read_json(directory / SERVED) if (directory / SERVED).is_file() else None
        old_history = []
        if (directory / HISTORY).is_file():
            old_history = [json.loads(line) for line in (directory / HISTORY).read_text(encoding="utf-8").splitlines()
                           if line.strip()]
        records = {}
        for folder in old_versions:
            records[folder.name] = _migrate_version(root, code, folder, cache)
        new_history = []
        for entry in old_history:
            if "action" in entry:
                new_history.append(entry)
                continue
            version = entry.get("version")
            new_history.append({"time": entry.get("promoted_at"), "action": "promoted", "version": version,
                                "candidate": version, "reason": "promoted (migrated from the old registry layout)",
                                "git_commit": records.get(version, {}).get("git_commit"), "git_dirty": None})
        with atomic_path(directory / HISTORY) as tmp:
            tmp.write_text("".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in new_history),
                           encoding="utf-8")
        if old_served is not None and old_served.get("version") in records:
            record = records[old_served["version"]]
            _write_served(root, code, record, served_by="promoted", since=str(record.get("promoted_at")),
                          reason="migrated from the old registry layout")
            write_json(directory / DRIFT_REFERENCE, _served_model_reference(code, record))
        for folder in old_versions:
            shutil.rmtree(folder)
        changed.append(code)
    return changed


def _migrate_version(root: Path, code: str, folder: Path, cache: Path) -> dict[str, Any]:
    version = folder.name
    lineage = read_json(folder / "lineage.json") if (folder / "lineage.json").is_file() else {}
    verdict = read_json(folder / "verdict.json") if (folder / "verdict.json").is_file() else {}
    artifacts = {}
    for name, relpath in _workspace_paths(code).items():
        source = folder / name
        if not source.is_file():
            raise RegistryError(f"{folder} lacks {name}; cannot migrate version {version} of {code} without it")
        md5 = file_md5(source)
        target = cache / object_relpath(md5)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
            target.chmod(0o444)  # DVC keeps cache objects read-only
        # The old lineage kept the run's dvc.lock entries: they name the DVC output (and its .dir hash) that held
        # this file, which is what `dvc gc --all-commits` keeps.
        outs = out_hashes(lineage.get("dvc_lock", {}) or {})
        out = next((o for o in outs if relpath.as_posix().startswith(o.rstrip("/") + "/") or relpath.as_posix() == o),
                   None)
        artifacts[name] = Artifact(name=name, path=relpath.as_posix(), md5=md5, size=source.stat().st_size, out=out,
                                   out_md5=outs.get(out) if out else None).to_dict()
    reference = pd.read_parquet(folder / "reference.parquet", columns=["invoice_date"])
    dates = pd.to_datetime(reference["invoice_date"])
    record = {
        "schema": SCHEMA, "stockcode": code, "version": version, "promoted_at": lineage.get("promoted_at"),
        "git_commit": lineage.get("git_commit"), "git_dirty": None, "artifacts": artifacts,
        "training_data": {"first_date": str(dates.min().date()), "last_date": str(dates.max().date()),
                          "rows": len(reference)},
        "verdict": {"promoted": bool(verdict.get("promoted")), "checks": verdict.get("checks", []),
                    "params": verdict.get("params", {}), "lineage": verdict.get("lineage", {})},
        "metrics": {"test_rmsle": verdict.get("risk", {}).get("model_rmsle"),
                    "test_mae": verdict.get("risk", {}).get("model_mae"),
                    "baseline_rmsle": verdict.get("risk", {}).get("baseline_rmsle")},
        "drift": "migrated from the old registry layout",
        "stages": compact_entries(lineage.get("dvc_lock", {}) or {}),
    }
    write_json(product_dir(root, code) / VERSIONS / f"{version}.json", record)
    return record
