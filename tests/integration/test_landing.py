"""kill -9 at each step of a run's landing (outputs moved in, dvc.lock merged, the product promoted): the next
command completes it, and the registry's records always match dvc.lock.

One product's chain is retrained once in a workspace, as the weekly flow's task does; each trial lands that
result in a copy of the project from a process that SIGKILLs itself just before one chosen rename (every write of
the landing is a rename: a moved output, an atomic file write, dvc.lock, a registry record), then completes it the
way the next `pricetrail run` or `pricetrail promote` does.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import killed_landing
import pytest

from pricetrail.flow import lockmerge
from pricetrail.flow.chains import WORKSPACES, product_jobs
from pricetrail.flow.workspace import run_job
from pricetrail.project.copies import clone_project, dvc, set_params
from pricetrail.project.dvc_lock import read_stages
from pricetrail.registry import artifacts, records

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CODE = "85123A"
RETRAINED = [f"{stage}@{CODE}" for stage in ("tune_primary_model", "inference_primary_model", "assess_model_risk")]

@dataclasses.dataclass(frozen=True)
class Retrained:
    base: Path  # the project with the finished workspace, nothing landed
    result_file: Path
    before: str  # the served version before the landing
    renames: list[str]  # every rename of an uninterrupted landing, in order
    after: str  # the version an uninterrupted landing serves


def trial_copy(base: Path, target: Path) -> Path:
    """A copy that shares the base's immutable files by hard link; git and DVC's own state are copied (they are
    written in place)."""
    def copy(source: str, destination: str) -> None:
        if "/.git/" in source or "/.dvc/tmp/" in source:
            shutil.copy2(source, destination)
        else:
            os.link(source, destination)

    shutil.copytree(base, target, symlinks=True, copy_function=copy)
    return target


def land(root: Path, result_file: Path, kill_before: str = "") -> subprocess.CompletedProcess:
    return killed_landing.land(root, result_file, root / WORKSPACES / CODE, kill_before, promote=True)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory, smoke_week1) -> Retrained:
    folder = tmp_path_factory.mktemp("landing")
    base = clone_project(smoke_week1.root, folder / "base")
    set_params(base, {"tune_primary_model.search_space.units": [8, 12], "tune_primary_model.n_trials": 1,
                      "tune_primary_model.max_epochs": 6})
    before = records.served_model(base, CODE).version  # type: ignore[union-attr]
    job = product_jobs(base, [CODE], {CODE: ("tune_primary_model@" + CODE,)}, cluster=False, timeout=600)[0]
    result = run_job(job, base / WORKSPACES)
    assert result.ok and set(result.lock_entries) == set(RETRAINED), result.log[-3000:]
    result_file = killed_landing.save_result(result, folder / "result.json")
    whole = trial_copy(base, folder / "uninterrupted")
    landed = land(whole, result_file)
    assert landed.returncode == 0 and "landed" in landed.stdout, landed.stderr[-3000:]
    renames = killed_landing.renames(landed.stdout)
    after = records.served_model(whole, CODE).version  # type: ignore[union-attr]
    assert after != before
    return Retrained(base=base, result_file=result_file, before=before, renames=renames, after=after)


def records_match_the_lock(root: Path) -> str:
    """The served version's record against dvc.lock: its artifacts are what the lock's outputs hold, and the
    lineage stored with it is the lock's entries for the retrained stages. Returns the served version."""
    served = records.served_model(root, CODE)
    assert served is not None
    stages = read_stages(root)
    outs = {out["path"]: out["md5"] for name in RETRAINED for out in stages[name]["outs"]}
    record = records.version_record(root, CODE, served.version)
    for name in RETRAINED:
        recorded = record["stages"][name]["outs"]
        assert recorded == {path: md5 for path, md5 in outs.items() if path in recorded}, name
    for artifact in served.artifacts.values():
        if artifact.out in outs:
            assert artifact.out_md5 == outs[artifact.out], artifact
    served.resolve(artifacts.local_sources(root))
    return served.version


KILL_POINTS = [
    "landing.json",  # the journal: nothing has happened yet
    "models/.85123A.replaced",  # the old model folder about to be moved aside
    "models/85123A",  # the old one aside, the new one not yet in: no model folder at all
    "data/inference/85123A",  # the model moved in, the inference outputs not yet
    "metrics/85123A/verdict.json",  # the outputs in, the small files being written
    "dvc.lock",  # everything in place, dvc.lock not yet merged
    "registry/85123A/versions/{after}.json",  # merged, the promotion's first record
    "registry/85123A/history.jsonl",  # the version file written, the decision not yet recorded
    "registry/85123A/served.json",  # the decision recorded, served.json not yet switched
    "registry/85123A/drift_reference.json",  # switched, the drift reference not yet
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_at_each_step_of_a_landing_is_completed_by_the_next_command(retrained: Retrained, tmp_path: Path,
                                                                          point: str) -> None:
    kill_before = point.format(after=retrained.after)
    if point == "landing.json":
        kill_before = str(lockmerge.JOURNAL)
    assert kill_before in retrained.renames, retrained.renames  # the step exists: the trial kills at it
    root = trial_copy(retrained.base, tmp_path / "project")
    killed = land(root, retrained.result_file, kill_before)
    assert killed.returncode == -9, (killed.stdout[-2000:], killed.stderr[-2000:])
    # Killed: the product serves its old record untouched, or the new one only once dvc.lock names its outputs.
    served = records.served_model(root, CODE)
    assert served is not None and served.version in (retrained.before, retrained.after)
    if served.version == retrained.after:
        assert records_match_the_lock(root) == retrained.after
    else:
        served_json = Path("registry") / CODE / "served.json"
        assert (root / served_json).read_bytes() == (retrained.base / served_json).read_bytes()
    # The next command that takes the registry lock (pricetrail run, promote, gc) completes the landing.
    lockmerge.recover(root)
    assert not (root / lockmerge.JOURNAL).exists()
    expected = retrained.before if point == "landing.json" else retrained.after
    assert records_match_the_lock(root) == expected
    status = dvc("status", *RETRAINED, cwd=root).stdout
    # Nothing landed when the journal was not written: the retrained params are still ahead of the lock (the next
    # run retrains); otherwise the workspace is exactly what dvc.lock names.
    assert "changed outs" not in status and "deleted" not in status, status
    assert point == "landing.json" or "changed" not in status, status
    assert not [path for path in root.rglob(".*.tmp") if ".dvc/tmp" not in path.as_posix()]
    assert not list(root.rglob(".*.replaced"))
