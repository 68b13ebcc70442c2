"""The services one run uses: the Prefect API and the Dask cluster (ours, started and stopped here, or the user's),
and the progress lines the workers' events become."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from pricetrail.flow.chains import PROGRESS_TOPIC
from pricetrail.flow.preflight import FlowError, RunOptions
from pricetrail.flow.settings import offline_environment

QUIET_DASK = {"distributed.worker.profile.enabled": False, "distributed.scheduler.work-stealing": False,
              "distributed.admin.tick.interval": "1s", "distributed.admin.system-monitor.interval": "5s",
              "distributed.worker.memory.monitor-interval": "1s"}


class Services:
    """The Prefect API and the Dask cluster for one run: ours (started and stopped here) or the user's."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.server: Any = None
        self.cluster: Any = None
        self.client: Any = None
        self.address = ""

    def __enter__(self) -> Services:
        # The temporary Prefect server takes seconds to start: start the Dask cluster meanwhile. Its workers must
        # know the server's URL when they start (without it each would start a server of its own), so the port
        # is chosen and announced first.
        offline_environment()
        if not os.environ.get("PREFECT_API_URL"):
            from prefect.server.api.server import SubprocessASGIServer

            self.server = SubprocessASGIServer()
            self.server.port = self.server.find_available_port()
            os.environ["PREFECT_API_URL"] = self.server.api_url
        errors: list[BaseException] = []

        def start_prefect() -> None:
            try:
                self._prefect()
            except BaseException as error:  # noqa: BLE001 - re-raised in the main thread below
                errors.append(error)

        starter = threading.Thread(target=start_prefect, name="prefect-server-start")
        starter.start()
        try:
            self._dask()
        finally:
            starter.join()
        if errors:
            self.__exit__(None, None, None)
            raise errors[0]
        return self

    def _prefect(self) -> None:
        if self.server is None:  # the user's server, checked by check_inputs
            return
        # One temporary server for the whole run, shared by every worker: each worker starting its own is slow
        # and silently drops tasks.
        self.server.start(timeout=120)
        if os.environ.get("PREFECT_API_URL") != self.server.api_url:  # it had to move to another port
            raise FlowError(f"the temporary Prefect server started on {self.server.api_url}, not on the announced "
                            f"{os.environ.get('PREFECT_API_URL')}; run again")

    def _dask(self) -> None:
        from distributed import Client, LocalCluster

        if self.options.dask_address:
            try:
                self.client = Client(self.options.dask_address, timeout="20s")
            except (OSError, TimeoutError) as error:
                raise FlowError(f"no Dask scheduler answers at {self.options.dask_address} ({error}); start one "
                                "(`dask scheduler`) or leave out --dask-address for a local cluster") from error
            self.address = self.options.dask_address
            return
        # Processes, one thread each: a stage is a subprocess anyway, and torch wants one thread per process.
        # The tasks are minutes-long waits on a subprocess, one per worker: Dask's statistical profiler (a stack
        # sample every 10 ms in each worker), work stealing and its 20 ms ticks cost a few percent of a core per
        # process for nothing here, and on two cores that time is taken from the stage commands.
        import dask

        dask.config.set(QUIET_DASK)  # the workers get it from their nannies
        self.cluster = LocalCluster(n_workers=self.options.workers, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None)
        self.client = Client(self.cluster)
        self.address = self.cluster.scheduler_address

    def subscribe(self, handler: Callable[[dict[str, Any]], None]) -> None:
        self.client.subscribe_topic(PROGRESS_TOPIC, lambda event: handler(event[1]))

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.server is not None:
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)  # the run's last logs reach the server before it stops
            self.server.stop()
            os.environ.pop("PREFECT_API_URL", None)


class Progress:
    """One line per product and stage reached, with its elapsed time (the full logs go to logs/<code>.log)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        stage = str(event.get("stage", "")).split("@")[0]
        with self.lock:
            self.write(f"  {event.get('code', '?'):<10} {event.get('event', ''):<9} {stage:<24} "
                       f"{float(event.get('elapsed', 0)):7.1f} s")
