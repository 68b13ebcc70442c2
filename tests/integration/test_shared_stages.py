"""The shared stages in a workspace of their own (pricetrail.flow.weekly.run_shared_stages) leave the main
workspace exactly as a plain `dvc repro` of them does there, and a kill -9 at any step of their landing is
completed by the next command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import killed_landing
import pytest
import yaml

from pricetrail.flow import chains, lockmerge, weekly
from pricetrail.flow.workspace import run_job
from pricetrail.project.copies import clone_project, dvc, set_params
from pricetrail.project.dvc_lock import read_stages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHARED = ["generate_synthetic", "ingest", "split_products"]


def shared_entries(root: Path) -> dict:
    stages = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    return {name: entry for name, entry in stages.items() if "@" not in name}


def test_the_shared_stages_in_their_own_workspace_land_what_dvc_repro_writes(
        smoke_week1, tmp_path: Path) -> None:  # noqa: ANN001 - conftest's SmokeRun
    ours = clone_project(smoke_week1.root, tmp_path / "ours")
    plain = clone_project(smoke_week1.root, tmp_path / "plain")
    for root in (ours, plain):  # one product's rows change at the source: every shared stage has work
        set_params(root, {"synthetic.drift": {"22423": 2.0}})
    stages = yaml.safe_load((ours / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    assert chains.shared_job(ours, SHARED, stages, timeout=600) is not None  # not the main-workspace fallback
    weekly.run_shared_stages(ours, SHARED, 600)
    dvc("repro", *SHARED, cwd=plain)
    assert shared_entries(ours) == shared_entries(plain)
    assert (ours / "metrics" / "ingest.json").read_bytes() == (plain / "metrics" / "ingest.json").read_bytes()
    for root in (ours, plain):
        changed = json.loads(dvc("status", "--json", cwd=root).stdout or "{}")
        assert changed and all("@" in name for name in changed), changed  # the shared stages are settled
    assert set(json.loads(dvc("status", "--json", cwd=ours).stdout)) == set(
        json.loads(dvc("status", "--json", cwd=plain).stdout))
    assert not (ours / weekly.WORKSPACES / chains.SHARED_WORKSPACE).exists()


def test_a_failing_shared_stage_stops_the_run_with_its_error_and_lands_nothing(
        smoke_week1, tmp_path: Path) -> None:  # noqa: ANN001 - conftest's SmokeRun
    root = clone_project(smoke_week1.root, tmp_path / "p")
    lock = (root / "dvc.lock").read_bytes()
    text = (root / "stockcodes.yaml").read_text(encoding="utf-8")
    (root / "stockcodes.yaml").write_text(text + '  "BAD KEY": {}\n', encoding="utf-8")  # refused before any split
    with pytest.raises(weekly.ConfigError, match=r"dvc repro generate_synthetic ingest split_products failed: .*"):
        weekly.run_shared_stages(root, SHARED, 600)
    assert (root / "dvc.lock").read_bytes() == lock


def test_a_shared_stage_that_never_ran_runs_in_the_main_workspace(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"ingest": {"cmd": "true"}}}), encoding="utf-8")
    assert chains.shared_job(tmp_path, ["ingest"], {}, timeout=60) is None


@pytest.fixture(scope="module")
def shared_result(smoke_week1, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:  # noqa: ANN001
    """A project whose shared stages ran in their workspace, nothing landed; the result; an uninterrupted
    landing's renames, in order."""
    folder = tmp_path_factory.mktemp("shared-landing")
    base = clone_project(smoke_week1.root, folder / "base")
    set_params(base, {"synthetic.drift": {"22423": 2.0}})  # every shared stage has work
    job = chains.shared_job(base, SHARED, read_stages(base), timeout=600)
    assert job is not None
    result = run_job(job, base / weekly.WORKSPACES / chains.SHARED_WORKSPACE)
    assert result.ok and set(result.lock_entries) == set(SHARED), result.log[-3000:]
    # The ingest's metrics are not in DVC's cache (cache: false): carried by value, so a recovery can write them.
    assert set(result.files) == {"metrics/ingest.json"}
    result_file = killed_landing.save_result(result, folder / "result.json")
    whole = clone_project(base, folder / "uninterrupted")
    landed = land_shared(whole, base, result_file)
    assert landed.returncode == 0 and "landed" in landed.stdout, landed.stderr[-3000:]
    renames = killed_landing.renames(landed.stdout)
    assert shared_entries(whole) == {name: result.lock_entries[name] for name in SHARED}
    return base, result_file, renames


def land_shared(root: Path, base: Path, result_file: Path, kill_before: str = "") -> subprocess.CompletedProcess:
    """Land ``result_file`` (made in ``base``) in its copy ``root``: the workspace path is the copy's."""
    workspace = json.loads(result_file.read_text(encoding="utf-8"))["workspace"].replace(str(base), str(root))
    return killed_landing.land(root, result_file, Path(workspace), kill_before, promote=False)


def test_kill_9_at_each_step_of_the_shared_stages_landing_is_completed_by_the_next_command(
        shared_result: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    base, result_file, renames = shared_result
    # The journal first (nothing has happened yet), each output moved in, the small files, dvc.lock last.
    assert renames[0] == str(lockmerge.JOURNAL) and "dvc.lock" in renames, renames
    for index, point in enumerate(renames):
        root = clone_project(base, tmp_path / f"kill-{index}")
        killed = land_shared(root, base, result_file, point)
        assert killed.returncode == -9, (point, killed.stdout[-2000:], killed.stderr[-2000:])
        lockmerge.recover(root)  # what the next `pricetrail run` does first, under the registry lock
        assert not (root / lockmerge.JOURNAL).exists(), point
        changed = json.loads(dvc("status", "--json", *SHARED, cwd=root).stdout or "{}")
        if point == str(lockmerge.JOURNAL):  # killed before the journal: nothing landed, the stages still have work
            assert "generate_synthetic" in changed and shared_entries(root) == shared_entries(base), point
        else:  # landed whole: the shared stages are settled, their outputs what dvc.lock names
            assert not changed, (point, changed)
        assert not [path for path in root.rglob(".*.tmp") if ".dvc/tmp" not in path.as_posix()], point
        assert not list(root.rglob(".*.replaced")), point
