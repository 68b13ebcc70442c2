"""Validation of the generator's settings (``params.yaml`` ``synthetic``): one clear error per bad value."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np

_STOCKCODE_RE = re.compile(r"^[A-Za-z0-9]+$")
_MAX_DRIFT = 5.0


class SyntheticSettingsError(ValueError):
    """``params.yaml: synthetic`` holds a value that is not accepted."""


@dataclass(frozen=True)
class SyntheticSettings:
    """``params.yaml: synthetic``: the generator's calendar, volume and scenario (each value is checked by the
    generator against the products it draws)."""

    start: str
    end: str
    lines_per_day: float
    filler_products: int
    drift_days: int
    drift: Mapping[str, float]
    mispriced: Mapping[str, float]
    follow_on: Mapping[str, Any]

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> SyntheticSettings:
        from pricetrail.project.config import settings_from_params

        raw = settings_from_params(cls, "synthetic", values, error=SyntheticSettingsError)
        scenario = {}
        for name in ("drift", "mispriced"):
            table = getattr(raw, name) or {}
            if not isinstance(table, Mapping):
                raise SyntheticSettingsError(f"synthetic.{name}={table!r} is not accepted: a mapping of stockcode "
                                             "to a number, or {}")
            scenario[name] = {str(code): _number(f"synthetic.{name}.{code}", value) for code, value in table.items()}
        follow_on = raw.follow_on or {}
        if not isinstance(follow_on, Mapping):
            raise SyntheticSettingsError(f"synthetic.follow_on={follow_on!r} is not accepted: a mapping "
                                         "{days: N, price_tests: {...}}")
        return cls(start=str(raw.start), end=str(raw.end), lines_per_day=_number("synthetic.lines_per_day",
                                                                                  raw.lines_per_day),
                   filler_products=raw.filler_products, drift_days=raw.drift_days, follow_on=dict(follow_on),
                   **scenario)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SyntheticSettingsError(f"{name}={value!r} is not accepted: a number")
    return float(value)


def validate_settings(products: Mapping[str, Mapping[str, Any]], seed: int, lines_per_day: float, filler_products: int,
              drift: Mapping[str, float], drift_days: int) -> tuple[dict[str, str | None], dict[str, float]]:
    if not isinstance(products, Mapping) or not products:
        raise ValueError(f"products {products!r} is not accepted: give a non-empty mapping stockcode -> "
                         "{'description': ...}")
    descriptions: dict[str, str | None] = {}
    for key, spec in products.items():
        code = _stockcode(key)
        if spec is not None and not isinstance(spec, Mapping):
            raise ValueError(f"product {code!r} has settings {spec!r}: use a mapping such as "
                             "{'description': 'WHITE HANGING HEART T-LIGHT HOLDER'}")
        text = (spec or {}).get("description")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ValueError(f"product {code!r} has description {text!r}: use a non-empty string or leave it out")
        descriptions[code] = text.strip().upper() if text else None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed {seed!r} is not accepted: use a whole number >= 0")
    if not isinstance(lines_per_day, (int, float)) or not math.isfinite(lines_per_day) or lines_per_day <= 0:
        raise ValueError(f"lines_per_day {lines_per_day!r} is not accepted: use a positive number such as 7.0")
    if isinstance(filler_products, bool) or not isinstance(filler_products, (int, np.integer)) \
            or filler_products < 0:
        raise ValueError(f"filler_products {filler_products!r} is not accepted: use a whole number >= 0")
    if isinstance(drift_days, bool) or not isinstance(drift_days, (int, np.integer)) or drift_days < 1:
        raise ValueError(f"drift_days {drift_days!r} is not accepted: use a whole number >= 1")
    strengths: dict[str, float] = {}
    for key, strength in (drift or {}).items():
        code = str(key)
        if code not in descriptions:
            raise ValueError(f"drift names stockcode {code!r}, which is not among the products "
                             f"{sorted(descriptions)}")
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) \
                or not 0 <= strength <= _MAX_DRIFT:
            raise ValueError(f"drift strength {strength!r} for {code!r} is not accepted: use a number in "
                             f"[0, {_MAX_DRIFT:g}] (0 = no drift)")
        strengths[code] = float(strength)
    return descriptions, strengths


def validate_follow_on(follow_on: Mapping[str, Any], descriptions: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(follow_on, Mapping) or set(follow_on) - {"days", "price_tests"}:
        raise ValueError(f"follow_on {follow_on!r} is not accepted: use {{days: <whole number >= 0>, price_tests: "
                         "{<code>: {prices: [...], days_each: <days>}}}")
    days = follow_on.get("days", 0)
    if isinstance(days, bool) or not isinstance(days, (int, np.integer)) or not 0 <= days <= 3650:
        raise ValueError(f"follow_on.days {days!r} is not accepted: a whole number from 0 to 3650")
    tests: dict[str, dict[str, Any]] = {}
    for key, plan in (follow_on.get("price_tests") or {}).items():
        code = str(key)
        if code not in descriptions:
            raise ValueError(f"follow_on.price_tests names stockcode {code!r}, which is not among the products "
                             f"{sorted(descriptions)}")
        if not isinstance(plan, Mapping) or not {"prices", "days_each"} <= set(plan) <= {"prices", "days_each",
                                                                                          "block_days"}:
            raise ValueError(f"follow_on.price_tests.{code} {plan!r} is not accepted: use {{prices: [...], "
                             "days_each: <days>, block_days: <days, optional>}")
        prices, each = plan["prices"], plan["days_each"]
        block = plan.get("block_days", each)
        if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 1 <= block <= each:
            raise ValueError(f"follow_on.price_tests.{code}.block_days {block!r} is not accepted: a whole number "
                             f"from 1 to days_each={each}")
        if not isinstance(prices, (list, tuple)) or not prices or not all(
                isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and p > 0
                for p in prices):
            raise ValueError(f"follow_on.price_tests.{code}.prices {prices!r} is not accepted: positive prices")
        if isinstance(each, bool) or not isinstance(each, (int, np.integer)) or each < 1 \
                or each * len(prices) > days:
            raise ValueError(f"follow_on.price_tests.{code}.days_each {each!r} is not accepted: a whole number "
                             f">= 1 whose test ({len(prices)} prices) fits in follow_on.days={days}")
        tests[code] = {"prices": [float(p) for p in prices], "days_each": int(each), "block_days": int(block)}
    return {"days": int(days), "price_tests": tests}


_MISPRICED_RANGE = (-0.5, 1.0)


def validate_mispriced(mispriced: Mapping[str, float], descriptions: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(mispriced, Mapping):
        raise ValueError(f"mispriced {mispriced!r} is not accepted: give a mapping stockcode -> list / optimum - 1")
    offsets: dict[str, float] = {}
    for key, offset in mispriced.items():
        code = _stockcode(key)
        if code not in descriptions:
            raise ValueError(f"mispriced names stockcode {code!r}, which is not among the products "
                             f"{sorted(descriptions)}")
        low, high = _MISPRICED_RANGE
        if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not low <= offset <= high \
                or abs(offset) < 0.05:
            raise ValueError(f"mispriced offset {offset!r} for {code!r} is not accepted: use list price / revenue "
                             f"optimum - 1 in [{low:g}, {high:g}], at least 0.05 away from 0 (e.g. 0.3 or -0.2)")
        offsets[code] = float(offset)
    return offsets


def _stockcode(key: object) -> str:
    # YAML reads an unquoted 22423 as an int; a whole number is still a valid stockcode.
    text = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
    if not isinstance(text, str) or not _STOCKCODE_RE.fullmatch(text):
        raise ValueError(f"stockcode {key!r} is not accepted: use letters and digits only (e.g. 85123A)")
    return text


def parse_day(value: object, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        for parse in (date.fromisoformat, lambda text: datetime.fromisoformat(text).date()):
            try:
                return parse(value.strip())
            except ValueError:
                continue
    raise ValueError(f"{name} {value!r} is not accepted: use an ISO date such as '2011-12-09'")


def positive_prices(prices: np.ndarray) -> np.ndarray:
    price = np.asarray(prices, dtype=float)
    if price.size and not (np.all(np.isfinite(price)) and np.all(price > 0)):
        bad = price[~(np.isfinite(price) & (price > 0))].ravel()[0]
        raise ValueError(f"price {bad!r} is not accepted: prices must be positive finite numbers")
    return price


def check_range(low: float, high: float) -> None:
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} {value!r} is not accepted: prices must be positive finite numbers")
    if low >= high:
        raise ValueError(f"price range low={low!r} >= high={high!r}: low must be below high")
