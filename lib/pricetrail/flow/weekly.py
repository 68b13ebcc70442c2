"""The weekly job: a Prefect flow that fans the products' DVC chains out over a Dask cluster.

1. Shared stages (synthetic data, ingest, the split by product) run once, here, in a workspace of their own
   (:func:`run_shared_stages`).
2. DVC says which products have anything to do (:mod:`pricetrail.flow.planning`); each becomes one task that
   runs its chain in an isolated workspace (:mod:`pricetrail.flow.workspace`) on a Dask worker.
3. Results come back as tasks finish, each batch in one dvc.lock write (:mod:`pricetrail.flow.lockmerge`), and
   are promoted in the main workspace while the workers run the rest; a promoted product's drift gate is then
   re-checked (one more task), so ``dvc status`` ends clean and the next run does nothing.
4. A summary table is printed and published as a Prefect table artifact, and the plan of the state the run
   leaves is recorded from its results; with --push, everything (outputs and run-cache) is then pushed to the
   default DVC remote, and a failed push fails the run (:mod:`pricetrail.registry.remote`).

A product's failure (a gate, an error) stops only that product. Retries are for transient errors only."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pricetrail.flow import lockmerge
from pricetrail.flow.chains import (
    CHAIN,
    SHARED_WORKSPACE,
    WORKSPACES,
    Completions,
    chain_targets,
    chain_task,
    product_jobs,
    shared_job,
)
from pricetrail.flow.planning import after_shared, plan, record_after_run, record_decisions
from pricetrail.flow.preflight import FlowError, RunOptions, check_inputs
from pricetrail.flow.services import Progress, Services
from pricetrail.flow.settings import offline_environment
from pricetrail.flow.summary import ProductSummary, fleet_report, write_log, write_summary
from pricetrail.flow.workspace import JobResult, run_job
from pricetrail.project import locking
from pricetrail.project.dvc import checked_dvc
from pricetrail.project.dvc_lock import read_stages
from pricetrail.project.files import ConfigError
from pricetrail.registry import decision_log, drift_reference, promotion


def run_shared_stages(project: Path, shared: list[str], timeout_seconds: float) -> None:
    """The shared stages, in a workspace of their own where it sees what the main one does (see
    :func:`pricetrail.flow.chains.shared_job`), else in the main workspace; a failure stops the run."""
    job = shared_job(project, shared, read_stages(project), timeout=timeout_seconds)
    if job is None:
        checked_dvc(["repro", *shared], project)
        return
    workdir = project / WORKSPACES / SHARED_WORKSPACE  # the workspace and, beside it, what it links from ../
    if workdir.exists():
        shutil.rmtree(workdir)
    result = run_job(job, workdir)
    if not result.ok:
        raise ConfigError(f"dvc repro {' '.join(shared)} failed: {result.reason}")
    lockmerge.land(project, [result], move_outputs=True, promote=lambda codes: None, promote_codes=[])
    shutil.rmtree(workdir)


HELD = "nothing it reads changed since: not run again"


def held_summary(code: str, info: dict[str, str], **fields: Any) -> ProductSummary:
    """The row of a product a gate stopped in an earlier run whose failed stage reads what it read then."""
    return ProductSummary(code, failed_stage=info["stage"], reason=f"{info['reason']} ({HELD})", **fields)


def weekly_fn(root: str, codes: list[str], cluster: bool, timeout_seconds: float,
              shared: list[str], changed: dict[str, list[str]],
              held: dict[str, dict[str, str]] | None = None) -> Any:
    """The flow body (wrapped by :func:`make_flow`); ``shared``, ``changed`` and ``held`` are the plan made before
    it (``held``: products a gate stopped whose failed stage's inputs are as they were: reported, not run)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.states import Completed, Failed

    project = Path(root)
    summaries = {code: ProductSummary(code) for code in codes}
    if shared:
        run_shared_stages(project, shared, timeout_seconds)
        changed = after_shared(project, codes, changed)  # which products the shared outputs changed
    starts = {code: chain_targets(stages) for code, stages in changed.items()}
    held = {code: info for code, info in (held or {}).items() if code not in starts}
    for code, info in held.items():
        summaries[code] = held_summary(code, info)
    if cluster and starts:
        # Workers share only the remote with us: the shared stages' outputs must be there before they start.
        shared_stages = [name for name in read_stages(project) if "@" not in name]
        checked_dvc(["push", *shared_stages], project)
    workdir = None if cluster else str(project / WORKSPACES)
    # dvc.lock as the main workspace holds it, kept in step with each bring-back instead of parsed again per batch
    # (a catalogue's lockfile is megabytes of YAML).
    stages = read_stages(project)
    chain = chain_task()
    completions = Completions()
    for job in product_jobs(project, list(starts), starts, cluster=cluster, timeout=timeout_seconds,
                     stages=stages) if starts else []:
        completions.add(chain.submit(job, workdir), "chain", job.code)
    decisions: dict[str, decision_log.Decision] = {}
    logs: dict[str, str] = {}

    def promote(batch: list[str]) -> None:
        # Promotion changes a promoted product's drift reference: its gate is re-checked against the served model
        # (a task like the chains), so the reports describe the served model and the next run has nothing to do.
        new = promotion.promote_all(project, batch, stages=stages)
        decisions.update({decision.stockcode: decision for decision in new})
        promoted = [decision.stockcode for decision in new if decision.action == "promoted"]
        recheck = {code: (f"drift_reference@{code}",) for code in promoted}
        for job in product_jobs(project, promoted, recheck, cluster=cluster, timeout=timeout_seconds,
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
        promotion.refresh_lineage(project, decisions.values())
    decisions_in_order = [decisions[code] for code in codes if code in decisions]
    for decision in decisions_in_order:
        summaries[decision.stockcode].decision = f"{decision.action}: {decision.reason}"
        summaries[decision.stockcode].served_version = decision.served_version
        if decision.action == "error":
            summaries[decision.stockcode].failed_stage = summaries[decision.stockcode].failed_stage or "promotion"
            summaries[decision.stockcode].reason = summaries[decision.stockcode].reason or decision.reason
    for code, text in logs.items():
        write_log(project, code, text)
    rows = [summaries[code].row() for code in codes]
    write_summary(project, rows, {code: summaries[code].stage_seconds for code in codes})
    create_table_artifact(key="pricetrail-weekly-summary", table=rows,
                          description="Per product: stages run, gate verdicts, promotion, duration")
    create_markdown_artifact(key="pricetrail-weekly-fleet", markdown="\n".join(
        ["# The fleet this week", "", *(f"    {line}" for line in fleet_report(rows))]),
        description="Counts by result, decision, failed stage and gate check; the slowest; every failure")
    # The plan of the state the run leaves, recorded now: a following week with nothing new does not ask DVC.
    # A gate's verdict (not an error) is kept with what its stage read: next time, nothing changed, not run again.
    stopped = {code: {"stage": summary.failed_stage, "reason": summary.reason or ""} for code, summary in
               summaries.items() if summary.failed_stage and (summary.reason or "").startswith("GATE FAILED")}
    record_after_run(project, codes, {code for code in codes if summaries[code].failed_stage}, CHAIN,
                     {**stopped, **held})
    failed = [row for row in rows if row["result"] == "failed"]
    if failed:
        names = ", ".join(f"{row['product']} ({row['failed stage']}: {row['reason']})" for row in failed)
        return Failed(message=f"{len(failed)} of {len(rows)} products failed: {names}", data=rows)
    return Completed(message=f"{len(rows)} products done", data=rows)


def make_flow(task_runner: Any) -> Any:
    from prefect import flow

    return flow(weekly_fn, name="pricetrail-weekly", task_runner=task_runner, log_prints=False,
                validate_parameters=True)


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
    from pricetrail.registry.remote import RemoteError, transfer

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
    drift_reference.ensure_records(root, codes)
    planned = plan(root, codes)
    if not planned.shared and not planned.products and not os.environ.get("PREFECT_API_URL"):
        # Nothing to run and no Prefect server to record it in: starting a temporary one would only cost time.
        # A pending promotion (a plain `dvc repro` ran the chains) goes through the flow, which re-checks the drift
        # gates it changes; keeps are recorded here, and with them the decisions, which the same state gives again.
        settled = planned.decisions
        stages = read_stages(root) if settled is None else {}
        if settled is None and not any(d.action in ("promoted", "error")
                                       for d in promotion.promote_all(root, codes, dry_run=True, stages=stages)):
            settled = {d.stockcode: {"decision": f"{d.action}: {d.reason}", "served_version": d.served_version}
                       for d in promotion.promote_all(root, codes, stages=stages)}
            record_decisions(root, codes, settled, planned.held, CHAIN)
        if settled is not None:
            held = planned.held
            rows = [(held_summary(code, held[code], decision=settled[code]["decision"],
                                  served_version=settled[code]["served_version"]) if code in held else
                     ProductSummary(code, decision=settled[code]["decision"],
                                    served_version=settled[code]["served_version"])).row() for code in codes]
            if held:
                names = ", ".join(f"{code} ({info['stage']}: {info['reason']})" for code, info in held.items())
                return False, rows, (f"nothing to do: {len(codes) - len(held)} of {len(codes)} products are up to "
                                     f"date; {len(held)} stopped by a gate before, and {HELD}: {names}")
            return True, rows, f"nothing to do: all {len(codes)} products are up to date (dvc status is clean)"
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with Services(options) as services, temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
        # Prefect read its settings when imported; the context carries the API URL to the flow and, serialized
        # with every task, to workers of an existing cluster.
        services.subscribe(Progress(write))
        weekly = make_flow(DaskTaskRunner(address=services.address))
        state = weekly(root=str(root), codes=codes, cluster=bool(options.dask_address),
                       timeout_seconds=options.timeout_seconds, shared=planned.shared, changed=planned.products,
                       held=planned.held, return_state=True)
    rows = state.result(raise_on_failure=False)
    if isinstance(rows, BaseException):
        raise FlowError(f"the flow crashed: {rows!r}") from rows
    return bool(state.is_completed()), list(rows), str(state.message or "")
