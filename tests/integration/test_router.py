"""The price router after a real smoke pipeline run: every endpoint, over Flask's test client and real HTTP.

One project is built for the module (a smoke `pricetrail run`, then one product retrained and promoted again);
the tests change registry records through `pricetrail rollback` / `promote`, or damage a *copy* of the cache.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from lambda_runtime import EVENTS, adapt, lambda_events
from openapi_schema_validator import OAS31Validator
from router_project import CODES, NEVER_RUN, RETRAINED, build, config, copy_objects, free_port, waitress_server

from pricetrail.modeling.exported import ExportError, load_serving_model
from pricetrail.project.copies import dvc, pricetrail, set_params
from pricetrail.project.files import file_md5
from pricetrail.project.paths import ProductPaths
from pricetrail.registry import records
from pricetrail.registry.artifacts import dvc_cache_dir, local_sources, object_relpath, resolve
from pricetrail.serving import loading
from pricetrail.serving.config import S3Settings
from serve.app import create_app
from serve.events import make_handler

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OTHER = "85123A"


@pytest.fixture(scope="module")
def built(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    # The suite's shared first week (tests/conftest.py): one pipeline run for all integration modules.
    return build(tmp_path_factory.mktemp("router") / "project", request.getfixturevalue("smoke_week1").root)


@pytest.fixture(scope="module")
def project(built: tuple[Path, dict[str, list[str]]]) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def versions(built: tuple[Path, dict[str, list[str]]]) -> dict[str, list[str]]:
    return built[1]


@pytest.fixture()
def client(project: Path):  # noqa: ANN201
    return create_app(config(project)).test_client()


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return json.loads((PROJECT_ROOT / "serve" / "openapi.json").read_text())


def check_schema(openapi: dict[str, Any], name: str, body: Any) -> None:
    schema = {**openapi["components"]["schemas"][name], "components": openapi["components"]}
    OAS31Validator(schema).validate(body)


def test_the_gate_judged_exactly_the_curve_the_router_serves(client, project: Path,  # noqa: ANN001
                                                             versions: dict[str, list[str]]) -> None:
    """The risk gate's decision plot (written by assess_model_risk from the candidate) and the router's answer for
    the promoted model, the day after the history, price through one function: the same curve and decision."""
    paths = ProductPaths(RETRAINED)
    verdict = json.loads((project / paths.verdict).read_text())
    assert verdict["model_version"] == versions[RETRAINED][-1]  # the served version is the one the gate judged
    plot = pd.read_csv(project / paths.decision_plot)
    day = str((pd.read_parquet(project / paths.daily)["day"].max() + pd.Timedelta(days=1)).date())
    assert set(plot["customer"]), "the gate priced no customer group"
    for customer, judged in plot.groupby("customer"):
        answer = client.get(f"/v1/products/{RETRAINED}/price?date={day}&customer={customer}&points={len(judged)}")
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert body["model_version"] == verdict["model_version"]
        served = pd.DataFrame(body["curve"])
        assert served["price"].tolist() == pytest.approx(judged["price"].tolist(), abs=1e-9)
        assert served["expected_revenue_per_day"].tolist() == pytest.approx(judged["revenue_per_day"].tolist(),
                                                                            abs=1e-9)
        assert served["expected_revenue_per_day_p05"].tolist() == pytest.approx(
            judged["revenue_per_day_p05"].tolist(), abs=1e-9)
        assert body["decision"]["action"] == judged["decision"].iloc[0]
        decided = judged["decided"].iloc[0]
        if body["decision"]["price"] is None:
            assert pd.isna(decided)
        else:
            assert body["decision"]["price"] == pytest.approx(decided, abs=1e-9)


def test_every_endpoint_answers_as_the_openapi_document_says(client, openapi, project: Path) -> None:  # noqa: ANN001
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["ready"] is True
    assert client.get("/openapi.json").get_json() == openapi
    listing = client.get("/v1/products").get_json()["products"]
    for entry in listing:
        check_schema(openapi, "Product", entry)
    by_code = {entry["stockcode"]: entry for entry in listing}
    assert by_code[OTHER]["servable"] and by_code[OTHER]["training_data"]["first_date"]
    assert by_code[OTHER]["verdict"]["passed"] and by_code[OTHER]["promoted_version"]
    price = client.get(f"/v1/products/{OTHER}/price?points=100&date=2011-11-15&country=France&customer=guest"
                       "&unit_cost=1.5")
    assert price.status_code == 200, price.get_json()
    body = price.get_json()
    check_schema(openapi, "Price", body)
    assert body["objective"] == "profit" and len(body["curve"]) == 100 and body["state_as_of"] == "2011-11-15"
    assert body["model_version"] == by_code[OTHER]["promoted_version"]
    assert body["data_md5"] == records.served_model(project, OTHER).record["verdict"]["lineage"]["features_md5"]
    # Profit per day: per line times the expected lines per day (the order rate falls with the price).
    best = max(body["curve"], key=lambda point: point["expected_profit_per_day"])
    assert best["price"] == body["point_optimum"]  # the point model's optimum; model_price is the robust choice
    assert body["model_price"] in [point["price"] for point in body["curve"]]
    assert body["band"][0] <= body["model_price"] <= body["band"][1] and body["per"] == "day"
    # What to charge: today's price (the guests' median over their last 28 days) unless the curves agree a
    # change gains; the per-day figures are at that price.
    decision = body["decision"]
    quo = decision["status_quo"]["price"]
    assert decision["reason"] and quo > 0 and decision["status_quo"]["customer"] == "guest"
    assert body["price"] == (quo if decision["action"] == "keep" else decision["candidate"]["price"])
    assert all(point["expected_profit_per_day_p05"] <= point["expected_profit_per_day_p95"] for point in body["curve"])
    if decision["action"] == "change":
        chosen = next(point for point in body["curve"] if point["price"] == body["price"])
        assert body["per_day"]["expected_profit"] == pytest.approx(chosen["expected_profit_per_day"], rel=1e-4)
    assert body["elasticity"]["order_rate"]["value"] <= 0
    alias = client.get(f"/v1/predict-price/{OTHER}?unitprice_min=3&unitprice_max=6&num_price_bins=7"
                       "&date=2011-11-15").get_json()
    same = client.get(f"/v1/products/{OTHER}/price?min_price=3&max_price=6&points=7&date=2011-11-15").get_json()
    assert alias == same and alias["price_range"] == [3.0, 6.0]
    lineage = client.get(f"/v1/products/{OTHER}/lineage").get_json()
    check_schema(openapi, "Lineage", lineage)
    assert lineage["git_commit"] and f"tune_primary_model@{OTHER}" in lineage["stages"]
    assert lineage["stages"][f"tune_primary_model@{OTHER}"]["code"]
    stats = client.get("/v1/stats").get_json()
    check_schema(openapi, "Stats", stats)
    assert stats["loads"] == 1 and stats["hits"] >= 2 and OTHER in stats["models"]


def test_a_product_with_no_promoted_model_says_why(client, openapi) -> None:  # noqa: ANN001
    entry = {e["stockcode"]: e for e in client.get("/v1/products").get_json()["products"]}[NEVER_RUN]
    assert not entry["servable"] and "nothing promoted" in entry["reason"]
    # Never a bare "no model": the answer is to keep today's price, and why.
    response = client.get(f"/v1/products/{NEVER_RUN}/price?date=2011-11-15")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    check_schema(openapi, "Price", body)
    assert body["model_version"] is None and body["decision"]["action"] == "keep"
    assert "no model has been trained and checked for it yet" in body["decision"]["reason"]


def test_an_unseen_country_and_a_date_past_the_history_are_said(client) -> None:  # noqa: ANN001
    body = client.get(f"/v1/products/{OTHER}/price?country=Narnia&date=2013-01-01").get_json()
    assert body["country"] == {"name": "Narnia", "status": "unseen"}
    assert any("Narnia" in note for note in body["notes"])
    assert body["state_as_of"] < "2013-01-01" and any("state features are as of" in n for n in body["notes"])


BAD = [
    ("/v1/products/99999/price", 404, "unknown-product"),
    ("/v1/products/..%2F..%2Fetc%2Fpasswd/price", 400, "invalid-stockcode"),
    ("/v1/products/85123A%3Bls/price", 400, "invalid-stockcode"),
    ("/v1/products/85-123A/price", 400, "invalid-stockcode"),
    ("/v1/products/" + "A" * 1024 + "/price", 400, "invalid-stockcode"),
    ("/v1/products/85123A/price?min_price=cheap", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?min_price=-1", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?max_price=NaN", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?max_price=inf", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?min_price=5&max_price=5", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?min_price=6&max_price=5", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?points=0", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?points=1", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?points=100000", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?points=2.5", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?customer=vip", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?date=2011-13-45", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?date=yesterday", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?unit_cost=-2", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?points=%C2%B2", 400, "invalid-parameter"),  # "²": Python's int() takes it
    ("/v1/products/85123A/price?points=--5", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?points=%D9%A1%D9%A2", 400, "invalid-parameter"),  # Arabic-Indic digits
    ("/v1/products/85123A/price?min_price=1_0", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?min_price=%201", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?min_price=1e-300", 400, "invalid-parameter"),  # answered price 0.0 before
    ("/v1/products/85123A/price?max_price=1e400", 400, "invalid-parameter"),
    ("/v1/products/85123A/price?date=2001-01-01", 400, "invalid-parameter"),  # before the product's history
    ("/v1/products/85123A/price?max_prcie=3", 400, "unknown-parameter"),
    ("/v1/products/85123A/price?points=5&points=7", 400, "repeated-parameter"),
    ("/v1/predict-price/85123A?num_price_bins=5&points=7", 400, "unknown-parameter"),  # the alias takes its own names
    ("/v1/products?verbose=1", 400, "unknown-parameter"),
    ("/v1/nothing", 404, "not-found"),
]


@pytest.mark.parametrize(("url", "status", "kind"), BAD, ids=[f"{s}-{k}-{i}" for i, (_, s, k) in enumerate(BAD)])
def test_bad_input_is_a_named_4xx_problem_and_no_crash(client, caplog: pytest.LogCaptureFixture, url: str,  # noqa: ANN001
                                                       status: int, kind: str) -> None:
    with caplog.at_level(logging.WARNING):
        response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["type"].endswith(f"/{kind}") and body["status"] == status and body["detail"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_body_on_get_is_refused_and_posts_are_not_allowed(client) -> None:  # noqa: ANN001
    response = client.get(f"/v1/products/{OTHER}/price", data="{}")
    assert response.status_code == 400 and response.get_json()["type"].endswith("/request-body-not-allowed")
    response = client.post(f"/v1/products/{OTHER}/price")
    assert response.status_code == 405 and response.content_type == "application/problem+json"


def test_over_real_http_under_waitress(project: Path) -> None:
    with waitress_server(create_app(config(project))) as url:
        for path in ("/healthz", "/readyz", "/openapi.json", "/v1/products", f"/v1/products/{OTHER}/lineage",
                     f"/v1/predict-price/{OTHER}?num_price_bins=5&date=2011-11-15", "/v1/stats"):
            with urllib.request.urlopen(f"{url}{path}") as response:
                assert response.status == 200 and response.headers["Content-Type"] == "application/json", path
                json.loads(response.read())
        with urllib.request.urlopen(f"{url}/v1/products/{OTHER}/price?points=11&date=2011-11-15") as response:
            assert response.status == 200 and json.loads(response.read())["stockcode"] == OTHER
        # The traversal as a client sends it: %2F stays encoded on the wire.
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{url}/v1/products/..%2F..%2Fetc%2Fpasswd/price")
        assert error.value.code == 400 and error.value.headers["Content-Type"] == "application/problem+json"


def test_sixteen_simultaneous_first_requests_load_the_model_once(project: Path) -> None:
    app = create_app(config(project))
    with waitress_server(app, threads=16) as url:
        barrier = threading.Barrier(16)

        def ask(_: int) -> tuple[int, str]:
            barrier.wait()
            with urllib.request.urlopen(f"{url}/v1/products/{OTHER}/price?points=21&date=2011-11-15") as response:
                return response.status, json.loads(response.read())["model_version"]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(ask, range(16)))
        stats = json.loads(urllib.request.urlopen(f"{url}/v1/stats").read())
    assert {status for status, _ in answers} == {200} and len({v for _, v in answers}) == 1
    assert stats["loads"] == 1 and stats["hits"] == 15, stats


def test_rollback_and_a_failed_gate_are_picked_up_without_a_restart(project: Path,
                                                                    versions: dict[str, list[str]]) -> None:
    first, second = versions[RETRAINED]
    app = create_app(config(project))
    with waitress_server(app) as url:
        def price() -> dict[str, Any]:
            with urllib.request.urlopen(f"{url}/v1/products/{RETRAINED}/price?points=11&date=2011-11-15") as r:
                return json.loads(r.read())

        assert price()["model_version"] == second
        pricetrail("rollback", RETRAINED, "--reason", "router test", cwd=project)
        rolled = price()
        assert rolled["model_version"] == first and rolled["served_by"] == "rollback"
        # The latest model fails its gate now: the weekly decision keeps the older one, and the router says so.
        set_params(project, {"assess_model_risk.min_improvement_over_baseline": 0.99})
        dvc("repro", f"assess_model_risk@{RETRAINED}", cwd=project, check=False)
        pricetrail("rollback", RETRAINED, "--to", second, "--reason", "serve the retrained one", cwd=project)
        assert price()["model_version"] == second
        pricetrail("rollback", RETRAINED, "--to", first, "--reason", "back to the first", cwd=project)
        decision = pricetrail("promote", "--stockcode", RETRAINED, cwd=project).stdout
        assert "failed its gate" in decision, decision
        kept = price()
        listing = json.loads(urllib.request.urlopen(f"{url}/v1/products").read())["products"]
        stats = json.loads(urllib.request.urlopen(f"{url}/v1/stats").read())
    assert kept["model_version"] == first
    assert any(f"did not promote its model: model {second} failed its gate" in note for note in kept["notes"]), kept
    entry = {e["stockcode"]: e for e in listing}[RETRAINED]
    assert entry["servable"] and entry["promoted_version"] == first and "failed its gate" in entry["reason"]
    assert stats["reloads"] == 3 and stats["loads"] == 4, stats


def test_a_record_from_before_the_export_is_converted_where_torch_is_installed_and_refused_where_not(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = records.served_model(project, OTHER)
    sources = local_sources(project)
    legacy = {name: artifact for name, artifact in served.artifacts.items() if name != "serving.json"}
    exported = load_serving_model(resolve(served.artifacts["serving.json"], sources, owner=OTHER))
    converted = loading._serving_model(legacy, sources, OTHER)
    assert converted.to_dict() == exported.to_dict()  # the same numbers the tuning stage wrote
    monkeypatch.setitem(sys.modules, "pricetrail.modeling.export", None)  # an image without torch
    with pytest.raises(ExportError, match="promoted before models were exported .* no torch"):
        loading._serving_model(legacy, sources, OTHER)


def test_a_corrupted_artifact_is_503_for_that_product_only(project: Path, tmp_path: Path) -> None:
    cache = copy_objects(project, CODES, tmp_path / "cache")
    served = records.served_model(project, OTHER)
    damaged = cache / object_relpath(served.artifacts["serving.json"].md5)
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    client = create_app(config(project, cache_dirs=(cache,))).test_client()
    response = client.get(f"/v1/products/{OTHER}/price?date=2011-11-15")
    assert response.status_code == 503 and response.content_type == "application/problem+json"
    assert "damaged" in response.get_json()["detail"] and OTHER in response.get_json()["detail"]
    assert client.get(f"/v1/products/{RETRAINED}/price?date=2011-11-15").status_code == 200
    assert client.get(f"/v1/products/{OTHER}/price?date=2011-11-15").status_code == 503  # remembered, not reloaded
    assert client.get("/v1/stats").get_json()["failures"] == 1


def test_state_comes_from_the_newest_ingested_history_without_a_promotion(project: Path, tmp_path: Path) -> None:
    registry_dir = tmp_path / "registry"
    shutil.copytree(project / "registry", registry_dir)
    cache = copy_objects(project, CODES, tmp_path / "cache")
    served = records.served_model(project, OTHER)
    own = cache / object_relpath(served.artifacts["daily.parquet"].md5)
    daily = pd.read_parquet(own)
    # A weekly run ingested four more weeks of sales and kept the model: its state pointer names the new history.
    extra = daily.tail(20).copy()
    extra["day"] = pd.to_datetime(extra["day"]) + pd.Timedelta(days=28)
    newer = pd.concat([daily, extra[pd.to_datetime(extra["day"]) > pd.to_datetime(daily["day"]).max()]])
    newer_path = tmp_path / "daily.parquet"
    newer.to_parquet(newer_path, index=False)
    md5 = file_md5(newer_path)
    (cache / object_relpath(md5)).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(newer_path, cache / object_relpath(md5))
    last_day = str(pd.to_datetime(newer["day"]).max().date())
    pointer = {"stockcode": OTHER, "first_day": str(pd.to_datetime(newer["day"]).min().date()), "last_day": last_day,
               "artifact": {"path": f"data/features/{OTHER}/daily.parquet", "md5": md5,
                            "size": newer_path.stat().st_size}}
    before = create_app(config(project, registry_dir=registry_dir, cache_dirs=(cache,))).test_client()
    old = before.get(f"/v1/products/{OTHER}/price?date=2012-06-01").get_json()
    (registry_dir / OTHER / "state.json").write_text(json.dumps(pointer))
    new = before.get(f"/v1/products/{OTHER}/price?date=2012-06-01").get_json()
    assert old["model_version"] == new["model_version"]
    assert new["state_as_of"] > old["state_as_of"] and new["state_daily_md5"] == md5
    assert "weekly run" in new["state_source"] and "served version" in old["state_source"]


@contextlib.contextmanager
def moto_bucket(project: Path, codes: tuple[str, ...], tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A real S3 server on loopback holding the served objects of ``codes`` under s3://models/dvcstore."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
        for _ in range(100):
            try:
                s3.create_bucket(Bucket="models")
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                time.sleep(0.1)
        uploaded = copy_objects(project, codes, tmp_path / "remote")
        for path in uploaded.rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), "models", f"dvcstore/{path.relative_to(uploaded).as_posix()}")
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ACCESS_KEY_ID", "test")
            env.setenv("AWS_SECRET_ACCESS_KEY", "test")
            yield server, endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_dvc_remote_on_s3_by_content_hash(project: Path, tmp_path: Path) -> None:
    with moto_bucket(project, (OTHER,), tmp_path) as (_, endpoint):
        settings = S3Settings(url="s3://models/dvcstore", cache_dir=tmp_path / "tmp-cache", endpoint_url=endpoint,
                              region="us-east-1")
        client = create_app(config(project, cache_dirs=(), s3=settings)).test_client()
        assert client.get("/readyz").get_json()["ready"] is True
        response = client.get(f"/v1/products/{OTHER}/price?date=2011-11-15")
        assert response.status_code == 200, response.get_json()
        assert client.get(f"/v1/products/{RETRAINED}/price").status_code == 503  # not on the remote
    served = records.served_model(project, OTHER)
    for name in ("serving.json", "daily.parquet"):
        assert (settings.cache_dir / object_relpath(served.artifacts[name].md5)).is_file()
    # The router prices the exported numbers: the torch checkpoint and the preprocessor never leave the remote.
    for name in ("model.pt", "preprocessor.json", "reference.parquet"):
        assert not (settings.cache_dir / object_relpath(served.artifacts[name].md5)).exists(), name


def test_the_remote_down_is_503_for_a_product_not_loaded_and_the_loaded_keep_serving(project: Path,
                                                                                     tmp_path: Path) -> None:
    with moto_bucket(project, (OTHER, RETRAINED), tmp_path) as (server, endpoint):
        settings = S3Settings(url="s3://models/dvcstore", cache_dir=tmp_path / "tmp-cache", endpoint_url=endpoint,
                              region="us-east-1")
        client = create_app(config(project, cache_dirs=(), s3=settings)).test_client()
        assert client.get(f"/v1/products/{OTHER}/price?date=2011-11-15").status_code == 200
        server.terminate()  # the remote goes down
        server.wait(timeout=10)
        started = time.monotonic()
        down = client.get(f"/v1/products/{RETRAINED}/price?date=2011-11-15")
        assert down.status_code == 503 and down.mimetype == "application/problem+json", down.get_json()
        assert time.monotonic() - started < settings.deadline_seconds + 2  # one deadline, retries included
        detail = down.get_json()["detail"]
        assert "model.pt artifact (md5 " in detail or "artifact (md5 " in detail, detail
        assert_nothing_internal(json.dumps(down.get_json()), endpoint, tmp_path)
        assert client.get(f"/v1/products/{OTHER}/price?date=2011-11-16").status_code == 200  # still loaded


def assert_nothing_internal(body: str, endpoint: str, tmp_path: Path) -> None:
    """A public body names no URL, bucket, key or path (those go to the log)."""
    for secret in ("s3://", endpoint, "127.0.0.1", "models/dvcstore", "dvcstore", "files/md5", str(tmp_path),
                   "/tmp", "registry/"):
        assert secret not in body, (secret, body)


def test_a_stalled_remote_is_503_within_the_deadline_the_loaded_keep_serving_and_readyz_answers_in_time(
        project: Path, tmp_path: Path) -> None:
    with moto_bucket(project, (OTHER, RETRAINED), tmp_path) as (server, endpoint):
        settings = S3Settings(url="s3://models/dvcstore", cache_dir=tmp_path / "tmp-cache", endpoint_url=endpoint,
                              region="us-east-1", deadline_seconds=3.0)
        client = create_app(config(project, cache_dirs=(), s3=settings)).test_client()
        assert client.get(f"/v1/products/{OTHER}/price?date=2011-11-15").status_code == 200
        # A stopped server still accepts connections (the kernel completes them) and never answers: a stall.
        os.kill(server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            down = client.get(f"/v1/products/{RETRAINED}/price?date=2011-11-15")
            seconds = time.monotonic() - started
            assert down.status_code == 503, down.get_json()
            assert seconds < settings.deadline_seconds + 1.5 + 1.0, seconds  # the registry refresh, then the read
            assert_nothing_internal(json.dumps(down.get_json()), endpoint, tmp_path)
            assert client.get(f"/v1/products/{OTHER}/price?date=2011-11-16").status_code == 200  # still loaded
            started = time.monotonic()
            ready = client.get("/readyz")
            assert ready.status_code == 503 and time.monotonic() - started < 3.0
            assert ready.get_json()["checks"]["remote"] is False
            assert_nothing_internal(json.dumps(ready.get_json()), endpoint, tmp_path)
        finally:
            os.kill(server.pid, signal.SIGCONT)


# --------------------------------------------------------------------------------------------- Lambda


@pytest.mark.skipif(not lambda_events(), reason=f"official Lambda events not found at {EVENTS} (../shared absent)")
@pytest.mark.parametrize("name", [p.name for p in lambda_events()] or ["none"])
def test_the_lambda_handler_answers_every_official_event_kind(project: Path, name: str) -> None:
    handler = make_handler(create_app(config(project)))
    event = json.loads((EVENTS / name).read_text())
    answer = handler(adapt(event, f"/v1/products/{OTHER}/price", {"points": "9", "date": "2011-11-15",
                                                                  "country": "United Kingdom"}), None)
    assert answer["statusCode"] == 200, answer
    body = json.loads(answer["body"])
    assert body["stockcode"] == OTHER and len(body["curve"]) == 9
    bad = handler(adapt(event, f"/v1/products/{OTHER}/price", {"points": "100000"}), None)
    assert bad["statusCode"] == 400
    headers = bad.get("headers") or {k: v[-1] for k, v in (bad.get("multiValueHeaders") or {}).items()}
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/problem+json"


class RuntimeAPI(BaseHTTPRequestHandler):
    """The Lambda Runtime API, as much of it as awslambdaric uses: one invocation, then the posted response."""

    event: bytes = b""
    responses: list[bytes] = []
    served = threading.Event()

    def do_GET(self) -> None:  # noqa: N802
        if self.path.endswith("/invocation/next") and not self.served.is_set():
            self.served.set()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:0:function:pt")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(self.event)
        else:  # no second invocation: hold the poller until the test ends
            time.sleep(30)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).responses.append(self.path.encode() + b" " + body)
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_real_runtime_interface_client_posts_the_response(project: Path) -> None:
    event = {"version": "2.0", "routeKey": "$default", "rawPath": f"/v1/products/{OTHER}/price",
             "rawQueryString": "points=5&date=2011-11-15", "headers": {"host": "x.lambda-url.eu-west-1.on.aws"},
             "requestContext": {"http": {"method": "GET", "path": f"/v1/products/{OTHER}/price",
                                         "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"}},
             "isBase64Encoded": False}
    RuntimeAPI.event = json.dumps(event).encode()
    RuntimeAPI.responses = []
    RuntimeAPI.served = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), RuntimeAPI)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(project),
           "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
           "PRICETRAIL_REGISTRY_DIR": str(project / "registry"), "PRICETRAIL_STOCKCODES": ",".join(CODES),
           "PRICETRAIL_CACHE_DIRS": str(dvc_cache_dir(project))}
    process = subprocess.Popen([sys.executable, "-m", "awslambdaric", "serve.lambda_handler.handler"],
                               cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not RuntimeAPI.responses and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode(errors="replace")
        server.shutdown()
    assert RuntimeAPI.responses, output[-3000:]
    path, _, body = RuntimeAPI.responses[0].partition(b" ")
    assert path == b"/2018-06-01/runtime/invocation/req-1/response", (path, output[-2000:])
    answer = json.loads(body)
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"])["stockcode"] == OTHER


# --------------------------------------------------------------------------------------------- the image recipe

FORBIDDEN = ("dvc", "prefect", "optuna", "evidently", "shap", "dask", "torch", "sklearn", "skops", "scipy", "pyarrow")


def test_the_image_install_steps_give_a_working_handler_without_the_pipeline_stack(project: Path,
                                                                                   tmp_path: Path) -> None:
    """serve/image/install.sh (the Dockerfile's RUN step) into a fresh venv; then the handler prices a product."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    started = time.perf_counter()
    installed = subprocess.run(["sh", str(PROJECT_ROOT / "serve" / "image" / "install.sh"), str(python),
                                str(PROJECT_ROOT)], capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    install_seconds = time.perf_counter() - started
    checked = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # every installed requirement is met
    task = tmp_path / "task"  # /var/task: empty once the image's install step has run (serve is installed)
    task.mkdir()
    event = adapt(json.loads(json.dumps({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "headers": {"host": "x"},
        "requestContext": {"http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4",
                                    "userAgent": "t"}}, "isBase64Encoded": False})),
        f"/v1/products/{OTHER}/price", {"points": "5", "date": "2011-11-15"})
    script = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "import serve.lambda_handler as h\n"
        "seconds = time.perf_counter() - t\n"
        f"answer = h.handler(json.loads({json.dumps(json.dumps(event))}), None)\n"
        f"leaked = sorted(m for m in {FORBIDDEN!r} if m in sys.modules)\n"
        "print(json.dumps({'status': answer['statusCode'], 'body': answer['body'], 'leaked': leaked,"
        " 'import_seconds': seconds, 'handler_file': h.__file__}))\n")
    env = {"PATH": str(venv / "bin"), "HOME": str(tmp_path), "PRICETRAIL_REGISTRY_DIR": str(project / "registry"),
           "PRICETRAIL_STOCKCODES": ",".join(CODES), "PRICETRAIL_CACHE_DIRS": str(dvc_cache_dir(project))}
    result = subprocess.run([str(python), "-c", script], cwd=task, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, report
    assert json.loads(report["body"])["stockcode"] == OTHER
    assert report["leaked"] == [], f"the serving import path pulled in {report['leaked']}"
    assert report["handler_file"].startswith(str(venv)), report  # the installed package, not a source folder
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for heavy in ("torch", "sklearn", "skops", "scipy", "pyarrow"):
        assert not (Path(site) / heavy).exists(), f"{heavy} is installed in the image"
    size = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    sys.stderr.write(f"image venv: installed in {install_seconds:.0f} s, {size / 2**20:.0f} MiB, handler import "
                     f"{report['import_seconds']:.2f} s\n")
