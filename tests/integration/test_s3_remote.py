"""The DVC cache goes to S3 (dvc-s3) and comes back: a real S3-compatible server (moto) on loopback.

Follows the README's S3 section: `dvc remote add`, `endpointurl`, credentials with `--local` (kept out of git).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from smoke_project import dvc, make_copy

from pricetrail.hashing import file_md5

pytestmark = [pytest.mark.integration]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"moto_server did not start on 127.0.0.1:{port}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_push_to_s3_and_pull_back(s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="pricetrail")
    root = make_copy(tmp_path / "project", profile="smoke")
    dvc("repro", "ingest", cwd=root)
    interim = root / "data" / "interim" / "transactions.parquet"
    before = file_md5(interim)

    dvc("remote", "add", "-d", "s3", "s3://pricetrail/cache", cwd=root)
    dvc("remote", "modify", "s3", "endpointurl", s3_endpoint, cwd=root)
    dvc("remote", "modify", "--local", "s3", "access_key_id", "testing", cwd=root)
    dvc("remote", "modify", "--local", "s3", "secret_access_key", "testing", cwd=root)
    assert "testing" not in (root / ".dvc" / "config").read_text()  # credentials stay out of git
    dvc("push", cwd=root)

    shutil.rmtree(root / ".dvc" / "cache")
    interim.unlink()
    dvc("pull", "ingest", cwd=root)
    assert file_md5(interim) == before
