"""Environment defaults for the flow's services, set before Prefect is imported (it reads its settings once)."""

from __future__ import annotations

import os


def offline_environment() -> None:
    """Nothing phones home, and the services' INFO chatter stays off the console (it still reaches Prefect)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # inherited by the local workers
