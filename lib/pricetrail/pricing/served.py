"""A product's model ready to price: the served model's numbers, its grid encoder and its daily history's state
features. Nothing here needs torch or scikit-learn."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pricetrail.data.etl import state_features
from pricetrail.modeling.exported import ServingModel
from pricetrail.pricing.grid import GridEncoder
from pricetrail.pricing.request import PriceRequest, RequestError
from pricetrail.registry import records
from pricetrail.registry.product_record import ProductRecord


@dataclass
class ServedProduct:
    """A product's promoted model, loaded from verified artifacts, ready to price."""

    product: ProductRecord
    model: ServingModel
    daily: pd.DataFrame
    encoder: GridEncoder
    state_source: str
    daily_md5: str
    nbytes: int
    _states: OrderedDict[pd.Timestamp, dict[str, float]] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def stockcode(self) -> str:
        return self.product.stockcode

    @property
    def version(self) -> str:
        return self.model.version

    @functools.cached_property
    def first_day(self) -> pd.Timestamp:
        return pd.Timestamp(self.daily["day"].min()).normalize()

    @functools.cached_property
    def last_day(self) -> pd.Timestamp:
        return pd.Timestamp(self.daily["day"].max()).normalize()

    def state_day(self, request: PriceRequest) -> pd.Timestamp:
        """The day state features (and the status quo) are taken as of: the requested day, or the day after the
        history when the request is later: the previous-month features of a far future date would read as "no
        sales", which the model never saw. A date before the history is refused."""
        requested = pd.Timestamp(request.date).normalize()
        if requested < self.first_day:
            raise RequestError("date", f"date {request.date} is before {self.stockcode}'s sales history, which "
                                       f"starts on {self.first_day.date()}: there is no state to price from; ask for "
                                       f"a date from {self.first_day.date()} on")
        return min(requested, self.last_day + pd.Timedelta(days=1))

    def state_on(self, day: pd.Timestamp) -> dict[str, float]:
        """State features at the start of ``day`` (the pipeline's own definition), cached per day."""
        with self._lock:
            cached = self._states.get(day)
            if cached is not None:
                self._states.move_to_end(day)
                return cached
        row = state_features(self.daily, [day]).iloc[0]
        state = {column: float(value) for column, value in row.items() if column != "day"}
        with self._lock:
            self._states[day] = state
            while len(self._states) > 64:
                self._states.popitem(last=False)
        return state


def served_from_model(model: ServingModel, daily: pd.DataFrame, price_range: dict[str, list[float]],
                      verdict: dict[str, Any] | None = None, state_source: str = "the run's own daily history"
                      ) -> ServedProduct:
    """A model of a pipeline run as the router would hold it once promoted (the risk gate's price checks and its
    decision plot price through :func:`pricetrail.pricing.recommend.recommend`, exactly what will be served)."""
    record = {"schema": records.SCHEMA, "stockcode": model.stockcode, "version": model.version,
              "price_range": price_range, "verdict": verdict or {"promoted": True, "checks": []}}
    product = ProductRecord(stockcode=model.stockcode, record=record, state=None, latest=None)
    return ServedProduct(product=product, model=model, daily=daily, encoder=GridEncoder(model.encoding),
                         state_source=state_source, daily_md5="", nbytes=0)
