"""Which stages have anything to do: DVC's own answer, asked once in this process for every product.

Every ``dvc`` command loads the whole dvc.yaml, so asking per product costs nearly as much as asking for all.
Here DVC's index is built once and ``stage.changed()`` asked for each stage under the repository lock (the way
``dvc status`` does it); only products with a changed stage are sent to a worker, so a week in which nothing
changed costs one planning pass, not one ``dvc repro`` per product.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    shared: list[str]  # every shared stage (no @product), in pipeline order, when any of them changed; else []
    products: dict[str, list[str]]  # product -> its changed stages, in pipeline order; only products with some


def plan(root: Path, codes: list[str]) -> Plan:
    from dvc.repo import Repo

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
