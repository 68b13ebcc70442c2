"""The DVC remote: set up an S3 one, push and pull with failures that say which remote and why.

DVC itself does the transfers (content-addressed, so a retry sends only what the remote lacks); this module
checks what a user types before DVC stores it, keeps credentials out of the committed ``.dvc/config``, and turns
DVC's error output ("unexpected error - Forbidden: An error occurred (403) when calling the HeadObject operation")
into one line naming the remote, its URL and the cause, with what to do next.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pricetrail.project.dvc import Runner, checked_dvc, last_error, run_dvc
from pricetrail.registry.artifacts import cache_object, dvc_cache_dir

log = logging.getLogger(__name__)

REMOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
# An S3 bucket name (3-63 lower-case letters, digits, dots and hyphens) and an optional key prefix.
S3_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?P<prefix>/[A-Za-z0-9._/-]*)?$")
ENDPOINT_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._/-]*)?$")
CREDENTIAL_VARIABLES = {"AWS_ACCESS_KEY_ID": "access_key_id", "AWS_SECRET_ACCESS_KEY": "secret_access_key",
                        "AWS_SESSION_TOKEN": "session_token"}
_SECRET_OPTIONS = {"access_key_id", "secret_access_key", "session_token", "password"}
# What may travel with a remote to a cluster worker: where the remote is and how to talk to it, never how to log
# in (an allowlist: every DVC remote type has credential options of its own — Azure's connection_string and
# sas_token, GCS's credentialpath, SSH's keyfile and passphrase, WebDAV's token …). Workers use their own.
SHAREABLE_OPTIONS = frozenset({
    "endpointurl", "region", "listobjects", "use_ssl", "ssl_verify", "sse", "sse_kms_key_id", "acl",
    "read_timeout", "connect_timeout", "jobs", "worktree", "version_aware", "projectname", "account_name",
    "allow_anonymous_login", "port", "user", "timeout", "verify", "exclude_environment_credential",
    "exclude_visual_studio_code_credential", "exclude_shared_token_cache_credential",
    "exclude_managed_identity_credential"})


class RemoteError(ValueError):
    """A DVC remote is misconfigured, unreachable or refused a transfer."""


@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    endpoint_url: str | None = None
    # the remote's options that are not credentials (SHAREABLE_OPTIONS; a cluster worker configures its own copy)
    options: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def description(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"DVC remote '{self.name}' ({self.url}{where})"


@dataclass(frozen=True)
class Transfer:
    direction: str  # push or pull
    remote: Remote
    files: int  # objects DVC reported as transferred (0 when everything was already there)
    warnings: tuple[str, ...] = ()  # what the remote cannot hold, said after a push that otherwise worked
    published: int = 0  # products whose router records a push published (registry.publish)


# DVC's error output -> the cause in a user's words. First match wins; checked on the whole output.
_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"NoSuchBucket|specified bucket does not exist", re.I),
     "bucket {bucket} does not exist: create it, or correct the remote's URL"),
    (re.compile(r"Unable to locate credentials|NoCredentialsError", re.I),
     "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or store them with "
     "`pricetrail remote add ... --credentials-from-env` (written to .dvc/config.local, never committed)"),
    (re.compile(r"\b403\b|Forbidden|InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied", re.I),
     "the remote refused the credentials (403 Forbidden): check the access key, its secret and its permissions "
     "on the bucket"),
    (re.compile(r"Could not connect to the endpoint|Connect timeout|Cannot connect to host|Connection refused|"
                r"Server disconnected|Connection reset|ConnectionError|Network is unreachable|timed out", re.I),
     "the endpoint is unreachable (connection failed or dropped): check the endpoint URL and the network"),
)


def validate_name(name: str) -> str:
    if not REMOTE_NAME.fullmatch(name):
        raise RemoteError(f"remote name {name!r} is not accepted: use letters, digits, '_' and '-' (e.g. s3)")
    return name


def validate_s3_url(url: str) -> str:
    if not S3_URL.fullmatch(url):
        raise RemoteError(f"S3 URL {url!r} is not accepted: use s3://<bucket>/<prefix>, the bucket 3-63 lower-case "
                          "letters, digits, dots or hyphens (e.g. s3://my-bucket/pricetrail)")
    return url.rstrip("/")


def validate_endpoint(url: str) -> str:
    if not ENDPOINT_URL.fullmatch(url):
        raise RemoteError(f"endpoint URL {url!r} is not accepted: use http(s)://host[:port] (e.g. "
                          "http://127.0.0.1:9000 for MinIO)")
    return url


def _config(root: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    for name in ("config", "config.local"):  # config.local overrides, as in DVC
        path = root / ".dvc" / name
        if path.is_file():
            parser.read(path, encoding="utf-8")
    return parser


def _section(parser: configparser.ConfigParser, name: str) -> str | None:
    # DVC writes configobj sections: ['remote "name"'], quotes and all.
    return next((candidate for candidate in (f"'remote \"{name}\"'", f'remote "{name}"')
                 if parser.has_section(candidate)), None)


def default_remote_name(root: Path) -> str | None:
    parser = _config(root)
    return parser.get("core", "remote").strip() if parser.has_option("core", "remote") else None


def read_remote(root: Path, name: str | None = None) -> Remote:
    """The named remote, or the default one, as DVC's config files (committed and local) describe it."""
    parser = _config(root)
    if name is None:
        name = default_remote_name(root)
        if name is None:
            raise RemoteError("no default DVC remote is configured: add one with `pricetrail remote add` (see README)")
    section = _section(parser, validate_name(name))
    if section is None:
        raise RemoteError(f"DVC remote {name!r} is not configured in .dvc/config; `dvc remote list` shows the "
                          "configured ones")
    url = parser.get(section, "url")
    if "://" not in url and not os.path.isabs(url):
        url = str((root / ".dvc" / url).resolve())  # DVC resolves a relative URL against .dvc/
    endpoint = parser.get(section, "endpointurl", fallback=None)
    options = tuple((key, value) for key, value in parser.items(section) if key in SHAREABLE_OPTIONS)
    return Remote(name=name, url=url, endpoint_url=endpoint, options=options)


def add_s3_remote(root: Path, name: str, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                  default: bool = True, credentials_from_env: bool = False,
                  environ: dict[str, str] | None = None, runner: Runner = run_dvc) -> Remote:
    """Configure an S3 (or S3-compatible) DVC remote; credentials only ever in .dvc/config.local.

    Everything is checked before DVC's config is touched, so a typo leaves the configuration as it was.
    """
    name, url = validate_name(name), validate_s3_url(url)
    if endpoint_url is not None:
        endpoint_url = validate_endpoint(endpoint_url)
    if region is not None and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", region):
        raise RemoteError(f"region {region!r} is not accepted: an AWS region such as eu-west-1 or us-east-1")
    environ = dict(os.environ) if environ is None else environ
    credentials = {}
    if credentials_from_env:
        credentials = {option: environ[variable] for variable, option in CREDENTIAL_VARIABLES.items()
                       if environ.get(variable)}
        missing = [variable for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                   if CREDENTIAL_VARIABLES[variable] not in credentials]
        if missing:
            raise RemoteError(f"--credentials-from-env needs {' and '.join(missing)} in the environment")
    checked_dvc(["remote", "add", "--force", *(["--default"] if default else []), name, url], root,
                error=RemoteError, runner=runner)
    if endpoint_url is not None:
        checked_dvc(["remote", "modify", name, "endpointurl", endpoint_url], root, error=RemoteError, runner=runner)
    if region is not None:
        checked_dvc(["remote", "modify", name, "region", region], root, error=RemoteError, runner=runner)
    for option, value in credentials.items():
        checked_dvc(["remote", "modify", "--local", name, option, value], root, error=RemoteError, runner=runner)
    committed = (root / ".dvc" / "config").read_text(encoding="utf-8") if (root / ".dvc" / "config").is_file() else ""
    leaked = [option for option in _SECRET_OPTIONS if re.search(rf"^\s*{option}\s*=", committed, re.M)]
    if leaked:  # e.g. a user's earlier `dvc remote modify` without --local
        raise RemoteError(f".dvc/config (committed to git) holds {', '.join(sorted(leaked))}: move them to "
                          ".dvc/config.local with `dvc remote modify --local` and remove them from .dvc/config")
    return Remote(name=name, url=url, endpoint_url=endpoint_url)


def cause(output: str, remote: Remote) -> str:
    """What went wrong, in a user's words, from DVC's output of a failed transfer."""
    match = S3_URL.fullmatch(remote.url)
    bucket = match.group("bucket") if match else remote.url
    for pattern, text in _CAUSES:
        if pattern.search(output):
            return text.format(bucket=bucket)
    return last_error(output)


_PUSHED = re.compile(r"^(\d+) files? (?:pushed|fetched|added)", re.M)


def transfer(root: Path, direction: str, *, name: str | None = None, run_cache: bool = True,
             targets: Sequence[str] = (), include_registry: bool = True, runner: Runner = run_dvc) -> Transfer:
    """``dvc push`` or ``dvc pull`` (with the run-cache), or one RemoteError naming the remote and the cause.

    DVC addresses objects by content hash and skips those the other side has, so running it again after a
    failure sends only what is missing; nothing is reported as transferred unless DVC said so and exited 0.
    With ``include_registry``, the registry's objects (every version it can serve) go along too.
    """
    if direction not in ("push", "pull"):
        raise ValueError(f"direction {direction!r}: push or pull")
    remote = read_remote(root, name)
    probe_endpoint(remote)
    args = [direction, "--remote", remote.name, *(["--run-cache"] if run_cache else []), *targets]
    result = runner(args, root)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        preposition, retry = ("to", "uploads") if direction == "push" else ("from", "downloads")
        raise RemoteError(f"dvc {direction} {preposition} {remote.description} failed: {cause(output, remote)}. "
                          f"The transfer is incomplete; `pricetrail {direction}` again {retry} only what is missing")
    counted = [int(value) for value in _PUSHED.findall(output)]
    registry_files = transfer_registry_objects(root, direction, remote) if include_registry else 0
    warnings = [message for message in [untracked_input(root) if direction == "push" else None] if message]
    published = 0
    if direction == "push" and include_registry:
        # The objects first, then the records that name them: a router never reads a record it cannot serve.
        from pricetrail.registry.publish import publish_records

        records_pushed = publish_records(root, name=remote.name)
        published = len(records_pushed.products)
        warnings += [f"router records not published: {held}" for held in records_pushed.held_back]
    return Transfer(direction=direction, remote=remote, files=sum(counted) + registry_files,
                    warnings=tuple(warnings), published=published)


def untracked_input(root: Path) -> str | None:
    """Why the remote cannot hold ``ingest.input``, or None when it can: DVC pushes only what it tracks, so an
    input outside the repository (the shipped real-data profile reads ``../shared``) or an untracked file inside
    it cannot reach a fresh clone or a cluster worker, whose ``dvc repro`` would then stop at ingest."""
    from pricetrail.project.config import load_params, section
    from pricetrail.project.dvc_lock import read_stages
    from pricetrail.project.files import ConfigError

    try:
        configured = str(section(load_params(root), "ingest")["input"])
    except (ConfigError, KeyError):
        return None  # the pipeline itself reports a broken params.yaml; a push is not the place
    base = root.resolve()
    path = (root / configured).resolve()
    if not path.is_relative_to(base):
        return (f"ingest.input {configured} is outside the repository, so no DVC remote holds it: a fresh clone or "
                "a cluster worker cannot run ingest. To share it: copy it into data/raw/, `dvc add` it, point "
                "ingest.input there and commit the .dvc file (README: Your own data)")
    relative = path.relative_to(base)
    for candidate in (relative, *relative.parents):
        if candidate != Path(".") and (base / f"{candidate.as_posix()}.dvc").is_file():
            return None  # dvc add'ed (or dvc import-url'ed), itself or a folder holding it
    outs = {out["path"] for entry in read_stages(root).values() for out in entry.get("outs") or []
            if isinstance(out, dict) and "path" in out}
    if any(candidate.as_posix() in outs for candidate in (relative, *relative.parents)):
        return None  # a stage's output (generate_synthetic writes the default input)
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "--", relative.as_posix()], cwd=base,
                             capture_output=True, check=False)
    if tracked.returncode == 0:
        return None  # small enough to live in git
    return (f"ingest.input {configured} is tracked by neither DVC nor git, so no remote holds it: a fresh clone "
            f"or a cluster worker cannot run ingest. `dvc add {relative.as_posix()}` and commit the .dvc file "
            "(README: Your own data)")


def probe_endpoint(remote: Remote, timeout: float = 5.0) -> None:
    """Fail in seconds when a custom endpoint does not accept connections: DVC's S3 client retries each object
    with backoff, and took over two minutes here to report a closed port."""
    if not remote.endpoint_url:
        return
    parsed = urlsplit(remote.endpoint_url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
    except OSError as error:
        raise RemoteError(f"{remote.description} is unreachable: the endpoint is unreachable (connecting to "
                          f"{parsed.hostname}:{port}: {error.strerror or error}); check the endpoint URL and the "
                          "network") from error


def registry_objects(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Every object a registry record names, of every product with a registry folder (listed in stockcodes.yaml
    or not): every version's files (a rollback needs them), each drift reference and the serving state — some of
    them in no current dvc.lock entry — and, apart, the folder listings of the outputs holding them (lineage reads
    those; an old project may lack some). Each as hash -> what it is, for messages."""
    from pricetrail.registry import references

    try:
        found = references.referenced_artifacts(root)
    except (ValueError, OSError) as error:
        raise RemoteError(f"a registry record cannot be read, so its objects cannot be transferred: {error}") from error
    files: dict[str, str] = {}
    listings: dict[str, str] = {}
    for code, artifacts in found.items():
        for artifact in artifacts:
            files.setdefault(artifact.md5, f"{code} {artifact.name} ({artifact.path})")
            if artifact.out_md5 and artifact.out_md5.endswith(".dir"):
                listings.setdefault(artifact.out_md5, f"{code} listing of {artifact.out}")
    return files, listings


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def transfer_registry_objects(root: Path, direction: str, remote: Remote) -> int:
    """Push or pull the registry's objects by hash (``dvc push`` sends only what the workspace's dvc.lock names,
    so an earlier version the registry can roll back to, or a router on another machine, would find nothing).
    Every file must arrive; a pull fails naming what is on neither side. Returns how many objects moved."""
    files, listings = registry_objects(root)
    if not files:
        return 0
    cache = dvc_cache_dir(root)
    # A listing goes along where this side has it (a pushed folder hash makes DVC send the folder's files too).
    wanted = sorted(files) + sorted(d for d in listings if direction == "pull" or cache_object(cache, d).is_file())
    transferred, failed = _transfer_objects(root, direction, remote, wanted)
    if direction == "pull":
        # DVC counts an object the remote lacks as nothing to do (or as failed): a registry file that is nowhere
        # must fail, named. A listing the remote lacks is not fatal: lineage reads it, serving does not.
        absent = [md5 for md5 in sorted(files) if not cache_object(cache, md5).is_file()]
        if absent:
            listed = "; ".join(f"{files[md5]} md5 {md5}" for md5 in absent[:5])
            raise RemoteError(f"{len(absent)} of the registry's {len(files)} objects are neither here nor on "
                              f"{remote.description}: {listed}{' …' if len(absent) > 5 else ''}. A version that "
                              "names them cannot be served or rolled back to; push them from a copy that has them "
                              "(`pricetrail push`)")
        return transferred
    if failed:
        named = {**files, **listings}
        listed = "; ".join(f"{named.get(md5, 'object')} md5 {md5}" for md5 in sorted(failed)[:5])
        raise RemoteError(f"push of {len(failed)} of the registry's {len(wanted)} objects to {remote.description} "
                          f"failed: {listed}. `pricetrail push` again sends only what is missing")
    return transferred


def _transfer_objects(root: Path, direction: str, remote: Remote, md5s: list[str]) -> tuple[int, set[str]]:
    """(how many objects DVC moved, the hashes it could not move); DVC's own log lines are kept out of the
    terminal (a missing object is a traceback there): what failed is said once, by the caller."""
    from dvc.repo import Repo
    from dvc_data.hashfile.hash_info import HashInfo

    captured = _Captured()
    loggers = [logging.getLogger(name) for name in ("dvc", "dvc_data", "dvc_objects")]
    saved = [(each.propagate, each.handlers[:]) for each in loggers]
    for each in loggers:
        each.propagate = False
        each.handlers = [captured]
    objects = [HashInfo("md5", md5) for md5 in md5s]
    try:
        with Repo(str(root)) as repo:
            method = repo.cloud.push if direction == "push" else repo.cloud.pull
            result = method(objects, remote=remote.name)
    except Exception as error:  # noqa: BLE001 - DVC's filesystems raise many types: each becomes one RemoteError
        raise RemoteError(f"{direction} of the registry's {len(md5s)} objects with {remote.description} failed: "
                          f"{cause(f'ERROR: {error}', remote)}") from error
    finally:
        for each, (propagate, handlers) in zip(loggers, saved, strict=True):
            each.propagate, each.handlers = propagate, handlers
    failed = {str(getattr(item, "value", item)) for item in result.failed}
    if failed and captured.lines and direction == "push":
        log.warning("%s", cause("\n".join(f"ERROR: {line}" for line in captured.lines), remote))
    return len(result.transferred), failed
