"""The service layer: from a registry record to a loaded, verified model, and from a price request to an answer.

The one path from the registry to a usable model, shared by the router (``serve/``), the Lambda handler and
``pricetrail recommend``, so that none of them reads a model from the workspace or loads one its own way. It reads
registry files from a registry directory, not a project root: a Lambda image has no checkout.

What a request needs and no more is loaded: the checkpoint, the preprocessor and the newest daily history (for
state features); the observed price range comes from the record, not from the training rows.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pricetrail import registry
from pricetrail.data.etl import calendar_features, state_features
from pricetrail.modeling.bundle import BundleError, ModelBundle, load_bundle
from pricetrail.modeling.network import PriceResponseNetwork
from pricetrail.modeling.price_response import (
    MAX_BAND_SHARE,
    MIN_DISTINCT_PRICES,
    ResponseFamily,
    choose_price,
    daily_lines,
    elasticity_summary,
    pivot_prices,
    price_reference,
    response_family,
    uncertainty_notes,
)
from pricetrail.modeling.training import predict
from pricetrail.pricing.decision import (
    Decision,
    DecisionSettings,
    PriceTest,
    StatusQuo,
    Uncertainty,
    decide,
    design_prices,
    needs_test,
    plan_test,
    status_quo,
    with_plan,
)
from pricetrail.pricing.grid import GridEncoder, check_against_preprocessor, check_price_columns, price_columns
from pricetrail.project.config import validate_stockcode
from pricetrail.registry_artifacts import ArtifactSource, LocalCache, local_sources, resolve

CUSTOMERS = ("registered", "guest")
MAX_PRICE = 1_000_000.0
MIN_PRICE = 0.01  # a cent: answers are rounded to 6 decimals, and a price below this is a typo, not a question
# Interpreter objects of a loaded model beyond its arrays (modules, the fitted transformers, caches): a second
# smoke model raised the server's RSS by ~3 MiB (bench/router_benchmark.py), far above its weights and history.
PER_MODEL_OVERHEAD = 3 * 2**20
DATE_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")  # a price above this is a typo, not a question


class RequestError(ValueError):
    """A price request that cannot be answered as asked; ``parameter`` names the offending input."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class NotServable(ValueError):
    """The product has no model that may be served (none promoted, or a record without a passing verdict)."""


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ProductRecord:
    """What the registry says about one product now: cheap to read (a few small JSON files), no artifacts."""

    stockcode: str
    record: dict[str, Any] | None  # served.json, or None when nothing was ever promoted
    state: registry.StatePointer | None  # the newest daily history recorded by a weekly run
    latest: dict[str, Any] | None  # the last history line (promoted, kept, none, rollback, accepted_drift)
    pipeline_latest: dict[str, Any] | None = None  # the last decision of a weekly run (promoted, kept, none)

    def unpromoted_candidate(self) -> dict[str, Any] | None:
        """The weekly run's latest decision if it kept the served model instead of promoting its new one (the
        reason names that model and the gate it failed)."""
        entry = self.pipeline_latest or {}
        return entry if entry.get("action") == "kept" else None

    @property
    def version(self) -> str | None:
        return self.record["version"] if self.record else None

    def daily_artifact(self) -> tuple[registry.Artifact, str]:
        """The daily history to take state from, and where it comes from: the newer of the served version's and
        the weekly run's (a kept model prices on the newest ingested days)."""
        assert self.record is not None
        own = registry.artifacts_of(self.record)["daily.parquet"]
        if self.state is not None and self.state.artifact.md5 != own.md5 and (
                self.state.last_day >= str(self.record.get("training_data", {}).get("last_date", ""))):
            return self.state.artifact, f"history ingested by the weekly run up to {self.state.last_day}"
        return own, "history recorded with the served version"

    @property
    def key(self) -> tuple[str | None, str | None]:
        """What a loaded model must match: the served version and the daily history it prices from."""
        if self.record is None:
            return None, None
        return self.version, self.daily_artifact()[0].md5


def read_product_record(registry_dir: Path, code: str) -> ProductRecord:
    code = validate_stockcode(code)
    directory = registry_dir / code
    served_path = directory / registry.SERVED
    record = registry.parse_record(served_path.read_text(encoding="utf-8"), str(served_path), code) if (
        served_path.is_file()) else None
    state_path = directory / registry.STATE
    state = registry.parse_state_pointer(state_path.read_text(encoding="utf-8"), str(state_path), code) if (
        state_path.is_file()) else None
    history_path = directory / registry.HISTORY
    entries = registry.parse_history(history_path.read_text(encoding="utf-8"), str(history_path)) if (
        history_path.is_file()) else []
    decisions = [e for e in entries if e["action"] in ("promoted", "kept", "none")]
    return ProductRecord(stockcode=code, record=record, state=state, latest=entries[-1] if entries else None,
                         pipeline_latest=decisions[-1] if decisions else None)


def verdict_failures(record: dict[str, Any]) -> list[str]:
    """Why a record may not be served; empty when its verdict passed every check (with customer groups judged
    apart: when at least one group is servable and no check that blocks every group failed)."""
    verdict = record.get("verdict") or {}
    groups = verdict.get("customer_groups")
    checks = verdict.get("checks", [])
    if isinstance(groups, dict) and groups:
        checks = [c for c in checks if not str(c.get("scope", "model")).startswith("group:")]
        if not any(isinstance(entry, dict) and entry.get("servable") is True for entry in groups.values()):
            return ["no customer group is servable"]
    failures = [f"{c.get('name')}={c.get('value')} (threshold {c.get('threshold')})"
                for c in checks if not c.get("passed")]
    if verdict.get("promoted") is not True:
        failures.insert(0, "verdict.promoted is not true")
    if not verdict.get("checks"):
        failures.append("the verdict records no checks")
    return failures


def status(product: ProductRecord, description: str = "") -> dict[str, Any]:
    """A product's serving status for listings: servable or not and why, version, verdicts, training dates."""
    latest = product.latest or {}
    base: dict[str, Any] = {"stockcode": product.stockcode, "description": description,
                            "latest_decision": _decision(latest) if latest else None}
    if product.record is None:
        return {**base, "servable": False, "reason": "no model has passed its gates yet (nothing promoted)",
                "promoted_version": None, "verdict": None, "training_data": None}
    record = product.record
    failures = verdict_failures(record)
    reason = (f"the served record's verdict did not pass: {'; '.join(failures)}" if failures else
              f"serving {record['version']} ({record.get('served_by', 'promoted')} {record.get('served_since')})")
    kept = product.unpromoted_candidate()
    if not failures and kept:
        reason += f"; the latest weekly run ({kept.get('time')}) did not promote its model: {kept.get('reason')}"
    return {**base, "servable": not failures, "reason": reason, "promoted_version": record["version"],
            "served_by": record.get("served_by"), "served_since": record.get("served_since"),
            "verdict": {"passed": not failures, "checks": record.get("verdict", {}).get("checks", [])},
            "training_data": record.get("training_data"), "metrics": record.get("metrics")}


def _decision(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry.get(key) for key in ("time", "action", "version", "candidate", "reason")}


def lineage(registry_dir: Path, product: ProductRecord) -> dict[str, Any]:
    """What produced the served model: data, params, code and metric hashes per stage, and the git commit."""
    if product.record is None:
        raise NotServable(f"stockcode {product.stockcode} serves no model: none has passed its gates")
    version = product.record["version"]
    path = registry_dir / product.stockcode / registry.VERSIONS / f"{version}.json"
    full = registry.parse_record(path.read_text(encoding="utf-8"), str(path), product.stockcode) if (
        path.is_file()) else product.record
    code_prefixes = ("lib/", "stages/")
    stages = {}
    for name, entry in (full.get("stages") or {}).items():
        deps = dict(entry.get("deps") or {})  # {path: hash}, as dvclock.compact_entries stores them
        outs = dict(entry.get("outs") or {})
        stages[name] = {
            "cmd": entry.get("cmd"),
            "code": {p: h for p, h in deps.items() if p.startswith(code_prefixes)},
            "data": {p: h for p, h in deps.items() if not p.startswith(code_prefixes)},
            "params": entry.get("params", {}),
            "metrics": {p: h for p, h in outs.items() if p.startswith("metrics/")},
            "outs": {p: h for p, h in outs.items() if not p.startswith("metrics/")},
        }
    return {"stockcode": product.stockcode, "version": version, "git_commit": full.get("git_commit"),
            "git_dirty": full.get("git_dirty"), "promoted_at": full.get("promoted_at"),
            "data": dict((full.get("verdict") or {}).get("lineage", {})),
            "artifacts": {name: a.to_dict() for name, a in registry.artifacts_of(full).items()},
            "training_data": full.get("training_data"), "metrics": full.get("metrics"),
            "verdict_params": (full.get("verdict") or {}).get("params", {}), "stages": stages}


# --------------------------------------------------------------------------------------------- loaded models


@dataclass
class ServedProduct:
    """A product's promoted model, loaded from verified artifacts, ready to price."""

    product: ProductRecord
    bundle: ModelBundle
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
        return self.bundle.version

    @functools.cached_property
    def first_day(self) -> pd.Timestamp:
        assert self.bundle.daily is not None
        return pd.Timestamp(self.bundle.daily["day"].min()).normalize()

    @functools.cached_property
    def last_day(self) -> pd.Timestamp:
        assert self.bundle.daily is not None
        return pd.Timestamp(self.bundle.daily["day"].max()).normalize()

    def state_on(self, day: pd.Timestamp) -> dict[str, float]:
        """State features at the start of ``day`` (the pipeline's own definition), cached per day."""
        with self._lock:
            cached = self._states.get(day)
            if cached is not None:
                self._states.move_to_end(day)
                return cached
        row = state_features(self.bundle.daily, [day]).iloc[0]
        state = {column: float(value) for column, value in row.items() if column != "day"}
        with self._lock:
            self._states[day] = state
            while len(self._states) > 64:
                self._states.popitem(last=False)
        return state


def servable(product: ProductRecord) -> None:
    """Raise :class:`NotServable` unless the record names a promoted version whose verdict passed."""
    code = product.stockcode
    if product.record is None:
        raise NotServable(f"stockcode {code} serves no model: none has passed its gates")
    failures = verdict_failures(product.record)
    if failures:
        raise NotServable(f"stockcode {code} record {product.version} has no passing verdict "
                          f"({'; '.join(failures)}); refusing to serve it")


def load_served(registry_dir: Path, product: ProductRecord, sources: Iterable[ArtifactSource]) -> ServedProduct:
    """Load the product's served version: verify every artifact it needs by md5, cross-check the bundle."""
    servable(product)
    code = product.stockcode
    assert product.record is not None
    sources = list(sources)
    owner = f"{code} version {product.version}"
    artifacts = registry.artifacts_of(product.record)
    daily_artifact, state_source = product.daily_artifact()
    checkpoint = resolve(artifacts["model.pt"], sources, owner=owner)
    preprocessor = resolve(artifacts["preprocessor.skops"], sources, owner=owner)
    daily = resolve(daily_artifact, sources, owner=f"{code} daily history")
    bundle = load_bundle(checkpoint, preprocessor, daily=daily)
    if bundle.version != product.version or bundle.stockcode != code:
        raise BundleError(f"registry record of {code} names version {product.version}, its checkpoint is "
                          f"{bundle.stockcode} {bundle.version}")
    assert bundle.daily is not None
    encoder = GridEncoder.from_preprocessor(bundle.preprocessor)
    served = ServedProduct(product=product, bundle=bundle, encoder=encoder, state_source=state_source,
                           daily_md5=daily_artifact.md5, nbytes=0)
    # The fast grid must reproduce the preprocessor exactly, checked once on this product's own state.
    request = PriceRequest(date=str(served.last_day.date()))
    low, high = observed_range(product.record, request.customer, sources, owner)
    grid = np.linspace(low, high, 5)
    numerical, categorical = _grid_inputs(served, request, grid)[:2]
    state = served.state_on(served.last_day)
    for mean in (state["prev_month_mean_price"], float("nan")):  # both branches of the reference mean
        check_price_columns(grid, state["max_price_before"], mean)
    check_against_preprocessor(encoder, numerical, categorical, 5)
    bundle.network.eval()
    served.nbytes = _size_of(served)
    return served


def served_from_bundle(bundle: ModelBundle, price_range: dict[str, list[float]],
                       verdict: dict[str, Any] | None = None) -> ServedProduct:
    """The candidate model of a pipeline run as the router would hold it once promoted (the risk gate's price
    checks and its decision plot price through :func:`recommend`, exactly what will be served)."""
    if bundle.daily is None:
        raise BundleError(f"the bundle of {bundle.stockcode} has no daily history to take state from")
    record = {"schema": registry.SCHEMA, "stockcode": bundle.stockcode, "version": bundle.version,
              "price_range": price_range, "verdict": verdict or {"promoted": True, "checks": []}}
    product = ProductRecord(stockcode=bundle.stockcode, record=record, state=None, latest=None)
    bundle.network.eval()
    return ServedProduct(product=product, bundle=bundle, encoder=GridEncoder.from_preprocessor(bundle.preprocessor),
                         state_source="the run's own daily history", daily_md5="", nbytes=0)


def _size_of(served: ServedProduct) -> int:
    """Bytes the loaded model holds: weights, the daily history, and the preprocessor (its file size, roughly)."""
    weights = sum(p.numel() * p.element_size() for p in served.bundle.network.parameters())
    buffers = sum(b.numel() * b.element_size() for b in served.bundle.network.buffers())
    assert served.bundle.daily is not None
    daily = int(served.bundle.daily.memory_usage(deep=True).sum())
    preprocessor = registry.artifacts_of(served.product.record or {})["preprocessor.skops"].size
    return weights + buffers + daily + preprocessor + PER_MODEL_OVERHEAD


def observed_range(record: dict[str, Any], customer: str, sources: Iterable[ArtifactSource],
                   owner: str) -> tuple[float, float]:
    """Lowest and highest training price for the customer group, from the record (older records: the training
    rows' two columns, read by hash)."""
    ranges = record.get("price_range")
    if isinstance(ranges, dict) and customer in ranges:
        low, high = ranges[customer]
        return float(low), float(high)
    path = resolve(registry.artifacts_of(record)["reference.parquet"], sources, owner=owner)
    train = pd.read_parquet(path, columns=["unit_price", "is_registered"])
    return tuple(registry.observed_price_ranges(train)[customer])  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- pricing


@dataclass(frozen=True)
class PriceRequest:
    """Who buys, where, when, and over which prices; every field validated with a message naming it."""

    date: str
    country: str = "United Kingdom"
    customer: str = "registered"
    min_price: float | None = None
    max_price: float | None = None
    points: int = 101
    unit_cost: float | None = None
    hour: int = 12
    max_points: int = 2001
    range_widening: float = 0.0
    # The price charged now, when the caller knows it better than the history shows (a change this morning): the
    # decision's status quo. None: the group's typical price over its last days (decision.status_quo).
    current_price: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.date, str) or not DATE_PATTERN.fullmatch(self.date):
            raise RequestError("date", f"date {str(self.date)[:64]!r} is not accepted; use YYYY-MM-DD")
        try:
            pd.Timestamp(self.date)
        except ValueError as error:
            raise RequestError("date", f"date {self.date!r} is not a date; use YYYY-MM-DD") from error
        if self.customer not in CUSTOMERS:
            raise RequestError("customer", f"customer {self.customer!r} is not accepted; use one of {CUSTOMERS}")
        if not isinstance(self.country, str) or not self.country.strip() or len(self.country) > 64 or any(
                not (ch.isprintable()) for ch in self.country):
            raise RequestError("country", f"country {self.country[:80]!r} is not accepted: a name of 1 to 64 "
                                          "printable characters")
        for name in ("min_price", "max_price", "current_price"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and MIN_PRICE <= value <= MAX_PRICE):
                raise RequestError(name, f"{name}={value!r} is not accepted: a price from {MIN_PRICE:g} to "
                                         f"{MAX_PRICE:g}")
        if self.min_price is not None and self.max_price is not None and self.min_price >= self.max_price:
            raise RequestError("min_price", f"min_price={self.min_price:g} must be below max_price={self.max_price:g}")
        if self.unit_cost is not None and not (math.isfinite(self.unit_cost) and 0 <= self.unit_cost <= MAX_PRICE):
            raise RequestError("unit_cost", f"unit_cost={self.unit_cost!r} is not accepted: a finite number >= 0")
        if isinstance(self.points, bool) or not isinstance(self.points, int) or not 3 <= self.points <= self.max_points:
            raise RequestError("points", f"points={self.points!r} is not accepted: a whole number from 3 to "
                                         f"{self.max_points}")
        if isinstance(self.hour, bool) or not isinstance(self.hour, int) or not 0 <= self.hour <= 23:
            raise RequestError("hour", f"hour={self.hour!r} is not accepted: a whole number from 0 to 23")

    @property
    def is_registered(self) -> bool:
        return self.customer == "registered"


def _grid_inputs(served: ServedProduct, request: PriceRequest,
                 prices: np.ndarray) -> tuple[dict[str, Any], dict[str, str], str]:
    requested = pd.Timestamp(request.date).normalize()
    state_day = _state_day(served, request)
    state = served.state_on(state_day)
    numerical: dict[str, Any] = price_columns(prices, state["max_price_before"], state["prev_month_mean_price"])
    constants, day_of_week = _constants(requested, request.hour)
    numerical.update(constants)
    numerical.update(state)
    numerical["is_registered"] = float(request.is_registered)
    return numerical, {"country": request.country, "day_of_week": day_of_week}, str(state_day.date())


def warm_up() -> None:
    """Pay the process's one-time costs (DuckDB's first connection, torch's first pass) at start, not on the
    first customer's request."""
    daily = pd.DataFrame({"day": pd.to_datetime(["2011-01-03", "2011-02-01"]), "quantity": [1, 2], "lines": [1, 1],
                          "max_price": [1.0, 1.0], "price_sum": [1.0, 1.0]})
    state_features(daily, [pd.Timestamp("2011-03-01")])
    _constants(pd.Timestamp("2011-03-01"), 12)
    predict(torch.nn.Sequential(torch.nn.Linear(2, 1)).eval(), np.zeros((2, 2), dtype="float32"))
    # scikit-learn imports parts of its encoders on their first transform (~0.1 s): a throwaway transformer of
    # the pipeline's kind pays that here, not inside the first product's model load.
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "a", "b", "z"]})
    ColumnTransformer([("num", StandardScaler(), ["x"]),
                       ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", sparse_output=False,
                                             min_frequency=2), ["c"])]).fit(frame).transform(frame)


@functools.lru_cache(maxsize=1024)
def _constants(day: pd.Timestamp, hour: int) -> tuple[dict[str, float], str]:
    """Calendar features of a request (the pipeline's definition), cached: pandas' datetime accessors cost more
    than scoring the whole grid."""
    calendar = calendar_features(pd.Series([day + pd.Timedelta(hours=hour)])).iloc[0]
    return {column: float(calendar[column]) for column in calendar.index}, str(int(calendar["day_of_week"]))


def recommend(served: ServedProduct, request: PriceRequest, sources: Iterable[ArtifactSource] = (),
              settings: DecisionSettings | None = None) -> dict[str, Any]:
    """The price decision for one product and customer group, with the model's curve and provenance.

    ``price`` is what to charge: the status quo unless the plausible curves agree a change gains
    (:func:`pricetrail.pricing.decision.decide`). ``model_price`` is the model's robust optimum over the grid, ``band`` the
    90% interval of the optimal price; ``decision`` says change or keep and why, and carries a test plan where the
    data cannot tell. A customer group the risk gate refused to assess is answered ``keep`` with the reason.
    """
    settings = settings or DecisionSettings()
    record = served.product.record
    assert record is not None
    observed = observed_range(record, request.customer, sources, f"{served.stockcode} version {served.version}")
    span = observed[1] - observed[0]
    allowed = (max(observed[0] - request.range_widening * span, MIN_PRICE), observed[1] + request.range_widening * span)
    low = allowed[0] if request.min_price is None else request.min_price
    high = allowed[1] if request.max_price is None else request.max_price
    if low >= high:
        which = "min_price" if request.min_price is not None else "max_price"
        raise RequestError(which, f"price range [{low:g}, {high:g}] is empty: min_price must be below max_price "
                                  f"(the observed range is {observed[0]:g}-{observed[1]:g})")
    if request.unit_cost is not None and request.unit_cost >= high:
        raise RequestError("unit_cost", f"unit_cost={request.unit_cost:g} is at or above every price of the range "
                                        f"[{low:g}, {high:g}]: every price loses money; check the cost or the range")
    prices = np.linspace(low, high, request.points)
    state_day = _state_day(served, request)
    quo = _status_quo(served.bundle.daily, request, state_day, settings)
    refusal = group_refusal(record, request.customer)
    if refusal is not None:
        return _refused_group_answer(served, request, quo, refusal, settings, (low, high), observed)
    # The status quo is priced by the same curves, appended to the grid (it may lie between or outside its points).
    evaluated = prices if quo is None else np.append(prices, quo.price)
    n = len(prices)
    numerical, categorical, state_as_of = _grid_inputs(served, request, evaluated)
    matrix = served.encoder.matrix(numerical, categorical, len(evaluated))
    metadata = served.bundle.metadata
    reference = price_reference(metadata, request.customer)
    # A checkpoint from before the price reference was recorded: the middle of the observed range stands in.
    median = reference.median if reference is not None else (observed[0] + observed[1]) / 2
    pivot = pivot_prices(median)
    pivot_numerical, pivot_categorical, _ = _grid_inputs(served, request, pivot)
    pivot_matrix = served.encoder.matrix(pivot_numerical, pivot_categorical, len(pivot))
    whole = response_family(served.bundle.network, metadata, matrix, pivot_matrix, prices=evaluated,
                            median_price=median)
    family = whole.take(slice(0, n))
    cost = 0.0 if request.unit_cost is None else request.unit_cost
    margin = evaluated - cost
    point_best, best, band = choose_price(prices, family, request.unit_cost)
    members = whole.daily_members
    values = None if members is None else members * margin[None, :]
    objective = "revenue" if request.unit_cost is None else "profit"
    decision = decide(prices, None if values is None else values[:, :n],
                      None if values is None or quo is None else values[:, n], quo, settings, objective=objective)
    if needs_test(decision, band, settings):
        decision = with_plan(decision, _test_plan(served, request, decision, band, settings, evaluated, matrix,
                                                  pivot_matrix, median, whole, (low, high)))
    quantity = whole.point
    revenue = evaluated * quantity
    profit = None if request.unit_cost is None else margin * quantity
    lines = daily_lines(whole, request.customer)
    # The answer's figures are at the decided price: a grid point on a change, the appended status quo on a keep.
    if decision.price is None:
        chosen = best
    elif decision.action == "keep":
        chosen = n
    else:
        chosen = int(np.argmin(np.abs(prices - decision.price)))
    within = observed[0] - 1e-9 <= low and high <= observed[1] + 1e-9
    notes = []
    if not within:
        notes.append(f"the price range [{low:g}, {high:g}] leaves the observed range "
                     f"[{observed[0]:g}, {observed[1]:g}] for {request.customer} customers: the model extrapolates")
    if best in (0, n - 1):
        notes.append("the model's best price is at the edge of the grid: the optimum may lie outside it")
    if profit is not None and profit[best] <= 0:
        notes.append(f"no price of the range makes a profit at unit_cost={request.unit_cost:g}: this is the "
                     "smallest loss")
    if quo is not None and abs(prices[best] / quo.price - 1) > settings.max_step:
        notes.append(f"the model's own optimum {prices[best]:g} lies more than {settings.max_step:.0%} from the "
                     f"status quo {quo.price:g}: a decision moves at most that far in one step")
    requested_day = str(pd.Timestamp(request.date).date())
    if state_as_of != requested_day:
        notes.append(f"the date is after the product's history; state features are as of {state_as_of}")
    country_status = served.encoder.category_status("country", request.country)
    if country_status == "unseen":
        notes.append(f"country {request.country!r} never occurs in this model's training data: it is priced as "
                     "the encoder's infrequent/unknown category")
    elif country_status == "infrequent":
        notes.append(f"country {request.country!r} was rare in training: priced with the infrequent countries")
    kept = served.product.unpromoted_candidate()
    if kept:
        notes.append(f"the latest weekly run ({kept.get('time')}) did not promote its model: {kept.get('reason')}")
    gate_params = ((record.get("verdict") or {}).get("params") or {}).get("assess_model_risk") or {}
    if reference is not None:
        notes.extend(uncertainty_notes(
            reference, band, float(prices[best]), family.members is not None, request.customer,
            min_distinct_prices=int(gate_params.get("min_distinct_prices", MIN_DISTINCT_PRICES)),
            max_band_share=float(gate_params.get("max_band_share", MAX_BAND_SHARE)), rate=family.rate))
    else:
        notes.append("this model records no training prices or price-response uncertainty (trained before they "
                     "were recorded): no band")
    elasticity = {"at_price": round(median, 6), **elasticity_summary(family)}
    columns = {"price": evaluated, "expected_quantity": quantity, "expected_revenue": revenue,
               **({} if profit is None else {"expected_profit": profit}),
               **({} if lines is None else {"expected_lines_per_day": lines,
                                            "expected_revenue_per_day": revenue * lines}),
               **({} if lines is None or profit is None else {"expected_profit_per_day": profit * lines})}
    if lines is not None and values is not None and whole.rate is not None:
        # The plausible curves' 5th-95th percentile of the objective per day at each price (the picture's band).
        scale = whole.rate.lines_per_day.get(request.customer, 0.0)
        columns[f"expected_{objective}_per_day_p05"] = np.percentile(values, 5, axis=0) * scale
        columns[f"expected_{objective}_per_day_p95"] = np.percentile(values, 95, axis=0) * scale
    _check_answer(served.stockcode, float(evaluated[chosen]), columns)
    per_day = None if lines is None else {
        "expected_lines": round(float(lines[chosen]), 6),
        "expected_revenue": round(float(revenue[chosen] * lines[chosen]), 6),
        "expected_profit": None if profit is None else round(float(profit[chosen] * lines[chosen]), 6)}
    rounded = {name: np.round(values_[:n], 6).tolist() for name, values_ in columns.items()}
    curve = [dict(zip(rounded, point, strict=True)) for point in zip(*rounded.values(), strict=True)]
    return {
        "stockcode": served.stockcode, "model_version": served.version,
        "data_md5": (record.get("verdict") or {}).get("lineage", {}).get("features_md5"),
        "served_by": record.get("served_by"), "served_since": record.get("served_since"),
        "objective": objective, "customer": request.customer,
        "price": None if decision.price is None else round(float(decision.price), 6),
        "decision": decision.to_dict(),
        "expected_quantity": round(float(quantity[chosen]), 6),
        "expected_revenue": round(float(revenue[chosen]), 6),
        "expected_profit": None if profit is None else round(float(profit[chosen]), 6),
        "model_price": round(float(prices[best]), 6), "point_optimum": round(float(prices[point_best]), 6),
        "band": None if band is None else [round(band[0], 6), round(band[1], 6)],
        "elasticity": elasticity, "per": "order line" if lines is None else "day", "per_day": per_day,
        "unit_cost": request.unit_cost, "price_range": [round(low, 6), round(high, 6)],
        "observed_range": [round(observed[0], 6), round(observed[1], 6)], "within_observed_range": within,
        "points": request.points, "date": requested_day,
        "country": {"name": request.country, "status": country_status},
        "state_as_of": state_as_of, "state_source": served.state_source, "state_daily_md5": served.daily_md5,
        "notes": notes, "curve": curve,
    }


def _status_quo(daily: pd.DataFrame | None, request: PriceRequest, day: pd.Timestamp,
                settings: DecisionSettings) -> StatusQuo | None:
    if request.current_price is not None:
        return StatusQuo(price=float(request.current_price), customer=request.customer, first_day=str(day.date()),
                         last_day=str(day.date()), lines=0, days=0, given=True)
    return None if daily is None else status_quo(daily, request.customer, day, settings.status_quo_days)


def _state_day(served: ServedProduct, request: PriceRequest) -> pd.Timestamp:
    """The day state features (and the status quo) are taken as of: the requested day, or the day after the
    history when the request is later: the previous-month features of a far future date would read as "no
    sales", which the model never saw (as recommend.grid_rows does). A date before the history is refused."""
    requested = pd.Timestamp(request.date).normalize()
    first_day = served.first_day
    if requested < first_day:
        raise RequestError("date", f"date {request.date} is before {served.stockcode}'s sales history, which starts "
                                   f"on {first_day.date()}: there is no state to price from; ask for a date from "
                                   f"{first_day.date()} on")
    return min(requested, served.last_day + pd.Timedelta(days=1))


def _test_plan(served: ServedProduct, request: PriceRequest, decision: Decision, band: tuple[float, float] | None,
               settings: DecisionSettings, evaluated: np.ndarray, matrix: np.ndarray, pivot_matrix: np.ndarray,
               median: float, whole: ResponseFamily, price_range: tuple[float, float]) -> PriceTest | None:
    """The price test that would settle a keep for lack of evidence (see :func:`pricetrail.pricing.decision.plan_test`)."""
    network, metadata = served.bundle.network, served.bundle.metadata
    fit = metadata.get("price_response") or {}
    quo = decision.status_quo
    if quo is None or not isinstance(network, PriceResponseNetwork) or not fit or whole.rate is None:
        return None
    n = len(evaluated) - 1  # the status quo is the last evaluated price
    design = design_prices(quo.price, band, *price_range)
    numerical, categorical, _ = _grid_inputs(served, request, np.asarray(design))
    design_matrix = served.encoder.matrix(numerical, categorical, len(design))
    design_family = response_family(network, metadata, design_matrix, pivot_matrix, prices=np.asarray(design),
                                     median_price=median)
    lines = daily_lines(design_family, request.customer)
    if lines is None:
        return None
    cost = 0.0 if request.unit_cost is None else request.unit_cost
    margin = evaluated - cost
    value_at_design = (np.asarray(design) - cost) * design_family.daily_point
    uncertainty = Uncertainty(covariance=np.asarray(fit["covariance"], dtype=np.float64),
                              residual_sd=float(fit.get("residual_sd", 1.0)), rate_sd=whole.rate.sd)

    def family_at(after: Uncertainty) -> tuple[ResponseFamily, np.ndarray | None]:
        changed = {**metadata, "price_response": {**fit, "covariance": after.covariance.tolist()}}
        if after.rate_sd is not None and metadata.get("order_rate"):
            changed["order_rate"] = {**metadata["order_rate"], "sd": after.rate_sd}
        redrawn = response_family(network, changed, matrix, pivot_matrix, prices=evaluated, median_price=median)
        members = redrawn.daily_members
        at_quo = None if members is None else members[:, n] * margin[n]
        return redrawn.take(slice(0, n)), at_quo

    z = np.asarray(design_matrix, dtype=np.float64)[:, list(network.price_columns)]
    return plan_test(evaluated[:n], quo, decision, band, uncertainty, design, z, lines, value_at_design,
                     float(margin[n] * whole.daily_point[n]), family_at, settings, request.unit_cost)


def group_refusal(record: dict[str, Any], customer: str) -> str | None:
    """Why the risk gate did not clear the model for this customer group, or None when it did (a verdict from before
    groups were judged apart clears every group it passed)."""
    groups = (record.get("verdict") or {}).get("customer_groups")
    if not isinstance(groups, dict) or customer not in groups:
        return None
    entry = groups[customer]
    if not isinstance(entry, dict) or entry.get("servable") is True:
        return None
    return str(entry.get("reason") or "the risk gate did not clear the model for these customers")


def _keep_payload(code: str, request: PriceRequest, quo: StatusQuo | None, reason: str,
                  settings: DecisionSettings, **extra: Any) -> dict[str, Any]:
    decision = Decision("keep", None if quo is None else quo.price, reason, quo, None, settings.delta,
                        settings.min_gain)
    return {"stockcode": code, "model_version": None, "customer": request.customer,
            "objective": "revenue" if request.unit_cost is None else "profit",
            "price": None if quo is None else round(quo.price, 6), "decision": decision.to_dict(),
            "model_price": None, "point_optimum": None, "band": None, "curve": [],
            "date": str(pd.Timestamp(request.date).date()), "notes": [], **extra}


def _refused_group_answer(served: ServedProduct, request: PriceRequest, quo: StatusQuo | None, refusal: str,
                          settings: DecisionSettings, price_range: tuple[float, float],
                          observed: tuple[float, float]) -> dict[str, Any]:
    hold = "keep what you charge" if quo is None else f"keep {quo.price:g}"
    payload = _keep_payload(served.stockcode, request, quo,
                            f"the model is not cleared to price {request.customer} customers: {refusal}; {hold}",
                            settings, price_range=[round(v, 6) for v in price_range],
                            observed_range=[round(v, 6) for v in observed])
    payload.update({"model_version": served.version, "served_by": (served.product.record or {}).get("served_by"),
                    "state_as_of": str(_state_day(served, request).date())})
    return payload


def unmodelled_answer(product: ProductRecord, request: PriceRequest, sources: Iterable[ArtifactSource],
                      settings: DecisionSettings | None = None) -> dict[str, Any]:
    """A product with no model that may set its price: keep the status quo (from its newest daily history, read by
    hash and verified), with the reason in a buyer's words."""
    settings = settings or DecisionSettings()
    quo = None
    state_as_of = None
    pointer = product.state
    if pointer is not None:
        daily = _daily_history(pointer.artifact, list(sources), product.stockcode)
        requested = pd.Timestamp(request.date).normalize()
        last = pd.Timestamp(pointer.last_day)
        if requested < pd.Timestamp(pointer.first_day):
            raise RequestError("date", f"date {request.date} is before {product.stockcode}'s sales history, which "
                                       f"starts on {pointer.first_day}: there is no price to keep")
        day = min(requested, last + pd.Timedelta(days=1))
        quo = _status_quo(daily, request, day, settings)
        state_as_of = str(day.date())
    elif request.current_price is not None:
        quo = _status_quo(None, request, pd.Timestamp(request.date), settings)
    hold = "keep what you charge" if quo is None else f"keep {quo.price:g}"
    return _keep_payload(product.stockcode, request, quo, f"{plain_reason(product)}; {hold}", settings,
                         state_as_of=state_as_of)


@functools.lru_cache(maxsize=64)
def _daily_frame(path: str, md5: str) -> pd.DataFrame:
    return pd.read_parquet(path)


def _daily_history(artifact: registry.Artifact, sources: list[ArtifactSource], code: str) -> pd.DataFrame:
    path = resolve(artifact, sources, owner=f"{code} daily history")
    return _daily_frame(str(path), artifact.md5)


# The checks of the risk gate and the drift gate, in a buyer's words.
PLAIN_CHECKS = {
    "predictions_finite": "the demand model gave no usable forecast",
    "beats_baseline": "the demand model forecasts this product's orders no better than its typical order size does",
    "fairness_computable": "too few recent orders from one customer group to check the model is fair to it",
    "fairness_mae_difference": "the model's forecasts are much less accurate for one customer group than another",
    "fairness_mean_outcome_difference": "the model over- or under-states one customer group's demand more than "
                                        "another's",
    "price_response_monotone": "the model's demand does not fall as the price rises",
    "price_elasticity_registered": "the model reads no believable price response for registered customers",
    "price_elasticity_guest": "the model reads no believable price response for guests",
}


def plain_reason(product: ProductRecord) -> str:
    """Why the product has no model that may set its price, from its latest decision, in a buyer's words."""
    latest = product.pipeline_latest or product.latest or {}
    reason = str(latest.get("reason") or "")
    if product.record is not None:
        return "its served model's record did not pass its checks"
    if not reason:
        return "no model has been trained and checked for it yet (the weekly run has not reached it)"
    if "drift gate" in reason:
        return "its recent sales no longer look like the sales its model would learn from (the drift check " \
               "stopped retraining until someone accepts the new pattern)"
    named = [text for check, text in PLAIN_CHECKS.items() if f"{check}=" in reason]
    if named:
        return "its model failed a check: " + "; ".join(named)
    if "no features" in reason or "etl_pipeline" in reason:
        return "too few clean sales lines to model it"
    return f"no model passed its checks ({reason})"


class AnswerError(RuntimeError):
    """The model produced an answer that must not reach a caller (a non-finite value, a price below a cent)."""


def _check_answer(code: str, price: float, columns: dict[str, np.ndarray]) -> None:
    if not (math.isfinite(price) and price >= MIN_PRICE):
        raise AnswerError(f"the model of {code} chose price {price!r}, below {MIN_PRICE:g}: refusing to answer")
    for name, values in columns.items():
        if not np.all(np.isfinite(values)):
            raise AnswerError(f"the model of {code} gave non-finite {name}: refusing to answer")


# --------------------------------------------------------------------------------------------- one-shot use


def load_served_bundle(root: Path, code: str, sources: list[ArtifactSource] | None = None) -> ModelBundle:
    """The product's promoted model as a bundle with its training rows (for benchmarks that need them)."""
    served = registry.served_model(root, code)
    if served is None:
        raise registry.RegistryError(f"stockcode {code} serves no model: none has passed its gates "
                                     "(see pricetrail status)")
    files = served.resolve(local_sources(root) if sources is None else sources)
    bundle = load_bundle(files["model.pt"], files["preprocessor.skops"], daily=files["daily.parquet"],
                         reference=files["reference.parquet"])
    if bundle.version != served.version:
        raise BundleError(f"registry record of {code} names version {served.version}, its checkpoint is "
                          f"{bundle.version}")
    return bundle


def local_cache_sources(directories: Iterable[Path]) -> list[ArtifactSource]:
    return [LocalCache(Path(d)) for d in directories]
