"""Which stages have anything to do: DVC's own answer, asked once in this process for every product.

Every ``dvc`` command loads the whole dvc.yaml, so asking per product costs nearly as much as asking for all.
Here DVC's index is built once and ``stage.changed()`` asked for each stage under the repository lock (the way
``dvc status`` does it); only products with a changed stage are sent to a worker, so a week in which nothing
changed costs one planning pass, not one ``dvc repro`` per product.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pricetrail.flow import plan_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    shared: list[str]  # every shared stage (no @product), in pipeline order, when any of them changed; else []
    products: dict[str, list[str]]  # product -> its changed stages, in pipeline order; only products with some
    # The promotion decisions recorded in this very state (a no-op after a no-op), for every product asked about.
    decisions: dict[str, dict[str, Any]] | None = None
    # Products a gate stopped whose failed stage reads what it read then: not run again; {code: {stage, reason}}.
    held: dict[str, dict[str, str]] = field(default_factory=dict)


def plan(root: Path, codes: list[str]) -> Plan:
    """DVC's answer for ``codes``: from the plan record when the workspace is as it was when DVC last answered
    (:mod:`pricetrail.flow.plan_record`), or only the shared stages' own inputs changed since; else asked of DVC and
    recorded."""
    record, state = plan_record.current(root)
    wanted = set(codes)
    if record is not None and record.covers(codes) and record.fingerprint == state.fingerprint:
        log.info("planning: the workspace is as DVC last saw it; its plan is reused")
        held = {code: info for code, info in record.held.items()
                if code in wanted and code in record.products
                and plan_record.stage_inputs(root, info["stage"]) == info["inputs"]}
        products = {code: stages for code, stages in record.products.items() if code in wanted and code not in held}
        settled = record.decisions is not None and not record.shared and not products and wanted <= set(
            record.decisions)
        return Plan(shared=list(record.shared), products=products,
                    decisions={code: record.decisions[code] for code in codes} if settled else None,
                    held={code: {"stage": info["stage"], "reason": info["reason"]} for code, info in held.items()})
    if record is not None and record.covers(codes) and record.products_fingerprint == state.products_fingerprint:
        log.info("planning: only the shared stages' own inputs changed; the products' plan is reused")
        return Plan(shared=shared_stages(root),
                    products={code: stages for code, stages in record.products.items() if code in wanted})
    answer = dvc_plan(root, codes)
    plan_record.write_record(root, plan_record.record_of(state, codes, answer.shared, answer.products))
    return answer


def shared_stages(root: Path) -> list[str]:
    """The stages of dvc.yaml that are not per product (no foreach), in its order."""
    import yaml

    definition = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}
    return [name for name, stage in (definition.get("stages") or {}).items()
            if isinstance(stage, dict) and "foreach" not in stage and "matrix" not in stage]


def record_decisions(root: Path, codes: list[str], decisions: dict[str, dict[str, Any]],
                     held: dict[str, dict[str, str]] | None = None, chain: tuple[str, ...] = ()) -> None:
    """After the no-op path promoted (or kept) every product of a workspace DVC found settled but the ``held`` ones
    (stopped by a gate, their inputs as then): its decisions, so the next no-op in the same state needs neither
    DVC nor the registry's files hashed again; the held products stay recorded with their whole ``chain``."""
    _, state = plan_record.current(root)
    held = held or {}
    plan_record.write_record(root, plan_record.record_of(
        state, codes, (), {code: [f"{stage}@{code}" for stage in chain] for code in held}, decisions,
        _held_record(root, held)))


def _held_record(root: Path, held: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """``held`` ({code: {stage, reason}}) with the signature of what each failed stage reads now."""
    record = {}
    for code, info in held.items():
        inputs = plan_record.stage_inputs(root, info["stage"])
        if inputs is not None:
            record[code] = {"stage": info["stage"], "reason": info["reason"], "inputs": inputs}
    return record


def record_after_run(root: Path, codes: list[str], unsettled: set[str], chain: tuple[str, ...],
                     held: dict[str, dict[str, str]] | None = None) -> None:
    """Record the plan of the state a run leaves from the run's own results, instead of DVC's index (two minutes
    at 800 products). The flow ran the shared stages (or stopped), then every product with a changed stage, each a
    ``dvc repro`` in its workspace, and landed what DVC wrote there; a product it did not run was unchanged and
    nothing touched its files, except a promotion, which is re-checked by a run of its own. So a product whose
    runs all finished without a failure is settled, as DVC found it in its workspace, and every other one
    (``unsettled``) is recorded with its whole ``chain`` to run: DVC, in its workspace, then skips what did not
    change. The flow tests compare this record with DVC's own plan after a run that settles and one that fails.
    ``held``: the unsettled products a gate stopped ({code: {stage, reason}}), not run again while what their
    failed stage reads stays as it is now."""
    _, state = plan_record.current(root)
    plan_record.write_record(root, plan_record.record_of(
        state, codes, (), {code: [f"{stage}@{code}" for stage in chain] for code in codes if code in unsettled},
        held=_held_record(root, {code: info for code, info in (held or {}).items() if code in unsettled})))


def after_shared(root: Path, codes: list[str], before: dict[str, list[str]]) -> dict[str, list[str]]:
    """The products' changed stages once the shared stages have run, from DVC's plan made before them (``before``).

    A shared stage writes only its own outputs, so a product's stage that was unchanged before changes only where
    it depends on a shared output whose hash now differs from what its dvc.lock entry records (a product's file of
    the split): those are hashed, one file each, instead of DVC's whole index being built again (two minutes at 800
    products). A dependency recorded in another form than DVC 3's md5 is left to DVC's own answer."""
    from pricetrail.project.dvc_lock import dvc_hash, read_stages

    stages = read_stages(root)
    shared_outs = [str(out["path"]).rstrip("/") for name, entry in stages.items() if "@" not in name
                   for out in entry.get("outs") or []]
    wanted = set(codes)
    changed = {code: list(names) for code, names in before.items() if code in wanted}
    for name, entry in stages.items():
        code = name.split("@", 1)[1] if "@" in name else None
        if code not in wanted or name in changed.get(code, ()):
            continue
        for dep in entry.get("deps") or []:
            path = str(dep.get("path", ""))
            if not any(path == out or path.startswith(f"{out}/") for out in shared_outs):
                continue
            if dep.get("hash") != "md5" or not dep.get("md5"):
                return dvc_plan(root, codes).products
            if not (root / path).exists() or dvc_hash(root / path) != dep["md5"]:
                changed.setdefault(code, []).append(name)
                break
    return changed


def dvc_plan(root: Path, codes: list[str]) -> Plan:
    """DVC's own answer (its index and ``stage.changed()``), whatever the record says."""
    from dvc.repo import Repo

    from pricetrail.project.dvc_cli import install

    install()  # dvc.lock from the kept parse of its bytes: 16 s a read at 800 products otherwise
    wanted = set(codes)
    shared: list[str] = []
    shared_changed = False
    products: dict[str, list[str]] = {}
    with Repo(str(root)) as repo, repo.lock:
        for stage in repo.index.stages:
            name = stage.name
            if "@" not in name:
                # `changed()` looks at a stage's own deps only: a changed generator leaves ingest "unchanged"
                # until it has run, so all shared stages are reproduced together.
                shared.append(name)
                shared_changed = shared_changed or stage.changed()
                continue
            code = name.split("@", 1)[1]
            if code in wanted and stage.changed():
                products.setdefault(code, []).append(name)
    return Plan(shared=shared if shared_changed else [], products=products)
