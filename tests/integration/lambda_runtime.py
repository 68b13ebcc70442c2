"""The AWS Lambda Runtime API on loopback, as much of it as awslambdaric uses, for driving the real runtime
interface client (``python -m awslambdaric serve.lambda_handler.handler``) with many invocations in a row."""

from __future__ import annotations

import copy
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class LambdaRuntime:
    """A running handler process and the Runtime API it polls: ``invoke(event)`` returns the handler's answer."""

    def __init__(self, environment: dict[str, str], cwd: Path) -> None:
        self._events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._answers: dict[str, tuple[str, bytes]] = {}
        self._answered = threading.Condition()
        self._ids = itertools.count(1)
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - /runtime/invocation/next: the next event, when there is one
                while True:
                    try:
                        request_id, body = runtime._events.get(timeout=1)
                        break
                    except queue.Empty:
                        if runtime.closed:
                            return
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:0:function:pt")
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - /runtime/invocation/<id>/response or /error
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = self.path.rstrip("/").split("/")
                with runtime._answered:
                    runtime._answers[parts[-2]] = (parts[-1], body)
                    runtime._answered.notify_all()
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.closed = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        env = {"PATH": str(Path(sys.executable).parent), "HOME": str(cwd), **environment,
               "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self._server.server_address[1]}"}
        self.process = subprocess.Popen([sys.executable, "-m", "awslambdaric", "serve.lambda_handler.handler"],
                                        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def invoke(self, event: Any, timeout: float = 120) -> dict[str, Any]:
        request_id = f"req-{next(self._ids)}"
        self._events.put((request_id, json.dumps(event).encode()))
        deadline = time.monotonic() + timeout
        with self._answered:
            while request_id not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"no answer to {request_id}:\n{self.output()}")
                self._answered.wait(min(left, 1.0))
            kind, body = self._answers.pop(request_id)
        assert kind == "response", f"{request_id}: the runtime reported an {kind}: {body[:2000]!r}"
        return json.loads(body)

    def output(self) -> str:
        self.close()
        return self.process.communicate(timeout=10)[0].decode(errors="replace")[-3000:]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.process.terminate()
            self._server.shutdown()

    def __enter__(self) -> LambdaRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self.process.stdout is not None:
            self.process.communicate(timeout=10)


# ------------------------------------------------------------------ the official sample events (../shared)

EVENTS = Path(os.environ.get("PRICETRAIL_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "events" / "aws"


def lambda_events() -> list[Path]:
    return sorted(EVENTS.glob("*.json")) if EVENTS.is_dir() else []


def adapt(event: dict[str, Any], path: str, query: dict[str, str]) -> dict[str, Any]:
    """An official event with our route, GET and our query string in every representation the event uses."""
    event = copy.deepcopy(event)
    event["body"] = None if "body" in event else event.get("body")
    event["isBase64Encoded"] = False
    raw = "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in query.items())
    if "rawPath" in event:  # HTTP API 2.0, function URL
        event["rawPath"] = path
        event["rawQueryString"] = raw
        event["requestContext"]["http"]["method"] = "GET"
        event["requestContext"]["http"]["path"] = path
        event.pop("queryStringParameters", None)
        if query:
            event["queryStringParameters"] = dict(query)
    else:  # REST 1.0, ALB
        event["path"] = path
        event["httpMethod"] = "GET"
        if "multiValueQueryStringParameters" in event:
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
        if "queryStringParameters" in event:
            event["queryStringParameters"] = dict(query) or None
    for headers in ("headers", "multiValueHeaders"):
        for name in list(event.get(headers) or {}):
            if name.lower() in ("content-length", "content-type"):
                del event[headers][name]
    return event
