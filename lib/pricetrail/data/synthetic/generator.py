"""Seeded synthetic transactions in the UCI Online Retail schema, with a known demand curve per product.

The frame imitates the real data (no Saturdays, invoices of several lines, pack-size quantities, cancellations,
guests paying about twice the list price, a volume tier, non-product rows, zero prices, duplicates, an 80,995-unit
outlier). Unlike the real data every product's price really moves over time, and its demand follows a known curve
(:mod:`pricetrail.data.synthetic.truth`), so a price recommendation can be scored against the true optimum."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pricetrail.data.synthetic.calendar import (
    LINES_SEASON_AMPLITUDE,
    SEASON_PEAK_DOY,
    SEASON_WIDTH_DAYS,
    Calendar,
    day_str,
    lines_season,
    make_calendar,
    season_bump,
)
from pricetrail.data.synthetic.settings import parse_day, validate_follow_on, validate_mispriced, validate_settings
from pricetrail.data.synthetic.truth import GUEST_SHARE, fit_slope, optimal_price, regular_quantities

logger = logging.getLogger(__name__)

UCI_COLUMNS: tuple[str, ...] = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                                "CustomerID", "Country")
GENERATOR = "pricetrail.data.synthetic"


_FIRST_INVOICE = 536365  # the real data's first invoice number


_CANCEL_SLOT_SHARE = 0.25  # registered invoices that are (partly) cancelled later
_CANCEL_PROBABILITY = 0.09  # per line of such an invoice: 0.75 * 0.25 * 0.09 = 1.7% of lines
_DUPLICATE_PROBABILITY = 0.003
_FREE_LINE_PROBABILITY = 0.0015  # a line recorded a second time at price 0
_INTEGER_ROUNDING_SHARE = 0.15  # lines whose quantity is any whole number rather than a pack size
# How much the number of a product's order lines answers its price (d log lines / d log price = -this), drawn per
# product: a markdown brings more orders as well as bigger ones, but less strongly (a line's own elasticity at
# the optimum is this minus one).
_ORDER_RATE_ELASTICITY = (0.1, 0.3)
_LINES_PER_INVOICE = 3.0
# The shop's invoices per day, as a multiple of lines_per_day: a shop of about ten products' worth of lines at
# three lines an invoice. Fixed, not summed over the products asked for: every product's lines pick invoices
# from the same pool whatever the other products are, so adding one changes no other product's rows.
_POOL_INVOICES_PER_LINE_RATE = 10.0 / _LINES_PER_INVOICE
_ADJUSTMENT_SHARE = 0.04  # each stock-adjustment slot is a given product's with this probability
_HOURS = np.arange(8, 21)
# Lines per hour 8..20 in the real data.
_HOUR_WEIGHTS = np.array([8909, 34332, 49037, 57674, 78709, 72259, 67471, 77519, 54516, 28509, 7974, 3705, 871],
                         dtype=float)
_UK = "United Kingdom"
# Registered customers' countries; the shares make ~91% of all lines British once guests (~99% UK) are added.
_REGISTERED_COUNTRIES: dict[str, float] = {
    _UK: 0.889, "Germany": 0.0234, "France": 0.0211, "EIRE": 0.0190, "Spain": 0.0062, "Netherlands": 0.0058,
    "Belgium": 0.0051, "Switzerland": 0.0047, "Portugal": 0.0037, "Australia": 0.0031, "Norway": 0.0027,
    "Italy": 0.0020, "Channel Islands": 0.0019, "Finland": 0.0017, "Cyprus": 0.0014, "Sweden": 0.0012,
    "Austria": 0.0010, "Denmark": 0.0010, "Japan": 0.0009, "Poland": 0.0008, "USA": 0.0007,
}
_GUEST_COUNTRIES: dict[str, float] = {_UK: 0.986, "EIRE": 0.005, "Hong Kong": 0.004, "Unspecified": 0.003,
                                      "France": 0.002}
_COUNTRIES: tuple[str, ...] = tuple(dict.fromkeys([*_REGISTERED_COUNTRIES, *_GUEST_COUNTRIES]))
_UK_INDEX = _COUNTRIES.index(_UK)

_PACK_UNITS = np.array([4, 6, 8, 10, 12])
_PACK_UNIT_WEIGHTS = np.array([0.10, 0.35, 0.15, 0.15, 0.25])
_PACK_MULTIPLES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096)
_TIER_MULTIPLES = np.array([1, 2, 3, 4, 5, 10])
_TIER_MULTIPLE_WEIGHTS = np.array([0.50, 0.25, 0.10, 0.07, 0.05, 0.03])

# Real outliers: 74,215 of 23166 on 2011-01-18 and 80,995 of 23843 on 2011-12-09, each cancelled minutes later.
_OUTLIERS: tuple[tuple[str, str, int, float], ...] = (
    ("23166", "MEDIUM CERAMIC TOP STORAGE JAR", 74215, 1.04),
    ("23843", "PAPER CRAFT , LITTLE BIRDIE", 80995, 2.08),
)
_SPARE_OUTLIER_CODES: tuple[str, ...] = ("23167", "23844", "23168", "23845")
_NON_PRODUCT_CODES: tuple[str, ...] = ("POST", "DOT", "M", "BANK CHARGES")

_MOTIFS = ("RED RETROSPOT", "VINTAGE UNION JACK", "PINK POLKADOT", "SPACEBOY", "DOLLY GIRL", "WOODLAND",
           "PAISLEY PARK", "SKULLS", "REGENCY", "SWEETHEART", "ALPHABET", "STRAWBERRY", "CHRISTMAS", "BIRDIE",
           "JAM MAKING", "LOVE HEART", "ENGLISH ROSE", "GINGHAM", "DOILY", "RETRO SPOT")
_NOUNS = ("LUNCH BAG", "MUG", "CAKE CASES", "NAPKINS", "T-LIGHT HOLDER", "HOT WATER BOTTLE", "DOORMAT",
          "CHILDRENS APRON", "ALARM CLOCK", "BUNTING", "CUSHION COVER", "TEA TOWEL", "STORAGE JAR",
          "GIFT WRAP", "PARTY BAG", "PHOTO FRAME", "TRINKET BOX", "CHOPSTICKS", "PENCILS", "NOTEBOOK")


# ----------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------


def generate_transactions(
    products: Mapping[str, Mapping[str, Any]],
    *,
    seed: int,
    start: str,
    end: str,
    lines_per_day: float,
    filler_products: int,
    drift: Mapping[str, float],
    drift_days: int,
    mispriced: Mapping[str, float] | None = None,
    follow_on: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return (transactions in the UCI schema sorted by InvoiceDate, ground truth as a JSON-serialisable dict).

    ``products`` maps stockcode -> {"description": str (optional)}; ``drift`` maps a stockcode to a strength in
    [0, 5] of a shift injected into its last ``drift_days`` days (0 changes nothing). ``mispriced`` maps a
    stockcode to how far its list price sits from its revenue optimum (list / optimum - 1, e.g. 0.3 = 30% too
    high, -0.2 = 20% too low): such a product's markdowns are replaced by price tests around the optimum, so the
    data can show what a better price gains. The other products' rows do not change.

    ``follow_on`` (``{"days": N, "price_tests": {code: {"prices": [...], "days_each": D, "block_days": B}}}``)
    appends N days after ``end``: every product keeps its last list price, except that a product with a price test
    charges its test prices (registered list prices; guests pay their markup on them) in turn, B days at a time
    (default D), until each had D days, from the period's first day, then its last list price again. Drawn from
    streams of its own (a pool, per product), so every row up to ``end`` is the same with or without it: how a
    retailer's price test runs after the history.
    """
    began = time.perf_counter()
    descriptions, strengths = validate_settings(products, seed, lines_per_day, filler_products, drift, drift_days)
    offsets = validate_mispriced(mispriced or {}, descriptions)
    cal = make_calendar(parse_day(start, "start"), parse_day(end, "end"), drift_days)

    fill_rng = _stream(seed, "fillers")
    reserved = set(descriptions) | {code for code, *_ in _OUTLIERS} | set(_SPARE_OUTLIER_CODES)
    fillers = _filler_codes(fill_rng, filler_products, reserved)
    filler_rates = fill_rng.uniform(0.1, 0.4, size=len(fillers)) * lines_per_day

    codes = [*descriptions, *fillers]
    rates = np.array([lines_per_day] * len(descriptions) + list(filler_rates), dtype=float)
    outlier_specs = _outlier_specs(set(codes))
    pool = _build_pool(_stream(seed, "pool"), cal, float(lines_per_day), len(outlier_specs))

    blocks: list[_Rows] = []
    truths: dict[str, dict[str, Any]] = {}
    for position, code in enumerate(codes):
        rng = _stream(seed, f"product:{code}")
        is_main = code in descriptions
        offset = offsets.get(code)
        truth = _draw_product(rng, code, descriptions.get(code), cal, rates[position],
                              strengths.get(code, 0.0), kind="product" if is_main else "filler",
                              mispriced=offset,
                              test_rng=None if offset is None else _stream(seed, f"price-tests:{code}"),
                              order_rate_elasticity=float(_stream(seed, f"order-rate:{code}").uniform(
                                  *_ORDER_RATE_ELASTICITY)))
        truths[code] = truth
        # Drift-only draws come from their own stream, so the product's main stream is the same at any strength.
        drift_rng = _stream(seed, f"drift:{code}") if truth["drift"] > 0 else None
        blocks.append(_product_rows(rng, drift_rng, truth, position, pool, cal))
        blocks.append(_adjustment_rows(_stream(seed, f"adjust:{code}"), position, pool))
    blocks.append(_extra_rows(_stream(seed, "extras"), pool, outlier_specs))
    follow = validate_follow_on(follow_on or {}, descriptions)
    if follow["days"]:
        first_number = int(max(part.max(initial=0) for part in (pool.number, pool.cancel_number, pool.adjust_number,
                                                               pool.export_number, pool.outlier_number,
                                                               pool.outlier_cancel_number))) + 1
        blocks += _follow_on_blocks(seed, cal, follow, codes, rates, truths, lines_per_day, first_number)

    frame = _to_frame(blocks, codes, truths, outlier_specs)
    ground_truth: dict[str, Any] = {
        "generator": GENERATOR,
        "seed": int(seed),
        "start": cal.start.isoformat(),
        "end": cal.end.isoformat(),
        "lines_per_day": float(lines_per_day),
        "drift_days": int(drift_days),
        "drift_start": day_str(cal, cal.drift_start),
        "seasonality": {"peak_doy": SEASON_PEAK_DOY, "width_days": SEASON_WIDTH_DAYS,
                        "lines_amplitude": LINES_SEASON_AMPLITUDE},
        "products": {code: truths[code] for code in descriptions},
        "fillers": {code: truths[code] for code in fillers},
        "non_product_codes": list(_NON_PRODUCT_CODES),
        "outliers": [{"stockcode": code, "quantity": qty, "unit_price": price}
                     for code, _, qty, price in outlier_specs],
        "follow_on": follow,
    }
    logger.info("generated %d rows for %d products and %d fillers in %.2f s", len(frame), len(descriptions),
                len(fillers), time.perf_counter() - began)
    return frame, ground_truth


def _follow_on_blocks(seed: int, base: Calendar, follow: Mapping[str, Any], codes: list[str], rates: np.ndarray,
                      truths: dict[str, dict[str, Any]], lines_per_day: float, first_number: int) -> list[_Rows]:
    """The rows of the follow-on period (see :func:`generate_transactions`); records its prices in the truths."""
    start = base.end + timedelta(days=1)
    cal = make_calendar(start, base.end + timedelta(days=follow["days"]), follow["days"] + 1)
    pool = _build_pool(_stream(seed, "pool:follow-on"), cal, float(lines_per_day), 0, first_number=first_number)
    blocks = []
    for position, code in enumerate(codes):
        truth = truths[code]
        last_list = float(truth["list_price_schedule"][-1][1])
        plan = follow["price_tests"].get(code)
        periods = []
        if plan is not None:
            # The prices in turn, block_days at a time, until each had days_each days (a switchback: every price
            # sees every part of the season, so the season does not pass for the price's effect).
            left = {k: plan["days_each"] for k in range(len(plan["prices"]))}
            first, k = 0, 0
            while any(left.values()):
                if left[k]:
                    length = min(plan["block_days"], left[k])
                    periods.append((first, first + length - 1, round(1 - plan["prices"][k] / last_list, 6)))
                    left[k] -= length
                    first += length
                k = (k + 1) % len(plan["prices"])
        continued = {**truth, "drift": 0.0, "list_price_schedule": [[cal.start.isoformat(), last_list]],
                     "markdowns": [[day_str(cal, first), day_str(cal, last), fraction]
                                   for first, last, fraction in periods]}
        truth["follow_on"] = {"list_price": last_list, "tests": [[day_str(cal, first), day_str(cal, last),
                                                                  round(last_list * (1 - fraction), 2)]
                                                                 for first, last, fraction in periods]}
        blocks.append(_product_rows(_stream(seed, f"product:{code}:follow-on"), None, continued, position, pool, cal))
        blocks.append(_adjustment_rows(_stream(seed, f"adjust:{code}:follow-on"), position, pool))
    del rates  # each product's rate is in its truth ("lines_per_day")
    return blocks


def _stream(seed: int, label: str) -> np.random.Generator:
    """An independent generator per (seed, label); sha256 because Python's hash() is salted per process."""
    digest = hashlib.sha256(label.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def _round_list_price(value: float) -> float:
    # List prices end in 0 or 5 pence (2.95, 12.75), like the real shop's.
    return round(round(value * 20) / 20, 2)


def _description(rng: np.random.Generator) -> str:
    return f"{_MOTIFS[rng.integers(len(_MOTIFS))]} {_NOUNS[rng.integers(len(_NOUNS))]}"


def _draw_product(rng: np.random.Generator, code: str, description: str | None, cal: Calendar, rate: float,
                  strength: float, *, kind: str, mispriced: float | None = None,
                  test_rng: np.random.Generator | None = None,
                  order_rate_elasticity: float = 0.0) -> dict[str, Any]:
    """Draw one product's demand curve and price plan; every draw happens whatever the drift (stable streams)."""
    generated = _description(rng)
    ref_price = _round_list_price(rng.uniform(1.5, 8.0))
    base = math.exp(rng.uniform(math.log(3.0), math.log(15.0)))
    # Noise on the log scale: enough to make the model work for the curve, not so much that a year of one
    # product's lines cannot pin its slope down (the benchmark scores the recommended price on it).
    sigma = rng.uniform(0.35, 0.5)
    guest_multiplier = rng.uniform(0.6, 1.0)
    guest_ratio = rng.uniform(1.92, 2.06)
    tier_fraction = rng.uniform(0.82, 0.88)
    tier_share = rng.uniform(0.02, 0.05)
    pack_unit = int(rng.choice(_PACK_UNITS, p=_PACK_UNIT_WEIGHTS))
    season_amplitude = rng.uniform(0.10, 0.20)
    target_ratio = rng.uniform(0.85, 0.98)

    # Small packs are the divisors of the case size (a case of 12 splits into 1, 2, 3, 4 or 6).
    divisors = {d for d in range(1, pack_unit) if pack_unit % d == 0}
    pack_sizes = sorted({1, 2, *divisors, *(pack_unit * m for m in _PACK_MULTIPLES)})
    # Regular lines stay below the tier threshold; bigger orders are the (separately drawn) volume tier.
    tier_threshold = next(size for size in pack_sizes if size >= max(6 * base, 2 * pack_unit))
    quantity_cap = max(size for size in pack_sizes if size < tier_threshold)

    list_by_day, moves = _list_prices(rng, ref_price, cal.n_days)
    markdowns = _markdowns(rng, cal.n_days)  # drawn in every case, so the main stream stays the same
    if mispriced is not None:
        assert test_rng is not None
        markdowns = _price_tests(test_rng, cal.n_days, mispriced)
    fraction_by_day = np.zeros(cal.n_days)
    for first, last, fraction in markdowns:
        fraction_by_day[first:last + 1] = fraction
    regular_by_day = np.where(fraction_by_day != 0, np.round(list_by_day * (1 - fraction_by_day), 2), list_by_day)

    # The optimum sits inside the range of regular prices registered customers see (before any drift).
    lo = float(regular_by_day[cal.trading].min())
    hi = float(max(list_by_day[cal.trading].max(), regular_by_day[cal.trading].max()))
    if mispriced is None:
        target = min(max(target_ratio * ref_price, lo + 0.2 * (hi - lo)), hi - 0.2 * (hi - lo))
    else:
        # Measured from the list price charged on the median day: the list price moves once or twice.
        target = float(np.median(list_by_day[cal.trading])) / (1 + mispriced)
    b = fit_slope(target, base, ref_price, sigma, quantity_cap, order_rate_elasticity)

    drift_price_factor = 1 + 0.4 * strength
    drift_quantity_factor = 1 + 3 * strength
    if strength > 0:
        list_by_day = list_by_day.copy()
        list_by_day[cal.drift_start:] = np.round(list_by_day[cal.drift_start:] * drift_price_factor, 2)
    change = np.flatnonzero(np.r_[True, np.diff(list_by_day) != 0])

    truth: dict[str, Any] = {
        "description": description or generated,
        "kind": kind,
        "lines_per_day": float(rate),
        "order_rate_elasticity": float(order_rate_elasticity),
        "base": float(base),
        "b": float(b),
        "ref_price": float(ref_price),
        "guest_multiplier": float(guest_multiplier),
        "guest_price_ratio": float(guest_ratio),
        "noise_sigma": float(sigma),
        "quantity_cap": int(quantity_cap),
        "pack_unit": pack_unit,
        "pack_sizes": [int(size) for size in pack_sizes],
        "integer_rounding_share": _INTEGER_ROUNDING_SHARE,
        "quantity_season_amplitude": float(season_amplitude),
        "season_peak_doy": SEASON_PEAK_DOY,
        "season_width_days": SEASON_WIDTH_DAYS,
        "tier_threshold": int(tier_threshold),
        "tier_fraction": float(tier_fraction),
        "tier_share": float(tier_share),
        "tier_multiples": [int(m) for m in _TIER_MULTIPLES],
        "list_price_schedule": [[day_str(cal, i), float(list_by_day[i])] for i in change],
        "list_price_moves": [[day_str(cal, i), float(factor)] for i, factor in moves],
        "markdowns": [[day_str(cal, first), day_str(cal, last), float(fraction)]
                      for first, last, fraction in markdowns],
        "registered_price_range": [lo, hi],
        "mispriced": None if mispriced is None else float(mispriced),
        "optimal_price_registered": 0.0,
        "drift": float(strength),
        "drift_start": day_str(cal, cal.drift_start) if strength > 0 else None,
        "drift_quantity_factor": float(drift_quantity_factor),
        "drift_price_factor": float(drift_price_factor),
        "drift_export_share": float(min(0.9, 0.4 * strength)),
        "cancel_probability": _CANCEL_PROBABILITY * _CANCEL_SLOT_SHARE,
    }
    truth["optimal_price_registered"] = optimal_price(truth, lo, hi, is_registered=True,
                                                      date=cal.start.isoformat())[0]
    return truth


def _list_prices(rng: np.random.Generator, ref_price: float, n_days: int) -> tuple[np.ndarray,
                                                                                   list[tuple[int, float]]]:
    """List price per day: ref_price, moved permanently once or twice by 5-15% somewhere mid-period."""
    n_moves = int(rng.integers(1, 3))
    first, last = max(1, int(0.1 * n_days)), int(0.9 * n_days)
    candidates = np.arange(first, max(first, last))
    offsets = np.sort(rng.choice(candidates, size=min(n_moves, len(candidates)), replace=False)) \
        if len(candidates) else np.array([], dtype=int)
    signs = rng.choice(np.array([-1.0, 1.0]), size=n_moves)
    sizes = rng.uniform(0.05, 0.15, size=n_moves)
    prices = np.full(n_days, ref_price)
    moves: list[tuple[int, float]] = []
    current = ref_price
    for offset, sign, size in zip(offsets, signs, sizes, strict=False):
        factor = 1 + sign * size
        current = _round_list_price(current * factor)
        prices[offset:] = current
        moves.append((int(offset), round(float(factor), 4)))
    return prices, moves


def _periods(rng: np.random.Generator, n_days: int, count: int,
             fraction: Callable[[], float]) -> list[tuple[int, int, float]]:
    """``count`` temporary price periods of 1-3 weeks, one per equal segment of the period (never overlapping):
    (first day, last day, fraction off the list price, drawn by ``fraction()``)."""
    segment = n_days / count
    result = []
    for k in range(count):
        duration = int(rng.integers(7, 22))
        seg_start, seg_end = int(k * segment), int((k + 1) * segment)
        duration = min(duration, max(1, seg_end - seg_start - 1))
        first = int(rng.integers(seg_start, max(seg_start + 1, seg_end - duration + 1)))
        off = fraction()
        last = min(first + duration - 1, n_days - 1)
        # Periods shorter than the segments squeeze them together: keep the first of overlapping ones.
        if first < n_days and (not result or first > result[-1][1]):
            result.append((first, last, off))
    return result


def _markdowns(rng: np.random.Generator, n_days: int) -> list[tuple[int, int, float]]:
    """2-4 temporary markdowns of 10-30% for 1-3 weeks."""
    return _periods(rng, n_days, int(rng.integers(2, 5)), lambda: round(float(rng.uniform(0.10, 0.30)), 2))


def _price_tests(rng: np.random.Generator, n_days: int, offset: float) -> list[tuple[int, int, float]]:
    """4-5 price tests of 1-3 weeks around a mispriced product's optimum, as markdown entries (fraction off the list
    price; negative for a test above it): each test price is the list price moved 50-150% of the way to the
    optimum."""
    toward = 1 / (1 + offset) - 1  # the relative move from the list price to the optimum
    return _periods(rng, n_days, int(rng.integers(4, 6)), lambda: round(float(-toward * rng.uniform(0.5, 1.5)), 2))


# ----------------------------------------------------------------------------------------------------------------
# The invoice pool: timestamps, customers and countries shared by all products
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pool:
    day: np.ndarray  # sale invoices, sorted by time: day offset
    minute: np.ndarray  # minutes since the epoch
    number: np.ndarray
    guest: np.ndarray
    customer: np.ndarray  # float, NaN for guests
    country: np.ndarray  # index into _COUNTRIES
    cancel_number: np.ndarray  # -1 when the invoice is never cancelled
    cancel_minute: np.ndarray
    adjust_minute: np.ndarray  # stock adjustments (price 0, no customer)
    adjust_number: np.ndarray
    export_day: np.ndarray  # registered non-UK invoices only drifted products use (unused numbers are gaps)
    export_minute: np.ndarray
    export_number: np.ndarray
    export_customer: np.ndarray
    export_country: np.ndarray
    outlier_invoice: np.ndarray  # per outlier: the sale invoice index whose customer it borrows
    outlier_minute: np.ndarray
    outlier_number: np.ndarray
    outlier_cancel_minute: np.ndarray
    outlier_cancel_number: np.ndarray


def _build_pool(rng: np.random.Generator, cal: Calendar, lines_per_day: float, n_outliers: int, *,
                first_number: int = _FIRST_INVOICE) -> _Pool:
    """Invoices of the whole period, independent of the products and their draws: drift stays local, and
    adding a product leaves every other product's rows as they were."""
    season = lines_season(cal.doy)
    per_day = _POOL_INVOICES_PER_LINE_RATE * lines_per_day * season
    counts = np.where(cal.trading, rng.poisson(per_day) + 1, 0)
    day = np.repeat(np.arange(cal.n_days), counts)
    hour = rng.choice(_HOURS, size=len(day), p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    epoch_day = (np.datetime64(cal.start, "D") - np.datetime64("1970-01-01", "D")).astype(np.int64)
    minute = (epoch_day + day) * 1440 + hour * 60 + rng.integers(0, 60, size=len(day))
    order = np.argsort(minute, kind="stable")
    day, minute = day[order], minute[order]
    n = len(day)

    guest = rng.random(n) < GUEST_SHARE
    n_customers = int(np.clip(round((~guest).sum() / 5), 20, 5900))
    customer_ids = rng.choice(np.arange(12346, 18288), size=n_customers, replace=False).astype(float)
    registered_p = np.array([_REGISTERED_COUNTRIES.get(c, 0.0) for c in _COUNTRIES])
    customer_country = rng.choice(len(_COUNTRIES), size=n_customers, p=registered_p / registered_p.sum())
    weights = rng.lognormal(0.0, 1.0, size=n_customers)
    who = rng.choice(n_customers, size=n, p=weights / weights.sum())
    guest_p = np.array([_GUEST_COUNTRIES.get(c, 0.0) for c in _COUNTRIES])
    guest_country = rng.choice(len(_COUNTRIES), size=n, p=guest_p / guest_p.sum())
    customer = np.where(guest, np.nan, customer_ids[who])
    country = np.where(guest, guest_country, customer_country[who])

    # A cancelled invoice's C-invoice comes a few invoices (minutes to a day or so) later.
    cancelled = ~guest & (rng.random(n) < _CANCEL_SLOT_SHARE)
    later = np.minimum(np.arange(n) + rng.geometric(0.05, size=n), n - 1)
    cancel_minute = minute[later]

    # Export invoices exist whatever the drift (so numbering never depends on it); a drifted product moves
    # part of its lines there. The real sequence has gaps too: 25,900 invoices over 45,000 numbers.
    export_counts = np.where(cal.trading, rng.poisson(1.5 * lines_per_day * season), 0)
    export_day = np.repeat(np.arange(cal.n_days), export_counts)
    export_minute = (epoch_day + export_day) * 1440 \
        + rng.choice(_HOURS, size=len(export_day), p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()) * 60 \
        + rng.integers(0, 60, size=len(export_day))
    export_order = np.argsort(export_minute, kind="stable")
    export_day, export_minute = export_day[export_order], export_minute[export_order]
    abroad = np.flatnonzero(customer_country != _UK_INDEX)
    if not len(abroad):
        abroad = np.arange(n_customers)
    export_who = rng.choice(abroad, size=len(export_day), p=weights[abroad] / weights[abroad].sum())

    adjust_day = np.flatnonzero(cal.trading & (rng.random(cal.n_days) < 0.3))
    adjust_minute = (epoch_day + adjust_day) * 1440 + rng.choice(_HOURS, size=len(adjust_day)) * 60 \
        + rng.integers(0, 60, size=len(adjust_day))

    # Outliers on the period's first-seventh and last trading day, like the real pair (18 Jan and 9 Dec).
    trading_days = np.flatnonzero(cal.trading)
    outlier_days = np.array([trading_days[len(trading_days) // 7], trading_days[-1]])[:n_outliers]
    registered_uk = np.flatnonzero(~guest & (country == _UK_INDEX))
    pool_for_borrow = registered_uk if len(registered_uk) else np.arange(n)
    outlier_invoice = rng.choice(pool_for_borrow, size=n_outliers)
    outlier_minute = (epoch_day + outlier_days) * 1440 + np.array([10 * 60 + 1, 9 * 60 + 15])[:n_outliers]
    outlier_cancel_minute = outlier_minute + np.array([16, 12])[:n_outliers]

    # Number every event (sales, C-invoices, adjustments, outliers) in time order: numbers increase with time.
    event_minutes = [minute, cancel_minute[cancelled], adjust_minute, outlier_minute, outlier_cancel_minute,
                     export_minute]
    times = np.concatenate(event_minutes)
    kinds = np.concatenate([np.full(len(m), k) for k, m in enumerate(event_minutes)])
    numbers = np.empty(len(times), dtype=np.int64)
    numbers[np.lexsort((np.arange(len(times)), kinds, times))] = first_number + np.arange(len(times))
    bounds = np.cumsum([0, *(len(m) for m in event_minutes)])
    parts = [numbers[bounds[k]:bounds[k + 1]] for k in range(len(event_minutes))]
    cancel_number = np.full(n, -1, dtype=np.int64)
    cancel_number[cancelled] = parts[1]
    return _Pool(day=day, minute=minute, number=parts[0], guest=guest, customer=customer, country=country,
                 cancel_number=cancel_number, cancel_minute=cancel_minute, adjust_minute=adjust_minute,
                 adjust_number=parts[2], outlier_invoice=outlier_invoice, outlier_minute=outlier_minute,
                 outlier_number=parts[3], outlier_cancel_minute=outlier_cancel_minute,
                 outlier_cancel_number=parts[4], export_day=export_day, export_minute=export_minute,
                 export_number=parts[5], export_customer=customer_ids[export_who],
                 export_country=customer_country[export_who])


# ----------------------------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Rows:
    code: np.ndarray  # index into the code list; -k-1 for the k-th non-product code, -100-k for outlier k
    number: np.ndarray
    cancel: np.ndarray
    minute: np.ndarray
    quantity: np.ndarray
    price: np.ndarray
    customer: np.ndarray
    country: np.ndarray
    blank_description: np.ndarray


def _rows(code: np.ndarray | int, number: np.ndarray, cancel: np.ndarray | bool, minute: np.ndarray,
          quantity: np.ndarray, price: np.ndarray, customer: np.ndarray, country: np.ndarray,
          blank_description: np.ndarray | bool = False) -> _Rows:
    size = len(number)
    return _Rows(code=np.broadcast_to(code, size).astype(np.int64), number=np.asarray(number, dtype=np.int64),
                 cancel=np.broadcast_to(cancel, size).astype(bool), minute=np.asarray(minute, dtype=np.int64),
                 quantity=np.asarray(quantity, dtype=np.int64), price=np.asarray(price, dtype=float),
                 customer=np.asarray(customer, dtype=float), country=np.asarray(country, dtype=np.int64),
                 blank_description=np.broadcast_to(blank_description, size).astype(bool))


def _concat(blocks: list[_Rows]) -> _Rows:
    return _Rows(**{name: np.concatenate([getattr(b, name) for b in blocks])
                    for name in _Rows.__dataclass_fields__})


def _subset(rows: _Rows, mask: np.ndarray) -> _Rows:
    return _Rows(**{name: getattr(rows, name)[mask] for name in _Rows.__dataclass_fields__})


def _poisson_quantile(u: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The Poisson(mean) quantile of each uniform ``u`` (0 where the mean is 0)."""
    mean = np.asarray(mean, dtype=float)
    top = float(mean.max()) if mean.size else 0.0
    k = np.arange(int(math.ceil(top + 12 * math.sqrt(top) + 12)) + 1)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(k[1:]))])
    safe = np.where(mean > 0, mean, 1.0)[:, None]
    cdf = np.cumsum(np.exp(k[None, :] * np.log(safe) - safe - log_factorial[None, :]), axis=1)
    counts = (cdf < np.asarray(u, dtype=float)[:, None]).sum(axis=1)
    return np.where(mean > 0, counts, 0).astype(np.int64)


def _product_rows(rng: np.random.Generator, drift_rng: np.random.Generator | None, truth: dict[str, Any],
                  position: int, pool: _Pool, cal: Calendar) -> _Rows:
    """Sale lines, tier lines, cancellations, duplicates and zero-price copies of one product.

    Draw sizes never depend on the drift, so the rows before the drift window are identical with or without it.
    """
    strength = truth["drift"]
    drift_day = np.arange(cal.n_days) >= cal.drift_start if strength > 0 else np.zeros(cal.n_days, dtype=bool)
    list_by_day = _schedule_by_day(truth, cal)
    fraction_by_day = np.zeros(cal.n_days)
    for first, last, fraction in truth["markdowns"]:
        fraction_by_day[_offset(cal, first):_offset(cal, last) + 1] = fraction
    regular_by_day = np.where(fraction_by_day != 0, np.round(list_by_day * (1 - fraction_by_day), 2), list_by_day)
    # The tier discount applies on top of any markdown, so a tier line is always cheaper than a regular one.
    tier_by_day = np.round(regular_by_day * truth["tier_fraction"], 2)
    factor_by_day = 1 + truth["quantity_season_amplitude"] * season_bump(cal.doy)
    factor_by_day = np.where(drift_day, factor_by_day * truth["drift_quantity_factor"], factor_by_day)

    # Which invoices get a line: per day, the n with the smallest random keys (sampling without replacement),
    # so a product appears at most once per invoice. Lines come out sorted by day.
    # The price moves the number of lines. Drawn at the prices without the drift (the drift's dearer window is
    # thinned below), so the draw sizes, and the rows before a drift window, are the same at any strength.
    undrifted = np.where(drift_day, regular_by_day / truth["drift_price_factor"], regular_by_day)
    order_rate = (undrifted / truth["ref_price"]) ** -truth["order_rate_elasticity"]
    lines_mean = np.where(cal.trading, truth["lines_per_day"] * lines_season(cal.doy) * order_rate, 0.0)
    lines_by_day = _poisson_quantile(rng.random(cal.n_days), lines_mean)
    keys = rng.random(len(pool.day))
    order = np.lexsort((keys, pool.day))
    sorted_day = pool.day[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_day, sorted_day, side="left")
    invoice = order[rank < lines_by_day[sorted_day]]
    n = len(invoice)
    day = pool.day[invoice]
    number, minute = pool.number[invoice], pool.minute[invoice]
    guest, customer, country = pool.guest[invoice], pool.customer[invoice], pool.country[invoice]
    cancel_number, cancel_minute = pool.cancel_number[invoice], pool.cancel_minute[invoice]
    if drift_rng is not None:
        # Shift the country mix: move part of the window's lines to registered customers abroad.
        candidates = drift_day[day] & (drift_rng.random(n) < truth["drift_export_share"])
        moved, target = _export_moves(drift_rng, candidates, day, pool, cal.n_days)
        number[moved], minute[moved] = pool.export_number[target], pool.export_minute[target]
        guest[moved], customer[moved] = False, pool.export_customer[target]
        country[moved], cancel_number[moved] = pool.export_country[target], -1
    keep = np.ones(n, dtype=bool)
    if drift_rng is not None:
        # Fewer orders at the window's dearer prices: thinning a Poisson count by the rate ratio keeps it Poisson.
        ratio = truth["drift_price_factor"] ** -truth["order_rate_elasticity"]
        keep = ~drift_day[day] | (drift_rng.random(n) < ratio)

    u_tier, z, u_kind, u_round = rng.random(n), rng.standard_normal(n), rng.random(n), rng.random(n)
    tier_pick = rng.choice(len(_TIER_MULTIPLES), size=n, p=_TIER_MULTIPLE_WEIGHTS)
    u_cancel, u_duplicate, u_free = rng.random(n), rng.random(n), rng.random(n)

    tier = ~guest & (u_tier < truth["tier_share"])
    regular_price = regular_by_day[day]
    price = np.where(guest, np.round(regular_price * truth["guest_price_ratio"], 2), regular_price)
    price = np.where(tier, tier_by_day[day], price)

    quantity = regular_quantities(truth, price, ~guest, factor_by_day[day], z, u_kind, u_round)
    tier_quantity = truth["tier_threshold"] * _TIER_MULTIPLES[tier_pick] \
        * np.where(drift_day[day], truth["drift_quantity_factor"], 1.0)
    quantity = np.where(tier, np.rint(tier_quantity), quantity).astype(np.int64)

    sales = _subset(_rows(position, number, False, minute, quantity, price, customer, country), keep)
    cancel = (cancel_number >= 0) & (u_cancel < _CANCEL_PROBABILITY) & keep
    cancels = _rows(position, cancel_number[cancel], True, cancel_minute[cancel], -quantity[cancel], price[cancel],
                    customer[cancel], country[cancel])
    duplicates = _subset(sales, (u_duplicate < _DUPLICATE_PROBABILITY)[keep])
    free = _subset(sales, (u_free < _FREE_LINE_PROBABILITY)[keep])
    free.price = np.zeros(len(free.price))
    return _concat([sales, cancels, duplicates, free])


def _export_moves(rng: np.random.Generator, candidates: np.ndarray, day: np.ndarray, pool: _Pool,
                  n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """(lines to move, export invoice of each): distinct export invoices of the line's own day, while they last."""
    order = np.lexsort((rng.random(len(pool.export_day)), pool.export_day))
    first = np.searchsorted(pool.export_day[order], np.arange(n_days), side="left")
    available = np.searchsorted(pool.export_day[order], np.arange(n_days), side="right") - first
    lines = np.flatnonzero(candidates)  # sorted by day, because the lines are
    rank = np.arange(len(lines)) - np.searchsorted(day[lines], day[lines], side="left")
    fits = rank < available[day[lines]]
    return lines[fits], order[first[day[lines[fits]]] + rank[fits]]


def _offset(cal: Calendar, day: str) -> int:
    return (date.fromisoformat(day) - cal.start).days


def _schedule_by_day(truth: Mapping[str, Any], cal: Calendar) -> np.ndarray:
    offsets = np.array([_offset(cal, day) for day, _ in truth["list_price_schedule"]])
    prices = np.array([price for _, price in truth["list_price_schedule"]], dtype=float)
    return prices[np.searchsorted(offsets, np.arange(cal.n_days), side="right") - 1]


def _adjustment_rows(rng: np.random.Generator, position: int, pool: _Pool) -> _Rows:
    """One product's stock adjustments: negative quantity at price 0 with no description and no customer, as in
    the real data. Drawn from the product's own stream over the shared adjustment slots."""
    mine = rng.random(len(pool.adjust_number)) < _ADJUSTMENT_SHARE
    quantity = -rng.integers(1, 25, size=len(mine))
    m = int(mine.sum())
    return _rows(position, pool.adjust_number[mine], False, pool.adjust_minute[mine], quantity[mine], np.zeros(m),
                 np.full(m, np.nan), np.full(m, _UK_INDEX), blank_description=True)


def _extra_rows(rng: np.random.Generator, pool: _Pool, outlier_specs: list[tuple[str, str, int, float]]) -> _Rows:
    """Rows the ETL must clean: postage and other non-product codes, outliers."""
    n = len(pool.day)
    non_uk = pool.country != _UK_INDEX
    post = ~pool.guest & non_uk & (rng.random(n) < 0.35)
    dot = pool.guest & (rng.random(n) < 0.02)
    manual = rng.random(n) < 0.003
    bank = ~pool.guest & (rng.random(n) < 0.0015)
    blocks = []
    specs = [
        (post, rng.choice(np.array([1, 1, 2, 2, 3, 4]), size=n), rng.choice(np.array([18.0, 18.0, 18.0, 40.0]),
                                                                            size=n)),
        (dot, np.ones(n, dtype=np.int64), np.round(rng.lognormal(math.log(150.0), 0.6, size=n), 2)),
        (manual, np.ones(n, dtype=np.int64), np.round(rng.lognormal(math.log(3.0), 1.0, size=n), 2)),
        (bank, np.ones(n, dtype=np.int64), np.full(n, 15.0)),
    ]
    for k, (mask, quantity, price) in enumerate(specs):
        blocks.append(_rows(-k - 1, pool.number[mask], False, pool.minute[mask], quantity[mask], price[mask],
                            pool.customer[mask], pool.country[mask]))
    for k, (_, _, quantity, price) in enumerate(outlier_specs):
        who = pool.outlier_invoice[k]
        common = dict(code=-100 - k, price=np.array([price]), customer=pool.customer[[who]],
                      country=pool.country[[who]])
        blocks.append(_rows(number=pool.outlier_number[[k]], cancel=False, minute=pool.outlier_minute[[k]],
                            quantity=np.array([quantity]), **common))
        blocks.append(_rows(number=pool.outlier_cancel_number[[k]], cancel=True,
                            minute=pool.outlier_cancel_minute[[k]], quantity=np.array([-quantity]), **common))
    return _concat(blocks)


def _outlier_specs(taken: set[str]) -> list[tuple[str, str, int, float]]:
    spare = [code for code in _SPARE_OUTLIER_CODES if code not in taken]
    specs = []
    for code, description, quantity, price in _OUTLIERS:
        if code in taken:
            code = spare.pop(0)
        specs.append((code, description, quantity, price))
    return specs


def _filler_codes(rng: np.random.Generator, count: int, reserved: set[str]) -> list[str]:
    """Background stockcodes in the real shape: mostly 5 digits, some 5 digits plus a letter."""
    codes: list[str] = []
    while len(codes) < count:
        if rng.random() < 0.15:
            code = f"{rng.integers(84000, 85300)}{'ABCDE'[rng.integers(5)]}"
        else:
            code = str(rng.integers(20600, 23900))
        if code not in reserved and code not in codes:
            codes.append(code)
    return codes


def _to_frame(blocks: list[_Rows], codes: list[str], truths: Mapping[str, Mapping[str, Any]],
              outlier_specs: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    rows = _concat(blocks)
    # Stable order: time, then invoice number, then generation order (product by product).
    order = np.lexsort((np.arange(len(rows.number)), rows.number, rows.minute))
    rows = _subset(rows, order)

    non_product = {"POST": "POSTAGE", "DOT": "DOTCOM POSTAGE", "M": "MANUAL", "BANK CHARGES": "BANK CHARGES"}
    code_names = {i: code for i, code in enumerate(codes)}
    code_names |= {-k - 1: code for k, code in enumerate(_NON_PRODUCT_CODES)}
    code_names |= {-100 - k: spec[0] for k, spec in enumerate(outlier_specs)}
    descriptions = {i: truths[code]["description"] for i, code in enumerate(codes)}
    descriptions |= {-k - 1: non_product[code] for k, code in enumerate(_NON_PRODUCT_CODES)}
    descriptions |= {-100 - k: spec[1] for k, spec in enumerate(outlier_specs)}

    keys = np.array(sorted(code_names))
    index = np.searchsorted(keys, rows.code)
    stockcode = np.array([code_names[k] for k in keys], dtype=object)[index]
    description = np.array([descriptions[k] for k in keys], dtype=object)[index]
    description[rows.blank_description] = None
    invoice = np.char.add(np.where(rows.cancel, "C", ""), rows.number.astype(str))
    return pd.DataFrame({
        "InvoiceNo": pd.Series(invoice, dtype="str"),
        "StockCode": pd.Series(stockcode, dtype="str"),
        "Description": pd.Series(description, dtype="str"),
        "Quantity": pd.Series(rows.quantity, dtype="int64"),
        "InvoiceDate": pd.Series(rows.minute.astype("datetime64[m]").astype("datetime64[us]")),
        "UnitPrice": pd.Series(rows.price, dtype="float64"),
        "CustomerID": pd.Series(rows.customer, dtype="float64"),
        "Country": pd.Series(np.array(_COUNTRIES, dtype=object)[rows.country], dtype="str"),
    }, columns=list(UCI_COLUMNS))
