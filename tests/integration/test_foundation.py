"""The foundation under real DVC: hostile stockcodes.yaml keys never reach a command or a deleted path, and adding
a product re-runs only what that product changes.

Each test works in its own throwaway copy (pricetrail.project.copies); the victims are folders of that
copy's temporary tree, so nothing outside it can be touched even when a check fails.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pricetrail.project.copies import clone_project, dvc, make_copy, pricetrail, run, set_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STAGES = ["etl_pipeline", "drift_reference", "data_drift_check", "preprocess", "tune_primary_model",
          "inference_primary_model", "assess_model_risk"]
INJECTION = "x;cd ..;rm -rf victim;"  # run by the shell as part of `python stages/etl_pipeline.py --stockcode ...`
ESCAPE = "../victim"  # models/../victim is the project's victim/, which DVC deletes before running the stage


def ran(output: str) -> list[str]:
    """Stages run (or restored from DVC's run-cache), from `dvc repro`'s own lines or from the progress lines of
    `pricetrail run` ("  <code>  running  <stage>  <s> s")."""
    found = re.findall(r"Running stage '([^']+)'", output) + re.findall(r"Stage '([^']+)' is cached - skipping run",
                                                                          output)
    return found + [f"{stage}@{code}" for code, stage in
                    re.findall(r"^  (\S+)\s+(?:running|restored)\s+(\S+)\s", output, flags=re.M)]


def plant(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "keep.txt").write_text("not the pipeline's\n", encoding="utf-8")
    return folder / "keep.txt"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A smoke copy whose ingest reads a fixed input file, so generate_synthetic is upstream of nothing."""
    root = make_copy(tmp_path / "work" / "project")
    dvc("repro", "generate_synthetic", cwd=root)
    (root / "input").mkdir()
    shutil.copy(root / "data/raw/synthetic/transactions.parquet", root / "input" / "transactions.parquet")
    set_params(root, {"ingest.input": "input/transactions.parquet"})
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "fixed input"], root)
    return root


@pytest.mark.parametrize("key", [INJECTION, ESCAPE])
def test_hostile_stockcode_keys_touch_nothing(project: Path, key: str) -> None:
    victims = [plant(project.parent / "victim"), plant(project / "victim"), plant(project / "data" / "victim")]
    (project / "stockcodes.yaml").write_text(f'stockcodes:\n  "85123A": {{}}\n  "{key}": {{}}\n', encoding="utf-8")

    refused = pricetrail("run", cwd=project, check=False)
    assert refused.returncode != 0 and "$ dvc" not in refused.stdout, refused.stdout
    assert f"stockcode {key!r} is not accepted" in refused.stderr, refused.stderr

    for args in (["repro"], ["repro", "--keep-going"], ["repro", "--keep-going", f"etl_pipeline@{key}"]):
        result = dvc(*args, cwd=project, check=False)
        assert result.returncode != 0, result.stdout
        started = ran(result.stdout)
        for victim in victims:
            assert victim.is_file(), (args, victim, started, result.stderr[-2000:])
        assert not [name for name in started if name.split("@")[0] in STAGES], (args, started)
        if key == INJECTION:  # DVC accepts the graph; a stage refuses the key (split_products, if DVC goes on)
            assert f"stockcode {key!r} is not accepted" in result.stderr, result.stderr[-3000:]
            assert "--keep-going" not in args or "split_products" in started, started


def test_plain_dvc_repro_on_a_fresh_project_reaches_every_gate(smoke_week1) -> None:
    # The first thing a DVC user types, with no pricetrail command before it (the shared fixture ran it on a fresh
    # copy: no registry record existed): every product's chain ran to its risk gate.
    started = set(ran(smoke_week1.dvc_stdout))
    assert {f"{stage}@{code}" for stage in STAGES for code in ("85123A", "22423")} <= started, sorted(started)
    # Then `pricetrail run` promoted what passed and re-checked those products' drift gates against their models.
    assert smoke_week1.stdout.count("promoted: passed the drift gate") == 2, smoke_week1.stdout


def test_adding_a_product_by_one_line_reruns_only_that_products_chain(tmp_path: Path, smoke_week1) -> None:
    root = clone_project(smoke_week1.root, tmp_path / "project")
    with (root / "stockcodes.yaml").open("a", encoding="utf-8") as handle:
        handle.write('  "85099B": {description: "JUMBO BAG RED RETROSPOT"}\n')
    plain = dvc("repro", "-R", ".", cwd=root)  # DVC alone: no record of the new product exists yet
    started = set(ran(plain.stdout))
    new_chain = {f"{stage}@85099B" for stage in STAGES}
    assert new_chain <= started, sorted(started)
    # The shared stages re-run (the synthetic data and its Parquet gained a product); each other product's ETL
    # depends on its own file of split_products, which keeps its bytes, so none of their stages re-runs.
    assert started - new_chain <= {"generate_synthetic", "ingest", "split_products"}, sorted(started)
    assert not [name for name in started if name.endswith(("@85123A", "@22423"))], sorted(started)
    # The promotion loop keeps working on what DVC alone ran: promote, re-check, then nothing to do.
    promoted = pricetrail("run", cwd=root, check=False)
    assert "85099B" in promoted.stdout
    assert set(ran(promoted.stdout)) <= {"drift_reference@85099B", "data_drift_check@85099B"}, promoted.stdout
    status = dvc("status", cwd=root).stdout
    assert "Data and pipelines are up to date" in status, status
    again = pricetrail("run", cwd=root)
    assert "nothing to do" in again.stdout, again.stdout
