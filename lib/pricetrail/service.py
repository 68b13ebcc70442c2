"""Serving a product's promoted model: the registry record, its artifacts resolved by hash, the loaded bundle.

The one path from the registry to a usable model, shared by ``pricetrail recommend`` and the benchmarks (and the
router to come), so that none of them reads a model from the workspace.
"""

from __future__ import annotations

from pathlib import Path

from pricetrail import registry
from pricetrail.artifacts import ArtifactSource, local_sources
from pricetrail.bundle import BundleError, ModelBundle, load_bundle


def load_served_bundle(root: Path, code: str, sources: list[ArtifactSource] | None = None) -> ModelBundle:
    """The product's promoted model, its files resolved by content hash and verified (never the workspace's)."""
    served = registry.served_model(root, code)
    if served is None:
        raise registry.RegistryError(f"stockcode {code} serves no model: none has passed its gates "
                                     "(see pricetrail status)")
    files = served.resolve(local_sources(root) if sources is None else sources)
    bundle = load_bundle(files["model.pt"], files["preprocessor.skops"], daily=files["daily.parquet"],
                         reference=files["reference.parquet"])
    if bundle.version != served.version:
        raise BundleError(f"registry record of {code} names version {served.version}, its checkpoint is "
                          f"{bundle.version}")
    return bundle
