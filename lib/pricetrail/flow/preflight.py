"""What ``pricetrail run`` checks before it touches anything: its options, the products, the services it would
use, and that ``dvc.yaml`` is committed (the run's lineage must name the pipeline it ran)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pricetrail.data.etl import CleaningRules
from pricetrail.data.preprocess import PreprocessSettings, check_thresholds_agree
from pricetrail.flow.workspace import (
    RemoteSpec,
)
from pricetrail.project.config import load_params, load_stockcodes, section


class FlowError(ValueError):
    """The flow cannot start as asked (bad input or an unreachable service); nothing has been changed."""


@dataclass(frozen=True)
class RunOptions:
    codes: tuple[str, ...]  # the products to run (all of stockcodes.yaml when empty)
    workers: int  # local Dask cluster size (ignored with ``dask_address``)
    dask_address: str | None = None  # an existing cluster: workers share only the DVC remote with us
    push: bool = False  # push outputs and run-cache to the default DVC remote at the end
    timeout_seconds: float = 3600.0  # per product chain


def check_inputs(root: Path, options: RunOptions) -> list[str]:
    """Refuse what cannot work before anything is touched; return the products to run."""
    if options.workers < 1:
        raise FlowError(f"--workers {options.workers} is not accepted: use a whole number >= 1")
    if not 0 < options.timeout_seconds < float("inf"):
        raise FlowError(f"--timeout {options.timeout_seconds!r} is not accepted: seconds above 0")
    products = load_stockcodes(root)
    unknown = [code for code in options.codes if code not in products]
    if unknown:
        raise FlowError(f"unknown products {unknown}: not in stockcodes.yaml ({', '.join(products)})")
    _check_dvc_yaml_committed(root)
    if options.dask_address:
        if default_remote(root) is None:
            raise FlowError("a Dask cluster's workers share nothing with this machine but the DVC remote, and this "
                            "project has no default remote: `dvc remote add -d NAME URL` first")
        _check_dask_address(options.dask_address)
    _check_prefect_api()
    params = load_params(root)
    try:
        check_thresholds_agree(CleaningRules.from_params(section(params, "etl")).min_rows,
                               PreprocessSettings.from_params(section(params, "preprocess")))
    except ValueError as error:  # every chain would fail on it: say it once, before any work
        raise FlowError(f"params.yaml: {error}") from error
    return list(options.codes) or list(products)


def _check_dask_address(address: str) -> None:
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(address)
    if parsed.scheme != "tcp" or not parsed.hostname or not parsed.port:
        raise FlowError(f"--dask-address {address!r} is not accepted: use tcp://HOST:PORT (e.g. tcp://127.0.0.1:8786)")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=5).close()
    except OSError as error:
        raise FlowError(f"no Dask scheduler answers at {address} ({error.strerror or error}); start one "
                        "(`dask scheduler`) or leave out --dask-address for a local cluster") from error


def _check_prefect_api() -> None:
    import httpx

    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=5)
    except httpx.HTTPError as error:
        raise FlowError(f"the Prefect server at PREFECT_API_URL={url} does not answer ({error}); start it "
                        "(`prefect server start`) or unset PREFECT_API_URL for a temporary one") from error
    if response.status_code != 200:
        raise FlowError(f"the Prefect server at PREFECT_API_URL={url} answered {response.status_code} to /health")


def _check_dvc_yaml_committed(root: Path) -> None:
    import subprocess

    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True,
                            text=True, check=False)
    if inside.returncode != 0:
        return
    diff = subprocess.run(["git", "status", "--porcelain", "--", "dvc.yaml"], cwd=root, capture_output=True,
                          text=True, check=False)
    if diff.stdout.strip():
        raise FlowError("dvc.yaml has uncommitted edits; the run's lineage must name the pipeline it ran: commit "
                        "them (git commit dvc.yaml) or undo them (git checkout dvc.yaml)")


def default_remote(root: Path) -> RemoteSpec | None:
    """The default DVC remote, as workers get it: name, URL and options, never credentials."""
    from pricetrail.registry.remote import RemoteError, default_remote_name, read_remote

    if default_remote_name(root) is None:
        return None
    try:
        remote = read_remote(root)
    except RemoteError as error:
        raise FlowError(str(error)) from error
    return RemoteSpec(name=remote.name, url=remote.url, options=dict(remote.options))
