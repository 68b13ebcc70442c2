"""The model router: each product's promoted model loaded on its first request, kept hot, evicted by LRU.

- Loads verify every artifact by md5 against the registry record (:func:`pricetrail.serving.loading.load_served`).
- One lock per product: concurrent first requests wait for one load instead of loading N times.
- Bounded by a count and by memory (the loaded models' estimated bytes); the least recently used goes first.
- A request re-reads the product's registry files only when their stat signature (mtime, size, inode) changed
  since the loaded model was checked against them, re-checks the verdict on every change, and reloads only when
  the served version or its state history did: a promotion, a rollback, a failed verdict or a newer weekly ingest
  is picked up without a restart, at the cost of three ``stat`` calls per request.
- A product with nothing servable is "no served model" every time; a failed load (damaged artifacts) is
  remembered per product (until its record changes, or ``failure_retry_seconds``) and answered for that product
  alone; nothing of another product is ever returned in its place.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pricetrail.pricing.served import ServedProduct
from pricetrail.registry import records
from pricetrail.registry.artifacts import ArtifactSource, public_reason
from pricetrail.registry.product_record import ProductRecord, read_product_record
from pricetrail.serving.loading import NotServable, load_served, servable

log = logging.getLogger(__name__)

Signature = tuple[tuple[int, int, int] | None, ...]
Loader = Callable[[Path, ProductRecord, Sequence[ArtifactSource]], ServedProduct]


RECORD_UNREADABLE = "its registry record could not be read (the server log has the cause)"


class LoadFailed(RuntimeError):
    """A product's model could not be loaded (damaged or missing artifact, inconsistent bundle).

    The message names paths, URLs and keys for the log; ``public`` is what a caller is told (never those).
    """

    def __init__(self, stockcode: str, cause: str, public: str) -> None:
        super().__init__(f"the model of {stockcode} cannot be served: {cause}")
        self.stockcode = stockcode
        self.cause = cause
        self.public = f"the model of {stockcode} cannot be served: {public}"


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    signature: Signature | None = None  # of the registry files when ``record`` was read
    record: ProductRecord | None = None
    loaded_signature: Signature | None = None  # of the record the loaded model was last checked against
    failure: tuple[Signature, float, str, str] | None = None  # signature, when, message, public (damaged only)


@dataclass
class RouterStats:
    hits: int = 0
    loads: int = 0
    evictions: int = 0
    failures: int = 0
    reloads: int = 0  # a newer promotion, rollback or state history replaced a loaded model
    load_seconds: dict[str, float] = field(default_factory=dict)  # last load time per product


class ModelRouter:
    def __init__(self, registry_dir: Path, sources: Sequence[ArtifactSource], *, max_models: int,
                 max_bytes: int, failure_retry_seconds: float = 30.0, loader: Loader = load_served,
                 refresh: Callable[[str], None] | None = None) -> None:
        self.registry_dir = registry_dir
        # Brings a product's records in registry_dir up to date first (the remote registry), rate-limited by it.
        self._refresh = refresh
        self.sources = list(sources)
        self.max_models = max_models
        self.max_bytes = max_bytes
        self.failure_retry_seconds = failure_retry_seconds
        self._loader = loader
        self._models: OrderedDict[str, ServedProduct] = OrderedDict()  # LRU order: oldest first
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()  # guards _models, _slots and stats; never held during a load
        self.stats = RouterStats()

    def _slot(self, code: str) -> _Slot:
        with self._lock:
            return self._slots.setdefault(code, _Slot())

    def signature(self, code: str) -> Signature:
        if self._refresh is not None:
            self._refresh(code)
        directory = self.registry_dir / code
        result = []
        for name in (records.SERVED, records.STATE, records.HISTORY):
            try:
                st = os.stat(directory / name)
                result.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                result.append(None)
        return tuple(result)

    def record(self, code: str) -> ProductRecord:
        """The product's registry record, re-read only when its files changed."""
        slot = self._slot(code)
        signature = self.signature(code)
        if slot.record is not None and slot.signature == signature:
            return slot.record
        with slot.lock:
            if slot.record is None or slot.signature != signature:
                slot.record = read_product_record(self.registry_dir, code)
                slot.signature = signature
            return slot.record

    def get(self, code: str) -> ServedProduct:
        """The loaded model of ``code`` for its currently served version; loads it if needed.

        The fast path serves a loaded model only while the registry files are exactly those it was checked against
        (``loaded_signature``): any change — a promotion, a rollback, a verdict turned to failed, a newer history —
        sends the request through the record again, whichever request or endpoint read the record first.
        """
        slot = self._slot(code)
        signature = self.signature(code)
        with self._lock:
            loaded = self._models.get(code)
            if loaded is not None and slot.loaded_signature == signature:
                self._models.move_to_end(code)
                self.stats.hits += 1
                return loaded
        with slot.lock:  # one load per product; other products' requests do not wait for it
            signature = self.signature(code)
            if slot.record is None or slot.signature != signature:
                try:
                    slot.record = read_product_record(self.registry_dir, code)
                except (ValueError, OSError) as error:  # a damaged record: this product only
                    self._drop(code, slot)
                    log.warning("%s: registry record unreadable: %s", code, error)
                    raise LoadFailed(code, str(error), RECORD_UNREADABLE) from error
                slot.signature = signature
            product = slot.record
            try:
                servable(product)
            except NotServable:  # nothing promoted, or the record's verdict no longer passes: never served
                self._drop(code, slot)
                raise
            with self._lock:
                loaded = self._models.get(code)
            if loaded is not None and (loaded.version, loaded.daily_md5) == product.key:
                loaded.product = product  # same model, newer history lines (e.g. a kept decision)
                slot.loaded_signature = signature
                with self._lock:
                    self._models.move_to_end(code)
                    self.stats.hits += 1
                return loaded
            if slot.failure is not None:
                failed_signature, when, message, public = slot.failure
                if failed_signature == signature and time.monotonic() - when < self.failure_retry_seconds:
                    raise LoadFailed(code, message, public)
            started = time.perf_counter()
            try:
                served = self._loader(self.registry_dir, product, self.sources)
            except NotServable:
                self._drop(code, slot)
                raise
            except (ValueError, OSError, RuntimeError) as error:  # damaged artifacts or bundles, unreadable files
                public = public_reason(error)
                slot.failure = (signature, time.monotonic(), str(error), public)
                self._drop(code, slot)  # never keep serving a model the record no longer names
                with self._lock:
                    self.stats.failures += 1
                log.warning("%s: load failed: %s", code, error)
                raise LoadFailed(code, str(error), public) from error
            if served.stockcode != code:
                raise LoadFailed(code, f"the loader returned the model of {served.stockcode}",
                                 "the loader returned another product's model")
            slot.failure = None
            slot.loaded_signature = signature
            seconds = time.perf_counter() - started
            with self._lock:
                if code in self._models:
                    self.stats.reloads += 1
                self._models[code] = served
                self._models.move_to_end(code)
                self.stats.loads += 1
                self.stats.load_seconds[code] = round(seconds, 4)
                self._evict(keep=code)
            log.info("%s: loaded %s in %.3f s (%d bytes)", code, served.version, seconds, served.nbytes)
            return served

    def _drop(self, code: str, slot: _Slot) -> None:
        slot.loaded_signature = None
        with self._lock:
            self._models.pop(code, None)

    def _evict(self, keep: str) -> None:
        while len(self._models) > 1 and (len(self._models) > self.max_models or self.loaded_bytes > self.max_bytes):
            victim = next(code for code in self._models if code != keep)
            del self._models[victim]
            self.stats.evictions += 1
            log.info("%s: evicted (least recently used)", victim)

    @property
    def loaded_bytes(self) -> int:
        return sum(model.nbytes for model in self._models.values())

    def loaded(self) -> dict[str, dict[str, object]]:
        with self._lock:
            return {code: {"version": m.version, "bytes": m.nbytes, "state_as_of_last_day": str(m.last_day.date())}
                    for code, m in self._models.items()}

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"loaded_models": len(self._models), "loaded_bytes": self.loaded_bytes,
                    "max_models": self.max_models, "max_bytes": self.max_bytes, "hits": self.stats.hits,
                    "loads": self.stats.loads, "reloads": self.stats.reloads, "evictions": self.stats.evictions,
                    "failures": self.stats.failures, "load_seconds": dict(self.stats.load_seconds)}
