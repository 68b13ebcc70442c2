"""What a product's drift gate compares against: nothing yet (an older window of the product's own history), the
served model's training rows, or an operator-accepted window of newer data. Its file is the only registry record
that is a DVC dependency (of that product's drift gate), so promoting one product re-runs nothing of another."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pricetrail.project.files import ConfigError, write_json
from pricetrail.registry.artifacts import (
    Artifact,
    ArtifactError,
    local_sources,
    resolve,
)
from pricetrail.registry.records import (
    DRIFT_REFERENCE,
    RegistryError,
    kind_of,
    parse_json,
    product_dir,
    registry_lock,
)

if TYPE_CHECKING:  # pandas only where the rows are read: the drift_reference stage runs in every chain without it
    import pandas as pd


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
        record = parse_json(text, where)
        if not isinstance(record, dict):
            raise TypeError(f"expected a JSON object, found {kind_of(record)}")
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
    import pandas as pd

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


def served_model_reference(code: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"stockcode": code, "kind": "served_model", "version": record["version"],
            "artifact": record["artifacts"]["reference.parquet"]}
