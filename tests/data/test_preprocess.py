"""Preprocess: chronological splits, the transformer's safe save/load round trip, bad settings."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from conftest import PROJECT_ROOT

from pricetrail.data.preprocess import (
    PreprocessError,
    PreprocessSettings,
    check_thresholds_agree,
    checked_encoding,
    chronological_split,
    feature_names,
    fit_column_transformer,
    fit_preprocessor,
    load_preprocessor,
    load_skops_transformer,
    model_inputs,
    price_columns,
    rows_needed,
    save_preprocessor,
    split_sizes,
    transform,
)
from pricetrail.project.config import load_params, section

SETTINGS = PreprocessSettings(numerical_features=("unit_price", "is_registered"),
                              categorical_features=("country",), min_split_rows=5, category_min_frequency=2)


def frame(n: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    dates = pd.Timestamp("2011-01-01") + pd.to_timedelta(rng.permutation(n), unit="D")  # shuffled on purpose
    return pd.DataFrame({
        "invoice_date": dates,
        "unit_price": rng.uniform(1, 5, n),
        "is_registered": rng.random(n) < 0.7,
        "country": rng.choice(["United Kingdom", "France", "EIRE"], n),
        "log_quantity": rng.uniform(0, 3, n),
    })


def test_split_is_chronological_and_sized() -> None:
    splits = chronological_split(frame(), SETTINGS)
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [70, 15, 15]
    assert splits["train"]["invoice_date"].max() < splits["validation"]["invoice_date"].min()
    assert splits["validation"]["invoice_date"].max() < splits["test"]["invoice_date"].min()


def lines_per_day(days: int = 101, per_day: int = 4, seed: int = 1) -> pd.DataFrame:
    """Several lines on every trading day, at different hours, shuffled (the feature table is one row a line)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 2 * per_day, days)
    day = np.repeat(np.arange(days), counts)
    n = len(day)
    dates = pd.Timestamp("2011-01-03") + pd.to_timedelta(day, unit="D") + pd.to_timedelta(
        rng.integers(8 * 60, 20 * 60, n), unit="min")
    order = rng.permutation(n)
    return pd.DataFrame({
        "invoice_date": dates[order],
        "unit_price": rng.uniform(1, 5, n),
        "is_registered": rng.random(n) < 0.7,
        "country": rng.choice(["United Kingdom", "France", "EIRE"], n),
        "log_quantity": rng.uniform(0, 3, n),
    })


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_trading_day_is_in_two_splits(seed: int) -> None:
    """Lines of one day share their day-level state features: a day cut in two would leak into validation/test."""
    features = lines_per_day(seed=seed)
    splits = chronological_split(features, SETTINGS)
    days = {name: set(frame["invoice_date"].dt.normalize()) for name, frame in splits.items()}
    assert not days["train"] & days["validation"] and not days["validation"] & days["test"]
    assert max(days["train"]) < min(days["validation"]) and max(days["validation"]) < min(days["test"])
    assert sum(len(frame) for frame in splits.values()) == len(features)
    # Each boundary is the day boundary nearest to the fraction's row count: off by at most one day's lines.
    per_day = features["invoice_date"].dt.normalize().value_counts()
    n = len(features)
    for name, fraction in (("validation", SETTINGS.validation_fraction), ("test", SETTINGS.test_fraction)):
        assert abs(len(splits[name]) - n * fraction) <= per_day.max(), name
    for frame in splits.values():
        assert frame["invoice_date"].is_monotonic_increasing


def test_a_day_too_big_for_its_split_is_a_clear_error() -> None:
    dates = [pd.Timestamp("2011-01-03 10:00")] * 80 + [pd.Timestamp("2011-01-04 10:00")] * 20
    features = frame(100).assign(invoice_date=dates)
    with pytest.raises(PreprocessError, match="whole trading days"):
        chronological_split(features, SETTINGS)


def test_round_trip_without_pickle(tmp_path: Path) -> None:
    splits = chronological_split(frame(), SETTINGS)
    fitted = fit_preprocessor(splits["train"], SETTINGS)
    path = tmp_path / "preprocessor.json"
    save_preprocessor(fitted, path)
    loaded = load_preprocessor(path)
    np.testing.assert_array_equal(transform(fitted, splits["test"]), transform(loaded, splits["test"]))
    assert feature_names(loaded) == feature_names(fitted)
    assert feature_names(fitted)[:2] == ["num__unit_price", "num__is_registered"]
    assert transform(loaded, splits["test"]).dtype == np.float32
    assert json.loads(path.read_text())["format"] == "pricetrail-encoding"  # plain numbers and text


def test_the_saved_numbers_give_scikit_learns_own_matrix() -> None:
    splits = chronological_split(frame(), SETTINGS)
    transformer = fit_column_transformer(splits["train"], SETTINGS)
    encoding = fit_preprocessor(splits["train"], SETTINGS)
    for name, split in splits.items():
        expected = transformer.transform(model_inputs(split, ["unit_price", "is_registered"], ["country"]))
        np.testing.assert_array_equal(transform(encoding, split), np.asarray(expected, dtype="float32"), name)


def test_unknown_country_is_encoded_not_fatal() -> None:
    splits = chronological_split(frame(), SETTINGS)
    fitted = fit_preprocessor(splits["train"], SETTINGS)
    unseen = splits["test"].assign(country="Japan")
    assert np.isfinite(transform(fitted, unseen)).all()


def test_load_refuses_damaged_and_foreign_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"PK\x03\x04 a zip, not JSON")
    with pytest.raises(PreprocessError, match="garbage.json is not readable JSON"):
        load_preprocessor(garbage)
    with pytest.raises(PreprocessError, match="does not exist"):
        load_preprocessor(tmp_path / "missing.json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"a": 1}))
    with pytest.raises(PreprocessError, match="other.json is not a pricetrail-encoding file"):
        load_preprocessor(other)
    good = tmp_path / "good.json"
    save_preprocessor(fit_preprocessor(frame(), SETTINGS), good)
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(PreprocessError, match="truncated.json"):
        load_preprocessor(truncated)
    nan = tmp_path / "nan.json"
    nan.write_text(good.read_text().replace('"mean": [', '"mean": [NaN, ', 1))
    with pytest.raises(PreprocessError, match="NaN is not a number"):
        load_preprocessor(nan)
    short = tmp_path / "short.json"
    data = json.loads(good.read_text())
    short.write_text(json.dumps({**data, "scale": data["scale"][:1]}))
    with pytest.raises(PreprocessError, match="short.json: .*2 numerical columns but 2 means and 1 scales"):
        load_preprocessor(short)


def test_a_transformer_saved_with_skops_by_an_earlier_version_is_still_read_and_checked(tmp_path: Path) -> None:
    splits = chronological_split(frame(), SETTINGS)
    transformer = fit_column_transformer(splits["train"], SETTINGS)
    path = tmp_path / "preprocessor.skops"
    sio.dump(transformer, path)
    encoding = checked_encoding(load_skops_transformer(path), splits["train"])
    np.testing.assert_array_equal(transform(encoding, splits["test"]),
                                  transform(fit_preprocessor(splits["train"], SETTINGS), splits["test"]))
    sio.dump({"a": 1}, tmp_path / "other.skops")
    with pytest.raises(PreprocessError, match="holds a dict, not a ColumnTransformer"):
        load_skops_transformer(tmp_path / "other.skops")
    (tmp_path / "garbage.skops").write_bytes(b"not a zip")
    with pytest.raises(PreprocessError, match="is not a readable skops file"):
        load_skops_transformer(tmp_path / "garbage.skops")
    assert zipfile.is_zipfile(path)


def test_nan_feature_is_named() -> None:
    splits = chronological_split(frame(), SETTINGS)
    fitted = fit_preprocessor(splits["train"], SETTINGS)
    with pytest.raises(PreprocessError, match=r"features \['num__unit_price'\] have missing"):
        transform(fitted, splits["test"].assign(unit_price=np.nan))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"validation_fraction": 0.0}, r"validation_fraction=0.0 makes no sense"),
        ({"test_fraction": 0.6}, r"test_fraction=0.6 makes no sense"),
        ({"validation_fraction": 0.4, "test_fraction": 0.4}, "leaves less than 30%"),
        ({"min_split_rows": 0}, "min_split_rows=0"),
        ({"numerical_features": ["log_quantity"]}, "the target 'log_quantity' cannot be a feature"),
        ({"categorical_features": ["unit_price"]}, r"\['unit_price'\] are listed as both"),
        ({"test_size": 3}, r"unknown keys \['test_size'\]"),
    ],
)
def test_settings_are_validated(values: dict, message: str) -> None:
    base = {"numerical_features": ["unit_price"], "categorical_features": ["country"]}
    with pytest.raises(PreprocessError, match=message):
        PreprocessSettings.from_params({**base, **values})


def test_split_too_small_and_missing_columns() -> None:
    with pytest.raises(PreprocessError, match="smaller than preprocess.min_split_rows=5"):
        chronological_split(frame(20), SETTINGS)
    with pytest.raises(PreprocessError, match=r"lacks columns \['country'\]"):
        chronological_split(frame().drop(columns="country"), SETTINGS)


def test_price_columns_are_the_scaled_price_features() -> None:
    settings = PreprocessSettings(numerical_features=("is_registered", "unit_price", "log_price"),
                                  categorical_features=("country",), category_min_frequency=1)
    data = frame().assign(log_price=lambda f: np.log(f["unit_price"]))
    preprocessor = fit_preprocessor(data, settings)
    names = feature_names(preprocessor)
    assert [names[i] for i in price_columns(preprocessor)] == ["num__unit_price", "num__log_price"]
    no_price = fit_preprocessor(data, PreprocessSettings(numerical_features=("is_registered",),
                                                                     categorical_features=("country",)))
    with pytest.raises(PreprocessError, match="no price feature"):
        price_columns(no_price)


def test_the_etl_threshold_and_the_split_sizes_must_agree() -> None:
    settings = PreprocessSettings(numerical_features=("unit_price",), categorical_features=(), min_split_rows=50)
    assert rows_needed(settings) == 334  # 50 / 0.15
    with pytest.raises(PreprocessError, match=r"etl.min_rows=200 admits products too small to split.*raise "
                                              r"etl.min_rows to 334 or lower preprocess.min_split_rows to 30"):
        check_thresholds_agree(200, settings)
    check_thresholds_agree(334, settings)
    check_thresholds_agree(200, PreprocessSettings.from_params(section(load_params(PROJECT_ROOT), "preprocess")))


def test_split_sizes_are_the_splits_chronological_split_makes() -> None:
    features = frame(300)
    settings = PreprocessSettings(numerical_features=("unit_price",), categorical_features=(), min_split_rows=5)
    days = np.sort(pd.to_datetime(features["invoice_date"]).dt.normalize().to_numpy())
    splits = chronological_split(features, settings)
    assert split_sizes(days, settings) == {name: len(part) for name, part in splits.items()}
