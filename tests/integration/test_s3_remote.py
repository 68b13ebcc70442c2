"""The DVC remote on S3 end to end, against a real S3-compatible server (moto) on loopback.

moto runs with IAM authentication on (the first three requests create a user, its key and its policy), behind a
small TCP proxy the tests can take down mid-transfer. Follows the README's S3 section: `pricetrail remote add`
with `--endpoint-url`, credentials from the environment, `pricetrail push` / `pull`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from lambda_runtime import LambdaRuntime, adapt, lambda_events

from pricetrail.project.copies import clone_project, commit, run, set_params
from pricetrail.registry.artifacts import object_relpath
from pricetrail.registry.remote import registry_objects
from pricetrail.serving.config import S3Settings, ServeConfig
from serve.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "pricetrail-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or (process is not None and process.poll() is not None):
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.2)


class Proxy:
    """A TCP proxy on loopback in front of the S3 server: `stop()` drops every connection, as a server that dies
    would; `start()` brings the same address back. ``delay`` slows each forwarded chunk, so a push lasts long
    enough to be interrupted. While ``stalled`` is set, connections are accepted and nothing is forwarded: a
    server that accepts and never answers."""

    def __init__(self, upstream: int, delay: float = 0.0) -> None:
        self.upstream, self.delay, self.port = upstream, delay, free_port()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.stalled = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self.lock:
            if self.listener is not None:
                self.listener.close()
                self.listener = None
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
                while self.stalled.is_set():
                    time.sleep(0.05)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class S3Server:
    endpoint: str  # through the proxy
    proxy: Proxy
    credentials: dict[str, str]

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.proxy.upstream}", region_name="us-east-1",
                            aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"])

    def keys(self, prefix: str) -> set[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    import boto3

    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}  # then every request must carry a valid key
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server)
        iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="pricetrail-ci")
        key = iam.create_access_key(UserName="pricetrail-ci")["AccessKey"]
        iam.put_user_policy(UserName="pricetrail-ci", PolicyName="everything", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        credentials = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        proxy = Proxy(port)
        proxy.start()
        s3 = S3Server(endpoint=f"http://127.0.0.1:{proxy.port}", proxy=proxy, credentials=credentials)
        s3.client().create_bucket(Bucket=BUCKET)
        yield s3
        proxy.stop()
    finally:
        server.terminate()
        server.wait(timeout=10)


def pricetrail_env(*args: str, cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "pricetrail.cli", *args], cwd=cwd, env=full, capture_output=True,
                            text=True, timeout=900, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"pricetrail {' '.join(args)} exited {result.returncode}\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


def dvc_env(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.fixture(scope="module")
def pushed(s3: S3Server, smoke_week1, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Week 1 of the smoke run with the S3 remote as its default, pushed (outputs and run-cache), committed."""
    root = clone_project(smoke_week1.root, tmp_path_factory.mktemp("s3") / "project")
    pricetrail_env("remote", "add", "s3", f"s3://{BUCKET}/cache", "--endpoint-url", s3.endpoint, cwd=root,
                   env=s3.credentials)
    assert s3.credentials["AWS_SECRET_ACCESS_KEY"] not in (root / ".dvc" / "config").read_text()
    commit(root, "S3 remote")
    result = pricetrail_env("push", cwd=root, env=s3.credentials)
    files = int(re.search(r"^(\d+) files pushed to DVC remote 's3'", result.stdout, re.M).group(1))
    assert files > 0, result.stdout
    return root


def test_a_push_holds_every_output_and_the_run_cache(s3: S3Server, pushed: Path) -> None:
    objects = s3.keys("cache/")
    assert any(key.startswith("cache/files/md5/") for key in objects)
    assert any(key.startswith("cache/runs/") for key in objects), "the run-cache was not pushed"
    cache = pushed / ".dvc" / "cache" / "files" / "md5"
    wanted = set(registry_objects(pushed)[0])  # every version the registry can serve, by hash
    in_git = set(run(["git", "ls-files"], pushed).stdout.splitlines())  # metrics with cache: false
    for entry in yaml.safe_load((pushed / "dvc.lock").read_text())["stages"].values():
        for out in entry.get("outs", []):
            if out["path"] not in in_git:
                wanted.add(out["md5"])
                if out["md5"].endswith(".dir"):
                    listing = json.loads((cache / out["md5"][:2] / out["md5"][2:]).read_text())
                    wanted |= {item["md5"] for item in listing}
    missing = sorted(md5 for md5 in wanted if f"cache/files/md5/{md5[:2]}/{md5[2:]}" not in objects)
    assert len(wanted) > 10 and not missing, missing[:5]
    again = pricetrail_env("push", cwd=pushed, env=s3.credentials)
    # DVC sends the run-cache's entries (small YAML records) on every push; data objects only when missing.
    runs = {key for key in objects if key.startswith("cache/runs/")}
    resent = re.search(r"^(\d+) files pushed", again.stdout, re.M)
    assert resent is None or int(resent.group(1)) <= len(runs), again.stdout
    assert s3.keys("cache/") == objects


def fresh_clone(source: Path, target: Path) -> Path:
    run(["git", "clone", "-q", str(source), str(target)], target.parent)
    return target


def test_a_fresh_clone_pulls_and_is_up_to_date(s3: S3Server, pushed: Path, tmp_path: Path) -> None:
    clone = fresh_clone(pushed, tmp_path / "clone")
    assert not (clone / ".dvc" / "cache").exists() and not (clone / "data" / "features").exists()
    pricetrail_env("pull", cwd=clone, env=s3.credentials)
    status = dvc_env("status", cwd=clone, env=s3.credentials)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout + status.stderr
    code = next((clone / "registry").glob("*/served.json")).parent.name
    served = json.loads((clone / "registry" / code / "served.json").read_text())
    model = served["artifacts"]["model.pt"]
    assert (clone / ".dvc" / "cache" / "files" / "md5" / model["md5"][:2] / model["md5"][2:]).is_file()


def test_repro_pull_in_a_fresh_clone_runs_no_stage_command(s3: S3Server, pushed: Path, tmp_path: Path) -> None:
    clone = fresh_clone(pushed, tmp_path / "clone")
    result = dvc_env("repro", "--pull", cwd=clone, env=s3.credentials)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Running stage" not in result.stdout, result.stdout
    status = dvc_env("status", cwd=clone, env=s3.credentials)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout


def failing_push(root: Path, env: dict[str, str], *args: str) -> str:
    result = pricetrail_env("push", *args, cwd=root, env=env, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "files pushed" not in result.stdout, result.stdout
    return result.stderr


def test_an_unreachable_endpoint(s3: S3Server, pushed: Path) -> None:
    closed = free_port()
    pricetrail_env("remote", "add", "down", f"s3://{BUCKET}/down", "--endpoint-url", f"http://127.0.0.1:{closed}",
                   "--no-default", cwd=pushed, env=s3.credentials)
    message = failing_push(pushed, s3.credentials, "--remote", "down")
    assert f"DVC remote 'down' (s3://{BUCKET}/down at http://127.0.0.1:{closed})" in message, message
    assert "the endpoint is unreachable" in message, message


def test_wrong_credentials(s3: S3Server, pushed: Path) -> None:
    wrong = {"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0", "AWS_SECRET_ACCESS_KEY": "wrong"}
    message = failing_push(pushed, wrong)
    assert "DVC remote 's3'" in message and "refused the credentials (403 Forbidden)" in message, message


def test_a_missing_bucket(s3: S3Server, pushed: Path) -> None:
    pricetrail_env("remote", "add", "nobucket", "s3://no-such-bucket/cache", "--endpoint-url", s3.endpoint,
                   "--no-default", cwd=pushed, env=s3.credentials)
    message = failing_push(pushed, s3.credentials, "--remote", "nobucket")
    assert "bucket no-such-bucket does not exist" in message, message


def test_an_interrupted_push_then_a_retry_that_sends_only_what_is_missing(s3: S3Server, pushed: Path) -> None:
    slow = Proxy(s3.proxy.upstream, delay=0.05)  # ~20 objects a second: the push lasts long enough to cut
    slow.start()
    try:
        pricetrail_env("remote", "add", "cut", f"s3://{BUCKET}/cut", "--endpoint-url", f"http://127.0.0.1:{slow.port}",
                       "--no-default", cwd=pushed, env=s3.credentials)
        # One attempt per request: botocore's retries of a refused connection, under s3fs' own, took ~100 s
        # before the push gave up (a user's push keeps the defaults).
        full = {**os.environ, **s3.credentials, "AWS_MAX_ATTEMPTS": "1"}
        process = subprocess.Popen([sys.executable, "-m", "pricetrail.cli", "push", "--remote", "cut"], cwd=pushed,
                                   env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(s3.keys("cut/")) < 5:
            assert process.poll() is None, "the push ended before it could be interrupted"
            assert time.monotonic() < deadline, "nothing arrived on the remote"
            time.sleep(0.1)
        slow.stop()  # the server goes away mid-push
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 2, stdout + stderr
        assert "DVC remote 'cut'" in stderr and "the endpoint is unreachable" in stderr, stderr
        assert "files pushed" not in stdout, stdout
        before = s3.keys("cut/")
        slow.delay = 0.0
        slow.start()  # back on the same address
        retry = pricetrail_env("push", "--remote", "cut", cwd=pushed, env=s3.credentials)
        sent = int(re.search(r"^(\d+) files pushed", retry.stdout, re.M).group(1))
        after = s3.keys("cut/")
        runs = {key for key in after if key.startswith("cut/runs/")}
        # the retry sent what was missing (and the run-cache records DVC always sends), not the whole cache again
        assert before < after and sent <= len(after - before) + len(runs), (sent, len(before), len(after))
        # the same objects as the complete push to the default remote
        assert {key.removeprefix("cut/") for key in after} == {key.removeprefix("cache/") for key in s3.keys("cache/")}
    finally:
        slow.stop()


def test_the_router_serves_a_price_from_the_pushed_remote_with_an_empty_cache(s3: S3Server, pushed: Path,
                                                                              tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clone = fresh_clone(pushed, tmp_path / "clone")  # git only: the registry's pointers, no DVC cache
    assert not (clone / ".dvc" / "cache").exists()
    for variable, value in s3.credentials.items():
        monkeypatch.setenv(variable, value)
    served = {path.parent.name: json.loads(path.read_text()) for path in (clone / "registry").glob("*/served.json")}
    assert served, "the smoke run promoted nothing"
    objects = tmp_path / "objects"
    settings = S3Settings(url=f"s3://{BUCKET}/cache", cache_dir=objects, endpoint_url=s3.endpoint,
                          region="us-east-1")
    app = create_app(ServeConfig(registry_dir=clone / "registry", stockcodes=tuple(sorted(served)), s3=settings))
    client = app.test_client()
    for code, record in served.items():
        response = client.get(f"/v1/products/{code}/price?date=2011-11-15")
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["model_version"] == record["version"] and body["price"] > 0, body
        # fetched by content hash, verified, kept under the writable directory
        assert (objects / object_relpath(record["artifacts"]["serving.json"]["md5"])).is_file()


def test_a_user_input_tracked_with_dvc_add_reaches_a_fresh_clone_through_the_remote(s3: S3Server, pushed: Path,
                                                                                     tmp_path: Path) -> None:
    root = clone_project(pushed, tmp_path / "project")
    pricetrail_env("remote", "add", "s3", f"s3://{BUCKET}/tracked", "--endpoint-url", s3.endpoint, cwd=root,
                   env=s3.credentials)
    # The user's own export: the same sales, written by another tool (other bytes, so its own object on the remote).
    own = root / "data" / "raw" / "shop" / "sales.parquet"
    own.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(root / "data" / "raw" / "synthetic" / "transactions.parquet"), own,
                   compression="zstd")
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("input: data/raw/synthetic/transactions.parquet",
                                                     "input: data/raw/shop/sales.parquet"))
    untracked = pricetrail_env("push", cwd=root, env=s3.credentials)
    assert "`dvc add data/raw/shop/sales.parquet`" in untracked.stderr, untracked.stderr
    added = dvc_env("add", "data/raw/shop/sales.parquet", cwd=root, env=s3.credentials)
    assert added.returncode == 0, added.stdout + added.stderr
    repro = dvc_env("repro", cwd=root, env=s3.credentials)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    assert "Running stage 'ingest'" in repro.stdout, repro.stdout  # its input changed path
    result = pricetrail_env("push", cwd=root, env=s3.credentials)
    assert "warning" not in result.stderr, result.stderr
    commit(root, "ingest the shop's own export, tracked by DVC")
    md5 = yaml.safe_load((root / "data" / "raw" / "shop" / "sales.parquet.dvc").read_text())["outs"][0]["md5"]
    assert f"tracked/files/md5/{md5[:2]}/{md5[2:]}" in s3.keys("tracked/")

    clone = fresh_clone(root, tmp_path / "clone")
    pricetrail_env("pull", cwd=clone, env=s3.credentials)
    assert (clone / "data" / "raw" / "shop" / "sales.parquet").read_bytes() == own.read_bytes()
    status = dvc_env("status", cwd=clone, env=s3.credentials)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout + status.stderr
    again = fresh_clone(root, tmp_path / "again")
    reproduced = dvc_env("repro", "--pull", cwd=again, env=s3.credentials)
    assert reproduced.returncode == 0, reproduced.stdout[-3000:] + reproduced.stderr[-3000:]
    assert "Running stage" not in reproduced.stdout, reproduced.stdout


# Publishes one product's records, SIGKILLing itself just before upload number argv[3] (0-based).
PUBLISH_KILLED_AT = """
import os, signal, sys
from pathlib import Path
from dvc.fs import FileSystem
from pricetrail.registry.publish import publish_records

root, code, step = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
calls = []
original = FileSystem.put_file

def put_file(self, *args, **kwargs):
    if len(calls) == step:
        os.kill(os.getpid(), signal.SIGKILL)
    calls.append(args)
    return original(self, *args, **kwargs)

FileSystem.put_file = put_file
publish_records(root, [code])
"""


def _version_served(handler: Any, code: str) -> str | None:
    answer = handler(event_for(code), None)
    assert answer["statusCode"] == 200, answer
    return json.loads(answer["body"])["model_version"]


def event_for(code: str) -> dict[str, Any]:
    """An HTTP API (2.0) event for the product's price."""
    return {"version": "2.0", "routeKey": "$default", "rawPath": f"/v1/products/{code}/price",
             "rawQueryString": "date=2011-11-15&points=5", "headers": {"host": "x"}, "isBase64Encoded": False,
             "requestContext": {"stage": "$default", "http": {"method": "GET", "path": f"/v1/products/{code}/price",
                                                               "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4",
                                                               "userAgent": "t"}}}


def _until(handler: Any, code: str, version: str, seconds: float) -> float:
    started = time.monotonic()
    while _version_served(handler, code) != version:
        assert time.monotonic() - started < seconds, f"{code} still not at {version} after {seconds} s"
        time.sleep(0.2)
    return time.monotonic() - started


def test_a_promotion_and_a_rollback_made_on_another_copy_reach_a_running_router_without_a_restart(
        s3: S3Server, pushed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    code = "22423"
    for variable, value in s3.credentials.items():
        monkeypatch.setenv(variable, value)
    first = json.loads((pushed / "registry" / code / "served.json").read_text())["version"]
    # The router as the image holds it: the registry baked in at build time, artifacts and decisions from S3.
    baked = tmp_path / "image" / "registry"
    shutil.copytree(pushed / "registry", baked)
    refresh, deadline = 1.0, 3.0
    # The real runtime interface client drives the image's handler, configured as the template configures it.
    runtime = LambdaRuntime({**s3.credentials, "PRICETRAIL_REGISTRY_DIR": str(baked),
                             "PRICETRAIL_STOCKCODES": f"{code},85123A", "PRICETRAIL_S3_URL": f"s3://{BUCKET}/cache",
                             "PRICETRAIL_S3_ENDPOINT_URL": s3.endpoint, "PRICETRAIL_S3_REGION": "us-east-1",
                             "PRICETRAIL_S3_CACHE_DIR": str(tmp_path / "lambda-tmp"),
                             "PRICETRAIL_S3_DEADLINE_SECONDS": str(deadline),
                             "PRICETRAIL_REGISTRY_REFRESH_SECONDS": str(refresh)}, cwd=tmp_path / "image")
    request.addfinalizer(runtime.close)

    def handler(event: Any, context: Any) -> dict[str, Any]:
        return runtime.invoke(event)

    assert _version_served(handler, code) == first
    assert f"cache/pricetrail-registry/{code}/served.json" in s3.keys("cache/pricetrail-registry/")

    operator = clone_project(pushed, tmp_path / "operator")  # an operator's machine: another copy of the project
    set_params(operator, {"tune_primary_model.n_trials": 1, "tune_primary_model.max_epochs": 6})
    repro = dvc_env("repro", f"assess_model_risk@{code}", cwd=operator, env=s3.credentials)
    assert repro.returncode == 0, repro.stdout[-2000:] + repro.stderr[-2000:]
    promoted = pricetrail_env("promote", "--stockcode", code, cwd=operator, env=s3.credentials)
    second = json.loads((operator / "registry" / code / "served.json").read_text())["version"]
    assert second != first, promoted.stdout
    # Its objects are not on the remote yet: the record is held back, so no router is told to serve it.
    assert "not published" in promoted.stderr, promoted.stderr
    time.sleep(refresh + 0.5)
    assert _version_served(handler, code) == first
    pricetrail_env("push", cwd=operator, env=s3.credentials)  # objects first, then the records
    assert _until(handler, code, second, refresh + 5) <= refresh + 5

    rolled = pricetrail_env("rollback", code, "--to", first, "--reason", "emergency", cwd=operator,
                            env=s3.credentials)
    assert "published the router records of 22423" in rolled.stdout, rolled.stdout + rolled.stderr
    seconds = _until(handler, code, first, refresh + 5)
    assert seconds <= refresh + 5
    # A damaged record on the remote is never installed: the router keeps serving the last good one.
    s3.client().put_object(Bucket=BUCKET, Key=f"cache/pricetrail-registry/{code}/served.json", Body=b"{not json")
    time.sleep(refresh + 0.5)
    assert _version_served(handler, code) == first

    # kill -9 at each step of a publish: each upload is one atomic PUT and served.json goes last, so until the last
    # PUT the router keeps the decision it had, and the next push completes the publish.
    pricetrail_env("push", cwd=operator, env=s3.credentials)  # the remote says `first` again, whole
    prefix = f"cache/pricetrail-registry/{code}/"
    before = {key: s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in s3.keys(prefix)}
    forward = pricetrail_env("rollback", code, "--to", second, "--reason", "forward again", cwd=operator,
                             env=s3.credentials)
    assert "published the router records of 22423" in forward.stdout, forward.stdout + forward.stderr
    puts = 4  # history.jsonl, state.json, the version's record, served.json
    for step in range(puts):
        for key in s3.keys(prefix):
            s3.client().delete_object(Bucket=BUCKET, Key=key)
        for key, body in before.items():
            s3.client().put_object(Bucket=BUCKET, Key=key, Body=body)
        killed = subprocess.run([sys.executable, "-c", PUBLISH_KILLED_AT, str(operator), code, str(step)],
                                env={**os.environ, **s3.credentials}, capture_output=True, text=True, timeout=300)
        assert killed.returncode == -9, (step, killed.stdout[-2000:], killed.stderr[-2000:])
        time.sleep(refresh + 0.5)
        assert _version_served(handler, code) == first, f"killed before upload {step + 1} of {puts}"
    # Two pushes at once (a weekly job's and an operator's on one machine): both succeed, the remote ends whole.
    racing = [subprocess.Popen([sys.executable, "-m", "pricetrail.cli", "push"], cwd=operator,
                               env={**os.environ, **s3.credentials}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(2)]
    for process in racing:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, out[-2000:] + err[-2000:]
    assert _until(handler, code, second, refresh + 5) <= refresh + 5

    # Every official event kind through the runtime interface client: the same answer, bad input a named 400.
    for path in lambda_events():
        sample = json.loads(path.read_text())
        answer = runtime.invoke(adapt(sample, f"/v1/products/{code}/price", {"points": "9", "date": "2011-11-15"}))
        assert answer["statusCode"] == 200, (path.name, answer)
        assert json.loads(answer["body"])["model_version"] == second, path.name
        bad = runtime.invoke(adapt(sample, f"/v1/products/{code}/price", {"points": "100000"}))
        assert bad["statusCode"] == 400 and "points" in bad["body"], (path.name, bad)
    # A stalled remote (accepts, never answers): a product not loaded yet is a 503 within the deadline, with
    # nothing internal in it; the loaded product keeps answering; the process lives on.
    s3.proxy.stalled.set()
    try:
        started = time.monotonic()
        stalled = runtime.invoke(event_for("85123A"))
        assert stalled["statusCode"] == 503, stalled
        assert time.monotonic() - started < deadline + 1.5 + 2.0  # the records' refresh, then the artifact's read
        assert s3.endpoint not in stalled["body"] and BUCKET not in stalled["body"], stalled["body"]
        assert _version_served(handler, code) == second
    finally:
        s3.proxy.stalled.clear()
    # Other events: a warm-up ping is answered, anything else refused in plain JSON (never a stack trace).
    assert runtime.invoke({"warm-up": True}) == {"status": "warm"}
    assert runtime.invoke({"key1": "value1"})["error"] == "unsupported-event"
    assert runtime.process.poll() is None  # one process served every invocation: no restart
