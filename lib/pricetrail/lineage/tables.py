"""The lineage tables' rows, built from each revision's record files.

Rows are keyed by the file they come from (its git blob, or ``w:<path>`` in the workspace), and
``internal.files`` says which revision holds which file: a dvc.lock or a metrics file that twenty commits share
is parsed once. The registry is read by :mod:`pricetrail.registry` itself: its functions in the workspace, its
text parsers for a git revision's files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from pricetrail.lineage.errors import LineageError
from pricetrail.lineage.lockfile import read_lock
from pricetrail.lineage.snapshot import LOCK, WORKSPACE, Blobs, Snapshot
from pricetrail.project.config import STOCKCODE_PATTERN
from pricetrail.project.paths import ProductPaths
from pricetrail.registry import drift_reference, records

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Which stage writes a product's metrics file, when dvc.lock does not say (its stage failed before DVC recorded
# it): the names dvc.yaml gives them (see pricetrail.project.paths).
METRICS_STAGE = {"etl": "etl_pipeline", "drift": "data_drift_check", "preprocess": "preprocess",
                 "validation": "tune_primary_model", "test": "inference_primary_model",
                 "verdict": "assess_model_risk", "ingest": "ingest"}

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
SCHEMAS: dict[str, list[tuple[str, pa.DataType]]] = {
    "revisions": [("revision", _S), ("rev_index", _I), ("commit_time", pa.timestamp("s", tz="UTC")),
                  ("subject", _S), ("has_lock", _B)],
    "files": [("revision", _S), ("path", _S), ("blob", _S), ("kind", _S), ("product", _S), ("stage", _S)],
    "lock_entries": [("blob", _S), ("entry", _S)],
    "lock_stages": [("entry", _S), ("stage", _S), ("kind", _S), ("product", _S), ("cmd", _S), ("params", _S)],
    "lock_files": [("entry", _S), ("role", _S), ("path", _S), ("md5", _S), ("size", _I), ("nfiles", _I)],
    "lock_params": [("params", _S), ("file", _S), ("param", _S), ("value", _S), ("number", _F)],
    "lock_edges": [("blob", _S), ("upstream", _S), ("downstream", _S), ("path", _S), ("md5", _S)],
    "params_values": [("blob", _S), ("param", _S), ("value", _S), ("number", _F)],
    "products": [("blob", _S), ("product", _S), ("description", _S)],
    "json_blobs": [("blob", _S), ("md5", _S), ("text", _S)],
    "lineage_keys": [("product", _S), ("key", _S), ("path", _S)],
    "history": [("blob", _S), ("product", _S), ("seq", _I), ("time", _S), ("action", _S), ("version", _S),
                ("candidate", _S), ("from_version", _S), ("reason", _S), ("git_commit", _S), ("git_dirty", _B),
                ("test_rmsle", _F), ("test_mae", _F), ("baseline_rmsle", _F), ("window_first", _S),
                ("window_last", _S)],
    "records": [("blob", _S), ("product", _S), ("version", _S), ("served_by", _S), ("served_since", _S),
                ("reason", _S), ("promoted_at", _S), ("git_commit", _S), ("git_dirty", _B),
                ("train_first_date", _S), ("train_last_date", _S), ("train_rows", _I), ("test_rmsle", _F),
                ("test_mae", _F), ("baseline_rmsle", _F), ("verdict_passed", _B), ("drift", _S)],
    "record_artifacts": [("blob", _S), ("artifact", _S), ("path", _S), ("md5", _S), ("size", _I), ("out", _S),
                         ("out_md5", _S)],
    "record_json": [("blob", _S), ("text", _S)],
    "drift_refs": [("blob", _S), ("product", _S), ("kind", _S), ("label", _S), ("path", _S), ("md5", _S),
                   ("out_md5", _S), ("window_first", _S), ("window_last", _S)],
}


def split_stage(name: str) -> tuple[str, str | None]:
    """``etl_pipeline@85123A`` -> (``etl_pipeline``, ``85123A``); a shared stage has no product."""
    kind, _, product = name.partition("@")
    return kind, product or None


def json_value(value: Any) -> tuple[str | None, float | None]:
    """A param's value as text (strings as they are, anything else as JSON) and as a number when it is one."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, int):
        return str(value), float(value)
    if isinstance(value, float):
        return json.dumps(value), value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str), None  # compact, as DuckDB's


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested mappings as dotted keys (``assess_model_risk.min_group_size``); lists stay whole."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


@dataclass
class Tables:
    """Rows per internal table, each file's rows added once."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {name: [] for name in SCHEMAS})
    parsed: set[str] = field(default_factory=set)
    dir_hashes: set[str] = field(default_factory=set)
    lineage_products: set[str] = field(default_factory=set)
    params_blocks: dict[str, Any] = field(default_factory=dict)  # a dvc.lock params block's text -> its values
    keep: list[Any] = field(default_factory=list)  # the objects whose ids key lock rows
    lock_chunks: dict[str, Any] = field(default_factory=dict)  # a dvc.lock stage's text -> (name, entry)
    flat_params: dict[str, list[tuple[str, str | None, float | None]]] = field(default_factory=dict)
    record_dirs: dict[str, list[str]] = field(default_factory=dict)  # a record's blob -> its artifacts' outs
    stage_dirs: dict[str, list[str]] = field(default_factory=dict)  # version record blob -> its runs' folders

    def flat(self, values: Mapping[str, Any]) -> list[tuple[str, str | None, float | None]]:
        """Flattened params; every product's stage of one kind has the same, so each is flattened once."""
        key = repr(values)
        if key not in self.flat_params:
            self.flat_params[key] = [(param, *json_value(value)) for param, value in flatten(values)]
        return self.flat_params[key]

    def add(self, table: str, *values: Any) -> None:
        self.rows[table].append(values)

    def first(self, blob: str) -> bool:
        """True the first time a file is met: its rows are added then, and only then."""
        if blob in self.parsed:
            return False
        self.parsed.add(blob)
        return True

    def to_arrow(self) -> dict[str, pa.Table]:
        result = {}
        for name, schema in SCHEMAS.items():
            values = list(zip(*self.rows[name], strict=True)) or [() for _ in schema]
            result[name] = pa.table({column: pa.array(values[i], type=kind) for i, (column, kind) in
                                     enumerate(schema)})
        return result


def collect(root: Path, snapshots: list[Snapshot], blobs: Blobs) -> Tables:
    """The rows of every snapshot (index 0 = the newest)."""
    tables = Tables()
    owners: dict[str, dict[str, str]] = {}  # lock blob -> out path -> the stage writing it
    for index, snapshot in enumerate(snapshots):
        revision = snapshot.revision
        files = snapshot.files
        tables.add("revisions", revision.revision, index, revision.commit_time, revision.subject, LOCK in files)
        owner: dict[str, str] = {}
        if LOCK in files:
            owner = owners.setdefault(files[LOCK], {})
            _lock(tables, snapshot, blobs, owner)
        for name, kind in (("params.yaml", "params"), ("stockcodes.yaml", "stockcodes")):
            if name in files:
                tables.add("files", revision.revision, name, files[name], kind, None, None)
                if tables.first(files[name]):
                    _yaml_file(tables, kind, files[name], blobs.text(files[name], snapshot.where(name)),
                               snapshot.where(name))
        for relpath, blob in files.items():
            if relpath.startswith("metrics/") and relpath.endswith(".json"):
                _metrics_file(tables, snapshot, blobs, relpath, blob, owner)
        codes = sorted({parts[1] for parts in (p.split("/", 2) for p in files if p.startswith("registry/"))
                        if len(parts) == 3 and STOCKCODE_PATTERN.fullmatch(parts[1])})
        for code in codes:
            _registry(tables, root, snapshot, blobs, code)
    for code in sorted(tables.lineage_products):
        paths = ProductPaths(code)
        for key, path in (("features_md5", paths.lines), ("daily_md5", paths.daily),
                          ("preprocessor_md5", paths.preprocessor), ("checkpoint_md5", paths.checkpoint),
                          ("train_md5", paths.split("train")), ("predictions_md5", paths.predictions)):
            tables.add("lineage_keys", code, key, path.as_posix())
    return tables


def _lock(tables: Tables, snapshot: Snapshot, blobs: Blobs, owner: dict[str, str]) -> None:
    blob = snapshot.files[LOCK]
    tables.add("files", snapshot.revision.revision, LOCK, blob, "lock", None, None)
    if not tables.first(blob):
        return
    where = snapshot.where(LOCK)
    stages = read_lock(blobs.text(blob, where), where=where, params_cache=tables.params_blocks,
                       stage_cache=tables.lock_chunks)
    blobs.forget(blob)
    for name, entry in stages.items():
        if not isinstance(entry, Mapping):
            raise LineageError(f"{where}: stage {name!r} is not a mapping; is it a DVC 3 lockfile?")
        for out in entry.get("outs") or []:
            if isinstance(out, Mapping) and "path" in out:
                owner[str(out["path"])] = str(name)
    for name, entry in stages.items():
        # A stage whose text is unchanged since another revision is the same object (the reader's cache): its rows
        # are added once and the revisions share them through lock_entries. Params blocks are shared alike.
        key = f"e{id(entry)}"
        tables.add("lock_entries", blob, key)
        for item in entry.get("deps") or []:  # edges depend on the whole lockfile's outputs: per revision
            if isinstance(item, Mapping) and "path" in item:
                upstream = _owner_of(str(item["path"]), owner)
                if upstream is not None:
                    tables.add("lock_edges", blob, upstream, name, str(item["path"]), _text(item.get("md5")))
        if key in tables.parsed:
            continue
        tables.parsed.add(key)
        tables.keep.append(entry)  # ids stay unique while the rows refer to them
        kind, product = split_stage(str(name))
        params = entry.get("params") if isinstance(entry.get("params"), Mapping) else {}
        params_key = f"p{id(params)}"
        tables.add("lock_stages", key, name, kind, product, entry.get("cmd") if isinstance(
            entry.get("cmd"), str) else json.dumps(entry.get("cmd")), params_key)
        for role in ("deps", "outs"):
            for item in entry.get(role) or []:
                if not isinstance(item, Mapping) or "path" not in item:
                    continue
                md5 = _text(item.get("md5"))
                if md5 and md5.endswith(".dir"):
                    tables.dir_hashes.add(md5)
                tables.add("lock_files", key, role[:-1], str(item["path"]), md5, item.get("size"), item.get("nfiles"))
        if params_key not in tables.parsed:
            tables.parsed.add(params_key)
            tables.keep.append(params)
            for file, values in params.items():
                for param, text, number in tables.flat(values if isinstance(values, Mapping) else {}):
                    tables.add("lock_params", params_key, file, param, text, number)


def _owner_of(path: str, owner: Mapping[str, str]) -> str | None:
    """The stage whose output is ``path`` or a folder holding it."""
    while path:
        stage = owner.get(path)
        if stage is not None:
            return stage
        path = path.rpartition("/")[0]
    return None


def _yaml_file(tables: Tables, kind: str, blob: str, text: str, where: str) -> None:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise LineageError(f"{where} is not valid YAML: {error}") from error
    if not isinstance(data, Mapping):
        raise LineageError(f"{where} must hold a mapping")
    if kind == "params":
        for param, value in flatten(data):
            text_value, number = json_value(value)
            tables.add("params_values", blob, param, text_value, number)
        return
    products = data.get("stockcodes")
    if not isinstance(products, Mapping):
        raise LineageError(f"{where} has no 'stockcodes' mapping")
    for code, fields in products.items():
        description = fields.get("description") if isinstance(fields, Mapping) else None
        tables.add("products", blob, str(code), None if description is None else str(description))


def _metrics_file(tables: Tables, snapshot: Snapshot, blobs: Blobs, relpath: str, blob: str,
                  owner: Mapping[str, str]) -> None:
    parts = relpath.split("/")
    name = parts[-1].rpartition(".")[0]
    product = parts[1] if len(parts) == 3 and STOCKCODE_PATTERN.fullmatch(parts[1]) else None
    stage = owner.get(relpath)
    if stage is None and name in METRICS_STAGE and (product or name == "ingest"):
        stage = METRICS_STAGE[name] + (f"@{product}" if product and name != "ingest" else "")
    tables.add("files", snapshot.revision.revision, relpath, blob, "metrics", product, stage)
    if product and name == "verdict":
        tables.lineage_products.add(product)
    if tables.first(blob):
        content = blobs.get(blob)
        tables.add("json_blobs", blob, hashlib.md5(content, usedforsecurity=False).hexdigest(),
                   blobs.text(blob, snapshot.where(relpath)))
        blobs.forget(blob)


# --------------------------------------------------------------------------------------------- the registry


def _registry(tables: Tables, root: Path, snapshot: Snapshot, blobs: Blobs, code: str) -> None:
    """One product's registry records, read by pricetrail.registry: in the workspace its history(), served_model()
    and read_drift_reference(); in a commit the text parsers those call. A version record (there are thousands in
    a long history) goes through registry.parse_record once, the first time a revision names it."""
    revision = snapshot.revision.revision
    directory = f"registry/{code}"
    files = snapshot.files
    history_path = f"{directory}/{records.HISTORY}"
    served_path = f"{directory}/{records.SERVED}"
    reference_path = f"{directory}/{records.DRIFT_REFERENCE}"

    def parse(path: str, parser: Any, *extra: str) -> Any:
        where = snapshot.where(path)
        return parser(blobs.text(files[path], where), where, *extra)

    if revision == WORKSPACE:
        entries = records.history(root, code)
        served = records.served_model(root, code)
        served_record = served.record if served else None
        reference = drift_reference.read_drift_reference(root, code) if reference_path in files else None
    else:
        entries = parse(history_path, records.parse_history) if history_path in files else []
        served_record = parse(served_path, records.parse_record, code) if served_path in files else None
        reference = (parse(reference_path, drift_reference.parse_drift_reference, code)
                     if reference_path in files else None)
    if history_path in files:
        blob = files[history_path]
        tables.add("files", revision, history_path, blob, "history", code, None)
        if tables.first(blob):
            _history(tables, blob, code, entries)
    if served_record is not None:
        blob = files[served_path]
        tables.add("files", revision, served_path, blob, "served", code, None)
        if tables.first(blob):
            _record(tables, blob, code, served_record, None)
        tables.dir_hashes.update(tables.record_dirs.get(blob, ()))
    for version in records.served_versions(entries):
        path = f"{directory}/{records.VERSIONS}/{version}.json"
        if path not in files:
            where = "the workspace" if revision == WORKSPACE else f"commit {snapshot.revision.label}"
            raise LineageError(f"{snapshot.where(history_path)} names version {version} of {code}, but {path} is "
                               f"not in {where}; restore it from git (git log -- {path})")
        blob = files[path]
        tables.add("files", revision, path, blob, "version", code, None)
        if tables.first(blob):
            record = parse(path, records.parse_record, code)
            _record(tables, blob, code, record, blobs.text(blob, snapshot.where(path)))
            tables.stage_dirs[blob] = _stage_dirs(record)
        if served_record is not None and version == served_record["version"]:
            # The folders of the served version's run join dir_files; older versions' folders (thousands, in a
            # long history) only when a loaded dvc.lock names them.
            tables.dir_hashes.update(tables.stage_dirs[blob])
        blobs.forget(blob)
    if reference is not None:
        blob = files[reference_path]
        tables.add("files", revision, reference_path, blob, "drift_reference", code, None)
        if tables.first(blob):
            artifact = reference.artifact
            window = reference.window or (None, None)
            if artifact is not None and artifact.out_md5:
                tables.dir_hashes.add(artifact.out_md5)
            tables.add("drift_refs", blob, code, reference.kind, reference.label,
                       artifact.path if artifact else None, artifact.md5 if artifact else None,
                       artifact.out_md5 if artifact else None, window[0], window[1])


def _stage_dirs(record: Mapping[str, Any]) -> list[str]:
    """The folder hashes among a version record's dvc.lock entries."""
    stages = record.get("stages")
    found = []
    for entry in (stages.values() if isinstance(stages, Mapping) else ()):
        for role in ("deps", "outs"):
            items = entry.get(role) if isinstance(entry, Mapping) and isinstance(entry.get(role), Mapping) else {}
            found.extend(md5 for md5 in items.values() if isinstance(md5, str) and md5.endswith(".dir"))
    return found


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _history(tables: Tables, blob: str, code: str, entries: list[dict[str, Any]]) -> None:
    for seq, entry in enumerate(entries, start=1):
        metrics = entry.get("metrics") if isinstance(entry.get("metrics"), Mapping) else {}
        window = entry.get("window") if isinstance(entry.get("window"), list) and len(entry["window"]) == 2 else [
            None, None]
        dirty = entry.get("git_dirty")
        tables.add("history", blob, code, seq, _text(entry.get("time")), entry["action"], _text(entry.get("version")),
                   _text(entry.get("candidate")), _text(entry.get("from_version")), _text(entry.get("reason")),
                   _text(entry.get("git_commit")), dirty if isinstance(dirty, bool) else None,
                   _number(metrics.get("test_rmsle")), _number(metrics.get("test_mae")),
                   _number(metrics.get("baseline_rmsle")), _text(window[0]), _text(window[1]))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _record(tables: Tables, blob: str, code: str, record: Mapping[str, Any], text: str | None) -> None:
    training = record.get("training_data") if isinstance(record.get("training_data"), Mapping) else {}
    metrics = record.get("metrics") if isinstance(record.get("metrics"), Mapping) else {}
    verdict = record.get("verdict") if isinstance(record.get("verdict"), Mapping) else {}
    dirty = record.get("git_dirty")
    rows = training.get("rows")
    tables.add("records", blob, code, record["version"], _text(record.get("served_by")),
               _text(record.get("served_since")), _text(record.get("reason")), _text(record.get("promoted_at")),
               _text(record.get("git_commit")), dirty if isinstance(dirty, bool) else None,
               _text(training.get("first_date")), _text(training.get("last_date")),
               rows if isinstance(rows, int) else None, _number(metrics.get("test_rmsle")),
               _number(metrics.get("test_mae")), _number(metrics.get("baseline_rmsle")),
               verdict.get("promoted") if isinstance(verdict.get("promoted"), bool) else None,
               _text(record.get("drift")))
    artifacts = record["artifacts"]  # as registry.parse_record checked them: every serving artifact, by md5
    for name in records.artifacts_of(record):  # older records name fewer, or older, artifacts
        artifact = artifacts[name]
        if artifact.get("out_md5"):
            tables.record_dirs.setdefault(blob, []).append(str(artifact["out_md5"]))
        tables.add("record_artifacts", blob, name, str(artifact["path"]), str(artifact["md5"]), artifact["size"],
                   _text(artifact.get("out")), _text(artifact.get("out_md5")))
    if text is not None and isinstance(record.get("stages"), Mapping):
        # Its dvc.lock entries (thousands of rows over a long history) are flattened by DuckDB (build.sql).
        tables.add("record_json", blob, text)
