"""Lambda events as the router's app meets them: HTTP events normalised, warm-up pings answered, others refused.

- An HTTP API's named stage is taken off the path (``rawPath`` is ``/prod/v1/...`` on a stage called ``prod``;
  the routes are ``/v1/...``).
- A warm-up ping (an EventBridge schedule, or ``{"warm-up": true}``) is answered without touching the app.
- Any other event (the console's test event, a queue message) gets a plain JSON error, never a stack trace.

Behind an ALB *without* multi-value headers, the ALB itself passes only one value of a repeated query parameter,
so the router cannot see the repetition and refuse it; enable multi-value headers on the target group to get the
400 that every other event kind gives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from apig_wsgi import make_lambda_handler

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], dict[str, Any]]


def event_kind(event: object) -> str:
    """``http`` (API Gateway REST or HTTP API, ALB, function URL), ``warm-up``, or ``unsupported``."""
    if not isinstance(event, Mapping):
        return "unsupported"
    if event.get("warm-up") is True or (event.get("source") == "aws.events"
                                        and event.get("detail-type") == "Scheduled Event"):
        return "warm-up"
    context = event.get("requestContext")
    if isinstance(context, Mapping) and (("rawPath" in event and "http" in context) or "elb" in context
                                         or ("path" in event and "httpMethod" in event)):
        return "http"
    return "unsupported"


def without_stage(event: Mapping[str, Any]) -> dict[str, Any]:
    """An HTTP API (2.0) event on a named stage with the stage taken off ``rawPath`` (API Gateway keeps it there,
    unlike REST's ``path``); other events unchanged."""
    stage = (event.get("requestContext") or {}).get("stage")
    path = event.get("rawPath")
    if event.get("version") != "2.0" or not isinstance(stage, str) or stage in ("", "$default") or not isinstance(
            path, str):
        return dict(event)
    prefix = f"/{stage}"
    if path == prefix or path.startswith(prefix + "/"):
        return {**event, "rawPath": path[len(prefix):] or "/"}
    return dict(event)


def make_handler(app: Any) -> Handler:
    adapted = make_lambda_handler(app, binary_support=False)

    def handler(event: Any, context: Any) -> dict[str, Any]:
        kind = event_kind(event)
        if kind == "http":
            return adapted(without_stage(event), context)
        if kind == "warm-up":
            return {"status": "warm"}
        keys = sorted(str(key) for key in event)[:10] if isinstance(event, Mapping) else type(event).__name__
        log.warning("refused a non-HTTP event (keys %s)", keys)
        return {"error": "unsupported-event",
                "detail": "this function answers HTTP requests (API Gateway REST or HTTP API, an ALB, a function "
                          "URL) and warm-up pings ({\"warm-up\": true} or an EventBridge schedule); the event "
                          f"received is none of them (keys: {keys})"}

    return handler
