"""The DVC remote: what a user types is checked before DVC stores it, credentials stay out of git, and a failed
transfer is one line naming the remote and the cause."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pricetrail.registry.remote import Remote, RemoteError, add_s3_remote, cause, read_remote, transfer, untracked_input


def dvc_repo(root: Path) -> Path:
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    return root


def test_an_s3_remote_with_endpoint_region_and_credentials_only_in_config_local(tmp_path: Path) -> None:
    root = dvc_repo(tmp_path)
    environ = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
    remote = add_s3_remote(root, "s3", "s3://my-bucket/pricetrail/", endpoint_url="http://127.0.0.1:9000",
                           region="eu-west-1", credentials_from_env=True, environ=environ)
    assert remote == Remote("s3", "s3://my-bucket/pricetrail", "http://127.0.0.1:9000")
    committed = (root / ".dvc" / "config").read_text()
    assert "s3://my-bucket/pricetrail" in committed and "endpointurl = http://127.0.0.1:9000" in committed
    assert "remote = s3" in committed and "region = eu-west-1" in committed
    assert "AKIDEXAMPLE" not in committed and "s3cr3t-value" not in committed
    assert "s3cr3t-value" in (root / ".dvc" / "config.local").read_text()
    assert read_remote(root) == remote
    # what a cluster worker is given: every option but the credentials
    assert dict(read_remote(root).options) == {"endpointurl": "http://127.0.0.1:9000", "region": "eu-west-1"}
    ignored = subprocess.run(["git", "check-ignore", ".dvc/config.local"], cwd=root, capture_output=True)
    assert ignored.returncode == 0  # never committed


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "s3;rm", "url": "s3://bucket/x"}, "remote name 's3;rm' is not accepted"),
    ({"name": "s3", "url": "https://bucket/x"}, "S3 URL 'https://bucket/x' is not accepted"),
    ({"name": "s3", "url": "s3://B/x"}, "S3 URL 's3://B/x' is not accepted"),
    ({"name": "s3", "url": "s3://bucket/x", "endpoint_url": "127.0.0.1:9000"}, "endpoint URL '127.0.0.1:9000'"),
    ({"name": "s3", "url": "s3://bucket/x", "region": "Europe"}, "region 'Europe' is not accepted"),
    ({"name": "s3", "url": "s3://bucket/x", "credentials_from_env": True, "environ": {"AWS_ACCESS_KEY_ID": "a"}},
     "--credentials-from-env needs AWS_SECRET_ACCESS_KEY"),
])
def test_bad_remote_settings_are_refused_before_dvc_is_called(tmp_path: Path, kwargs: dict, message: str) -> None:
    calls: list[Sequence[str]] = []

    def runner(args: Sequence[str], root: Path) -> subprocess.CompletedProcess:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    with pytest.raises(RemoteError, match=message.replace("(", r"\(").replace(".", r"\.")):
        add_s3_remote(tmp_path, runner=runner, **kwargs)
    assert calls == []


def test_a_secret_already_in_the_committed_config_is_reported(tmp_path: Path) -> None:
    root = dvc_repo(tmp_path)
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "old", "s3://b-old/x"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "remote", "modify", "old", "secret_access_key", "oops"], cwd=root,
                   check=True)
    with pytest.raises(RemoteError, match=r"\.dvc/config \(committed to git\) holds secret_access_key"):
        add_s3_remote(root, "s3", "s3://bucket/x")


S3 = Remote("s3", "s3://pricetrail-test/cache", "http://127.0.0.1:9")


@pytest.mark.parametrize(("output", "expected"), [
    ("ERROR: failed to transfer 'b1' - The specified bucket does not exist: An error occurred (NoSuchBucket)",
     "bucket pricetrail-test does not exist"),
    ("ERROR: unexpected error - Forbidden: An error occurred (403) when calling the HeadObject operation",
     "refused the credentials (403 Forbidden)"),
    ("ERROR: unexpected error - Unable to locate credentials", "no credentials: set AWS_ACCESS_KEY_ID"),
    ('ERROR: unexpected error - Could not connect to the endpoint URL: "http://127.0.0.1:9/x"',
     "the endpoint is unreachable"),
    ("ERROR: something else entirely\n", "something else entirely"),
])
def test_dvc_errors_become_causes(output: str, expected: str) -> None:
    assert expected in cause(output, S3)


def fake(returncode: int, stdout: str, stderr: str = ""):
    seen: list[Sequence[str]] = []

    def runner(args: Sequence[str], root: Path) -> subprocess.CompletedProcess:
        seen.append(list(args))
        return subprocess.CompletedProcess(args, returncode, stdout, stderr)

    return runner, seen


@pytest.fixture
def listening() -> Iterator[int]:
    """A port that accepts connections (the endpoint probe only connects)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def configured(root: Path, port: int = 9) -> Path:
    (root / ".dvc").mkdir(parents=True, exist_ok=True)
    (root / ".dvc" / "config").write_text(
        "[core]\n    remote = s3\n['remote \"s3\"']\n    url = s3://pricetrail-test/cache\n"
        f"    endpointurl = http://127.0.0.1:{port}\n", encoding="utf-8")
    return root


def test_a_push_reports_what_dvc_confirmed(tmp_path: Path, listening: int) -> None:
    runner, seen = fake(0, "12 files pushed\n")
    result = transfer(configured(tmp_path, listening), "push", include_registry=False, runner=runner)
    assert result.files == 12 and result.remote == Remote("s3", S3.url, f"http://127.0.0.1:{listening}")
    assert seen == [["push", "--remote", "s3", "--run-cache"]]
    up_to_date = fake(0, "Everything is up to date.\n")[0]
    assert transfer(tmp_path, "push", include_registry=False, runner=up_to_date).files == 0


def test_a_failed_push_names_the_remote_the_cause_and_the_retry(tmp_path: Path, listening: int) -> None:
    runner, _ = fake(1, "3 files pushed\n", "ERROR: unexpected error - Could not connect to the endpoint URL: x\n")
    with pytest.raises(RemoteError) as raised:  # the endpoint accepted the probe, then the transfer broke
        transfer(configured(tmp_path, listening), "push", include_registry=False, runner=runner)
    message = str(raised.value)
    assert f"DVC remote 's3' (s3://pricetrail-test/cache at http://127.0.0.1:{listening})" in message
    assert "the endpoint is unreachable" in message
    assert "`pricetrail push` again uploads only what is missing" in message


def test_no_remote_or_an_unknown_one(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    analytics = false\n", encoding="utf-8")
    with pytest.raises(RemoteError, match="no default DVC remote is configured"):
        read_remote(tmp_path)
    with pytest.raises(RemoteError, match="DVC remote 'nosuch' is not configured"):
        transfer(tmp_path, "pull", name="nosuch", runner=fake(0, "")[0])


def test_a_closed_endpoint_fails_in_seconds_before_dvc_runs(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = configured(tmp_path, port)
    runner, seen = fake(0, "")
    with pytest.raises(RemoteError, match=rf"DVC remote 's3' .* is unreachable: .*127\.0\.0\.1:{port}"):
        transfer(root, "push", include_registry=False, runner=runner)
    assert seen == []


def with_input(root: Path, configured_input: str) -> Path:
    (root / "params.yaml").write_text(f"ingest:\n  input: {configured_input}\n", encoding="utf-8")
    return root


def test_an_input_outside_the_repository_is_named_as_one_no_remote_holds(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    root = dvc_repo(tmp_path / "project")
    warning = untracked_input(with_input(root, "../shared/data/online-retail/by-day"))
    assert warning is not None and "ingest.input ../shared/data/online-retail/by-day is outside the repository" in \
        warning and "`dvc add`" in warning


def test_an_untracked_input_inside_the_repository_is_named_with_the_dvc_add_to_run(tmp_path: Path) -> None:
    root = with_input(dvc_repo(tmp_path), "data/raw/shop/sales.csv")
    (root / "data" / "raw" / "shop").mkdir(parents=True)
    (root / "data" / "raw" / "shop" / "sales.csv").write_text("a\n1\n", encoding="utf-8")
    warning = untracked_input(root)
    assert warning is not None and "`dvc add data/raw/shop/sales.csv`" in warning


@pytest.mark.parametrize("tracking", ["file.dvc", "folder.dvc", "stage output", "git"])
def test_an_input_dvc_or_git_tracks_needs_no_warning(tmp_path: Path, tracking: str) -> None:
    root = with_input(dvc_repo(tmp_path), "data/raw/shop/sales.csv")
    (root / "data" / "raw" / "shop").mkdir(parents=True)
    (root / "data" / "raw" / "shop" / "sales.csv").write_text("a\n1\n", encoding="utf-8")
    if tracking == "file.dvc":
        (root / "data" / "raw" / "shop" / "sales.csv.dvc").write_text("outs:\n- path: sales.csv\n", encoding="utf-8")
    elif tracking == "folder.dvc":
        (root / "data" / "raw" / "shop.dvc").write_text("outs:\n- path: shop\n", encoding="utf-8")
    elif tracking == "stage output":
        (root / "dvc.lock").write_text("schema: '2.0'\nstages:\n  make:\n    cmd: x\n    outs:\n"
                                       "    - path: data/raw/shop\n      md5: 0123456789abcdef0123456789abcdef.dir\n",
                                       encoding="utf-8")
    else:
        subprocess.run(["git", "add", "data/raw/shop/sales.csv"], cwd=root, check=True)
    assert untracked_input(root) is None


def test_only_the_url_and_non_secret_options_travel_to_workers(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    remote = az\n['remote \"az\"']\n    url = azure://c/p\n"
                                              "    account_name = shop\n")
    (tmp_path / ".dvc" / "config.local").write_text(
        "['remote \"az\"']\n    connection_string = DefaultEndpointsProtocol=https;AccountKey=SECRET1\n"
        "    sas_token = SECRET2\n    account_key = SECRET3\n    client_secret = SECRET4\n    keyfile = /k\n"
        "    credentialpath = /c.json\n    passphrase = SECRET5\n    token = SECRET6\n    endpointurl = http://x:1\n")
    remote = read_remote(tmp_path)
    assert dict(remote.options) == {"account_name": "shop", "endpointurl": "http://x:1"}
    assert "SECRET" not in repr(remote) and "/c.json" not in repr(remote)
