"""Stockcode keys: letters and digits only, whole string, checked before DVC or a path ever sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricetrail.project.config import load_stockcodes, validate_stockcode
from pricetrail.project.files import ConfigError


@pytest.mark.parametrize("code", ["85123A\n", "85123A\r\n", "../victim", "x;rm -rf ~", "$(id)", "a b", "", ".",
                                  "85123A/..", "ÄBC", "85123A\x00"])
def test_bad_stockcodes_are_refused(code: str) -> None:
    with pytest.raises(ConfigError, match="letters and digits only"):
        validate_stockcode(code)


def test_good_stockcodes_pass() -> None:
    assert [validate_stockcode(code) for code in ("85123A", "22423", "DCGS0003")] == ["85123A", "22423", "DCGS0003"]


def write(root: Path, body: str) -> Path:
    (root / "stockcodes.yaml").write_text("stockcodes:\n" + body, encoding="utf-8")
    return root


def test_loading_stockcodes_names_the_bad_key(tmp_path: Path) -> None:
    products = load_stockcodes(write(tmp_path, '  "85123A": {}\n  "22423": {description: X}\n'))
    assert list(products) == ["85123A", "22423"]
    with pytest.raises(ConfigError, match=r"stockcode 'x;cd \.\.;rm -rf victim;' is not accepted"):
        load_stockcodes(write(tmp_path, '  "85123A": {}\n  "x;cd ..;rm -rf victim;": {}\n'))
    with pytest.raises(ConfigError, match="is not accepted"):
        load_stockcodes(write(tmp_path, '  "85123A\\n": {}\n'))  # a YAML escape: the key ends in a newline
    with pytest.raises(ConfigError, match="must be quoted"):
        load_stockcodes(write(tmp_path, "  22423: {}\n"))
    with pytest.raises(ConfigError, match="use a mapping"):
        load_stockcodes(write(tmp_path, '  "22423": [1, 2]\n'))


@pytest.mark.parametrize(("body", "message"), [
    ("  1e5: {}\n", "key '1e5' under stockcodes reads as '1e5' to pricetrail but 100000.0 to DVC"),
    ('  "85123A": {description: no}\n', "stockcodes.85123A.description reads as False to pricetrail but 'no' to DVC"),
    ("  NO: {}\n", "key False under stockcodes reads as False to pricetrail but 'NO' to DVC"),
    ("  0123: {}\n", "key 83 under stockcodes reads as 83 to pricetrail but 123 to DVC"),
    ('  "85123A": {description: [\n', "is not valid YAML: "),
    ('  "85123A": {description: 12}\n', "has description 12: quote it as text"),
])
def test_keys_and_values_dvc_and_pricetrail_would_read_differently_are_refused(tmp_path: Path, body: str,
                                                                              message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_stockcodes(write(tmp_path, body))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_params_read_differently_by_dvc_are_refused_by_name(tmp_path: Path) -> None:
    from pricetrail.project.config import load_params

    (tmp_path / "params.yaml").write_text("tune_primary_model:\n  search_space:\n    learning_rate: [1e-4, 1.0e-2]\n")
    with pytest.raises(ConfigError, match=r"tune_primary_model.search_space.learning_rate\[0\] reads as '1e-4' to "
                                          r"pricetrail but 0.0001 to DVC"):
        load_params(tmp_path)
    (tmp_path / "params.yaml").write_text("data_drift_check:\n  on_drift: [block\n")
    with pytest.raises(ConfigError, match=r"params.yaml is not valid YAML: .*\(line 3, column 1\)"):
        load_params(tmp_path)
    (tmp_path / "params.yaml").write_text("tune_primary_model:\n  search_space:\n    learning_rate: [1.0e-4, 1.0e-2]\n")
    assert load_params(tmp_path)["tune_primary_model"]["search_space"]["learning_rate"] == [1e-4, 1e-2]
