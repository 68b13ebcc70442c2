"""From a registry record to a loaded, verified model: every artifact resolved by hash and checked, the served
model's probe re-run, the fast price features checked against the pipeline's once per load. Nothing here imports
torch or scikit-learn: the router prices with the exported numbers (:mod:`pricetrail.modeling.exported`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pricetrail.data.etl import state_features
from pricetrail.data.frames import read_parquet
from pricetrail.modeling.exported import ExportError, ServingModel, load_serving_model
from pricetrail.pricing.grid import GridEncoder, check_price_columns
from pricetrail.pricing.price_range import observed_range
from pricetrail.pricing.recommend import calendar_constants
from pricetrail.pricing.request import PriceRequest
from pricetrail.pricing.served import ServedProduct
from pricetrail.registry import records
from pricetrail.registry.artifacts import ArtifactSource, resolve
from pricetrail.registry.product_record import ProductRecord, verdict_failures

# Interpreter objects of a loaded model beyond its arrays (the parsed record, caches), counted against the memory
# bound; bench/lambda_benchmark.py measures what a loaded model really costs.
PER_MODEL_OVERHEAD = 1 * 2**20


class NotServable(ValueError):
    """The product has no model that may be served (none promoted, or a record without a passing verdict)."""


def servable(product: ProductRecord) -> None:
    """Raise :class:`NotServable` unless the record names a promoted version whose verdict passed."""
    code = product.stockcode
    if product.record is None:
        raise NotServable(f"stockcode {code} serves no model: none has passed its gates")
    failures = verdict_failures(product.record)
    if failures:
        raise NotServable(f"stockcode {code} record {product.version} has no passing verdict "
                          f"({'; '.join(failures)}); refusing to serve it")


def load_served(registry_dir: Path, product: ProductRecord, sources: Iterable[ArtifactSource]) -> ServedProduct:
    """Load the product's served version: verify every artifact it needs by md5, re-run the model's probe."""
    servable(product)
    code = product.stockcode
    assert product.record is not None
    sources = list(sources)
    owner = f"{code} version {product.version}"
    artifacts = records.artifacts_of(product.record)
    daily_artifact, state_source = product.daily_artifact()
    daily = read_parquet(resolve(daily_artifact, sources, owner=f"{code} daily history"))
    model = _serving_model(artifacts, sources, owner)
    if model.version != product.version or model.stockcode != code:
        raise ExportError(f"registry record of {code} names version {product.version}, its served model is "
                          f"{model.stockcode} {model.version}")
    served = ServedProduct(product=product, model=model, daily=daily, encoder=GridEncoder(model.encoding),
                           state_source=state_source, daily_md5=daily_artifact.md5, nbytes=0)
    # The fast price features must reproduce the pipeline's, checked once on this product's own state.
    request = PriceRequest(date=str(served.last_day.date()))
    low, high = observed_range(product.record, request.customer, sources, owner)
    grid = np.linspace(low, high, 5)
    state = served.state_on(served.last_day)
    for mean in (state["prev_month_mean_price"], float("nan")):  # both branches of the reference mean
        check_price_columns(grid, state["max_price_before"], mean)
    served.nbytes = model.nbytes + int(daily.memory_usage(deep=True).sum()) + PER_MODEL_OVERHEAD
    return served


def _serving_model(artifacts: dict[str, records.Artifact], sources: list[ArtifactSource], owner: str) -> ServingModel:
    """The record's exported model; a record from before the export (no serving.json) is converted from its
    checkpoint where torch is installed (a pipeline install), and refused with the reason where it is not."""
    if "serving.json" in artifacts:
        return load_serving_model(resolve(artifacts["serving.json"], sources, owner=owner))
    try:
        from pricetrail.modeling.bundle import load_bundle
        from pricetrail.modeling.export import export_serving_model
    except ImportError as error:
        raise ExportError(f"{owner} was promoted before models were exported for serving (its record has no "
                          f"serving.json) and this router has no torch to convert its checkpoint ({error.name} is "
                          "not installed): promote a newer version, or serve it from a pipeline install") from error
    preprocessor = artifacts.get("preprocessor.json") or artifacts["preprocessor.skops"]
    reference = resolve(artifacts["reference.parquet"], sources, owner=owner)
    bundle = load_bundle(resolve(artifacts["model.pt"], sources, owner=owner),
                         resolve(preprocessor, sources, owner=owner), reference=reference)
    assert bundle.reference is not None
    return export_serving_model(bundle, bundle.reference)


def warm_up() -> None:
    """Pay the process's one-time costs (DuckDB's first connection, pandas' datetime machinery) at start, not on
    the first customer's request."""
    daily = pd.DataFrame({"day": pd.to_datetime(["2011-01-03", "2011-02-01"]), "quantity": [1, 2], "lines": [1, 1],
                          "max_price": [1.0, 1.0], "price_sum": [1.0, 1.0]})
    state_features(daily, [pd.Timestamp("2011-03-01")])
    calendar_constants(pd.Timestamp("2011-03-01"), 12)
