"""The Flask app factory: JSON endpoints over the model router, problem+json errors, the OpenAPI document.

``create_app(config)`` takes a :class:`pricetrail.serving.config.ServeConfig`; waitress (``pricetrail serve``)
and the Lambda handler (``serve.lambda_handler``) wrap the same app.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from pricetrail.registry.artifacts import ArtifactSource, LocalCache
from pricetrail.serving.config import ServeConfig
from pricetrail.serving.loading import warm_up
from pricetrail.serving.remote_registry import RemoteRegistry
from pricetrail.serving.s3 import S3Remote
from serve.api import api
from serve.problems import Problem, problem_response
from serve.router import ModelRouter

log = logging.getLogger(__name__)

OPENAPI = Path(__file__).with_name("openapi.json")
READY_DEADLINE_SECONDS = 1.5


def sources_of(config: ServeConfig) -> list[ArtifactSource]:
    """Local DVC caches first (cheap), then the DVC remote on S3."""
    sources: list[ArtifactSource] = [LocalCache(directory) for directory in config.cache_dirs]
    if config.s3 is not None:
        sources.append(S3Remote(config.s3))
    return sources


def create_app(config: ServeConfig, *, router: ModelRouter | None = None, warm: bool = True) -> Flask:
    if warm:
        warm_up()
    app = Flask(__name__)
    app.config["SERVE"] = config
    # Only GETs exist; werkzeug refuses larger bodies with 413 before anything reads them.
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    sources = sources_of(config)
    app.extensions["pricetrail.sources"] = sources
    registry_dir, refresh = config.registry_dir, None
    remote = next((source for source in sources if isinstance(source, S3Remote)), None)
    if remote is not None and config.registry_refresh_seconds > 0:
        # Decisions reach this router from the remote (pricetrail push / promote / rollback publish them); the
        # baked-in registry seeds the mirror until the remote answers.
        followed = RemoteRegistry(remote, mirror=remote.settings.cache_dir / "registry",
                                  refresh_seconds=config.registry_refresh_seconds,
                                  deadline_seconds=min(READY_DEADLINE_SECONDS, remote.settings.deadline_seconds))
        followed.seed(config.registry_dir, config.stockcodes)
        registry_dir, refresh = followed.mirror, followed.refresh
    app.extensions["pricetrail.router"] = router or ModelRouter(
        registry_dir, sources, max_models=config.max_models, max_bytes=int(config.max_memory_mb * 2**20),
        failure_retry_seconds=config.failure_retry_seconds, refresh=refresh)
    app.extensions["pricetrail.openapi"] = json.loads(OPENAPI.read_text(encoding="utf-8"))
    app.register_blueprint(api)

    @app.before_request
    def refuse_bodies() -> Response | None:
        # No endpoint takes a body: one on a GET is a client mistake (or smuggling), named rather than ignored.
        if (request.content_length or 0) > 0 or "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return problem_response(Problem(400, "request-body-not-allowed", "Request body not allowed",
                                            f"{request.method} {request.path} takes no request body; send the "
                                            "inputs as query parameters"))
        return None

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, Any], int]:
        # Named by role, never by path or URL (a public answer); where each one is goes to the log.
        checks = {"registry": current_app.extensions["pricetrail.router"].registry_dir.is_dir()}
        caches = [source for source in sources if isinstance(source, LocalCache)]
        for index, source in enumerate(caches, start=1):
            checks["local_cache" if len(caches) == 1 else f"local_cache_{index}"] = source.directory.is_dir()
        for source in sources:
            if isinstance(source, S3Remote):
                # Within Lambda's default 3 s timeout, whatever the remote does.
                checks["remote"] = source.reachable(deadline=min(READY_DEADLINE_SECONDS,
                                                                 source.settings.deadline_seconds))
        if not all(checks.values()):
            log.warning("readyz: not ready: %s; registry %s, sources %s", checks, config.registry_dir,
                        [source.description for source in sources])
        ready = all(checks.values())
        return {"ready": ready, "checks": checks}, 200 if ready else 503

    @app.get("/openapi.json")
    def openapi() -> dict[str, Any]:
        return current_app.extensions["pricetrail.openapi"]

    @app.errorhandler(Problem)
    def on_problem(error: Problem) -> Response:
        if error.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, error.detail)
        return problem_response(error)

    @app.errorhandler(HTTPException)
    def on_http_error(error: HTTPException) -> Response:
        slug = {404: "not-found", 405: "method-not-allowed", 413: "request-too-large"}.get(error.code or 500,
                                                                                         "http-error")
        detail = error.description or ""
        if error.code == 404:
            detail = f"no endpoint at {request.path[:200]!r}; see /openapi.json"
        return problem_response(Problem(error.code or 500, slug, error.name, detail))

    return app
