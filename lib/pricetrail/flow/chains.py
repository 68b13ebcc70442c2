"""The flow's tasks: one product's DVC chain per task, the jobs that describe them, and their results as they
finish."""

from __future__ import annotations

import queue
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pricetrail.flow import lockmerge
from pricetrail.flow.preflight import default_remote
from pricetrail.flow.workspace import (
    JobResult,
    ProductJob,
    TransientJobError,
    project_files,
    run_job,
)
from pricetrail.project.config import load_stockcodes
from pricetrail.project.dvc_lock import read_stages
from pricetrail.registry import drift_reference
from pricetrail.registry.artifacts import dvc_cache_dir

PROGRESS_TOPIC = "pricetrail-progress"
CHAIN = ("etl_pipeline", "drift_reference", "data_drift_check", "preprocess", "tune_primary_model",
         "inference_primary_model", "assess_model_risk")
WORKSPACES = Path(".dvc/tmp/pricetrail/workspaces")


def product_jobs(root: Path, codes: list[str], starts: dict[str, tuple[str, ...]], *, cluster: bool, timeout: float,
          stages: dict[str, Any] | None = None) -> list[ProductJob]:
    products = load_stockcodes(root)
    stages = read_stages(root) if stages is None else stages
    shared_outs = [str(out["path"]) for name, entry in stages.items() if "@" not in name
                   for out in entry.get("outs", []) or []]
    remote = default_remote(root) if cluster else None
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
            reference = drift_reference.read_drift_reference(root, code)
            if reference.artifact is not None:
                fetch = ((reference.artifact.md5, reference.artifact.size),)
        jobs.append(ProductJob(
            code=code, targets=starts[code], downstream=True,
            files=project_files(root, code, stockcodes_entry=products[code], lock_entries=entries),
            outputs=tuple(outputs), main_root=None if cluster else str(root),
            cache_dir=None if cluster else str(dvc_cache_dir(root)), remote=remote, fetch_objects=fetch,
            timeout_seconds=timeout))
    return jobs


SHARED_WORKSPACE = "_shared"  # not a stockcode (letters and digits only): never a product's workspace


def shared_job(root: Path, targets: list[str], stages: dict[str, Any], *, timeout: float) -> ProductJob | None:
    """The shared stages (synthetic data, ingest, the split by product) as a job of their own, run here.

    In the main workspace ``dvc repro`` of the shared stages first loads every product's stages (5,600 at 800
    products: about a minute), in a workspace whose dvc.yaml holds only the shared stages, three; the lock entries
    and outputs then land as a product's do. None when that workspace could not see what the main one sees: a
    shared stage that never ran (no recorded paths to link), a dependency outside the project more than one folder
    up (its relative path is linked beside the workspace), a dvc.yaml that is not a plain mapping of stages."""
    import yaml

    entries = {name: entry for name, entry in stages.items() if "@" not in name}
    definition = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    if set(targets) - set(entries) or not isinstance(definition, dict) or not isinstance(
            definition.get("stages"), dict):
        return None
    own = {name: stage for name, stage in definition["stages"].items()
           if isinstance(stage, dict) and "foreach" not in stage and "matrix" not in stage}
    if set(own) != set(entries):
        return None
    files = {path: content for path, content in project_files(root, SHARED_WORKSPACE, stockcodes_entry={},
                                                              lock_entries=entries).items()
             if not path.startswith("registry/")}
    files["stockcodes.yaml"] = (root / "stockcodes.yaml").read_bytes()  # the split reads every product
    files["dvc.yaml"] = yaml.safe_dump({**definition, "stages": own}, sort_keys=False).encode()
    linked: list[str] = []
    for entry in entries.values():
        for item in [*(entry.get("deps") or []), *(entry.get("outs") or [])]:
            path = str(item.get("path", ""))
            if not path or Path(path).is_absolute() or path in files:
                continue
            parts = Path(path).parts
            if parts[0] == ".." and (len(parts) < 2 or parts[1] == ".."):
                return None
            linked.append(path)
    # A file inside a linked folder (ingest reads the generator's output folder's file) is linked with it.
    outermost = [path for path in set(linked)
                 if not any(other != path and Path(path).is_relative_to(other) for other in linked)]
    return ProductJob(code=SHARED_WORKSPACE, targets=tuple(targets), downstream=False, files=files,
                      outputs=tuple(sorted(outermost)), main_root=str(root), cache_dir=str(dvc_cache_dir(root)),
                      timeout_seconds=timeout, shared=True)


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


def chain_task() -> Any:
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(product_chain_fn, name="product-chain", task_run_name="{job.code}", cache_policy=NO_CACHE,
                retries=2, retry_delay_seconds=5, retry_condition_fn=_transient_only)


class Completions:
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


def chain_targets(stages: list[str]) -> tuple[str, ...]:
    """What ``dvc repro --downstream`` must start from to run every changed stage of a product: the first changed
    stage of its chain, and its drift_reference stage when that changed too (it has no upstream in the chain, so
    nothing downstream of the ETL reaches it)."""
    def position(name: str) -> int:
        return CHAIN.index(name.split("@")[0]) if name.split("@")[0] in CHAIN else -1

    first = min(stages, key=position)
    extra = [name for name in stages if name.startswith("drift_reference@") and name != first]
    return (first, *extra)
