"""The real thing: `dvc repro` of the smoke profile (2 products, all six stages) in a throwaway copy.

One copy is shared by the tests of this module, in order: full run, settle, no-op rerun, drift gate, risk gate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from smoke_project import dvc, make_copy, pricetrail, set_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMOKE_CODES = ["85123A", "22423"]
STAGES = ["etl_pipeline", "data_drift_check", "preprocess", "tune_primary_model", "inference_primary_model",
          "assess_model_risk"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_copy(tmp_path_factory.mktemp("smoke") / "project")
    result = pricetrail("run", cwd=root)
    assert "promoted" in result.stdout, result.stdout
    return root


def test_stage_list_has_every_stage_once_per_product(project: Path) -> None:
    listed = [line.split()[0] for line in dvc("stage", "list", cwd=project).stdout.splitlines() if line.strip()]
    expected = {"generate_synthetic", "ingest"} | {f"{s}@{c}" for s in STAGES for c in SMOKE_CODES}
    assert sorted(listed) == sorted(expected)


def test_dag_has_one_chain_per_product(project: Path) -> None:
    dag = dvc("dag", "--dot", cwd=project).stdout
    for code in SMOKE_CODES:
        for upstream, downstream in zip(STAGES, STAGES[1:], strict=False):
            assert f'"{upstream}@{code}" -> "{downstream}@{code}"' in dag
    other = SMOKE_CODES[1]
    assert f'"etl_pipeline@{SMOKE_CODES[0]}" -> "data_drift_check@{other}"' not in dag


def test_after_run_everything_is_up_to_date_and_rerun_is_a_noop(project: Path) -> None:
    status = dvc("status", cwd=project).stdout
    assert "Data and pipelines are up to date" in status, status
    rerun = dvc("repro", cwd=project).stdout
    assert "Running stage" not in rerun, rerun


def test_every_product_was_promoted_with_lineage(project: Path) -> None:
    for code in SMOKE_CODES:
        served = json.loads((project / "registry" / code / "served.json").read_text())
        verdict = json.loads((project / "metrics" / code / "verdict.json").read_text())
        assert served["version"] == verdict["model_version"] and verdict["promoted"]
        version_dir = project / served["path"]
        lineage = json.loads((version_dir / "lineage.json").read_text())
        assert lineage["features_md5"] and lineage["params_hash"]
        assert f"tune_primary_model@{code}" in lineage["dvc_lock"]
        assert sorted(p.name for p in version_dir.iterdir()) == sorted(
            ["model.pt", "preprocessor.skops", "daily.parquet", "reference.parquet", "verdict.json", "lineage.json"])
        drift = json.loads((project / "metrics" / code / "drift.json").read_text())
        assert drift["reference"]["source"].startswith("training data of served model")


def test_metrics_and_plots_are_declared(project: Path) -> None:
    shown = json.loads(dvc("metrics", "show", "--json", cwd=project).stdout)
    files = {name for workspace in shown.values() for name in workspace["data"]}
    for code in SMOKE_CODES:
        for kind in ("etl", "drift", "validation", "test", "verdict"):
            assert f"metrics/{code}/{kind}.json" in files
    out = project / "plots.html"
    dvc("plots", "show", "-o", str(out.parent / "plots_out"), cwd=project)
    html = (out.parent / "plots_out" / "index.html").read_text()
    assert "shap_importance" in html and "mean_abs_shap" in html


def test_recommendation_from_the_promoted_model(project: Path) -> None:
    result = json.loads(pricetrail("recommend", "85123A", "--date", "2011-11-14", cwd=project).stdout)
    low, high = result["observed_range"]
    assert low <= result["price"] <= high and result["within_observed_range"]
    assert result["expected_revenue"] > 0


def test_drift_stops_only_that_products_chain(project: Path) -> None:
    set_params(project, {"synthetic.drift": {"85123A": 2.0}})
    result = dvc("repro", "--keep-going", cwd=project, check=False)
    assert result.returncode != 0
    gate_lines = [line for line in result.stderr.splitlines() if line.startswith("GATE FAILED")]
    assert len(gate_lines) == 1 and "data_drift_check@85123A" in gate_lines[0], result.stderr[-3000:]
    assert "drifted (" in gate_lines[0]
    assert "Running stage 'tune_primary_model@85123A'" not in result.stdout
    drift = json.loads((project / "metrics" / "85123A" / "drift.json").read_text())
    assert drift["drift_detected"] and (project / "reports" / "85123A" / "drift.html").is_file()
    # The other product is unaffected and complete.
    status = dvc("status", "assess_model_risk@22423", cwd=project).stdout
    assert "up to date" in status, status
    decision = pricetrail("promote", "--stockcode", "85123A", cwd=project).stdout
    assert "kept" in decision and "drift gate failed" in decision
    set_params(project, {"synthetic.drift": {}})
    dvc("repro", "--keep-going", cwd=project)


def test_failed_risk_gate_keeps_the_earlier_model(project: Path) -> None:
    before = json.loads((project / "registry" / "22423" / "served.json").read_text())["version"]
    set_params(project, {"assess_model_risk.min_improvement_over_baseline": 0.99,
                         "tune_primary_model.search_space.units": [8, 12]})  # a new model
    dvc("repro", "--keep-going", cwd=project)
    verdict = json.loads((project / "metrics" / "22423" / "verdict.json").read_text())
    assert not verdict["promoted"] and "beats_baseline" in verdict["failed_checks"]
    check = next(c for c in verdict["checks"] if c["name"] == "beats_baseline")
    assert check["threshold"] == 0.99 and check["value"] is not None and not check["passed"]
    decision = pricetrail("promote", "--stockcode", "22423", cwd=project).stdout
    assert "kept" in decision and "beats_baseline" in decision
    after = json.loads((project / "registry" / "22423" / "served.json").read_text())["version"]
    assert after == before != verdict["model_version"]
