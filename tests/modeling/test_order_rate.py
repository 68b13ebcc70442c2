"""The order-rate elasticity: how the price moves the number of order lines per day (pricetrail.modeling.order_rate)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricetrail.modeling.order_rate import (
    MIN_DAYS,
    OrderRateError,
    OrderRateFit,
    OrderRatePrior,
    daily_lines,
    fit_order_rate,
    rate_factor,
)

PRIOR = OrderRatePrior(0.2, 0.1)


def simulated_lines(*, elasticity: float, days: int = 300, lines_per_day: float = 60.0, seed: int = 0,
                    markdown_share: float = 0.25, guest_share: float = 0.25) -> pd.DataFrame:
    """Lines of a product whose daily count is Poisson(level(t) * price_index ** -elasticity), with a seasonal
    level, weekday-only trading and markdowns of 20% on a share of the days (in runs of a week)."""
    rng = np.random.default_rng(seed)
    calendar = pd.bdate_range("2011-01-03", periods=days)
    t = np.arange(days) / days
    level = lines_per_day * (1 + 0.5 * np.sin(2 * np.pi * t))
    weeks = np.arange(days) // 5
    marked = np.isin(weeks, rng.choice(weeks.max() + 1, size=int(markdown_share * (weeks.max() + 1)),
                                       replace=False))
    index = np.where(marked, 0.8, 1.0)
    counts = rng.poisson(level * index ** -elasticity)
    rows = []
    for day, count, price in zip(calendar, counts, index, strict=True):
        registered = rng.random(count) >= guest_share
        rows.append(pd.DataFrame({"invoice_date": day + pd.Timedelta(hours=10),
                                  "unit_price": np.where(registered, 4.0 * price, 8.0 * price),
                                  "is_registered": registered}))
    return pd.concat(rows, ignore_index=True)


def test_the_lines_own_estimate_finds_a_known_elasticity() -> None:
    fit = fit_order_rate(simulated_lines(elasticity=0.6), PRIOR)
    assert fit.data_elasticity is not None and fit.data_sd is not None
    assert abs(fit.data_elasticity - 0.6) <= 3 * fit.data_sd, fit
    assert fit.data_sd < 0.15
    assert not fit.prior_dominates
    # The posterior lies between the data and the prior, nearer the more precise one.
    assert PRIOR.mean < fit.elasticity < fit.data_elasticity
    assert fit.sd < min(fit.data_sd, PRIOR.sd)


def test_no_price_response_reads_near_zero() -> None:
    fit = fit_order_rate(simulated_lines(elasticity=0.0, seed=3), PRIOR)
    assert fit.data_elasticity is not None and fit.data_sd is not None
    assert abs(fit.data_elasticity) <= 3 * fit.data_sd


def test_a_short_quiet_history_leaves_the_prior_in_charge() -> None:
    fit = fit_order_rate(simulated_lines(elasticity=0.6, days=60, lines_per_day=5.0, seed=1), PRIOR)
    assert fit.prior_dominates
    assert fit.elasticity == pytest.approx(PRIOR.mean, abs=PRIOR.sd)


def test_too_few_days_or_one_price_give_the_prior_alone() -> None:
    few = simulated_lines(elasticity=0.3, days=MIN_DAYS - 1)
    fit = fit_order_rate(few, PRIOR)
    assert (fit.elasticity, fit.sd, fit.data_elasticity, fit.data_sd) == (PRIOR.mean, PRIOR.sd, None, None)
    one_price = simulated_lines(elasticity=0.3, markdown_share=0.0)
    assert fit_order_rate(one_price, PRIOR).data_elasticity is None


def test_daily_lines_compare_each_group_with_its_own_median_price() -> None:
    lines = pd.DataFrame({"invoice_date": pd.to_datetime(["2011-01-03 09:00", "2011-01-03 10:00", "2011-01-04 09:00",
                                                          "2011-01-04 11:00"]),
                          "unit_price": [4.0, 8.0, 3.2, 8.0], "is_registered": [True, False, True, False]})
    daily = daily_lines(lines)
    assert daily["lines"].tolist() == [2, 2]
    assert daily["registered"].tolist() == [1, 1] and daily["guest"].tolist() == [1, 1]
    # Registered median 3.6: 4.0 -> 1.111, 3.2 -> 0.889; guests always at their median (1.0).
    assert daily["price_index"].round(4).tolist() == [pytest.approx((4.0 / 3.6 + 1) / 2, abs=1e-4),
                                                      pytest.approx((3.2 / 3.6 + 1) / 2, abs=1e-4)]


def test_lines_per_day_are_recorded_per_customer_group() -> None:
    fit = fit_order_rate(simulated_lines(elasticity=0.3, guest_share=0.25), PRIOR)
    total = fit.lines_per_day["registered"] + fit.lines_per_day["guest"]
    assert fit.lines_per_day["guest"] / total == pytest.approx(0.25, abs=0.02)


def test_the_fit_survives_its_record() -> None:
    fit = fit_order_rate(simulated_lines(elasticity=0.3), PRIOR)
    assert OrderRateFit.from_dict(fit.to_dict()) == fit
    with pytest.raises(OrderRateError, match="malformed"):
        OrderRateFit.from_dict({"elasticity": 0.2})


def test_rate_factor_is_one_at_the_median_and_falls_with_the_price() -> None:
    prices = np.array([2.0, 4.0, 8.0])
    point = rate_factor(prices, 4.0, 0.5)
    assert point.tolist() == pytest.approx([2 ** 0.5, 1.0, 2 ** -0.5])
    members = rate_factor(prices, 4.0, np.array([0.0, 1.0]))
    assert members.shape == (2, 3)
    assert members[0].tolist() == [1.0, 1.0, 1.0] and members[1].tolist() == pytest.approx([2.0, 1.0, 0.5])


@pytest.mark.parametrize(("frame", "message"), [
    (pd.DataFrame({"invoice_date": [], "unit_price": [], "is_registered": []}), "no lines"),
    (pd.DataFrame({"invoice_date": ["2011-01-03"], "unit_price": [1.0]}), r"lack column\(s\) \['is_registered'\]"),
    (pd.DataFrame({"invoice_date": ["2011-01-03"], "unit_price": [0.0], "is_registered": [True]}), "finite and > 0"),
])
def test_bad_lines_are_refused(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(OrderRateError, match=message):
        fit_order_rate(frame, PRIOR)


@pytest.mark.parametrize(("settings", "message"), [
    (None, "is not accepted"),
    ({"mean": 0.2}, "is not accepted"),
    ({"mean": 0.2, "sd": 0.1, "extra": 1}, "is not accepted"),
    ({"mean": -0.1, "sd": 0.1}, "must be >= 0"),
    ({"mean": 0.2, "sd": 0.0}, "the sd > 0"),
    ({"mean": True, "sd": 0.1}, r"order_rate_prior.mean=True"),
    ({"mean": 0.2, "sd": float("nan")}, r"order_rate_prior.sd=nan"),
])
def test_bad_priors_are_refused(settings: object, message: str) -> None:
    with pytest.raises(OrderRateError, match=message):
        OrderRatePrior.from_params(settings)  # type: ignore[arg-type]
