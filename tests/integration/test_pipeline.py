"""The real thing: `pricetrail run` (dvc repro of all six stages per product) in a throwaway git + DVC copy.

One copy is shared by the tests of this module, in order, like a user's weeks: a first run of the two smoke
products; a third product whose data drifted; accepting that drift; new models and a rollback; an unassessed model;
a failed risk gate; and garbage collection that keeps every version the registry can roll back to.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pricetrail.project.copies import clone_project, commit, dvc, pricetrail, run, set_params
from pricetrail.project.files import file_md5
from pricetrail.registry import artifacts, records

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMOKE_CODES = ["85123A", "22423"]
THIRD = "85099B"
UNASSESSED: dict[str, str] = {}  # md5 of a model that was never committed nor promoted: gc may collect it
CHEAP_TUNING = {"tune_primary_model.n_trials": 1, "tune_primary_model.max_epochs": 6}  # retrains after week 1
STAGES = ["etl_pipeline", "drift_reference", "data_drift_check", "preprocess", "tune_primary_model",
          "inference_primary_model", "assess_model_risk"]
# The chain's data flow: drift_reference feeds the drift gate beside the ETL (it reads no data).
EDGES = [("etl_pipeline", "data_drift_check"), ("drift_reference", "data_drift_check"),
         ("data_drift_check", "preprocess"), ("preprocess", "tune_primary_model"),
         ("tune_primary_model", "inference_primary_model"), ("inference_primary_model", "assess_model_risk")]


def stages_run(output: str) -> set[str]:
    """Stages that ran, or were restored from DVC's run-cache (same deps as an earlier run): from `dvc repro`'s
    own lines, or from the progress lines of `pricetrail run` ("  <code>  running  <stage>  <s> s")."""
    found = set(re.findall(r"Running stage '([^']+)'", output)) | set(
        re.findall(r"Stage '([^']+)' is cached - skipping run", output))
    found |= {f"{stage}@{code}" for code, stage in re.findall(r"^  (\S+)\s+(?:running|restored)\s+(\S+)\s", output,
                                                               flags=re.M)}
    return found


def failures(output: str) -> dict[str, str]:
    """Product -> "stage: reason" from the lines under `pricetrail run`'s summary table."""
    return dict(re.findall(r"^  (\S+): (\S+@\S+: .*)$", output, flags=re.M))


def served_version(root: Path, code: str) -> str | None:
    served = records.served_model(root, code)
    return served.version if served else None


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, smoke_week1) -> Path:
    assert smoke_week1.stdout.count("promoted: passed the drift gate") == len(SMOKE_CODES), smoke_week1.stdout
    return clone_project(smoke_week1.root, tmp_path_factory.mktemp("smoke") / "project")


def test_stage_list_has_every_stage_once_per_product(project: Path) -> None:
    listed = [line.split()[0] for line in dvc("stage", "list", cwd=project).stdout.splitlines() if line.strip()]
    shared = {line for line in listed if "@" not in line}
    assert {"generate_synthetic", "ingest"} <= shared
    assert sorted(line for line in listed if "@" in line) == sorted(f"{s}@{c}" for s in STAGES for c in SMOKE_CODES)


def test_dag_has_one_chain_per_product(project: Path) -> None:
    dag = dvc("dag", "--dot", cwd=project).stdout
    for code in SMOKE_CODES:
        for upstream, downstream in EDGES:
            assert f'"{upstream}@{code}" -> "{downstream}@{code}"' in dag
    other = SMOKE_CODES[1]
    assert f'"etl_pipeline@{SMOKE_CODES[0]}" -> "data_drift_check@{other}"' not in dag


def test_after_run_everything_is_up_to_date_and_rerun_is_a_noop(project: Path) -> None:
    status = dvc("status", cwd=project).stdout
    assert "Data and pipelines are up to date" in status, status
    rerun = dvc("repro", cwd=project).stdout
    assert "Running stage" not in rerun, rerun


def test_git_holds_only_small_registry_records_that_resolve_by_hash(project: Path) -> None:
    tracked = run(["git", "ls-files", "registry"], project).stdout.split()
    for code in SMOKE_CODES:
        assert {f"registry/{code}/served.json", f"registry/{code}/history.jsonl",
                f"registry/{code}/drift_reference.json"} <= set(tracked)
    for name in tracked:
        assert name.endswith((".json", ".jsonl", ".md")), name
        assert (project / name).stat().st_size < 40_000, name
    for code in SMOKE_CODES:
        served = records.served_model(project, code)
        assert served is not None
        verdict = json.loads((project / "metrics" / code / "verdict.json").read_text())
        assert served.version == verdict["model_version"] and verdict["promoted"]
        files = served.resolve(artifacts.local_sources(project))
        for name, artifact in served.artifacts.items():
            assert file_md5(files[name]) == artifact.md5 == file_md5(project / artifact.path)
        lock = dvc_lock(project)
        model_outs = lock["stages"][f"tune_primary_model@{code}"]["outs"]
        model_out = next(out for out in model_outs if out["path"] == f"models/{code}")
        assert served.artifacts["model.pt"].out_md5 == model_out["md5"]
        record = records.version_record(project, code, served.version)
        # The lineage kept with the version is the settled dvc.lock that was committed.
        assert record["stages"][f"data_drift_check@{code}"]["deps"] == {
            dep["path"]: dep["md5"] for dep in lock["stages"][f"data_drift_check@{code}"]["deps"]}
        assert record["git_commit"] and record["verdict"]["params"]["assess_model_risk"]["min_group_size"] == 10
        # The gate's decisions travel with the version: the promotion that replaces it carries them on.
        assert record["verdict"].get("price_decisions", {}) == verdict["price_decisions"]
        assert set(verdict["price_decisions"]) <= {"registered", "guest"}
        drift = json.loads((project / "metrics" / code / "drift.json").read_text())
        assert drift["reference"]["source"] == f"training data of served model {served.version}"


def dvc_lock(root: Path) -> dict:
    import yaml

    return yaml.safe_load((root / "dvc.lock").read_text())


def test_metrics_and_plots_are_declared(project: Path) -> None:
    shown = json.loads(dvc("metrics", "show", "--json", cwd=project).stdout)
    files = {name for workspace in shown.values() for name in workspace["data"]}
    for code in SMOKE_CODES:
        for kind in ("etl", "drift", "validation", "test", "verdict"):
            assert f"metrics/{code}/{kind}.json" in files
    out = project / "plots_out"
    dvc("plots", "show", "-o", str(out), cwd=project)
    html = (out / "index.html").read_text()
    assert "shap_importance" in html and "mean_abs_shap" in html


def test_recommendation_comes_from_the_promoted_model(project: Path) -> None:
    result = json.loads(pricetrail("recommend", "85123A", "--date", "2011-11-14", "--curve", cwd=project).stdout)
    assert result["model_version"] == served_version(project, "85123A")
    curve = result["curve"]
    assert len(curve) == 101 and result["price_range"] == result["observed_range"]
    best = max(curve, key=lambda point: point["expected_revenue_per_day"])  # revenue per day: the objective
    assert result["point_optimum"] == pytest.approx(best["price"], abs=1e-4)
    # The model's price is the robust choice on the same curve, inside the band of plausible optima.
    chosen = min(curve, key=lambda point: abs(point["price"] - result["model_price"]))
    assert result["model_price"] == pytest.approx(chosen["price"], abs=1e-4)
    low, high = result["band"]
    assert low - 1e-9 <= result["model_price"] <= high + 1e-9
    # What to charge is the decision: the status quo, or a change the plausible curves agree gains.
    decision = result["decision"]
    assert decision["action"] in ("change", "keep") and decision["status_quo"]["price"] > 0
    if decision["action"] == "change":
        assert decision["probability_of_gain"] >= 1 - decision["delta"]
        changed = min(curve, key=lambda point: abs(point["price"] - result["price"]))
        assert result["expected_revenue"] == pytest.approx(changed["expected_revenue"], rel=1e-3)
    else:
        assert result["price"] == decision["status_quo"]["price"]
    assert result["elasticity"]["value"] < 0 and result["per"] == "day"
    assert result["per_day"]["expected_revenue"] == pytest.approx(
        result["expected_revenue"] * result["per_day"]["expected_lines"], rel=1e-3)
    assert result["elasticity"]["per_day"]["value"] < result["elasticity"]["value"]


def test_a_drifted_new_product_stops_alone_and_adding_it_reruns_nothing_else(project: Path) -> None:
    stockcodes = project / "stockcodes.yaml"
    stockcodes.write_text(stockcodes.read_text() + f'  "{THIRD}": {{description: JUMBO BAG RED RETROSPOT}}\n')
    set_params(project, {"synthetic.drift": {THIRD: 2.0}})
    result = pricetrail("run", cwd=project, check=False)
    assert result.returncode == 1
    failed = failures(result.stdout)
    assert list(failed) == [THIRD] and failed[THIRD].startswith(f"data_drift_check@{THIRD}: GATE FAILED"), failed
    assert f"1 of 3 products failed: {THIRD}" in result.stdout
    ran = stages_run(result.stdout)
    assert f"tune_primary_model@{THIRD}" not in ran
    # The other products' data did not change, so nothing of theirs beyond the ETL reran.
    assert not {name for name in ran if name.split("@")[-1] in SMOKE_CODES and not name.startswith("etl_")}, ran
    assert re.search(rf"^{THIRD}\s.*none: the drift gate failed", result.stdout, flags=re.M), result.stdout
    commit(project, "week 2: a third product")


def test_accepted_drift_lets_that_product_through_and_reruns_only_its_stages(project: Path) -> None:
    pricetrail("accept-drift", THIRD, "--reason", "new supplier: a genuine price change", cwd=project)
    status = dvc("status", cwd=project).stdout
    assert f"data_drift_check@{THIRD}" in status
    assert not any(f"@{code}" in status for code in SMOKE_CODES), status
    result = pricetrail("run", cwd=project)
    ran = stages_run(result.stdout)
    assert f"data_drift_check@{THIRD}" in ran and f"assess_model_risk@{THIRD}" in ran
    assert all(name.endswith(f"@{THIRD}") for name in ran), ran  # a decision on it re-runs no other product's gate
    # The drift gate no longer stops it: the risk gate decides. The injected drift raises price x1.8 and demand x7
    # together in the test window, which no model of a falling price response trained before it can predict
    # (the median does less badly), so its model may fail beats_baseline: then that, not the drift, is the reason.
    history = records.history(project, THIRD)
    assert history[-2]["action"] == "accepted_drift", history
    decision = history[-1]
    assert decision["action"] == "promoted" or (
        decision["action"] == "none" and "failed its gate" in decision["reason"]), decision
    assert (served_version(project, THIRD) is not None) == (decision["action"] == "promoted")
    assert "Data and pipelines are up to date" in dvc("status", cwd=project).stdout
    commit(project, "week 3: accepted drift")


def test_new_models_then_rollback_serves_the_earlier_version_from_the_cache(project: Path) -> None:
    first = served_version(project, "22423")
    # Every product gets a new model, tuned on a cheap budget (these tests check the registry, not model quality).
    set_params(project, {"tune_primary_model.search_space.units": [8, 12], **CHEAP_TUNING})
    pricetrail("run", cwd=project)
    second = served_version(project, "22423")
    assert second != first
    commit(project, "week 4: new models")
    rolled = pricetrail("rollback", "22423", "--reason", "store test went badly", cwd=project)
    assert "rollback" in rolled.stdout and served_version(project, "22423") == first
    # The workspace holds the newer model; the earlier one comes from the DVC cache by hash.
    assert file_md5(project / "models/22423/model.pt") != records.served_model(project, "22423").artifacts[
        "model.pt"].md5  # type: ignore[union-attr]
    result = json.loads(pricetrail("recommend", "22423", "--date", "2011-11-14", cwd=project).stdout)
    assert result["model_version"] == first
    history = pricetrail("history", "22423", cwd=project).stdout
    assert "rollback" in history and "store test went badly" in history
    rerun = pricetrail("run", cwd=project)  # the drift gate re-checks against the rolled-back model only
    assert stages_run(rerun.stdout) == {"drift_reference@22423", "data_drift_check@22423"}, rerun.stdout
    assert served_version(project, "22423") == first and "rolled back by an operator" in rerun.stdout
    commit(project, "week 4: rollback")


def test_an_unassessed_model_is_refused(project: Path) -> None:
    before = served_version(project, "85123A")
    set_params(project, {"tune_primary_model.search_space.units": [14, 18]})
    dvc("repro", "tune_primary_model@85123A", cwd=project)  # a new checkpoint the risk gate never saw
    UNASSESSED["model.pt"] = file_md5(project / "models/85123A/model.pt")
    decision = pricetrail("promote", "--stockcode", "85123A", cwd=project).stdout
    assert "kept" in decision and "is not the file assess_model_risk@85123A assessed" in decision
    assert served_version(project, "85123A") == before
    set_params(project, {"tune_primary_model.search_space.units": [8, 12]})
    dvc("repro", "tune_primary_model@85123A", cwd=project)  # back to the committed model (from the run-cache)


def test_failed_risk_gate_keeps_the_earlier_model(project: Path) -> None:
    code = SMOKE_CODES[1]
    before = served_version(project, code)
    assert before is not None
    set_params(project, {"assess_model_risk.min_improvement_over_baseline": 0.99})
    dvc("repro", "--keep-going", cwd=project)
    verdict = json.loads((project / "metrics" / code / "verdict.json").read_text())
    assert not verdict["promoted"] and "beats_baseline" in verdict["failed_checks"]
    check = next(c for c in verdict["checks"] if c["name"] == "beats_baseline")
    assert check["threshold"] == 0.99 and check["value"] is not None and not check["passed"]
    decision = pricetrail("promote", "--stockcode", code, cwd=project).stdout
    assert "kept" in decision and "beats_baseline" in decision
    assert served_version(project, code) == before
    set_params(project, {"assess_model_risk.min_improvement_over_baseline": 0.05})
    dvc("repro", "--keep-going", cwd=project)


def test_gc_keeps_every_version_the_registry_names_beside_a_run_listed_or_not_and_on_the_remote(
        project: Path, tmp_path: Path) -> None:
    # Two runs of one product promote two new versions of it; the first is replaced before anything is committed,
    # so only the registry references it: plain `dvc gc --workspace --all-commits` would delete it. (The other
    # products' chains stay stale: gc must keep their promoted versions all the same.)
    set_params(project, {"tune_primary_model.search_space.units": [20, 24]})
    pricetrail("run", "85123A", cwd=project)
    uncommitted = served_version(project, "85123A")
    set_params(project, {"tune_primary_model.search_space.units": [26, 30]})
    # gc while a run is in flight: the run's workspaces write objects no record names yet, so gc must not start.
    running = subprocess.Popen([sys.executable, "-m", "pricetrail.cli", "run", "85123A"], cwd=project,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = project / ".dvc" / "tmp" / "pricetrail" / "pipeline.lock"
    deadline = time.monotonic() + 120
    while f'"pid": {running.pid}' not in (lock.read_text() if lock.is_file() else "") and time.monotonic() < deadline:
        time.sleep(0.2)
    refused = pricetrail("--wait", "1", "gc", cwd=project, check=False)
    out, err = running.communicate(timeout=900)
    assert running.returncode == 0, err[-3000:]
    assert refused.returncode == 2, refused.stdout
    assert f"pipeline lock is held by pid {running.pid} (pricetrail run" in refused.stderr, refused.stderr
    commit(project, "week 5")
    assert served_version(project, "85123A") != uncommitted
    # A product narrowed out of stockcodes.yaml keeps its versions: gc and push go by registry/, not by the list.
    stockcodes = project / "stockcodes.yaml"
    stockcodes.write_text("".join(line for line in stockcodes.read_text().splitlines(keepends=True)
                                  if '"22423"' not in line))
    commit(project, "week 6: 22423 delisted")
    pricetrail("push", cwd=project)
    result = pricetrail("gc", "--cloud", cwd=project)
    kept = re.search(r"kept \d+ registry objects \(([0-9]+) of them not in the workspace's dvc.lock\) locally and "
                     r"on the remote", result.stdout)
    assert kept and int(kept.group(1)) > 0, result.stdout
    assert not (project / ".pricetrail-gc-keep").exists()
    for code in [*SMOKE_CODES, THIRD]:
        for version in records.promoted_versions(project, code):
            records.resolve_version(project, code, version)  # every version's bytes survived, verified
    unassessed = UNASSESSED["model.pt"]
    assert not (project / ".dvc" / "cache" / "files" / "md5" / unassessed[:2] / unassessed[2:]).exists()
    pricetrail("rollback", "85123A", "--to", uncommitted, "--reason", "gc check", cwd=project)  # type: ignore[arg-type]
    json.loads(pricetrail("recommend", "85123A", "--date", "2011-11-14", cwd=project).stdout)
    # A fresh clone pulls every version any record names from the collected remote, the delisted product's too.
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    dvc("remote", "modify", "--local", "local", "url", str(project.parent / "project-remote"), cwd=clone)
    pricetrail("pull", cwd=clone)
    for code in [*SMOKE_CODES, THIRD]:
        for version in records.promoted_versions(clone, code):
            records.resolve_version(clone, code, version)
    # A registry object the remote lost: a pull says which product, file and hash, instead of "everything is there".
    lost = records.version_record(project, "85123A", uncommitted)["artifacts"]["model.pt"]["md5"]  # type: ignore[arg-type]
    (project.parent / "project-remote" / "files" / "md5" / lost[:2] / lost[2:]).unlink()
    second = tmp_path / "second-clone"
    run(["git", "clone", "-q", str(project), str(second)], tmp_path)
    dvc("remote", "modify", "--local", "local", "url", str(project.parent / "project-remote"), cwd=second)
    failed = pricetrail("pull", cwd=second, check=False)
    assert failed.returncode == 2, failed.stdout
    assert f"85123A model.pt (models/85123A/model.pt) md5 {lost}" in failed.stderr, failed.stderr
