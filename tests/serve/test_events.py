"""Lambda events: every official HTTP kind reaches the app, a named HTTP API stage is taken off the path, warm-up
pings are answered, and any other event is refused with a plain JSON error (never a stack trace)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from serve.events import event_kind, make_handler, without_stage

SHARED = Path(os.environ.get("PRICETRAIL_SHARED", Path(__file__).resolve().parents[3] / "shared"))
EVENTS = SHARED / "events" / "aws"
OFFICIAL = sorted(EVENTS.glob("*.json")) if EVENTS.is_dir() else []


def echo_app() -> Flask:
    app = Flask(__name__)

    @app.get("/v1/<path:rest>")
    def echo(rest: str) -> dict[str, Any]:
        return {"path": request.path, "query": request.args.to_dict(flat=False)}

    return app


def as_get(event: dict[str, Any], path: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["body"], event["isBase64Encoded"] = None, False
    if "rawPath" in event:
        event["rawPath"] = path
        event["rawQueryString"] = "points=5"
        event["requestContext"]["http"]["method"] = "GET"
        event["queryStringParameters"] = {"points": "5"}
    else:
        event["path"], event["httpMethod"] = path, "GET"
        if "multiValueQueryStringParameters" in event:
            event["multiValueQueryStringParameters"] = {"points": ["5"]}
        if "queryStringParameters" in event:
            event["queryStringParameters"] = {"points": "5"}
    for headers in ("headers", "multiValueHeaders"):
        for name in list(event.get(headers) or {}):
            if name.lower() in ("content-length", "content-type"):
                del event[headers][name]
    return event


@pytest.mark.skipif(not OFFICIAL, reason=f"official Lambda events not found at {EVENTS} (../shared absent)")
@pytest.mark.parametrize("name", [path.name for path in OFFICIAL] or ["none"])
def test_every_official_event_kind_reaches_the_route(name: str) -> None:
    event = as_get(json.loads((EVENTS / name).read_text()), "/v1/products/85123A/price")
    assert event_kind(event) == "http"
    answer = make_handler(echo_app())(event, None)
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"]) == {"path": "/v1/products/85123A/price", "query": {"points": ["5"]}}


@pytest.mark.skipif(not OFFICIAL, reason=f"official Lambda events not found at {EVENTS} (../shared absent)")
def test_an_http_api_on_a_named_stage_is_routed_without_the_stage() -> None:
    event = as_get(json.loads((EVENTS / "apiGatewayProxyV2Event_GET.json").read_text()),
                   "/prod/v1/products/85123A/price")
    event["requestContext"]["stage"] = "prod"
    answer = make_handler(echo_app())(event, None)
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"])["path"] == "/v1/products/85123A/price"


def test_the_stage_is_taken_off_only_where_it_is_the_first_segment() -> None:
    base = {"version": "2.0", "requestContext": {"stage": "prod", "http": {}}}
    assert without_stage({**base, "rawPath": "/prod"})["rawPath"] == "/"
    assert without_stage({**base, "rawPath": "/production/v1/x"})["rawPath"] == "/production/v1/x"
    assert without_stage({**base, "requestContext": {"stage": "$default"}, "rawPath": "/prod/v1"})["rawPath"] == (
        "/prod/v1")


@pytest.mark.parametrize("event", [{"warm-up": True}, {"source": "aws.events", "detail-type": "Scheduled Event",
                                                       "detail": {}}])
def test_a_warm_up_ping_is_answered_without_the_app(event: dict[str, Any]) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        raise AssertionError("the app must not run for a ping")

    assert make_handler(app)(event, None) == {"status": "warm"}


@pytest.mark.parametrize("event", [{"key1": "value1", "key2": "value2", "key3": "value3"}, {"Records": []},
                                   "ping", None, [1, 2], {"requestContext": {}}])
def test_any_other_event_is_a_plain_json_error(event: Any) -> None:
    answer = make_handler(echo_app())(event, None)
    assert answer["error"] == "unsupported-event"
    assert "HTTP" in answer["detail"] and "Traceback" not in json.dumps(answer)
