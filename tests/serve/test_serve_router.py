"""The model router on hand-made registry records and a fake loader: LRU bounds, one load under concurrency,
failures confined to their product, new versions picked up from the record."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from pricetrail.registry.product_record import ProductRecord, verdict_failures
from pricetrail.serving.loading import NotServable
from serve.router import LoadFailed, ModelRouter

MD5 = "0123456789abcdef0123456789abcdef"


def write_record(registry_dir: Path, code: str, version: str, *, passed: bool = True) -> None:
    artifacts = {name: {"path": f"x/{name}", "md5": MD5, "size": 1}
                 for name in ("model.pt", "preprocessor.json", "daily.parquet", "reference.parquet")}
    record = {"schema": 2, "stockcode": code, "version": version, "artifacts": artifacts,
              "verdict": {"promoted": passed, "checks": [{"name": "beats_baseline", "passed": passed, "value": 0.1,
                                                          "threshold": 0.05}]},
              "training_data": {"first_date": "2011-01-01", "last_date": "2011-06-01", "rows": 10}}
    (registry_dir / code).mkdir(parents=True, exist_ok=True)
    path = registry_dir / code / "served.json"
    path.write_text(json.dumps(record))
    stat = path.stat()  # a distinct mtime even within one clock tick
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


class FakeModel:
    def __init__(self, product: ProductRecord, nbytes: int = 100) -> None:
        self.product = product
        self.version = product.version
        self.daily_md5 = product.key[1]
        self.nbytes = nbytes

    @property
    def stockcode(self) -> str:
        return self.product.stockcode

    @property
    def last_day(self):  # noqa: ANN201
        import pandas as pd

        return pd.Timestamp("2011-06-01")


class Loader:
    def __init__(self, delay: float = 0.0, nbytes: int = 100, broken: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.delay = delay
        self.nbytes = nbytes
        self.broken = broken or set()
        self._lock = threading.Lock()

    def __call__(self, registry_dir: Path, product: ProductRecord, sources: object) -> FakeModel:
        with self._lock:
            self.calls.append(product.stockcode)
        time.sleep(self.delay)
        if product.record is None:
            raise NotServable(f"{product.stockcode} serves nothing")
        if verdict_failures(product.record):
            raise NotServable(f"{product.stockcode} has no passing verdict")
        if product.stockcode in self.broken:
            raise ValueError(f"{product.stockcode}: model.pt is damaged")
        return FakeModel(product, self.nbytes)


def router(registry_dir: Path, loader: Loader, **bounds: int) -> ModelRouter:
    return ModelRouter(registry_dir, [], max_models=bounds.get("max_models", 10),
                       max_bytes=bounds.get("max_bytes", 10_000), loader=loader)  # type: ignore[arg-type]


def test_sixteen_concurrent_first_requests_load_once(tmp_path: Path) -> None:
    write_record(tmp_path, "A1", "aaaa0001")
    loader = Loader(delay=0.2)
    models = router(tmp_path, loader)
    barrier = threading.Barrier(16)
    results = []

    def ask() -> None:
        barrier.wait()
        results.append(models.get("A1").version)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loader.calls == ["A1"] and results == ["aaaa0001"] * 16
    assert models.snapshot()["loads"] == 1 and models.snapshot()["hits"] == 15


def test_lru_eviction_under_count_and_memory_bounds(tmp_path: Path) -> None:
    for code in ("A1", "B2", "C3"):
        write_record(tmp_path, code, "aaaa0001")
    by_count = router(tmp_path, Loader(), max_models=2)
    by_count.get("A1"), by_count.get("B2"), by_count.get("A1"), by_count.get("C3")
    assert list(by_count.loaded()) == ["A1", "C3"] and by_count.snapshot()["evictions"] == 1
    by_memory = router(tmp_path, Loader(nbytes=400), max_bytes=1000)
    for code in ("A1", "B2", "C3"):
        by_memory.get(code)
    assert list(by_memory.loaded()) == ["B2", "C3"] and by_memory.loaded_bytes <= 1000


def test_a_new_version_in_the_record_is_loaded_without_a_restart(tmp_path: Path) -> None:
    write_record(tmp_path, "A1", "aaaa0001")
    loader = Loader()
    models = router(tmp_path, loader)
    assert models.get("A1").version == "aaaa0001"
    assert models.get("A1").version == "aaaa0001" and loader.calls == ["A1"]
    write_record(tmp_path, "A1", "bbbb0002")
    assert models.get("A1").version == "bbbb0002"
    assert models.snapshot()["reloads"] == 1


def test_a_failed_load_is_that_products_alone_and_never_another_model(tmp_path: Path) -> None:
    write_record(tmp_path, "A1", "aaaa0001")
    write_record(tmp_path, "B2", "bbbb0001")
    loader = Loader(broken={"B2"})
    models = router(tmp_path, loader)
    assert models.get("A1").stockcode == "A1"
    with pytest.raises(LoadFailed, match="B2: model.pt is damaged"):
        models.get("B2")
    with pytest.raises(LoadFailed):  # remembered: not reloaded on every request
        models.get("B2")
    assert loader.calls == ["A1", "B2"] and models.get("A1").stockcode == "A1"


def test_a_record_without_a_passing_verdict_is_never_served(tmp_path: Path) -> None:
    write_record(tmp_path, "A1", "aaaa0001")
    models = router(tmp_path, Loader())
    assert models.get("A1").version == "aaaa0001"
    write_record(tmp_path, "A1", "bbbb0002", passed=False)  # a hand-edited record
    with pytest.raises(NotServable, match="no passing verdict"):
        models.get("A1")
    assert "A1" not in models.loaded()


def test_no_record_is_not_servable(tmp_path: Path) -> None:
    with pytest.raises(NotServable):
        router(tmp_path, Loader()).get("Z9")


def test_a_record_read_by_the_listing_first_still_swaps_the_loaded_model(tmp_path: Path) -> None:
    # rollback -> GET /v1/products (reads the record) -> /price: the price went on answering the old version.
    write_record(tmp_path, "A1", "bbbb0002")
    models = router(tmp_path, Loader())
    assert models.get("A1").version == "bbbb0002"
    write_record(tmp_path, "A1", "aaaa0001")
    assert models.record("A1").version == "aaaa0001"  # the listing (or /lineage) reads the new record first
    assert models.get("A1").version == "aaaa0001"
    assert models.get("A1").version == "aaaa0001"


def test_a_verdict_turned_to_failed_with_the_same_version_stops_a_warm_router(tmp_path: Path) -> None:
    write_record(tmp_path, "A1", "aaaa0001")
    models = router(tmp_path, Loader())
    assert models.get("A1").version == "aaaa0001"
    write_record(tmp_path, "A1", "aaaa0001", passed=False)
    models.record("A1")
    with pytest.raises(NotServable, match="no passing verdict"):
        models.get("A1")
    assert "A1" not in models.loaded()


def test_nothing_promoted_is_no_served_model_on_every_request_not_a_remembered_failure(tmp_path: Path) -> None:
    (tmp_path / "Z9").mkdir()
    models = router(tmp_path, Loader())
    for _ in range(3):
        with pytest.raises(NotServable, match="serves no model"):
            models.get("Z9")
    assert models.snapshot()["failures"] == 0


def test_a_failed_load_tells_the_caller_the_artifact_by_role_and_hash_and_the_log_where(tmp_path: Path) -> None:
    from pricetrail.registry.artifacts import Artifact, ArtifactError, public_reason

    artifact = Artifact(name="model.pt", path="models/85123A/model.pt", md5="0" * 32, size=10)
    cause = ArtifactError("cannot reach s3://bucket/prefix: timeout at files/md5/00/000", artifact=artifact,
                          problem="could not be read from the artifact store")
    try:
        try:
            raise cause
        except ArtifactError as error:
            raise ValueError("the bundle of 85123A could not be loaded") from error
    except ValueError as wrapped:
        public = public_reason(wrapped)
    assert public == f"the model.pt artifact (md5 {'0' * 32}) could not be read from the artifact store"
    assert public_reason(OSError("/var/task/registry/85123A/served.json: denied"), "see the log") == "see the log"
