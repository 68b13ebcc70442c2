"""The registry records a push publishes are where the router looks for them."""

from __future__ import annotations

from pathlib import Path

from pricetrail.registry import publish
from pricetrail.serving import remote_registry
from pricetrail.serving.config import S3Settings
from pricetrail.serving.s3 import S3Remote


def test_the_router_reads_the_keys_the_publisher_writes() -> None:
    assert remote_registry.REGISTRY_PREFIX == publish.REGISTRY_PREFIX
    followed = remote_registry.RemoteRegistry(S3Remote(S3Settings(url="s3://bucket/cache", cache_dir=Path("/tmp"))),
                                              mirror=Path("/tmp/m"), refresh_seconds=30)
    assert followed._key("85123A", "served.json") == "cache/" + publish.record_key("85123A", "served.json")


def test_a_product_is_asked_at_most_once_per_refresh_interval(tmp_path: Path) -> None:
    asked: list[str] = []
    followed = remote_registry.RemoteRegistry(S3Remote(S3Settings(url="s3://bucket/cache", cache_dir=tmp_path)),
                                              mirror=tmp_path / "m", refresh_seconds=3600)
    followed._sync = asked.append  # type: ignore[method-assign]
    for _ in range(5):
        followed.refresh("85123A")
    followed.refresh("22423")
    assert asked == ["85123A", "22423"]


def test_an_unreachable_remote_leaves_the_mirror_and_raises_nothing(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = S3Settings(url="s3://bucket/cache", cache_dir=tmp_path, endpoint_url=f"http://127.0.0.1:{port}",
                          region="us-east-1", deadline_seconds=2.0)
    followed = remote_registry.RemoteRegistry(S3Remote(settings), mirror=tmp_path / "m", refresh_seconds=0)
    followed.refresh("85123A")  # logged, not raised: the router keeps serving what it has
    assert not (tmp_path / "m" / "85123A").exists()
