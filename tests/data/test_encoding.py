"""The fitted column transformer as plain numbers: the same matrix as scikit-learn's own transform, for seen,
infrequent and never-seen categories, and every malformed encoding refused by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from pricetrail.data.encoding import EncodingError, FittedEncoding
from pricetrail.data.preprocess import PreprocessSettings, fit_column_transformer, model_inputs


def frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    countries = np.array(["United Kingdom"] * 40 + ["France"] * 12 + ["EIRE"] * 5 + ["Japan"] * 3)[:n]
    return pd.DataFrame({"unit_price": rng.uniform(1, 4, n), "is_registered": rng.integers(0, 2, n).astype(bool),
                         "country": countries, "day_of_week": rng.integers(0, 6, n).astype(str)})


def sklearn_matrix(fitted: ColumnTransformer, frame: pd.DataFrame) -> np.ndarray:
    numerical, categorical = (list(cols) for name, _, cols in fitted.transformers_ if name in ("num", "cat"))
    return np.asarray(fitted.transform(model_inputs(frame, numerical, categorical)), dtype="float32")


SETTINGS = PreprocessSettings(numerical_features=("unit_price", "is_registered"),
                              categorical_features=("country", "day_of_week"), category_min_frequency=10)


def test_the_encoding_gives_the_transformers_matrix_for_seen_infrequent_and_unseen_categories() -> None:
    train = frame()
    fitted = fit_column_transformer(train, SETTINGS)
    encoding = FittedEncoding.from_column_transformer(fitted)
    assert encoding.infrequent[0] == ("EIRE", "Japan")  # rarer than 10 lines: one infrequent column
    probe = pd.concat([train, train.head(3).assign(country=["Atlantis", "EIRE", "France"], day_of_week="9")])
    np.testing.assert_allclose(encoding.transform(probe), sklearn_matrix(fitted, probe), atol=1e-6, rtol=0)
    assert encoding.feature_names == [str(name) for name in fitted.get_feature_names_out()]
    assert [encoding.category_status("country", c) for c in ("France", "Japan", "Atlantis")] == [
        "seen", "infrequent", "unseen"]


def test_an_unseen_category_of_a_column_without_an_infrequent_group_is_all_zeros_as_in_scikit_learn() -> None:
    train = frame()
    fitted = fit_column_transformer(train, PreprocessSettings(numerical_features=("unit_price",),
                                                        categorical_features=("country",), category_min_frequency=1))
    encoding = FittedEncoding.from_column_transformer(fitted)
    assert encoding.infrequent == (None,)
    probe = train.head(2).assign(country=["Atlantis", "France"])
    np.testing.assert_allclose(encoding.transform(probe), sklearn_matrix(fitted, probe), atol=1e-6, rtol=0)
    assert encoding.transform(probe)[0, 1:].sum() == 0


def test_the_encoding_survives_its_json_form_unchanged() -> None:
    encoding = FittedEncoding.from_column_transformer(fit_column_transformer(frame(), SETTINGS))
    again = FittedEncoding.from_dict(encoding.to_dict(), "test")
    np.testing.assert_array_equal(again.transform(frame()), encoding.transform(frame()))
    assert again.to_dict() == encoding.to_dict()


@pytest.mark.parametrize(("change", "message"), [
    ({"scale": [0.0, 1.0]}, "scales finite and > 0"),
    ({"mean": [1.0]}, "2 numerical columns but 1 means"),
    ({"categories": [["a"], [1]]}, "list of strings"),
    ({"infrequent": [["Atlantis"], None]}, "subset of its categories"),
    ({"numerical": "unit_price"}, "expected a list"),
])
def test_a_malformed_encoding_is_refused_naming_what_is_wrong(change: dict, message: str) -> None:
    data = {**FittedEncoding.from_column_transformer(fit_column_transformer(frame(), SETTINGS)).to_dict(), **change}
    with pytest.raises(EncodingError, match=message):
        FittedEncoding.from_dict(data, "serving.json")


def test_a_transformer_of_another_kind_is_refused_not_approximated() -> None:
    other = ColumnTransformer([("num", MinMaxScaler(), ["unit_price"]),
                               ("cat", OneHotEncoder(sparse_output=False), ["country"])]).fit(frame())
    with pytest.raises(EncodingError, match="not a StandardScaler"):
        FittedEncoding.from_column_transformer(other)
    dropped = ColumnTransformer([("num", StandardScaler(), ["unit_price"]),
                                 ("cat", OneHotEncoder(sparse_output=False, drop="first"), ["country"])]).fit(frame())
    with pytest.raises(EncodingError, match="without drop"):
        FittedEncoding.from_column_transformer(dropped)
