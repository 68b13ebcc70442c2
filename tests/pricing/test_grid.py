"""The fast price grid reproduces the pipeline's own feature definitions exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricetrail.data.etl import price_features
from pricetrail.pricing.grid import GridError, check_price_columns, price_columns


@pytest.mark.parametrize(("max_before", "mean_before"), [(4.0, 3.5), (np.nan, 3.5), (2.0, np.nan), (np.nan, np.nan)])
def test_price_columns_equal_etl_price_features(max_before: float, mean_before: float) -> None:
    prices = np.linspace(0.5, 6.0, 23)
    expected = price_features(prices, max_before, mean_before)
    actual = pd.DataFrame(price_columns(prices, max_before, mean_before))[expected.columns]
    pd.testing.assert_frame_equal(actual, expected)
    check_price_columns(prices, max_before, mean_before)


def test_a_disagreement_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import pricetrail.pricing.grid as grid

    monkeypatch.setattr(grid, "price_columns", lambda p, a, b: {"unit_price": p})
    with pytest.raises(GridError, match="disagree"):
        grid.check_price_columns(np.array([1.0, 2.0]), 3.0, 2.0)
