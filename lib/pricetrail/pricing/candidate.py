"""A trained bundle priced exactly as it will be served: exported to the serving model's numbers (checked against
torch and scikit-learn on a probe) and wrapped as the router would hold it. For the benchmarks and tests that
train or load a torch bundle; the risk gate prices the exported file itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pricetrail.modeling.bundle import BundleError, ModelBundle, load_bundle
from pricetrail.modeling.export import export_serving_model
from pricetrail.pricing.served import ServedProduct, served_from_model
from pricetrail.registry import records
from pricetrail.registry.artifacts import ArtifactSource, local_sources


def served_from_bundle(bundle: ModelBundle, price_range: dict[str, list[float]],
                       verdict: dict[str, Any] | None = None) -> ServedProduct:
    if bundle.daily is None:
        raise BundleError(f"the bundle of {bundle.stockcode} has no daily history to take state from")
    if bundle.reference is None:
        raise BundleError(f"the bundle of {bundle.stockcode} has no training rows to probe its export with")
    model = export_serving_model(bundle, bundle.reference)
    return served_from_model(model, bundle.daily, price_range, verdict)


def load_served_bundle(root: Path, code: str, sources: list[ArtifactSource] | None = None) -> ModelBundle:
    """The product's promoted model as a torch bundle with its training rows (for benchmarks that need them)."""
    served = records.served_model(root, code)
    if served is None:
        raise records.RegistryError(f"stockcode {code} serves no model: none has passed its gates "
                                     "(see pricetrail status)")
    files = served.resolve(local_sources(root) if sources is None else sources)
    preprocessor = files.get("preprocessor.json") or files["preprocessor.skops"]
    bundle = load_bundle(files["model.pt"], preprocessor, daily=files["daily.parquet"],
                         reference=files["reference.parquet"])
    if bundle.version != served.version:
        raise BundleError(f"registry record of {code} names version {served.version}, its checkpoint is "
                          f"{bundle.version}")
    return bundle
