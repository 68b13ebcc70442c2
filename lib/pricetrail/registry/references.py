"""Every artifact any registry record names: what garbage collection and the remote must keep."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pricetrail.registry.artifacts import (
    Artifact,
)
from pricetrail.registry.drift_reference import read_drift_reference
from pricetrail.registry.records import (
    DRIFT_REFERENCE,
    VERSIONS,
    artifacts_of,
    product_dir,
    promoted_versions,
    recorded_products,
    served_model,
    version_record,
)
from pricetrail.registry.state_pointer import read_state_pointer


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
