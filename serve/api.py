"""The product endpoints: listing, price, lineage, router statistics, and the reference's compatibility route.

Query parameters are strict: an unknown or repeated parameter is a 400 naming it (a misspelt ``max_prcie``
silently ignored would change the price a caller acts on). Path stockcodes are validated before any file is read.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, request

from pricetrail.pricing.keep import unmodelled_answer
from pricetrail.pricing.recommend import AnswerError, recommend
from pricetrail.pricing.request import PriceRequest, RequestError
from pricetrail.project.config import STOCKCODE_PATTERN
from pricetrail.registry.artifacts import public_reason
from pricetrail.serving.config import ServeConfig
from pricetrail.serving.loading import NotServable
from pricetrail.serving.status import lineage, status
from serve.problems import Problem
from serve.router import LoadFailed, ModelRouter

api = Blueprint("api", __name__)

MAX_STOCKCODE = 32
PRICE_PARAMETERS = {"min_price", "max_price", "points", "country", "customer", "date", "unit_cost", "hour",
                    "current_price"}
# The reference's names on its route, mapped to ours.
ALIAS_PARAMETERS = {"unitprice_min": "min_price", "unitprice_max": "max_price", "num_price_bins": "points"}

log = logging.getLogger(__name__)


def _config() -> ServeConfig:
    return current_app.config["SERVE"]


def _router() -> ModelRouter:
    return current_app.extensions["pricetrail.router"]


def _stockcode(raw: str) -> str:
    if len(raw) > MAX_STOCKCODE:
        raise Problem(400, "invalid-stockcode", "Invalid stockcode",
                      f"stockcode of {len(raw)} characters is not accepted: at most {MAX_STOCKCODE} letters and "
                      "digits", parameter="stockcode")
    if not STOCKCODE_PATTERN.fullmatch(raw):
        raise Problem(400, "invalid-stockcode", "Invalid stockcode",
                      f"stockcode {raw!r} is not accepted: letters and digits only (e.g. 85123A)",
                      parameter="stockcode")
    if raw not in _config().stockcodes:
        raise Problem(404, "unknown-product", "Unknown product",
                      f"stockcode {raw} is not a product of this server; GET /v1/products lists them",
                      parameter="stockcode")
    return raw


def _query(accepted: set[str], aliases: Mapping[str, str] | None = None) -> dict[str, str]:
    aliases = aliases or {}
    values: dict[str, str] = {}
    for name in request.args:
        given = request.args.getlist(name)
        if name not in accepted and name not in aliases:
            raise Problem(400, "unknown-parameter", "Unknown query parameter",
                          f"query parameter {name[:64]!r} is not accepted; accepted: "
                          f"{', '.join(sorted(accepted | set(aliases)))}", parameter=name[:64])
        if len(given) > 1:
            raise Problem(400, "repeated-parameter", "Repeated query parameter",
                          f"query parameter {name!r} is given {len(given)} times; give it once", parameter=name)
        target = aliases.get(name, name)
        if target in values:
            raise Problem(400, "repeated-parameter", "Repeated query parameter",
                          f"query parameters {name!r} and {target!r} mean the same; give one", parameter=name)
        values[target] = given[0]
    return values


# ASCII only: Python's float() and int() also take other scripts' digits ("²", "١٢"), "1_0", "infinity" and
# surrounding blanks, none of which a client means as a price.
DECIMAL = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
WHOLE = re.compile(r"^[+-]?[0-9]{1,9}$")


def _number(values: dict[str, str], name: str) -> float | None:
    if name not in values:
        return None
    text = values[name]
    if len(text) > 32 or not DECIMAL.fullmatch(text):
        raise Problem(400, "invalid-parameter", "Invalid query parameter",
                      f"{name}={text[:64]!r} is not a number (digits, an optional decimal point and exponent)",
                      parameter=name)
    number = float(text)
    if not math.isfinite(number):
        raise Problem(400, "invalid-parameter", "Invalid query parameter",
                      f"{name}={text[:64]!r} is not accepted: a finite number is needed", parameter=name)
    if number <= 0 and name != "unit_cost" or number < 0:
        raise Problem(400, "invalid-parameter", "Invalid query parameter",
                      f"{name}={text[:64]!r} is not accepted: it must be "
                      f"{'>= 0' if name == 'unit_cost' else '> 0'}", parameter=name)
    return number


def _integer(values: dict[str, str], name: str, default: int) -> int:
    if name not in values:
        return default
    text = values[name]
    if not WHOLE.fullmatch(text):
        raise Problem(400, "invalid-parameter", "Invalid query parameter",
                      f"{name}={text[:64]!r} is not a whole number (ASCII digits)", parameter=name)
    return int(text)


def _price_request(values: dict[str, str]) -> PriceRequest:
    config = _config()
    try:
        return PriceRequest(
            date=values.get("date", datetime.now(UTC).date().isoformat()),
            country=values.get("country", "United Kingdom"), customer=values.get("customer", "registered"),
            min_price=_number(values, "min_price"), max_price=_number(values, "max_price"),
            points=_integer(values, "points", config.default_points), unit_cost=_number(values, "unit_cost"),
            hour=_integer(values, "hour", 12), max_points=config.max_points, range_widening=config.range_widening,
            current_price=_number(values, "current_price"))
    except RequestError as error:
        raise Problem(400, "invalid-parameter", "Invalid query parameter", str(error),
                      parameter=error.parameter) from None


def _price(code: str, values: dict[str, str]) -> dict[str, Any]:
    price_request = _price_request(values)
    sources = current_app.extensions["pricetrail.sources"]
    try:
        served = _router().get(code)
    except NotServable:
        # No model may set this product's price: the answer is to keep today's, and why (never a bare "no model").
        return _keep_without_model(code, price_request, sources)
    except LoadFailed as error:  # the full message is in the log (ModelRouter.get)
        raise Problem(503, "model-unavailable", "Model unavailable", error.public, stockcode=code) from None
    try:
        return recommend(served, price_request, sources, _config().decision)
    except RequestError as error:
        raise Problem(400, "invalid-parameter", "Invalid query parameter", str(error),
                      parameter=error.parameter) from None
    except AnswerError as error:
        raise Problem(503, "model-unavailable", "Model unavailable", str(error), stockcode=code) from None


def _keep_without_model(code: str, price_request: PriceRequest, sources: Any) -> dict[str, Any]:
    try:
        product = _router().record(code)
        return unmodelled_answer(product, price_request, sources, _config().decision)
    except RequestError as error:
        raise Problem(400, "invalid-parameter", "Invalid query parameter", str(error),
                      parameter=error.parameter) from None
    except (ValueError, OSError) as error:  # a damaged record or history: this product only
        raise _unreadable(code, error) from None


def _unreadable(code: str, error: BaseException) -> Problem:
    """A 503 for a record or history that cannot be read: the caller learns what, the log where and why."""
    log.warning("%s: registry record or history unreadable: %s", code, error)
    return Problem(503, "model-unavailable", "Registry record unreadable",
                   f"the registry record of {code} or a file it names cannot be read: "
                   f"{public_reason(error, 'the server log has the cause')}",
                   stockcode=code)


@api.get("/v1/products")
def products() -> dict[str, Any]:
    _query(set())
    config = _config()
    router = _router()
    loaded = router.loaded()
    listing = []
    for code in config.stockcodes:
        try:
            entry = status(router.record(code), config.descriptions.get(code, ""))
        except (ValueError, OSError) as error:  # a damaged record: reported for this product, the rest listed
            log.warning("%s: registry record unreadable: %s", code, error)
            entry = {"stockcode": code, "servable": False,
                     "reason": f"registry record unreadable: {public_reason(error, 'the server log has the cause')}"}
        entry["loaded"] = code in loaded
        listing.append(entry)
    return {"products": listing}


@api.get("/v1/products/<path:stockcode>/price")
def price(stockcode: str) -> dict[str, Any]:
    code = _stockcode(stockcode)
    return _price(code, _query(PRICE_PARAMETERS))


@api.get("/v1/predict-price/<path:stockcode>")
def predict_price(stockcode: str) -> dict[str, Any]:
    """The reference's route (``unitprice_min``, ``unitprice_max``, ``num_price_bins``), same answer as /price."""
    code = _stockcode(stockcode)
    return _price(code, _query(PRICE_PARAMETERS - set(ALIAS_PARAMETERS.values()), ALIAS_PARAMETERS))


@api.get("/v1/products/<path:stockcode>/lineage")
def product_lineage(stockcode: str) -> dict[str, Any]:
    code = _stockcode(stockcode)
    _query(set())
    try:
        return lineage(_router().registry_dir, _router().record(code))
    except NotServable as error:
        raise Problem(404, "no-served-model", "No model served", str(error), stockcode=code) from None
    except (ValueError, OSError) as error:
        raise _unreadable(code, error) from None


@api.get("/v1/stats")
def stats() -> dict[str, Any]:
    _query(set())
    router = _router()
    return {**router.snapshot(), "models": router.loaded()}
