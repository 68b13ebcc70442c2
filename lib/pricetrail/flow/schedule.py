"""The weekly run on a schedule: the flow served as a Prefect deployment with a cron, against a real server.

Two processes stay up: ``prefect server start`` (the API and UI; schedules only fire against a real server) and
``pricetrail schedule`` (this module's ``serve``: it polls the server and runs each scheduled flow run). A run
re-runs only what DVC says changed and, unless told not to, pushes to the default DVC remote.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prefect import flow

from pricetrail.flow.preflight import FlowError, RunOptions
from pricetrail.flow.weekly import run

log = logging.getLogger(__name__)

DEPLOYMENT = "pricetrail-weekly"


@flow(name="pricetrail-scheduled", log_prints=False)
def scheduled_weekly(root: str, workers: int, dask_address: str | None = None, push: bool = True) -> str:
    """One scheduled run of the weekly job in the project at ``root``."""
    ok, rows, message = run(Path(root), RunOptions(codes=(), workers=workers, dask_address=dask_address, push=push),
                            log.info)
    if not ok:
        raise FlowError(message)
    return message


def serve_weekly(root: Path, *, cron: str, workers: int, dask_address: str | None, push: bool) -> None:
    """Serve :func:`scheduled_weekly` with a cron schedule until interrupted (the schedule stays active)."""
    import httpx
    from prefect.client.schemas.schedules import CronSchedule

    url = os.environ.get("PREFECT_API_URL")
    if not url:
        raise FlowError("schedules fire only against a running Prefect server: start `prefect server start` in "
                        "another terminal and set PREFECT_API_URL=http://127.0.0.1:4200/api")
    try:
        CronSchedule(cron=cron)
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise FlowError(f"--cron {cron!r} is not a cron expression (e.g. '0 6 * * 1' for Mondays at 06:00)") from error
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        raise FlowError(f"the Prefect server at PREFECT_API_URL={url} does not answer ({error!r})") from error
    scheduled_weekly.serve(name=DEPLOYMENT, cron=cron, pause_on_shutdown=False,
                           parameters={"root": str(root), "workers": workers, "dask_address": dask_address,
                                       "push": push})
