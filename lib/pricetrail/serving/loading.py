"""From a registry record to a loaded, verified model: every artifact resolved by hash and checked, the fast price
grid checked against the fitted preprocessor once per load."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pricetrail.data.etl import state_features
from pricetrail.modeling.bundle import BundleError, ModelBundle, load_bundle
from pricetrail.modeling.training import predict
from pricetrail.pricing.grid import GridEncoder, check_against_preprocessor, check_price_columns
from pricetrail.pricing.price_range import observed_range
from pricetrail.pricing.recommend import calendar_constants, grid_inputs
from pricetrail.pricing.request import PriceRequest
from pricetrail.pricing.served import ServedProduct
from pricetrail.registry import records
from pricetrail.registry.artifacts import ArtifactSource, LocalCache, local_sources, resolve
from pricetrail.registry.product_record import ProductRecord, verdict_failures

# Interpreter objects of a loaded model beyond its arrays (modules, the fitted transformers, caches), counted
# against the memory bound; bench/router_benchmark.py measures what a loaded model really costs.
PER_MODEL_OVERHEAD = 3 * 2**20


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
    """Load the product's served version: verify every artifact it needs by md5, cross-check the bundle."""
    servable(product)
    code = product.stockcode
    assert product.record is not None
    sources = list(sources)
    owner = f"{code} version {product.version}"
    artifacts = records.artifacts_of(product.record)
    daily_artifact, state_source = product.daily_artifact()
    checkpoint = resolve(artifacts["model.pt"], sources, owner=owner)
    preprocessor = resolve(artifacts["preprocessor.skops"], sources, owner=owner)
    daily = resolve(daily_artifact, sources, owner=f"{code} daily history")
    bundle = load_bundle(checkpoint, preprocessor, daily=daily)
    if bundle.version != product.version or bundle.stockcode != code:
        raise BundleError(f"registry record of {code} names version {product.version}, its checkpoint is "
                          f"{bundle.stockcode} {bundle.version}")
    assert bundle.daily is not None
    encoder = GridEncoder.from_preprocessor(bundle.preprocessor)
    served = ServedProduct(product=product, bundle=bundle, encoder=encoder, state_source=state_source,
                           daily_md5=daily_artifact.md5, nbytes=0)
    # The fast grid must reproduce the preprocessor exactly, checked once on this product's own state.
    request = PriceRequest(date=str(served.last_day.date()))
    low, high = observed_range(product.record, request.customer, sources, owner)
    grid = np.linspace(low, high, 5)
    numerical, categorical = grid_inputs(served, request, grid)[:2]
    state = served.state_on(served.last_day)
    for mean in (state["prev_month_mean_price"], float("nan")):  # both branches of the reference mean
        check_price_columns(grid, state["max_price_before"], mean)
    check_against_preprocessor(encoder, numerical, categorical, 5)
    bundle.network.eval()
    served.nbytes = _size_of(served)
    return served


def _size_of(served: ServedProduct) -> int:
    """Bytes the loaded model holds: weights, the daily history, and the preprocessor (its file size, roughly)."""
    weights = sum(p.numel() * p.element_size() for p in served.bundle.network.parameters())
    buffers = sum(b.numel() * b.element_size() for b in served.bundle.network.buffers())
    assert served.bundle.daily is not None
    daily = int(served.bundle.daily.memory_usage(deep=True).sum())
    preprocessor = records.artifacts_of(served.product.record or {})["preprocessor.skops"].size
    return weights + buffers + daily + preprocessor + PER_MODEL_OVERHEAD


def warm_up() -> None:
    """Pay the process's one-time costs (DuckDB's first connection, torch's first pass) at start, not on the
    first customer's request."""
    daily = pd.DataFrame({"day": pd.to_datetime(["2011-01-03", "2011-02-01"]), "quantity": [1, 2], "lines": [1, 1],
                          "max_price": [1.0, 1.0], "price_sum": [1.0, 1.0]})
    state_features(daily, [pd.Timestamp("2011-03-01")])
    calendar_constants(pd.Timestamp("2011-03-01"), 12)
    predict(torch.nn.Sequential(torch.nn.Linear(2, 1)).eval(), np.zeros((2, 2), dtype="float32"))
    # scikit-learn imports parts of its encoders on their first transform (~0.1 s): a throwaway transformer of
    # the pipeline's kind pays that here, not inside the first product's model load.
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "a", "b", "z"]})
    ColumnTransformer([("num", StandardScaler(), ["x"]),
                       ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", sparse_output=False,
                                             min_frequency=2), ["c"])]).fit(frame).transform(frame)


def load_served_bundle(root: Path, code: str, sources: list[ArtifactSource] | None = None) -> ModelBundle:
    """The product's promoted model as a bundle with its training rows (for benchmarks that need them)."""
    served = records.served_model(root, code)
    if served is None:
        raise records.RegistryError(f"stockcode {code} serves no model: none has passed its gates "
                                     "(see pricetrail status)")
    files = served.resolve(local_sources(root) if sources is None else sources)
    bundle = load_bundle(files["model.pt"], files["preprocessor.skops"], daily=files["daily.parquet"],
                         reference=files["reference.parquet"])
    if bundle.version != served.version:
        raise BundleError(f"registry record of {code} names version {served.version}, its checkpoint is "
                          f"{bundle.version}")
    return bundle


def local_cache_sources(directories: Iterable[Path]) -> list[ArtifactSource]:
    return [LocalCache(Path(d)) for d in directories]
