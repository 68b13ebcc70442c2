"""ETL: every cleaning rule and feature on tiny frames, and a test that fails if a feature sees the future."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import lines

from pricetrail.data.etl import (
    FEATURE_DOCS,
    PRICE_FEATURES,
    TARGET,
    CleaningRules,
    ETLError,
    build_features,
    clean_lines,
    daily_aggregates,
    price_features,
    run_etl,
    state_features,
)
from pricetrail.project.files import ConfigError

RULES = CleaningRules(min_rows=1, volume_tier_min_quantity=None)


def features_of(frame: pd.DataFrame) -> pd.DataFrame:
    clean, _ = clean_lines(frame, RULES)
    return build_features(clean, daily_aggregates(clean))


@pytest.mark.parametrize(
    ("bad_row", "rule"),
    [
        ({"invoice_no": "C500001", "quantity": -6}, "cancellation"),
        ({"invoice_no": "c500001", "quantity": 6}, "cancellation"),
        ({"quantity": 0}, "non_positive_quantity"),
        ({"quantity": -3, "unit_price": 0.0}, "non_positive_quantity"),
        ({"unit_price": 0.0}, "non_positive_price"),
        ({"unit_price": -11062.06}, "non_positive_price"),
        ({"quantity": 80995}, "extreme_outlier"),
        ({"quantity": 700, "invoice_date": "2011-02-01 10:00:00"}, "extreme_outlier"),  # > 100 x median of 6
    ],
)
def test_each_cleaning_rule_removes_its_rows(bad_row: dict, rule: str) -> None:
    good = [{"invoice_no": f"5{i:05d}", "quantity": 6} for i in range(5)]
    rules = CleaningRules(min_rows=1, volume_tier_min_quantity=None, outlier_min_history_lines=5)
    kept, report = clean_lines(lines([*good, bad_row]), rules)
    assert len(kept) == 5
    assert report.removed[rule] == 1
    assert sum(report.removed.values()) == 1 and report.rows_out == 5


def test_volume_tier_lines_are_left_out_of_the_demand_data() -> None:
    day = "2011-01-03 {}"
    frame = lines([
        {"invoice_no": "1", "invoice_date": day.format("09:00:00"), "unit_price": 2.95, "quantity": 6},
        {"invoice_no": "2", "invoice_date": day.format("10:00:00"), "unit_price": 2.55, "quantity": 48},  # tier
        {"invoice_no": "3", "invoice_date": day.format("11:00:00"), "unit_price": 2.55, "quantity": 6},  # small
        {"invoice_no": "4", "invoice_date": day.format("12:00:00"), "unit_price": 2.55, "quantity": 48,
         "customer_id": float("nan")},  # guests get no tier
        # A markdown to 2.55 from Jan 10: on its first day a big order is taken for a tier line (the day before
        # sold at 2.95); from its second day on the markdown price is the reference, and big orders stay.
        {"invoice_no": "5", "invoice_date": "2011-01-10 09:00:00", "unit_price": 2.55, "quantity": 6},
        {"invoice_no": "6", "invoice_date": "2011-01-10 10:00:00", "unit_price": 2.55, "quantity": 48},
        {"invoice_no": "7", "invoice_date": "2011-01-11 10:00:00", "unit_price": 2.55, "quantity": 48},
    ])
    rules = CleaningRules(min_rows=1, volume_tier_min_quantity=24, volume_tier_min_discount=0.08)
    kept, report = clean_lines(frame, rules)
    assert report.removed["volume_tier"] == 2
    assert sorted(kept["invoice_no"]) == ["1", "3", "4", "5", "7"]
    _, keep_all = clean_lines(frame, CleaningRules(min_rows=1, volume_tier_min_quantity=None))
    assert keep_all.removed["volume_tier"] == 0


def test_volume_tier_reference_is_what_was_charged_before_the_line() -> None:
    """The highest registered price charged earlier that day or on the latest earlier day; never a later line."""
    frame = lines([
        # The first day: no earlier registered line, no reference, the big line stays.
        {"invoice_no": "9", "invoice_date": "2011-01-02 10:00", "unit_price": 2.55, "quantity": 48},
        # A later line at a higher price does not turn an earlier big line into a tier line.
        {"invoice_no": "1", "invoice_date": "2011-01-03 09:00", "unit_price": 2.55, "quantity": 6},
        {"invoice_no": "2", "invoice_date": "2011-01-03 10:00", "unit_price": 2.55, "quantity": 48},
        {"invoice_no": "3", "invoice_date": "2011-01-03 15:00", "unit_price": 2.95, "quantity": 6},
        # The day's first registered line is compared with the day before (2.95), and so is a tier line that
        # follows only tier lines that day.
        {"invoice_no": "4", "invoice_date": "2011-01-04 10:00", "unit_price": 2.55, "quantity": 48},
        {"invoice_no": "5", "invoice_date": "2011-01-04 11:00", "unit_price": 2.55, "quantity": 48},
        # Lines of the same moment do not see each other: 7 is compared with Jan 4 (2.55) and stays ...
        {"invoice_no": "6", "invoice_date": "2011-01-05 11:00", "unit_price": 3.25, "quantity": 6,
         "customer_id": 1.0},
        {"invoice_no": "7", "invoice_date": "2011-01-05 11:00", "unit_price": 2.75, "quantity": 48},
        # ... while 8, an hour later, is compared with the 3.25 charged at 11:00.
        {"invoice_no": "8", "invoice_date": "2011-01-05 12:00", "unit_price": 2.75, "quantity": 48},
    ])
    rules = CleaningRules(min_rows=1, volume_tier_min_quantity=24, volume_tier_min_discount=0.08)
    kept, report = clean_lines(frame, rules)
    assert set(kept["invoice_no"]) == {"9", "1", "2", "3", "6", "7"}
    assert report.removed["volume_tier"] == 3


def test_relative_outlier_cap_uses_the_median_of_earlier_days() -> None:
    history = [{"invoice_no": str(i), "invoice_date": f"2011-01-{3 + i // 4:02d} 10:00", "quantity": 2}
               for i in range(24)]  # 24 lines over Jan 3-8
    later = [
        {"invoice_no": "big", "invoice_date": "2011-01-10 10:00", "quantity": 500},  # > 100 x 2: outlier
        {"invoice_no": "ok", "invoice_date": "2011-01-10 11:00", "quantity": 150},
    ]
    rules = CleaningRules(min_rows=1, outlier_median_factor=100, outlier_min_history_lines=20)
    kept, report = clean_lines(lines(history + later), rules)
    assert report.removed["extreme_outlier"] == 1 and "big" not in set(kept["invoice_no"])
    # The same day's and later lines do not move the cap: a day of 500s after it changes nothing before it.
    future = [{"invoice_no": f"f{i}", "invoice_date": "2011-01-11 10:00", "quantity": 500} for i in range(40)]
    kept_with_future, _ = clean_lines(lines(history + later + future), rules)
    assert "big" not in set(kept_with_future["invoice_no"]) and "ok" in set(kept_with_future["invoice_no"])


def test_relative_outlier_cap_waits_for_enough_history() -> None:
    """With fewer than outlier_min_history_lines earlier lines only the absolute cap applies."""
    frame = lines([{"invoice_no": str(i), "invoice_date": f"2011-01-{3 + i:02d} 10:00", "quantity": 2}
                   for i in range(5)] + [{"invoice_no": "x", "invoice_date": "2011-01-10 10:00", "quantity": 500},
                                         {"invoice_no": "y", "invoice_date": "2011-01-10 11:00", "quantity": 20_000}])
    kept, report = clean_lines(frame, CleaningRules(min_rows=1, outlier_min_history_lines=20))
    assert "x" in set(kept["invoice_no"]) and "y" not in set(kept["invoice_no"])
    assert report.removed["extreme_outlier"] == 1


def test_exact_duplicates_are_removed_but_distinct_lines_kept() -> None:
    frame = lines([{"invoice_no": "1"}, {"invoice_no": "1"}, {"invoice_no": "1", "quantity": 12}])
    kept, report = clean_lines(frame, RULES)
    assert report.removed["exact_duplicate"] == 1 and len(kept) == 2


def test_missing_column_is_named() -> None:
    with pytest.raises(ETLError, match=r"lacks columns \['unit_price'\]"):
        clean_lines(lines([{}]).drop(columns="unit_price"), RULES)


def test_state_features_use_only_earlier_days() -> None:
    frame = lines([
        {"invoice_no": "1", "invoice_date": "2011-01-03 09:00", "unit_price": 3.0, "quantity": 4},
        {"invoice_no": "2", "invoice_date": "2011-01-03 15:00", "unit_price": 5.0, "quantity": 2},  # same day
        {"invoice_no": "3", "invoice_date": "2011-02-01 10:00", "unit_price": 2.0, "quantity": 10},
        {"invoice_no": "4", "invoice_date": "2011-03-10 10:00", "unit_price": 4.0, "quantity": 1},
    ])
    feats = features_of(frame)
    # Day one: nothing earlier, so the reference prices fall back to the line's own price.
    assert math.isnan(feats.loc[0, "max_price_before"]) and feats.loc[0, "reference_max_price"] == 3.0
    assert feats.loc[1, "price_to_max"] == 1.0  # 5.0 is not compared with a later or same-day price
    assert feats.loc[2, "max_price_before"] == 5.0 and feats.loc[2, "price_to_max"] == pytest.approx(0.4)
    # Previous calendar month: January sold 6 units in 2 lines at a mean price of 4.0.
    assert feats.loc[2, "prev_month_quantity"] == 6 and feats.loc[2, "prev_month_lines"] == 2
    assert feats.loc[2, "prev_month_mean_price"] == 4.0
    assert feats.loc[2, "price_to_prev_month_mean"] == pytest.approx(0.5)
    # March: previous month February (10 units); 28 days before March 10 covers Feb 10 - Mar 9: nothing.
    assert feats.loc[3, "prev_month_quantity"] == 10 and feats.loc[3, "quantity_28d_before"] == 0
    assert feats.loc[2, "quantity_28d_before"] == 0  # Jan 3 is 29 days before Feb 1
    assert feats[TARGET].tolist() == pytest.approx(np.log1p([4, 2, 10, 1]).tolist())


def test_rolling_28_days_excludes_the_day_itself() -> None:
    frame = lines([
        {"invoice_no": "1", "invoice_date": "2011-01-03", "quantity": 4},
        {"invoice_no": "2", "invoice_date": "2011-01-20", "quantity": 6},
        {"invoice_no": "3", "invoice_date": "2011-01-31", "quantity": 7},
    ])
    feats = features_of(frame)
    assert feats["quantity_28d_before"].tolist() == [0, 4, 10]


def test_prev_month_mean_price_carries_forward_over_a_month_without_sales() -> None:
    frame = lines([
        {"invoice_no": "1", "invoice_date": "2011-01-05", "unit_price": 2.0},
        {"invoice_no": "2", "invoice_date": "2011-03-05", "unit_price": 3.0},
    ])
    feats = features_of(frame)
    assert feats.loc[1, "prev_month_quantity"] == 0  # February had no sales
    assert feats.loc[1, "prev_month_mean_price"] == 2.0  # the latest earlier month with sales


def test_calendar_and_customer_features() -> None:
    frame = lines([
        {"invoice_no": "1", "invoice_date": "2011-11-06 14:30", "customer_id": float("nan"), "country": "France"},
        {"invoice_no": "2", "invoice_date": "2011-11-07 09:00"},
    ])
    feats = features_of(frame)
    assert feats["is_registered"].tolist() == [False, True]
    assert feats["day_of_week"].tolist() == [7, 1]  # Sunday, Monday
    assert feats["month"].tolist() == [11, 11] and feats["year"].tolist() == [2011, 2011]
    assert feats["hour"].tolist() == [14, 9]
    assert feats.loc[0, "month_sin"] == pytest.approx(math.sin(2 * math.pi * 11 / 12))
    assert feats["country"].tolist() == ["France", "United Kingdom"]


def test_every_feature_is_documented() -> None:
    feats = features_of(lines([{"invoice_no": "1"}]))
    engineered = set(feats.columns) - {"invoice_no", "invoice_date", "quantity", TARGET, "max_price_before",
                                       "prev_month_mean_price"}
    assert engineered <= set(FEATURE_DOCS), engineered - set(FEATURE_DOCS)


def random_history(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.Timestamp("2011-01-03") + pd.to_timedelta(np.sort(rng.uniform(0, 200, n)), unit="D")
    return lines([
        {"invoice_no": str(600000 + i), "invoice_date": str(date), "quantity": int(rng.integers(1, 30)),
         "unit_price": float(rng.choice([1.95, 2.55, 2.95, 3.25])),
         "customer_id": float("nan") if rng.random() < 0.25 else 12345.0}
        for i, date in enumerate(dates)
    ])


@pytest.mark.parametrize("cut_day", [20, 75, 150])
def test_no_feature_looks_into_the_future(cut_day: int) -> None:
    """Features of the lines before a cut must not change when the data after the cut is removed or altered."""
    history = random_history(seed=cut_day)
    cut = pd.Timestamp("2011-01-03") + pd.Timedelta(days=cut_day)
    full = features_of(history)
    past_only = features_of(history[history["invoice_date"] < cut])
    altered = history.copy()
    after = altered["invoice_date"] >= cut
    altered.loc[after, "unit_price"] *= 10  # a very different future
    altered.loc[after, "quantity"] *= 7
    with_other_future = features_of(altered)
    n = len(past_only)
    assert n > 10
    pd.testing.assert_frame_equal(full.iloc[:n].reset_index(drop=True), past_only)
    pd.testing.assert_frame_equal(with_other_future.iloc[:n].reset_index(drop=True), past_only)


LEAKAGE_RULES = CleaningRules(min_rows=50, outlier_median_factor=20, outlier_min_history_lines=20,
                              volume_tier_min_quantity=24, volume_tier_min_discount=0.08)


def trading_history() -> pd.DataFrame:
    """Several lines a day with list prices, markdowns, guests, tier lines and outliers: data that trips every rule.

    Planted: on 2011-03-01 a big registered order at 2.55 at 10:00, the day's full-price line only at 15:00 (the
    old tier rule, the day's highest price, removed the order because of that later line); on 2011-02-11 a
    100-unit order (the old outlier rule, the whole history's median, removed it once a future of small orders
    pulled that median down).
    """
    rng = np.random.default_rng(11)
    rows = []
    for offset in range(0, 120):
        day = pd.Timestamp("2011-01-03") + pd.Timedelta(days=offset)
        if day.dayofweek == 5:
            continue
        list_price = 2.55 if 30 <= offset < 37 else 2.95  # a markdown week
        for k in range(int(rng.integers(2, 7))):
            guest = rng.random() < 0.25
            tier = not guest and rng.random() < 0.05
            rows.append({"invoice_no": f"{offset:03d}{k}", "invoice_date": str(day + pd.Timedelta(hours=9 + k)),
                         "quantity": int(rng.choice([48, 96])) if tier else int(rng.integers(1, 13)),
                         "unit_price": round(list_price * (0.85 if tier else 2.0 if guest else 1.0), 2),
                         "customer_id": float("nan") if guest else float(12000 + rng.integers(0, 50))})
    rows += [
        {"invoice_no": "0400x", "invoice_date": "2011-02-11 16:30:00", "quantity": 100},  # 100 <= 20 x median 6
        {"invoice_no": "0401x", "invoice_date": "2011-02-12 16:30:00", "quantity": 2000},  # an outlier by any rule
        {"invoice_no": "0570x", "invoice_date": "2011-03-01 08:00:00", "unit_price": 2.55, "quantity": 6},
        {"invoice_no": "0571x", "invoice_date": "2011-03-01 10:00:00", "unit_price": 2.55, "quantity": 48},
        {"invoice_no": "0572x", "invoice_date": "2011-03-01 15:00:00", "unit_price": 2.95, "quantity": 6},
    ]
    frame = lines(rows)
    return frame[frame["invoice_date"].dt.normalize() != pd.Timestamp("2011-03-01")].pipe(
        lambda kept: pd.concat([kept, frame[frame["invoice_no"].str.startswith("057")]], ignore_index=True))


def etl_features(history: pd.DataFrame, tmp_path: Path, name: str) -> tuple[pd.DataFrame, dict]:
    path = tmp_path / f"{name}.parquet"
    history.to_parquet(path, index=False)
    features, _, report = run_etl(path, "85123A", LEAKAGE_RULES)
    return features, report.removed


@pytest.mark.parametrize("cut", ["2011-03-01 12:00", "2011-02-14 00:00", "2011-04-01 00:00"])
def test_cleaning_and_features_of_run_etl_do_not_look_into_the_future(cut: str, tmp_path: Path) -> None:
    """The production path, rules on: deleting or rewriting what came after a moment changes nothing before it.

    Lines before the cut keep their fate (kept or removed) and their features whether the future is there,
    deleted, or rewritten into small orders at ten times the price.
    """
    history = trading_history()
    moment = pd.Timestamp(cut)
    after = history["invoice_date"] >= moment
    full, _ = etl_features(history, tmp_path, "full")
    past, removed = etl_features(history[~after], tmp_path, "past")
    rewritten = history.copy()
    rewritten.loc[after, "quantity"] = 1
    rewritten.loc[after, "unit_price"] *= 10
    other, _ = etl_features(rewritten, tmp_path, "other")
    assert removed["volume_tier"] >= 3 and removed["extreme_outlier"] >= 1  # the rules did fire before the cut
    assert len(past) > 100

    def before(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["invoice_date"] < moment].reset_index(drop=True)

    pd.testing.assert_frame_equal(before(full), past, check_exact=True)
    pd.testing.assert_frame_equal(before(other), past, check_exact=True)


def test_price_features_are_one_function_of_price_and_state() -> None:
    table = price_features(np.array([2.0, 4.0]), 3.0, float("nan"))
    assert table["reference_max_price"].tolist() == [3.0, 4.0]
    assert table["price_to_max"].tolist() == pytest.approx([2 / 3, 1.0])
    assert table["price_to_prev_month_mean"].tolist() == [1.0, 1.0]  # no earlier month: ratio 1
    assert table["log_price"].tolist() == pytest.approx([math.log(2), math.log(4)])
    assert table["price_squared"].tolist() == [4.0, 16.0]
    with pytest.raises(ETLError, match="finite and positive"):
        price_features(np.array([0.0]), 1.0, 1.0)


def test_etl_features_equal_price_features_at_the_line_price() -> None:
    feats = features_of(random_history(seed=3))
    again = price_features(feats["unit_price"], feats["max_price_before"], feats["prev_month_mean_price"])
    pd.testing.assert_frame_equal(feats[list(again.columns)].reset_index(drop=True), again)


def test_state_features_for_a_date_after_the_history() -> None:
    clean, _ = clean_lines(random_history(seed=5), RULES)
    daily = daily_aggregates(clean)
    state = state_features(daily, ["2012-06-01"])
    assert state.loc[0, "max_price_before"] == clean["unit_price"].max()


@pytest.fixture
def transactions(tmp_path: Path) -> Path:
    frame = random_history(seed=9)
    path = tmp_path / "transactions.parquet"
    frame.to_parquet(path, index=False)
    return path


def test_run_etl_on_ingested_parquet(transactions: Path) -> None:
    feats, daily, report = run_etl(transactions, "85123A", CleaningRules(min_rows=100, volume_tier_min_quantity=None))
    assert len(feats) == report.rows_out == 300 and daily["quantity"].sum() == feats["quantity"].sum()


@pytest.mark.parametrize(
    ("code", "rules", "error", "message"),
    [
        ("99999", RULES, ETLError, "stockcode 99999 is not in the data"),
        ("85123A", CleaningRules(min_rows=1000, volume_tier_min_quantity=None), ETLError,
         "stockcode 85123A has 300 clean rows, fewer than"),
        ("851-23A", RULES, ConfigError, "stockcode '851-23A' is not accepted: use letters and digits only"),
        ("../etc", RULES, ConfigError, "letters and digits only"),
        ("POST", RULES, ETLError, "stockcode POST is a non-product code"),
    ],
)
def test_run_etl_errors(transactions: Path, code: str, rules: CleaningRules, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        run_etl(transactions, code, rules)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_rows": 0}, "etl.min_rows=0 makes no sense"),
        ({"min_rows": "ten"}, "etl.min_rows='ten' makes no sense"),
        ({"max_quantity": -1}, "etl.max_quantity=-1"),
        ({"outlier_median_factor": 0.5}, "outlier_median_factor=0.5"),
        ({"min_row": 5}, r"unknown keys \['min_row'\]"),
        ({"volume_tier_min_quantity": 1}, "volume_tier_min_quantity=1 must be a whole number >= 2"),
        ({"volume_tier_min_discount": 1.5}, "volume_tier_min_discount=1.5"),
    ],
)
def test_cleaning_rules_validate_params(values: dict, message: str) -> None:
    with pytest.raises(ETLError, match=message):
        CleaningRules.from_params(values)


def test_output_order_is_total_whatever_the_input_order(transactions: Path, tmp_path: Path) -> None:
    """Lines tied on time and invoice (two lines of one product on one invoice) must not swap between runs."""
    frame = pd.read_parquet(transactions)
    tied = frame.iloc[:1].assign(quantity=frame["quantity"].iloc[0] + 1)
    frame = pd.concat([frame, tied], ignore_index=True)
    outputs = []
    for seed in range(4):
        path = tmp_path / f"shuffled{seed}.parquet"
        frame.sample(frac=1, random_state=seed).to_parquet(path, index=False)
        features, daily, _ = run_etl(path, "85123A", CleaningRules(min_rows=1))
        outputs.append(features)
    for other in outputs[1:]:
        pd.testing.assert_frame_equal(outputs[0], other, check_exact=True)  # bit for bit: DVC hashes bytes


def test_every_price_feature_is_non_decreasing_in_the_price() -> None:
    """The demand network's price term relies on it (model.PriceResponseNetwork): with non-negative weights on
    non-decreasing features, predicted demand cannot rise with the price."""
    prices = np.linspace(0.5, 20.0, 400)
    for max_before, mean_before in ((4.0, 3.5), (np.nan, np.nan), (25.0, 2.0)):
        table = price_features(prices, max_before, mean_before)
        assert list(table.columns) == list(PRICE_FEATURES)
        for column in PRICE_FEATURES:
            assert np.all(np.diff(table[column].to_numpy()) >= -1e-12), (column, max_before, mean_before)
