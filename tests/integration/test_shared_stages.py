"""The shared stages in a workspace of their own (pricetrail.flow.weekly.run_shared_stages) leave the main
workspace exactly as a plain `dvc repro` of them does there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pricetrail.flow import chains, weekly
from pricetrail.project.copies import clone_project, dvc, set_params

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
