"""Stockcode keys: letters and digits only, whole string, checked before DVC or a path ever sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricetrail.config import ConfigError, load_stockcodes, validate_stockcode


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
