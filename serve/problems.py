"""RFC 9457 problem details: every error is ``application/problem+json`` naming what was wrong."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request


class Problem(Exception):
    def __init__(self, status: int, slug: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.extra = extra


def problem_response(problem: Problem) -> Response:
    body = {"type": f"https://pricetrail.invalid/problems/{problem.slug}", "title": problem.title,
            "status": problem.status, "detail": problem.detail, "instance": request.path[:200], **problem.extra}
    response = Response(json.dumps(body), status=problem.status, mimetype="application/problem+json")
    if problem.status == 503:
        response.headers["Retry-After"] = "30"
    return response
