"""The price decision on tiny inputs: the status quo, change or keep over plausible curves, the test plan's math."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricetrail.pricing.decision import (
    DecisionError,
    DecisionSettings,
    Earlier,
    StatusQuo,
    Uncertainty,
    best_change,
    decide,
    design_prices,
    needs_test,
    shrunk,
    status_quo,
)

SETTINGS = DecisionSettings(delta=0.1, min_gain=0.005, status_quo_days=28, max_band_share=0.15, max_step=0.2)
QUO = StatusQuo(price=10.0, customer="registered", first_day="2011-11-01", last_day="2011-11-28", lines=100, days=28)
PRICES = np.linspace(8.0, 12.0, 41)  # 10.0 is on the grid, at index 20


def daily(rows: list[tuple[str, int, float | None]]) -> pd.DataFrame:
    return pd.DataFrame({"day": pd.to_datetime([r[0] for r in rows]),
                         "registered_lines": [r[1] for r in rows], "registered_price": [r[2] for r in rows],
                         "guest_lines": [0] * len(rows), "guest_price": [None] * len(rows)})


def test_the_status_quo_is_the_lines_weighted_median_of_the_groups_recent_days() -> None:
    history = daily([("2011-09-01", 50, 3.50),  # older than the window: not counted
                     ("2011-11-10", 10, 2.95), ("2011-11-11", 3, 2.55),  # a markdown day with few lines
                     ("2011-11-20", 8, 2.95), ("2011-11-25", 0, None)])
    quo = status_quo(history, "registered", pd.Timestamp("2011-12-01"), days=28)
    assert quo is not None and quo.price == 2.95 and quo.lines == 21
    assert (quo.first_day, quo.last_day) == ("2011-11-10", "2011-11-20")
    assert "median price registered customers paid per order line over the 28 days to 2011-11-20" in (
        quo.to_dict()["definition"])
    # As of a date inside the history, only the days before it count.
    assert status_quo(history, "registered", pd.Timestamp("2011-11-11"), days=28).price == 2.95  # type: ignore
    assert status_quo(history, "guest", pd.Timestamp("2011-12-01"), days=28) is None  # no guest ever bought
    assert status_quo(history.drop(columns=["registered_price"]), "registered", pd.Timestamp("2011-12-01"), 28) is None


def curves(slopes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Revenue per day of members with constant elasticities ``slopes`` on PRICES, and at the status quo."""
    values = PRICES[None, :] * (PRICES[None, :] / QUO.price) ** slopes[:, None]
    return values, np.full(len(slopes), QUO.price)


def test_keep_when_the_status_quo_is_the_optimum_the_curves_agree_on() -> None:
    # Revenue elasticity -1 in every member: revenue is flat, nothing gains.
    values, at_quo = curves(np.full(200, -1.0))
    decision = decide(PRICES, values, at_quo, QUO, SETTINGS)
    assert decision.action == "keep" and decision.price == QUO.price
    assert not needs_test(decision, (9.9, 10.1), SETTINGS)


def test_change_when_every_plausible_curve_gains_and_at_most_max_step_away() -> None:
    # Elasticity about -0.5: revenue rises with the price in every member, so the highest allowed price wins.
    rng = np.random.default_rng(0)
    values, at_quo = curves(rng.normal(-0.5, 0.05, 200))
    decision = decide(PRICES, values, at_quo, QUO, SETTINGS)
    assert decision.action == "change" and decision.price == pytest.approx(12.0)  # +20%: max_step
    assert decision.candidate is not None and decision.candidate.probability_of_gain == 1.0
    assert decision.to_dict()["expected_change"] > 0.05
    narrow = decide(PRICES, values, at_quo, QUO, DecisionSettings(max_step=0.1))
    assert narrow.price == pytest.approx(11.0)


def test_keep_for_lack_of_evidence_when_the_curves_disagree_and_ask_for_a_test() -> None:
    rng = np.random.default_rng(1)
    values, at_quo = curves(rng.normal(-0.8, 0.6, 200))  # most gain a little by rising, many lose
    decision = decide(PRICES, values, at_quo, QUO, SETTINGS)
    assert decision.action == "keep" and decision.price == QUO.price
    assert "the data cannot tell" in decision.reason
    assert decision.candidate is not None and decision.candidate.probability_of_gain < 0.9
    assert needs_test(decision, None, SETTINGS)


def test_keep_when_the_sure_gain_is_below_the_minimum() -> None:
    values, at_quo = curves(np.full(200, -0.999))
    decision = decide(PRICES, values, at_quo, QUO, DecisionSettings(min_gain=0.05))
    assert decision.action == "keep" and ("below the minimum" in decision.reason
                                          or "expected to gain more than" in decision.reason)


def earlier_at(price: float, status_quo: float = QUO.price) -> Earlier:
    return Earlier(version="abc123", day="2011-12-10", price=price, status_quo=status_quo, probability_of_gain=0.95)


def at_price(slopes: np.ndarray, price: float) -> np.ndarray:
    return price * (price / QUO.price) ** slopes


def test_an_earlier_change_stays_while_the_new_curves_do_not_doubt_it() -> None:
    # The new curves: a rise gains in about 80% of them; not sure enough to change afresh at delta 0.1.
    rng = np.random.default_rng(2)
    slopes = rng.normal(-0.75, 0.3, 400)
    values, at_quo = curves(slopes)
    fresh = decide(PRICES, values, at_quo, QUO, SETTINGS)
    assert fresh.action == "keep"
    earlier = earlier_at(11.0)
    decision = decide(PRICES, values, at_quo, QUO, SETTINGS, earlier=earlier, at_earlier=at_price(slopes, 11.0))
    assert decision.action == "change" and decision.price == 11.0
    assert decision.candidate is not None and 0.5 <= decision.candidate.probability_of_gain < 0.9
    assert "stands" in decision.reason and "abc123" in decision.reason
    assert decision.to_dict()["earlier_change"]["outcome"] == "kept"
    assert decision.to_dict()["probability_of_gain"] == decision.candidate.probability_of_gain


def test_an_earlier_change_the_new_curves_doubt_is_dropped() -> None:
    rng = np.random.default_rng(3)
    slopes = rng.normal(-1.3, 0.3, 400)  # a rise now loses in most curves
    values, at_quo = curves(slopes)
    decision = decide(PRICES, values, at_quo, QUO, SETTINGS, earlier=earlier_at(11.0),
                      at_earlier=at_price(slopes, 11.0))
    assert decision.action == "keep" and decision.price == QUO.price
    assert decision.earlier is not None and decision.earlier["outcome"] == "dropped"
    assert any("is dropped" in note for note in decision.notes)


def test_a_fresh_change_replaces_an_earlier_one_only_when_it_beats_it_surely() -> None:
    slopes = np.random.default_rng(4).normal(-0.5, 0.05, 200)  # every curve: the higher the better
    values, at_quo = curves(slopes)
    # 10.5 gains surely, but 12.0 beats it in every curve: replaced.
    replaced = decide(PRICES, values, at_quo, QUO, SETTINGS, earlier=earlier_at(10.5),
                      at_earlier=at_price(slopes, 10.5))
    assert replaced.price == pytest.approx(12.0) and replaced.earlier["outcome"] == "replaced"  # type: ignore
    # 11.95 is as good as 12.0 within the gain's minimum: the earlier change stands.
    kept = decide(PRICES, values, at_quo, QUO, SETTINGS, earlier=earlier_at(11.95),
                  at_earlier=at_price(slopes, 11.95))
    assert kept.price == 11.95 and kept.earlier["outcome"] == "kept"  # type: ignore
    assert "12 beats it in 100% of this model's curves" in kept.reason and "not surely enough" in kept.reason


def test_an_earlier_change_is_forgotten_once_the_price_moved() -> None:
    slopes = np.random.default_rng(5).normal(-0.75, 0.3, 400)
    values, at_quo = curves(slopes)
    # Decided against another price (the retailer moved since), or the change was made (it is the status quo now).
    for earlier in (earlier_at(11.0, status_quo=9.0), earlier_at(10.0)):
        decision = decide(PRICES, values, at_quo, QUO, SETTINGS, earlier=earlier, at_earlier=at_price(slopes, 11.0))
        assert decision.action == "keep" and decision.earlier is None


def test_no_status_quo_or_no_uncertainty_keeps() -> None:
    values, at_quo = curves(np.full(10, -0.5))
    assert decide(PRICES, values, at_quo, None, SETTINGS).price is None
    assert decide(PRICES, None, None, QUO, SETTINGS).action == "keep"


def test_the_safe_choice_maximises_the_lower_quantile_inside_the_step() -> None:
    values, at_quo = curves(np.full(50, -0.5))
    change, sure = best_change(PRICES, values, at_quo, 0.1, QUO.price, max_step=0.05)
    assert sure and change.price == pytest.approx(10.5)


def test_a_test_adds_information_longer_tests_more() -> None:
    uncertainty = Uncertainty(covariance=np.array([[0.04, 0.01], [0.01, 0.02]]), residual_sd=0.5, rate_sd=0.1)
    z = np.array([[-1.0, -0.8], [0.0, 0.0], [1.0, 0.9]])
    lines = np.array([5.0, 5.0, 5.0])
    logs = np.log([9.0, 10.0, 11.0])
    week, month = (shrunk(uncertainty, z, lines, days, logs) for days in (7, 28))
    assert np.trace(month.covariance) < np.trace(week.covariance) < np.trace(uncertainty.covariance)
    assert np.all(np.linalg.eigvalsh(month.covariance) > -1e-12)
    assert month.rate_sd is not None and week.rate_sd is not None
    assert month.rate_sd < week.rate_sd < 0.1


def test_test_prices_span_the_band_inside_the_range() -> None:
    assert design_prices(10.0, (8.0, 13.0), 5.0, 20.0) == (8.0, 10.0, 12.5)  # at most 25% away
    assert design_prices(10.0, (9.8, 10.2), 5.0, 20.0) == (9.0, 10.0, 11.0)  # at least 10% away
    assert design_prices(10.0, None, 9.5, 10.0) == (9.5, 10.0)  # one side only


@pytest.mark.parametrize(("values", "message"), [
    ({"delta": 0.0}, "decision.delta=0.0 is not accepted"),
    ({"delta": float("nan")}, "decision.delta=nan"),
    ({"min_gain": -0.1}, "decision.min_gain=-0.1"),
    ({"status_quo_days": 0}, "decision.status_quo_days=0"),
    ({"max_step": True}, "decision.max_step=True"),
    ({"hold_probability": 0}, "decision.hold_probability=0"),
    ({"hold_probability": 1.5}, "decision.hold_probability=1.5"),
    ({"typo": 1}, "unknown keys ['typo']"),
])
def test_bad_settings_are_refused_by_name(values: dict, message: str) -> None:
    with pytest.raises(DecisionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DecisionSettings.from_params(values)
