"""A model and its preprocessor are loaded together and must belong together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricetrail.data.preprocess import PreprocessSettings, feature_names, fit_preprocessor, save_preprocessor
from pricetrail.modeling.bundle import BundleError, load_bundle
from pricetrail.modeling.checkpoint import CheckpointError, save_checkpoint
from pricetrail.modeling.network import build_network
from pricetrail.project.files import file_md5

SETTINGS = PreprocessSettings(numerical_features=("unit_price",), categorical_features=("country",),
                              category_min_frequency=1)
CONFIG = {"n_layers": 1, "units": [4], "dropout": [0.0], "batch_norm": False}


def train_frame(countries: list[str]) -> pd.DataFrame:
    n = len(countries)
    return pd.DataFrame({"unit_price": np.linspace(1, 3, n), "country": countries,
                         "invoice_date": pd.date_range("2011-01-01", periods=n), "log_quantity": np.ones(n)})


def write_model(folder: Path, countries: list[str], *, with_hash: bool = True,
                extra_metadata: dict | None = None) -> tuple[Path, Path]:
    preprocessor = fit_preprocessor(train_frame(countries), SETTINGS)
    pre_path = folder / "preprocessor.json"
    save_preprocessor(preprocessor, pre_path)
    names = feature_names(preprocessor)
    model_path = folder / "model.pt"
    save_checkpoint(model_path, build_network(len(names), CONFIG), config=CONFIG, feature_names=names,
                    metadata={"stockcode": "85123A", "model_version": "x",
                              **({"preprocessor_md5": file_md5(pre_path)} if with_hash else {}),
                              **(extra_metadata or {})})
    return model_path, pre_path


def test_matching_bundle_loads_and_predicts(tmp_path: Path) -> None:
    model, pre = write_model(tmp_path, ["United Kingdom", "France"] * 5)
    bundle = load_bundle(model, pre)
    assert np.isfinite(bundle.predict_log_quantity(train_frame(["France"] * 3))).all()


def test_a_preprocessor_from_another_run_is_refused(tmp_path: Path) -> None:
    model, _ = write_model(tmp_path, ["United Kingdom", "France"] * 5)
    other = tmp_path / "other"
    other.mkdir()
    _, other_pre = write_model(other, ["United Kingdom", "France"] * 5 + ["United Kingdom"])  # same shape
    with pytest.raises(BundleError, match="does not match model"):
        load_bundle(model, other_pre)


def test_a_preprocessor_with_other_features_is_refused(tmp_path: Path) -> None:
    # A checkpoint that records no preprocessor hash is still checked on its feature names.
    model, _ = write_model(tmp_path, ["United Kingdom", "France"] * 5, with_hash=False)
    other = tmp_path / "other"
    other.mkdir()
    _, other_pre = write_model(other, ["United Kingdom", "France", "EIRE"] * 4)
    with pytest.raises(BundleError, match="produces 4 features that differ from the 3"):
        load_bundle(model, other_pre)


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    model, pre = write_model(tmp_path, ["United Kingdom", "France"] * 5)
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.pt"):
        load_bundle(model, pre)


GOOD_RATE = {"elasticity": 0.2, "sd": 0.1, "data_elasticity": None, "data_sd": None, "prior_mean": 0.2,
             "prior_sd": 0.1, "days": 300, "lines_per_day": {"registered": 6.0, "guest": 1.0}}


@pytest.mark.parametrize(("metadata", "message"), [
    ({"order_rate": {"elasticity": 0.2}}, "order rate .* is malformed"),
    ({"order_rate": {**GOOD_RATE, "sd": float("nan")}}, "sd=nan"),
    ({"smearing_factor": 0.0}, "smearing_factor=0.0 is invalid"),
    ({"smearing_factor": "1.1"}, "smearing_factor='1.1' is invalid"),
    ({"price_reference": {"registered": {"median": 3.0}}}, "price_reference of registered customers is malformed"),
])
def test_a_malformed_record_fails_at_load_not_at_the_first_request(tmp_path: Path, metadata: dict,
                                                                   message: str) -> None:
    # The router turns a load error into "model unavailable" for this product; a request-time error would be a
    # generic failure on every request.
    model, pre = write_model(tmp_path, ["United Kingdom", "France"] * 5, extra_metadata=metadata)
    with pytest.raises(BundleError, match=message):
        load_bundle(model, pre)


def test_a_well_formed_order_rate_loads(tmp_path: Path) -> None:
    model, pre = write_model(tmp_path, ["United Kingdom", "France"] * 5,
                             extra_metadata={"order_rate": GOOD_RATE, "smearing_factor": 1.1})
    assert load_bundle(model, pre).smearing == 1.1


def test_a_skops_preprocessor_of_an_earlier_version_loads_from_a_cache_path_without_its_suffix(
        tmp_path: Path) -> None:
    # A record promoted before the JSON format names preprocessor.skops; the registry reads it from the DVC cache,
    # where the file is named by its hash alone, so its format is told by its content.
    import skops.io as sio

    from pricetrail.data.preprocess import fit_column_transformer

    countries = ["United Kingdom", "France"] * 5
    cached = tmp_path / "files" / "md5" / "46" / "c362833995686d57414a8bf4276f95"
    cached.parent.mkdir(parents=True)
    sio.dump(fit_column_transformer(train_frame(countries), SETTINGS), cached)
    reference = tmp_path / "reference.parquet"
    train_frame(countries).to_parquet(reference)
    names = feature_names(fit_preprocessor(train_frame(countries), SETTINGS))
    model = tmp_path / "model.pt"
    save_checkpoint(model, build_network(len(names), CONFIG), config=CONFIG, feature_names=names,
                    metadata={"stockcode": "85123A", "model_version": "x", "preprocessor_md5": file_md5(cached)})
    bundle = load_bundle(model, cached, reference=reference)
    assert np.isfinite(bundle.predict_log_quantity(train_frame(["France"] * 3))).all()
    with pytest.raises(BundleError, match="skops file: its numbers are checked on the training rows"):
        load_bundle(model, cached)
