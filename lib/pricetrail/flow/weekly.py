"""The weekly job: a Prefect flow that fans the products' DVC chains out over a Dask cluster.

1. Shared stages (synthetic data, ingest, the split by product) run once, in the main workspace.
2. DVC says which products have anything to do (:mod:`pricetrail.flow.planning`); each becomes one task that
   runs its chain in an isolated workspace (:mod:`pricetrail.flow.workspace`) on a Dask worker.
3. Results come back as tasks finish, each batch in one dvc.lock write (:mod:`pricetrail.flow.lockmerge`), and
   are promoted in the main workspace while the workers run the rest; a promoted product's drift gate is then
   re-checked (one more task), so ``dvc status`` ends clean and the next run does nothing.
4. A summary table is printed and published as a Prefect table artifact; with --push, everything (outputs and
   run-cache) is then pushed to the default DVC remote, and a failed push fails the run (:mod:`pricetrail.project.remote`).

A product's failure (a gate, an error) stops only that product. Retries are for transient errors only.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pricetrail import registry
from pricetrail.flow import lockmerge
from pricetrail.flow.planning import plan
from pricetrail.flow.settings import offline_environment
from pricetrail.flow.workspace import (
    JobResult,
    ProductJob,
    RemoteSpec,
    TransientJobError,
    project_files,
    run_job,
)
from pricetrail.project import locking
from pricetrail.project.config import load_stockcodes
from pricetrail.project.dvc_lock import read_stages
from pricetrail.project.files import ConfigError
from pricetrail.registry_artifacts import dvc_cache_dir

log = logging.getLogger(__name__)

PROGRESS_TOPIC = "pricetrail-progress"
CHAIN = ("etl_pipeline", "drift_reference", "data_drift_check", "preprocess", "tune_primary_model",
         "inference_primary_model", "assess_model_risk")
WORKSPACES = Path(".dvc/tmp/pricetrail/workspaces")
QUIET_DASK = {"distributed.worker.profile.enabled": False, "distributed.scheduler.work-stealing": False,
              "distributed.admin.tick.interval": "1s", "distributed.admin.system-monitor.interval": "5s",
              "distributed.worker.memory.monitor-interval": "1s"}
LOGS = Path("logs")


class FlowError(ValueError):
    """The flow cannot start as asked (bad input or an unreachable service); nothing has been changed."""


@dataclass(frozen=True)
class RunOptions:
    codes: tuple[str, ...]  # the products to run (all of stockcodes.yaml when empty)
    workers: int  # local Dask cluster size (ignored with ``dask_address``)
    dask_address: str | None = None  # an existing cluster: workers share only the DVC remote with us
    push: bool = False  # push outputs and run-cache to the default DVC remote at the end
    timeout_seconds: float = 3600.0  # per product chain


@dataclass
class ProductSummary:
    code: str
    ran: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    rechecked: list[str] = field(default_factory=list)  # drift gates re-checked after promotion
    failed_stage: str | None = None
    reason: str | None = None
    decision: str = ""
    served_version: str | None = None
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        verdict = "failed" if self.failed_stage else "ok"
        return {"product": self.code, "stages run": len(self.ran), "from run-cache": len(self.restored),
                "skipped": len(CHAIN) - len(self.ran) - len(self.restored), "re-checked": len(self.rechecked),
                "result": verdict,
                "failed stage": self.failed_stage or "", "reason": self.reason or "", "decision": self.decision,
                "served version": self.served_version or "-", "seconds": round(self.seconds, 1),
                "stage seconds": round(sum(self.stage_seconds.values()), 1)}


# --------------------------------------------------------------------------------------------- preflight


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
        if _default_remote(root) is None:
            raise FlowError("a Dask cluster's workers share nothing with this machine but the DVC remote, and this "
                            "project has no default remote: `dvc remote add -d NAME URL` first")
        _check_dask_address(options.dask_address)
    _check_prefect_api()
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


def _default_remote(root: Path) -> RemoteSpec | None:
    """The default DVC remote, as workers get it: name, URL and options, never credentials."""
    from pricetrail.project.remote import RemoteError, default_remote_name, read_remote

    if default_remote_name(root) is None:
        return None
    try:
        remote = read_remote(root)
    except RemoteError as error:
        raise FlowError(str(error)) from error
    return RemoteSpec(name=remote.name, url=remote.url, options=dict(remote.options))


# --------------------------------------------------------------------------------------------- jobs


def _jobs(root: Path, codes: list[str], starts: dict[str, tuple[str, ...]], *, cluster: bool, timeout: float,
          stages: dict[str, Any] | None = None) -> list[ProductJob]:
    products = load_stockcodes(root)
    stages = read_stages(root) if stages is None else stages
    shared_outs = [str(out["path"]) for name, entry in stages.items() if "@" not in name
                   for out in entry.get("outs", []) or []]
    remote = _default_remote(root) if cluster else None
    jobs = []
    shared_entries = {name: entry for name, entry in stages.items() if "@" not in name}
    for code in codes:
        entries = {name: entry for name, entry in stages.items() if name.endswith(f"@{code}")}
        outputs = [path for path in shared_outs if path.startswith("data/interim/")]
        outputs += lockmerge.output_paths(entries)
        # The shared stages' entries too: a cluster worker's `dvc pull` finds their outputs by them (with
        # --downstream from the product's first stage, they are never reproduced there).
        entries = {**shared_entries, **entries}
        fetch: tuple[tuple[str, int], ...] = ()
        if cluster:
            reference = registry.read_drift_reference(root, code)
            if reference.artifact is not None:
                fetch = ((reference.artifact.md5, reference.artifact.size),)
        jobs.append(ProductJob(
            code=code, targets=starts[code], downstream=True,
            files=project_files(root, code, stockcodes_entry=products[code], lock_entries=entries),
            outputs=tuple(outputs), main_root=None if cluster else str(root),
            cache_dir=None if cluster else str(dvc_cache_dir(root)), remote=remote, fetch_objects=fetch,
            timeout_seconds=timeout))
    return jobs


def _publish(event: dict[str, Any]) -> None:
    from distributed import get_worker

    get_worker().log_event(PROGRESS_TOPIC, event)


def _worker_directory() -> Path:
    """A cluster worker's own scratch space (its workspaces and DVC cache persist there between runs)."""
    from distributed import get_worker

    try:
        return Path(get_worker().local_directory)
    except ValueError:  # not inside a Dask worker (a test calling the task's function directly)
        return Path(tempfile.gettempdir())


def product_chain_fn(job: ProductJob, workdir: str | None) -> JobResult:
    """The body of a flow task: one product's chain; progress to the client, the full log to Prefect."""
    from prefect import get_run_logger

    logger = get_run_logger()
    started = time.monotonic()
    base = Path(workdir) if workdir else _worker_directory() / "pricetrail-workspaces"

    def on_stage(stage: str, event: str) -> None:
        logger.info("%s: %s %s", job.code, event, stage)
        _publish({"code": job.code, "stage": stage, "event": event, "elapsed": time.monotonic() - started})

    _publish({"code": job.code, "stage": job.targets[0], "event": "started", "elapsed": 0.0})
    result = run_job(job, base, on_stage=on_stage)
    logger.info("%s: %s\n%s", job.code, "done" if result.ok else f"FAILED at {result.failed_stage}", result.log)
    _publish({"code": job.code, "stage": result.failed_stage or "done", "event": "failed" if not result.ok else "done",
              "elapsed": result.seconds})
    return result


def _transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a task only for transient errors (locks, the network); a gate's verdict is never retried."""
    return isinstance(state.result(raise_on_failure=False), TransientJobError)


def _chain_task() -> Any:
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(product_chain_fn, name="product-chain", task_run_name="{job.code}", cache_policy=NO_CACHE,
                retries=2, retry_delay_seconds=5, retry_condition_fn=_transient_only)


class _Completions:
    """Submitted tasks as they finish, in batches: whatever finished while the last batch was handled comes next.

    The client brings a batch back in one dvc.lock write and promotes it while the workers run the rest, so a
    promoted product's drift re-check starts as soon as a worker is free, not after every chain has finished.
    """

    def __init__(self) -> None:
        self._done: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self._pending = 0

    def add(self, future: Any, kind: str, code: str) -> None:
        self._pending += 1
        future.add_done_callback(lambda finished: self._done.put((kind, code, finished)))

    def batches(self) -> Iterator[list[tuple[str, str, Any]]]:
        while self._pending:
            batch = [self._done.get()]
            while True:
                try:
                    batch.append(self._done.get_nowait())
                except queue.Empty:
                    break
            self._pending -= len(batch)
            yield batch


# --------------------------------------------------------------------------------------------- the flow


def weekly_fn(root: str, codes: list[str], cluster: bool, timeout_seconds: float,
              shared: list[str], changed: dict[str, list[str]]) -> Any:
    """The flow body (wrapped by :func:`make_flow`); ``shared`` and ``changed`` are the plan made before it."""
    from prefect.artifacts import create_table_artifact
    from prefect.states import Completed, Failed

    project = Path(root)
    summaries = {code: ProductSummary(code) for code in codes}
    if shared:
        _run_main_dvc(project, ["repro", *shared])
        changed = plan(project, codes).products  # the shared outputs changed: ask again
    starts = {code: _targets(stages) for code, stages in changed.items()}
    if cluster and starts:
        # Workers share only the remote with us: the shared stages' outputs must be there before they start.
        shared_stages = [name for name in read_stages(project) if "@" not in name]
        _run_main_dvc(project, ["push", *shared_stages])
    workdir = None if cluster else str(project / WORKSPACES)
    # dvc.lock as the main workspace holds it, kept in step with each bring-back instead of parsed again per batch
    # (a catalogue's lockfile is megabytes of YAML).
    stages = read_stages(project)
    chain = _chain_task()
    completions = _Completions()
    for job in _jobs(project, list(starts), starts, cluster=cluster, timeout=timeout_seconds,
                     stages=stages) if starts else []:
        completions.add(chain.submit(job, workdir), "chain", job.code)
    decisions: dict[str, registry.Decision] = {}
    logs: dict[str, str] = {}

    def promote(batch: list[str]) -> None:
        # Promotion changes a promoted product's drift reference: its gate is re-checked against the served model
        # (a task like the chains), so the reports describe the served model and the next run has nothing to do.
        new = registry.promote_all(project, batch, stages=stages)
        decisions.update({decision.stockcode: decision for decision in new})
        promoted = [decision.stockcode for decision in new if decision.action == "promoted"]
        recheck = {code: (f"drift_reference@{code}",) for code in promoted}
        for job in _jobs(project, promoted, recheck, cluster=cluster, timeout=timeout_seconds,
                         stages=stages) if promoted else []:
            completions.add(chain.submit(job, workdir), "recheck", job.code)

    promote([code for code in codes if code not in starts])  # nothing to run: what DVC has may still promote
    for batch in completions.batches():
        finished: list[tuple[str, JobResult]] = []
        for kind, code, future in batch:
            future.wait()  # done already: this records its final state without asking the API
            state = future.state
            if state.is_completed():
                finished.append((kind, future.result()))
            else:
                summary = summaries[code]
                summary.failed_stage = "task" if kind == "chain" else "settle"
                summary.reason = f"task {state.name}: {state.message or 'no message'}"
        # Outputs, dvc.lock and the promotion of the finished chains (a failed chain still gets its decision) land
        # as one unit: a kill anywhere in it is completed by the next command (lockmerge.recover).
        chains = [code for kind, code, _ in batch if kind == "chain"]
        lockmerge.land(project, [result for _, result in finished], move_outputs=not cluster, pull=cluster,
                       promote=promote, promote_codes=chains, stages=stages)
        for kind, result in finished:
            summary = summaries[result.code]
            logs[result.code] = logs.get(result.code, "") + result.log
            summary.seconds += result.seconds
            if kind == "chain":
                summary.ran, summary.restored = result.ran, result.restored
                summary.stage_seconds.update(result.stage_seconds)
                summary.failed_stage, summary.reason = result.failed_stage, result.reason
            else:
                summary.rechecked = result.ran + result.restored
                summary.stage_seconds.update({f"{name} (re-check)": value for name, value in
                                              result.stage_seconds.items()})
                if not result.ok:
                    summary.failed_stage, summary.reason = result.failed_stage, result.reason
    if any(decision.action == "promoted" for decision in decisions.values()):
        registry.refresh_lineage(project, decisions.values())
    decisions_in_order = [decisions[code] for code in codes if code in decisions]
    for decision in decisions_in_order:
        summaries[decision.stockcode].decision = f"{decision.action}: {decision.reason}"
        summaries[decision.stockcode].served_version = decision.served_version
        if decision.action == "error":
            summaries[decision.stockcode].failed_stage = summaries[decision.stockcode].failed_stage or "promotion"
            summaries[decision.stockcode].reason = summaries[decision.stockcode].reason or decision.reason
    for code, text in logs.items():
        _write_log(project, code, text)
    rows = [summaries[code].row() for code in codes]
    _write_summary(project, rows, {code: summaries[code].stage_seconds for code in codes})
    create_table_artifact(key="pricetrail-weekly-summary", table=rows,
                          description="Per product: stages run, gate verdicts, promotion, duration")
    failed = [row for row in rows if row["result"] == "failed"]
    if failed:
        names = ", ".join(f"{row['product']} ({row['failed stage']}: {row['reason']})" for row in failed)
        return Failed(message=f"{len(failed)} of {len(rows)} products failed: {names}", data=rows)
    return Completed(message=f"{len(rows)} products done", data=rows)


def _targets(stages: list[str]) -> tuple[str, ...]:
    """What ``dvc repro --downstream`` must start from to run every changed stage of a product: the first changed
    stage of its chain, and its drift_reference stage when that changed too (it has no upstream in the chain, so
    nothing downstream of the ETL reaches it)."""
    def position(name: str) -> int:
        return CHAIN.index(name.split("@")[0]) if name.split("@")[0] in CHAIN else -1

    first = min(stages, key=position)
    extra = [name for name in stages if name.startswith("drift_reference@") and name != first]
    return (first, *extra)


def _write_summary(root: Path, rows: list[dict[str, Any]], stage_seconds: dict[str, dict[str, float]]) -> None:
    """logs/last-run.json: the summary table and every stage's time, for scripts (and the benchmarks)."""
    from pricetrail.project.files import write_json

    write_json(root / LOGS / "last-run.json", {"rows": rows, "stage_seconds": stage_seconds})


def _write_log(root: Path, code: str, text: str) -> None:
    from pricetrail.project.files import atomic_path

    with atomic_path(root / LOGS / f"{code}.log") as tmp:
        tmp.write_text(text, encoding="utf-8")


def _run_main_dvc(root: Path, args: list[str]) -> None:
    from pricetrail.project.remote import last_error, run_dvc

    result = run_dvc(args, root)
    if result.returncode != 0:
        raise ConfigError(f"dvc {' '.join(args)} failed: {last_error(result.stderr + result.stdout)}")


def make_flow(task_runner: Any) -> Any:
    from prefect import flow

    return flow(weekly_fn, name="pricetrail-weekly", task_runner=task_runner, log_prints=False,
                validate_parameters=True)


# --------------------------------------------------------------------------------------------- services


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
        # and silently drops tasks (see PLATFORM-FACTS).
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


def run(root: Path, options: RunOptions, write: Callable[[str], None]) -> tuple[bool, list[dict[str, Any]], str]:
    """Run the weekly flow, then push if asked; return (all products succeeded and the push too, summary rows,
    the flow's message with the push's outcome). Holds the pipeline lock throughout (see pricetrail.project.locking)."""
    codes = check_inputs(root, options)  # before anything is touched, the lock's file included
    with locking.hold(root, locking.PIPELINE, command="pricetrail run"):
        lockmerge.recover(root)  # a landing a kill interrupted is completed before anything is planned
        return _run_and_push(root, options, codes, write)


def _run_and_push(root: Path, options: RunOptions, codes: list[str],
                  write: Callable[[str], None]) -> tuple[bool, list[dict[str, Any]], str]:
    ok, rows, message = _run_flow(root, options, codes, write)
    if not options.push:
        return ok, rows, message
    # After the flow, on its no-op path too: a rerun after a failed push completes it (DVC sends only what the
    # remote lacks). A failed push fails the run, and nothing is said to be pushed that DVC did not confirm.
    from pricetrail.project.remote import RemoteError, transfer

    try:
        pushed = transfer(root, "push")
    except RemoteError as error:
        return False, rows, f"{message}; {error}"
    # DVC's count includes the run-cache's records, which it sends again on every push.
    warnings = "".join(f"; warning: {warning}" for warning in pushed.warnings)
    return ok, rows, (f"{message}; pushed {pushed.files} files (run-cache records included) to "
                      f"{pushed.remote.description}{warnings}")


def _run_flow(root: Path, options: RunOptions, codes: list[str],
              write: Callable[[str], None]) -> tuple[bool, list[dict[str, Any]], str]:
    from prefect_dask import DaskTaskRunner

    offline_environment()
    registry.ensure_records(root, codes)
    planned = plan(root, codes)
    if not planned.shared and not planned.products and not os.environ.get("PREFECT_API_URL"):
        # Nothing to run and no Prefect server to record it in: starting a temporary one would only cost time.
        # A pending promotion (a plain `dvc repro` ran the chains) goes through the flow, which re-checks the drift
        # gates it changes; keeps are recorded here.
        if not any(d.action in ("promoted", "error") for d in registry.promote_all(root, codes, dry_run=True)):
            decisions = registry.promote_all(root, codes)
            rows = [ProductSummary(d.stockcode, decision=f"{d.action}: {d.reason}", served_version=d.served_version
                                   ).row() for d in decisions]
            return True, rows, f"nothing to do: all {len(codes)} products are up to date (dvc status is clean)"
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with Services(options) as services, temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
        # Prefect read its settings when imported; the context carries the API URL to the flow and, serialized
        # with every task, to workers of an existing cluster.
        services.subscribe(Progress(write))
        weekly = make_flow(DaskTaskRunner(address=services.address))
        state = weekly(root=str(root), codes=codes, cluster=bool(options.dask_address),
                       timeout_seconds=options.timeout_seconds, shared=planned.shared, changed=planned.products,
                       return_state=True)
    rows = state.result(raise_on_failure=False)
    if isinstance(rows, BaseException):
        raise FlowError(f"the flow crashed: {rows!r}") from rows
    return bool(state.is_completed()), list(rows), str(state.message or "")
