"""The family of plausible price responses: centred on the fitted model, and never rising with the price."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pricetrail.modeling.export import export_network
from pricetrail.modeling.exported import ExportedNetwork
from pricetrail.modeling.network import PriceResponseNetwork
from pricetrail.modeling.price_response import (
    PriceResponseError,
    check_recorded_response,
    elasticity,
    pivot_prices,
    response_family,
)

ARCH = {"n_layers": 1, "units": [4], "dropout": [0.0], "batch_norm": False}
MEDIAN = 3.0


def network(beta: tuple[float, float]) -> ExportedNetwork:
    """The torch network as it is served (its numpy export)."""
    net = PriceResponseNetwork(3, [0, 1], ARCH)
    with torch.no_grad():
        net.price_weight.copy_(torch.log(torch.expm1(torch.tensor(beta))))  # softplus(raw) = beta
        output = net.demand[-1]
        output.weight.zero_()
        output.bias.fill_(3.0)  # log1p demand of about 19 at every context
    return export_network(net.eval())


def rows(prices: np.ndarray) -> np.ndarray:
    """Two standardised price columns, both rising with the price (as the real ones), and one context column."""
    return np.column_stack([(prices - MEDIAN) / 0.5, np.log(prices / MEDIAN) / 0.15, np.ones_like(prices)])


def family(beta: tuple[float, float], covariance: list[list[float]], **kwargs):  # noqa: ANN201
    prices = np.linspace(2.5, 3.5, 41)
    metadata = {"price_response": {"beta": list(beta), "covariance": covariance}, **kwargs}
    return prices, response_family(network(beta), metadata, rows(prices), rows(pivot_prices(MEDIAN)),
                                   prices=prices, median_price=MEDIAN)


# Price and log price are nearly collinear: the data fix the sum of their effects, not each weight.
TRADE_OFF = [[0.09, -0.085], [-0.085, 0.09]]


def test_the_family_is_centred_on_the_fitted_elasticity_when_the_price_weights_trade_off() -> None:
    # A small weight with a large sd: clipping each draw at 0 made the family steeper than its centre.
    _, result = family((0.1, 0.6), TRADE_OFF)
    point = float(elasticity(result.pivot_point))
    members = elasticity(result.pivot_members)
    assert abs(np.median(members) - point) < 0.02 * abs(point), (np.median(members), point)


def test_no_member_rises_with_the_price_and_each_keeps_its_own_order_rate_draw() -> None:
    rate = {"elasticity": 0.2, "sd": 0.1, "data_elasticity": None, "data_sd": None, "prior_mean": 0.2,
            "prior_sd": 0.1, "days": 300, "lines_per_day": {"registered": 6.0}}
    _, result = family((0.02, 0.02), TRADE_OFF, order_rate=rate)  # most draws would rise somewhere
    assert result.members is not None and 0 < len(result.members) < 200
    assert np.all(np.diff(result.members, axis=1) <= 1e-12)
    assert result.rate_members.shape == result.members.shape and result.rate_draws.shape == (len(result.members),)


def test_a_fit_with_no_uncertainty_gives_members_equal_to_the_point_model() -> None:
    _, result = family((0.3, 0.4), [[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(result.members, np.broadcast_to(result.point, result.members.shape), rtol=1e-6)


@pytest.mark.parametrize(("record", "message"), [
    ("x", "lacks beta/covariance"),
    ({"beta": [0.1, 0.2, 0.3], "covariance": [[1.0]]}, r"beta \(3,\) and covariance \(1, 1\); the network has 2"),
    ({"beta": [0.1, 0.2], "covariance": [[0.01, 0.0], [0.0, float("nan")]]}, "non-finite"),
])
def test_a_malformed_price_response_record_is_refused_naming_what_is_wrong(record: object, message: str) -> None:
    with pytest.raises(PriceResponseError, match=message):
        check_recorded_response((0, 1), {"price_response": record})
