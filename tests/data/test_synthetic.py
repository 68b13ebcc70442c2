"""Synthetic transactions: realism (the UCI data's known shape), determinism, drift injection, and a demand truth that
matches the data it generated."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pricetrail.data.synthetic.generator import UCI_COLUMNS, generate_transactions
from pricetrail.data.synthetic.truth import (
    expected_lines_per_day,
    expected_profit_per_day,
    expected_quantity,
    optimal_price,
    revenue_regret,
)

PRODUCTS = {
    "85123A": {"description": "WHITE HANGING HEART T-LIGHT HOLDER"},
    "22423": {"description": "REGENCY CAKESTAND 3 TIER"},
    "85099B": {"description": "JUMBO BAG RED RETROSPOT"},
    "84879": {"description": "ASSORTED COLOUR BIRD ORNAMENT"},
    "47566": {"description": "PARTY BUNTING"},
}
SETTINGS: dict[str, Any] = {"seed": 42, "start": "2010-12-01", "end": "2011-12-09", "lines_per_day": 7.0,
                            "filler_products": 20, "drift_days": 60}
SMALL: dict[str, Any] = {"seed": 7, "start": "2011-01-03", "end": "2011-04-29", "lines_per_day": 5.0,
                         "filler_products": 3, "drift_days": 30}


@pytest.fixture(scope="module")
def default_run() -> tuple[pd.DataFrame, dict[str, Any]]:
    return generate_transactions(PRODUCTS, drift={}, **SETTINGS)


def sales(frame: pd.DataFrame, code: str | None = None) -> pd.DataFrame:
    """Positive-price, positive-quantity, non-cancelled rows (of one product if ``code`` is given)."""
    kept = frame[~frame["InvoiceNo"].str.startswith("C") & (frame["Quantity"] > 0) & (frame["UnitPrice"] > 0)]
    return kept if code is None else kept[kept["StockCode"] == code]


def price_plan(truth: dict[str, Any], dates: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(list price, markdown running) for each date, read from one product's truth."""
    days = pd.to_datetime(dates).dt.normalize().to_numpy()
    starts = pd.to_datetime([day for day, _ in truth["list_price_schedule"]]).to_numpy()
    prices = np.array([price for _, price in truth["list_price_schedule"]])
    list_price = prices[np.searchsorted(starts, days, side="right") - 1]
    markdown = np.zeros(len(days), dtype=bool)
    for first, last, _ in truth["markdowns"]:
        markdown |= (days >= np.datetime64(first)) & (days <= np.datetime64(last))
    return list_price, markdown


def regular_full_price(frame: pd.DataFrame, truth: dict[str, Any], code: str, *, registered: bool) -> pd.DataFrame:
    """Sales of ``code`` outside markdowns at the regular price of the channel (no tier lines)."""
    rows = sales(frame, code)
    rows = rows[rows["CustomerID"].notna() == registered]
    list_price, markdown = price_plan(truth, rows["InvoiceDate"])
    expected = list_price if registered else np.round(list_price * truth["guest_price_ratio"], 2)
    return rows[~markdown & np.isclose(rows["UnitPrice"].to_numpy(), expected)]


# ---------------------------------------------------------------------------------------------------------------
# Schema, determinism, speed
# ---------------------------------------------------------------------------------------------------------------


def test_schema_and_dtypes(default_run):
    frame, _ = default_run
    assert tuple(frame.columns) == UCI_COLUMNS
    assert frame["InvoiceNo"].dtype == "str"
    assert frame["StockCode"].dtype == "str"
    assert frame["Description"].dtype == "str"
    assert frame["Country"].dtype == "str"
    assert frame["Quantity"].dtype == "int64"
    assert frame["UnitPrice"].dtype == "float64"
    assert frame["CustomerID"].dtype == "float64"
    assert pd.api.types.is_datetime64_dtype(frame["InvoiceDate"])
    assert frame["InvoiceDate"].is_monotonic_increasing
    assert (frame["CustomerID"].dropna() == frame["CustomerID"].dropna().round()).all()
    descriptions = frame["Description"].dropna()
    assert (descriptions == descriptions.str.upper()).all()


def test_same_arguments_give_identical_output():
    first = generate_transactions(PRODUCTS, drift={}, **SMALL)
    second = generate_transactions(PRODUCTS, drift={}, **SMALL)
    pd.testing.assert_frame_equal(first[0], second[0])
    assert first[1] == second[1]
    other = generate_transactions(PRODUCTS, drift={}, **{**SMALL, "seed": 8})
    assert not first[0].equals(other[0])


def product_rows(frame: pd.DataFrame, code: str) -> pd.DataFrame:
    return frame[frame["StockCode"] == code].reset_index(drop=True)


def test_adding_products_changes_no_other_products_rows(default_run):
    """Adding a product is one line in stockcodes.yaml: every other product's rows stay byte for byte the same,
    so DVC re-runs only the new product's chain. Three products join, one of them ahead of the others."""
    frame, truth = default_run
    more = {"22727": {"description": "ALARM CLOCK BAKELIKE RED"}, **PRODUCTS,
            "21212": {"description": "PACK OF 72 RETROSPOT CAKE CASES"}, "20725": {}}
    bigger, bigger_truth = generate_transactions(more, drift={}, **SETTINGS)
    assert len(more) == 8
    for code in PRODUCTS:
        ours, theirs = product_rows(frame, code), product_rows(bigger, code)
        assert len(ours) > 1000
        assert ours.to_csv(index=False).encode() == theirs.to_csv(index=False).encode(), code
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
        assert truth["products"][code] == bigger_truth["products"][code], code


def test_a_products_rows_do_not_depend_on_another_products_drift():
    plain, _ = generate_transactions(PRODUCTS, drift={}, **SMALL)
    drifted, _ = generate_transactions(PRODUCTS, drift={"22423": 2.0}, **SMALL)
    pd.testing.assert_frame_equal(product_rows(plain, "85123A"), product_rows(drifted, "85123A"), check_exact=True)


def test_truth_is_json_serialisable(default_run):
    _, truth = default_run
    assert json.loads(json.dumps(truth)) == truth
    assert truth["generator"] == "pricetrail.data.synthetic"
    assert truth["seed"] == 42 and truth["start"] == "2010-12-01" and truth["end"] == "2011-12-09"
    assert set(truth["products"]) == set(PRODUCTS)
    assert len(truth["fillers"]) == 20
    for product in truth["products"].values():
        for key in ("description", "base", "b", "ref_price", "guest_multiplier", "list_price_schedule",
                    "markdowns", "optimal_price_registered", "drift"):
            assert key in product


def test_integer_stockcode_from_yaml_is_accepted():
    frame, truth = generate_transactions({22423: {"description": "regency cakestand 3 tier"}}, drift={}, **SMALL)
    assert "22423" in truth["products"]
    assert truth["products"]["22423"]["description"] == "REGENCY CAKESTAND 3 TIER"
    assert (frame["StockCode"] == "22423").sum() > 100


def test_missing_description_is_generated_upper_case():
    _, truth = generate_transactions({"ABC123": {}}, drift={}, **SMALL)
    description = truth["products"]["ABC123"]["description"]
    assert description and description == description.upper()


# ---------------------------------------------------------------------------------------------------------------
# Realism
# ---------------------------------------------------------------------------------------------------------------


def test_trading_days_and_hours(default_run):
    frame, _ = default_run
    assert not (frame["InvoiceDate"].dt.dayofweek == 5).any()
    assert frame["InvoiceDate"].dt.hour.between(8, 20).all()
    assert frame["InvoiceDate"].min() >= pd.Timestamp("2010-12-01")
    assert frame["InvoiceDate"].max() < pd.Timestamp("2011-12-10")


def test_about_a_quarter_of_lines_are_guests(default_run):
    frame, _ = default_run
    assert 0.21 <= frame["CustomerID"].isna().mean() <= 0.29


def test_uk_heavy_countries(default_run):
    frame, _ = default_run
    shares = frame["Country"].value_counts(normalize=True)
    assert shares.index[0] == "United Kingdom"
    assert 0.85 <= shares["United Kingdom"] <= 0.95
    assert {"Germany", "France", "EIRE"} <= set(shares.index[:6])


def test_november_busier_than_february(default_run):
    frame, _ = default_run
    month = frame["InvoiceDate"].dt.month
    assert (month == 11).sum() > 1.6 * (month == 2).sum()


def test_default_products_have_realistic_line_counts(default_run):
    frame, _ = default_run
    for code in PRODUCTS:
        assert 1500 <= len(sales(frame, code)) <= 2500, code


def test_invoices_share_customer_country_and_time_and_increase_with_time(default_run):
    frame, _ = default_run
    numbers = frame["InvoiceNo"].str.removeprefix("C")
    assert numbers.str.fullmatch(r"\d{6}").all()
    per_invoice = frame.groupby("InvoiceNo").agg(customers=("CustomerID", lambda c: c.fillna(-1).nunique()),
                                                 countries=("Country", "nunique"),
                                                 times=("InvoiceDate", "nunique"))
    assert (per_invoice[["customers", "countries", "times"]] == 1).all().all()
    assert numbers.astype(int).is_monotonic_increasing
    lines_per_invoice = sales(frame).groupby("InvoiceNo").size()
    assert lines_per_invoice.max() >= 4 and (lines_per_invoice >= 2).mean() > 0.5


def test_cancellations_refer_to_earlier_sales(default_run):
    frame, _ = default_run
    cancelled = frame[frame["InvoiceNo"].str.startswith("C")]
    assert 0.012 <= len(cancelled) / len(frame) <= 0.022
    assert (cancelled["Quantity"] < 0).all()
    sold = sales(frame)
    keys = ["StockCode", "CustomerID", "UnitPrice"]
    matched = cancelled.assign(Quantity=-cancelled["Quantity"]).merge(
        sold[[*keys, "Quantity", "InvoiceDate"]].rename(columns={"InvoiceDate": "SaleDate"}),
        on=[*keys, "Quantity"])
    matched = matched[matched["SaleDate"] <= matched["InvoiceDate"]]
    assert set(matched["InvoiceNo"] + matched["StockCode"]) == set(cancelled["InvoiceNo"] + cancelled["StockCode"])


def test_quantities_bunch_at_pack_sizes(default_run):
    frame, truth = default_run
    top = sales(frame)["Quantity"].value_counts().index[:6]
    assert set(top) <= {1, 2, 3, 4, 6, 8, 10, 12, 24}
    for code, product in truth["products"].items():
        quantity = sales(frame, code)["Quantity"]
        assert quantity.isin(product["pack_sizes"]).mean() > 0.8, code


def test_guests_pay_about_twice_the_list_price(default_run):
    frame, truth = default_run
    for code, product in truth["products"].items():
        guests = sales(frame, code)
        guests = guests[guests["CustomerID"].isna()]
        list_price, markdown = price_plan(product, guests["InvoiceDate"])
        ratio = guests["UnitPrice"].to_numpy()[~markdown] / list_price[~markdown]
        assert len(ratio) > 200
        assert np.all((ratio > 1.85) & (ratio < 2.15)), code


def test_every_product_has_price_changes_and_markdowns(default_run):
    frame, truth = default_run
    for code, product in truth["products"].items():
        assert len({price for _, price in product["list_price_schedule"]}) >= 2, code
        assert len(product["markdowns"]) >= 1, code
        registered = sales(frame, code)
        registered = registered[registered["CustomerID"].notna()]
        list_price, markdown = price_plan(product, registered["InvoiceDate"])
        seen = set(registered["UnitPrice"].round(2))
        assert {round(p, 2) for _, p in product["list_price_schedule"]} <= seen, code
        assert (registered["UnitPrice"].to_numpy()[markdown] < list_price[markdown]).any(), code


def test_volume_tier_is_a_small_share_of_big_cheap_lines(default_run):
    frame, truth = default_run
    for code, product in truth["products"].items():
        registered = sales(frame, code)
        registered = registered[registered["CustomerID"].notna()]
        list_price, markdown = price_plan(product, registered["InvoiceDate"])
        tier = ~markdown & (registered["UnitPrice"].to_numpy() < list_price)
        assert 0 < tier.mean() <= 0.06, code
        assert (registered["Quantity"].to_numpy()[tier] >= product["tier_threshold"]).all(), code
        ratio = registered["UnitPrice"].to_numpy()[tier] / list_price[tier]
        assert np.all((ratio > 0.8) & (ratio < 0.9)), code


def test_rows_for_the_etl_to_clean(default_run):
    frame, truth = default_run
    codes = set(frame["StockCode"])
    assert {"POST", "DOT", "M", "BANK CHARGES"} <= codes
    assert (frame["UnitPrice"] == 0).sum() >= 10
    assert frame.duplicated().sum() >= 5
    assert frame["Description"].isna().any()
    huge = frame[frame["Quantity"].abs() >= 50_000]
    assert sorted(huge["Quantity"]) == [-80995, -74215, 74215, 80995]
    sale = huge[huge["Quantity"] == 80995].iloc[0]
    cancel = huge[huge["Quantity"] == -80995].iloc[0]
    assert cancel["InvoiceNo"].startswith("C") and cancel["InvoiceDate"] > sale["InvoiceDate"]
    assert cancel["StockCode"] == sale["StockCode"] and cancel["StockCode"] not in truth["products"]


# ---------------------------------------------------------------------------------------------------------------
# Drift injection
# ---------------------------------------------------------------------------------------------------------------


def test_zero_drift_equals_no_drift_key():
    plain = generate_transactions(PRODUCTS, drift={}, **SMALL)
    zero = generate_transactions(PRODUCTS, drift={"85123A": 0.0}, **SMALL)
    pd.testing.assert_frame_equal(plain[0], zero[0])
    assert plain[1] == zero[1]


def test_drift_changes_only_the_drifted_products_last_days():
    plain, _ = generate_transactions(PRODUCTS, drift={}, **SMALL)
    drifted, truth = generate_transactions(PRODUCTS, drift={"85123A": 1.0}, **SMALL)
    window = pd.Timestamp(truth["drift_start"])
    assert window == pd.Timestamp(SMALL["end"]) - pd.Timedelta(days=SMALL["drift_days"] - 1)

    def part(frame: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
        return frame[mask].reset_index(drop=True)

    pd.testing.assert_frame_equal(part(plain, plain["StockCode"] != "85123A"),
                                  part(drifted, drifted["StockCode"] != "85123A"))
    before = [part(f, (f["StockCode"] == "85123A") & (f["InvoiceDate"] < window)) for f in (plain, drifted)]
    pd.testing.assert_frame_equal(*before)
    after = [sales(f, "85123A") for f in (plain, drifted)]
    after = [f[f["InvoiceDate"] >= window] for f in after]
    assert not after[0].reset_index(drop=True).equals(after[1].reset_index(drop=True))


def test_drift_is_strong_enough_to_notice():
    plain, _ = generate_transactions(PRODUCTS, drift={}, **SMALL)
    drifted, truth = generate_transactions(PRODUCTS, drift={"85123A": 1.0}, **SMALL)
    window = pd.Timestamp(truth["drift_start"])
    before, after = ([f[f["InvoiceDate"] >= window] for f in (sales(plain, "85123A"), sales(drifted, "85123A"))])
    assert after["Quantity"].median() >= 2 * before["Quantity"].median()
    assert after["UnitPrice"].median() > 1.3 * before["UnitPrice"].median()
    uk = [(f["Country"] == "United Kingdom").mean() for f in (before, after)]
    assert uk[1] < uk[0] - 0.1
    product = truth["products"]["85123A"]
    assert product["drift"] == 1.0 and product["drift_start"] == truth["drift_start"]


# ---------------------------------------------------------------------------------------------------------------
# The demand truth
# ---------------------------------------------------------------------------------------------------------------


def test_optimal_price_lies_inside_the_registered_price_range(default_run):
    frame, truth = default_run
    for code, product in truth["products"].items():
        registered = sales(frame, code)
        registered = registered[registered["CustomerID"].notna()]["UnitPrice"]
        best = product["optimal_price_registered"]
        assert registered.min() < best < registered.max(), code
        low, high = product["registered_price_range"]
        assert low < best < high
        price, _ = optimal_price(product, low, high, is_registered=True, date="2011-06-01")
        assert price == pytest.approx(best, rel=1e-6)
        # (1 - a)/b is the optimum per day of the pure exponential curve with order-rate elasticity a; the one-unit
        # floor moves it only a little.
        assert best == pytest.approx((1 - product["order_rate_elasticity"]) / product["b"], rel=0.2)


def test_optimal_price_does_not_depend_on_the_date(default_run):
    _, truth = default_run
    product = truth["products"]["85123A"]
    low, high = product["registered_price_range"]
    february = optimal_price(product, low, high, is_registered=True, date="2011-02-10")
    november = optimal_price(product, low, high, is_registered=True, date="2011-11-15")
    assert february[0] == pytest.approx(november[0], rel=1e-6)
    assert november[1] > february[1]


def test_expected_quantity_decreases_with_price(default_run):
    _, truth = default_run
    for product in truth["products"].values():
        low, high = product["registered_price_range"]
        for registered in (True, False):
            # Strictly inside the prices either channel pays; far above them demand flattens at one unit a line.
            prices = np.linspace(0.5 * low, 2.5 * high, 200)
            quantity = expected_quantity(product, prices, is_registered=registered, date="2011-05-01")
            assert np.all(np.diff(quantity) < 0)
            wide = expected_quantity(product, np.linspace(0.1, 50.0, 500), is_registered=registered,
                                     date="2011-05-01")
            assert np.all(np.diff(wide) <= 1e-12)
            assert np.all(wide >= 1.0 - 1e-12)


@pytest.mark.parametrize("registered", [True, False])
def test_data_follows_the_true_demand_curve(default_run, registered):
    frame, truth = default_run
    checked = 0
    for code, product in truth["products"].items():
        rows = regular_full_price(frame, product, code, registered=registered)
        days = rows["InvoiceDate"].dt.strftime("%Y-%m-%d")
        for price, group in rows.groupby("UnitPrice"):
            if len(group) < 150:
                continue
            expected = [expected_quantity(product, np.array([price]), is_registered=registered, date=day)[0]
                        for day in days[group.index]]
            assert group["Quantity"].mean() == pytest.approx(np.mean(expected), rel=0.15), (code, price)
            checked += 1
    assert checked >= 5


def test_regret_is_zero_at_the_optimum_and_positive_elsewhere(default_run):
    _, truth = default_run
    for product in truth["products"].values():
        low, high = product["registered_price_range"]
        best, profit = optimal_price(product, low, high, is_registered=True, date="2011-03-01")
        assert profit > 0
        assert revenue_regret(product, best, low, high, is_registered=True, date="2011-03-01") == pytest.approx(
            0.0, abs=1e-9)
        for price in (low, high, 0.5 * best):
            regret = revenue_regret(product, price, low, high, is_registered=True, date="2011-03-01")
            assert 0 < regret <= 1


def test_the_price_moves_the_number_of_lines_as_the_truth_says():
    """A busy product's daily line counts answer its day's regular price with the truth's order-rate elasticity
    (one-parameter Poisson likelihood with the season and the level as the offset)."""
    code = "85123A"
    frame, truth = generate_transactions({code: {}}, seed=3, start="2010-12-01", end="2011-12-09",
                                         lines_per_day=200.0, filler_products=1, drift={}, drift_days=60)
    product = truth["products"][code]
    rows = sales(frame, code)
    rows = rows[~rows.duplicated(keep="first")]
    day = pd.to_datetime(rows["InvoiceDate"]).dt.normalize()
    counts = day.value_counts().sort_index()
    registered = rows[rows["CustomerID"].notna()]
    regular = registered.groupby(pd.to_datetime(registered["InvoiceDate"]).dt.normalize())["UnitPrice"].max()
    regular = regular.reindex(counts.index).to_numpy()
    expected_at_reference = np.array([
        expected_lines_per_day(product, np.array([product["ref_price"]]), is_registered=True, date=str(d.date()))[0]
        / ((1 - 0.25) * (1 - product["tier_share"])) for d in counts.index])
    log_price = np.log(regular / product["ref_price"])
    grid = np.linspace(0.0, 1.0, 1001)
    observed = counts.to_numpy()
    log_likelihood = [float(np.sum(observed * (-a * log_price) - expected_at_reference * np.exp(-a * log_price)))
                      for a in grid]
    estimate = grid[int(np.argmax(log_likelihood))]
    assert 0.1 <= product["order_rate_elasticity"] <= 0.3
    assert estimate == pytest.approx(product["order_rate_elasticity"], abs=0.1), estimate


def test_the_optimum_per_day_sits_below_the_optimum_per_line(default_run):
    """With fewer orders at a higher price, revenue per day peaks at a lower price than revenue per line."""
    _, truth = default_run
    for code, product in truth["products"].items():
        low, high = product["registered_price_range"]
        grid = np.linspace(low / 2, high * 2, 4001)
        per_line = grid[np.argmax(grid * expected_quantity(product, grid, is_registered=True, date="2011-03-01"))]
        per_day, _ = optimal_price(product, low / 2, high * 2, is_registered=True, date="2011-03-01")
        assert per_day < per_line, code
        per_day_values = expected_profit_per_day(product, grid, is_registered=True, date="2011-03-01")
        assert grid[np.argmax(per_day_values)] == pytest.approx(per_day, abs=2 * (grid[1] - grid[0]))


def test_unit_cost_raises_the_optimal_price(default_run):
    _, truth = default_run
    product = truth["products"]["22423"]
    low, high = product["registered_price_range"]
    free, _ = optimal_price(product, low / 2, high * 2, is_registered=True, date="2011-03-01")
    costly, _ = optimal_price(product, low / 2, high * 2, is_registered=True, date="2011-03-01",
                              unit_cost=0.3 * low)
    assert costly > free


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "bad"), [
    ({"products": {"85123 A": {}}}, "85123 A"),
    ({"products": {"85-123": {}}}, "85-123"),
    ({"products": {"85123A\n": {}}}, "85123A\\n"),
    ({"products": {}}, "{}"),
    ({"end": "2010-11-30", "start": "2010-12-01"}, "2010-11-30"),
    ({"start": "yesterday"}, "yesterday"),
    ({"lines_per_day": 0.0}, "0.0"),
    ({"lines_per_day": -2.0}, "-2.0"),
    ({"filler_products": -1}, "-1"),
    ({"drift": {"85123A": 5.5}}, "5.5"),
    ({"drift": {"85123A": -0.1}}, "-0.1"),
    ({"drift": {"99999": 1.0}}, "99999"),
    ({"drift_days": 0}, "0"),
])
def test_bad_generator_arguments_are_rejected(changes, bad):
    arguments: dict[str, Any] = {"products": {"85123A": {}}, "drift": {}, **SMALL, **changes}
    products = arguments.pop("products")
    with pytest.raises(ValueError, match=re.escape(bad)):
        generate_transactions(products, **arguments)


def test_bad_curve_arguments_are_rejected(default_run):
    _, truth = default_run
    product = truth["products"]["85123A"]
    with pytest.raises(ValueError, match=re.escape("-1.0")):
        expected_quantity(product, np.array([2.0, -1.0]), is_registered=True, date="2011-01-03")
    with pytest.raises(ValueError, match=re.escape("0.0")):
        expected_quantity(product, np.array([0.0]), is_registered=True, date="2011-01-03")
    with pytest.raises(ValueError, match="5.0"):
        optimal_price(product, 5.0, 5.0, is_registered=True, date="2011-01-03")
    with pytest.raises(ValueError, match="6.0"):
        optimal_price(product, 6.0, 5.0, is_registered=True, date="2011-01-03")
    with pytest.raises(ValueError, match=re.escape("-3.0")):
        optimal_price(product, -3.0, 5.0, is_registered=True, date="2011-01-03")
    with pytest.raises(ValueError, match="4.0"):
        revenue_regret(product, 3.0, 4.0, 4.0, is_registered=True, date="2011-01-03")
    with pytest.raises(ValueError, match=re.escape("-2.0")):
        revenue_regret(product, -2.0, 1.0, 4.0, is_registered=True, date="2011-01-03")
    with pytest.raises(ValueError, match="not-a-date"):
        expected_quantity(product, np.array([2.0]), is_registered=True, date="not-a-date")
    with pytest.raises(ValueError, match="base"):
        expected_quantity({"b": 1.0}, np.array([2.0]), is_registered=True, date="2011-01-03")


# ---------------------------------------------------------------------------------------------------------------
# Mispriced products: a status quo a recommendation can improve on
# ---------------------------------------------------------------------------------------------------------------

MISPRICED = {"90001": 0.3, "90002": 0.2, "90003": -0.25}


@pytest.fixture(scope="module")
def mispriced_run() -> tuple[pd.DataFrame, dict[str, Any]]:
    products = {**PRODUCTS, **{code: {} for code in MISPRICED}}
    return generate_transactions(products, drift={}, mispriced=MISPRICED, **{**SETTINGS, "filler_products": 3})


def test_a_mispriced_products_median_price_sits_at_its_offset_from_the_optimum(mispriced_run) -> None:
    frame, truth = mispriced_run
    for code, offset in MISPRICED.items():
        product = truth["products"][code]
        assert product["mispriced"] == offset
        low, high = product["registered_price_range"]
        optimum = product["optimal_price_registered"]
        assert low < optimum < high  # the price tests bracket the optimum: the curve can be read there
        paid = sales(frame, code)
        paid = paid[paid["CustomerID"].notna()]
        assert paid["UnitPrice"].median() / optimum - 1 == pytest.approx(offset, abs=0.05)
        # Revenue at the status quo is measurably below the optimum.
        assert revenue_regret(product, float(paid["UnitPrice"].median()), low, high, is_registered=True,
                              date="2011-03-01") > 0.01
        assert paid["UnitPrice"].nunique() >= 6


def test_mispricing_leaves_the_other_products_rows_as_they_were(default_run, mispriced_run) -> None:
    before, _ = generate_transactions({**PRODUCTS, **{code: {} for code in MISPRICED}}, drift={},
                                      **{**SETTINGS, "filler_products": 3})
    after, _ = mispriced_run
    for code in PRODUCTS:
        pd.testing.assert_frame_equal(sales(before, code).reset_index(drop=True),
                                      sales(after, code).reset_index(drop=True))


@pytest.mark.parametrize(("mispriced", "message"), [
    ({"99999": 0.3}, "not among the products"),
    ({"85123A": 0.01}, "at least 0.05 away from 0"),
    ({"85123A": 2.0}, r"in \[-0.5, 1\]"),
    ({"85123A": "high"}, "is not accepted"),
])
def test_bad_mispricing_is_refused(mispriced: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_transactions(PRODUCTS, drift={}, mispriced=mispriced, **SMALL)
