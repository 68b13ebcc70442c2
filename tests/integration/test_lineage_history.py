"""Lineage in SQL on a real smoke pipeline with history: four weekly runs committed in a throwaway git repository.

    copy      the project, nothing run yet (no dvc.lock)
    week 1    both products promoted
    week 2    data changed: 85123A's synthetic rows drift, its drift gate fails (the chain stops; it keeps its model)
    week 3    params changed: a smaller tuning budget; 22423 retrains and is promoted, 85123A is still blocked
    week 4    a gate failed: min_improvement_over_baseline 0.99; 22423's new verdict fails beats_baseline

Each test answers one of the issue's questions by SQL over views read from git objects, and checks the answer
against the files themselves.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pricetrail.lineage import connect
from pricetrail.lineage import run as query
from pricetrail.project.copies import clone_project, commit, pricetrail, run, set_params
from pricetrail.project.files import file_md5

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DRIFTED, RETRAINED = "85123A", "22423"
RAW = "data/raw/synthetic/transactions.parquet"

# The five questions, as the README asks them (there with a literal hash instead of the parameter).
SERVED_DATA = """
SELECT s.product, s.version, l.stage, l.path, l.md5
FROM served s JOIN version_lineage l USING (revision, product, version)
WHERE s.rev_index = 0 AND l.role = 'dep' AND l.stage = 'ingest' AND l.path LIKE 'data/%'
ORDER BY s.product"""
PREDATES_RAW = """
SELECT s.product, s.version, s.served_since::DATE AS served_since, l.md5 AS trained_on, d.md5 AS newest
FROM served s
JOIN version_lineage l USING (revision, product, version)
JOIN deps d ON d.revision = s.revision AND d.stage = l.stage AND d.path = l.path
WHERE s.rev_index = 0 AND l.stage = 'ingest' AND l.role = 'dep' AND l.path LIKE 'data/%' AND l.md5 <> d.md5
ORDER BY s.product"""
GATE_FAILURES = """
SELECT product, stage, check_name, round(value, 4) AS value, threshold, detail
FROM gates
WHERE rev_index = 0 AND NOT gate_passed AND NOT passed AND check_name NOT LIKE 'column %'
ORDER BY product, check_index"""
METRIC_HISTORY = """
SELECT r.subject, r.commit_time, round(m.number, 4) AS test_rmsle, v.number AS trials
FROM metrics m JOIN revisions r USING (revision)
LEFT JOIN metrics v ON v.revision = m.revision AND v.stage = 'tune_primary_model@' || m.product
                    AND v.metric = 'trials_complete'
WHERE m.product = '22423' AND m.stage = 'inference_primary_model@22423' AND m.metric = 'rmsle'
ORDER BY r.commit_time"""
FLOWED_INTO = """
SELECT stage, depth, via FROM flowed_into($md5) WHERE rev_index = 0 ORDER BY depth, stage"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, smoke_week1) -> Path:
    root = clone_project(smoke_week1.root, tmp_path_factory.mktemp("lineage") / "project")  # week 1 committed
    set_params(root, {"synthetic.drift": {DRIFTED: 2.0}})
    pricetrail("run", cwd=root, check=False)  # exits 1: 85123A's drift gate fails
    commit(root, "week 2: new data, 85123A drifted")
    # A smaller budget and search space: fewer trials alone can leave the best trial, and so the model, unchanged.
    set_params(root, {"tune_primary_model.n_trials": 3, "tune_primary_model.search_space.units": [8, 12]})
    pricetrail("run", cwd=root, check=False)  # 85123A still drifts
    commit(root, "week 3: smaller tuning budget")
    set_params(root, {"assess_model_risk.min_improvement_over_baseline": 0.99})
    pricetrail("run", cwd=root, check=False)  # exits 1: no model beats the median by 99%
    commit(root, "week 4: stricter risk gate")
    return root


def at(root: Path, revision: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root, capture_output=True, check=True).stdout


def lock_dep(root: Path, revision: str, stage: str, path: str) -> str:
    import yaml

    lock = yaml.safe_load(at(root, revision, "dvc.lock"))
    return next(dep["md5"] for dep in lock["stages"][stage]["deps"] if dep["path"] == path)


@pytest.fixture(scope="module")
def con(project: Path):
    return connect(project, "10")  # every commit; the first has no dvc.lock and adds no rows


def test_the_history_has_every_commit_read_from_git(project: Path, con) -> None:
    revisions = query(con, "SELECT subject, has_lock FROM revisions ORDER BY rev_index DESC").to_pylist()
    assert [r["subject"] for r in revisions] == ["copy", "week 1", "week 2: new data, 85123A drifted",
                                                 "week 3: smaller tuning budget", "week 4: stricter risk gate"]
    assert [r["has_lock"] for r in revisions] == [False, True, True, True, True]
    assert run(["git", "status", "--porcelain"], project).stdout == ""  # nothing checked out or written


def test_the_data_hash_behind_each_served_model(project: Path, con) -> None:
    rows = {row["product"]: row for row in query(con, SERVED_DATA).to_pylist()}
    week1 = run(["git", "rev-parse", "HEAD~3"], project).stdout.strip()
    assert rows[DRIFTED]["path"] == RAW and rows[DRIFTED]["md5"] == lock_dep(project, week1, "ingest", RAW)
    assert rows[RETRAINED]["md5"] == lock_dep(project, "HEAD", "ingest", RAW) == file_md5(project / RAW)
    assert rows[DRIFTED]["md5"] != rows[RETRAINED]["md5"]


def test_products_whose_served_model_predates_the_newest_raw_data(con) -> None:
    rows = query(con, PREDATES_RAW).to_pylist()
    assert [row["product"] for row in rows] == [DRIFTED]


def test_gate_failures_in_the_latest_revision_with_value_and_threshold(con) -> None:
    rows = query(con, GATE_FAILURES).to_pylist()
    assert [(row["product"], row["stage"], row["check_name"]) for row in rows] == [
        (RETRAINED, f"assess_model_risk@{RETRAINED}", "beats_baseline"),
        (DRIFTED, f"data_drift_check@{DRIFTED}", "drifted_share")]
    beats, drift = rows
    assert beats["threshold"] == 0.99 and beats["value"] < 0.99
    assert drift["value"] >= drift["threshold"] and "monitored columns drifted" in drift["detail"]


def test_a_metrics_history_across_the_commits(project: Path, con) -> None:
    rows = query(con, METRIC_HISTORY).to_pylist()
    assert [row["subject"].split(":")[0] for row in rows] == ["week 1", "week 2", "week 3", "week 4"]
    assert rows[0]["test_rmsle"] == rows[1]["test_rmsle"]  # week 2 changed no byte of 22423's data
    assert [row["trials"] for row in rows] == [4, 4, 3, 3]
    current = json.loads((project / "metrics" / RETRAINED / "test.json").read_text())["rmsle"]
    assert rows[-1]["test_rmsle"] == round(current, 4)


def test_which_stages_a_data_file_hash_flowed_into(project: Path, con) -> None:
    lines = file_md5(project / "data" / "features" / RETRAINED / "lines.parquet")
    rows = query(con, FLOWED_INTO, {"md5": lines}).to_pylist()
    direct = {row["stage"] for row in rows if row["depth"] == 0}
    assert direct == {f"{stage}@{RETRAINED}" for stage in ("data_drift_check", "preprocess", "tune_primary_model",
                                                           "assess_model_risk")}
    assert {row["stage"] for row in rows if row["depth"] == 1} >= {f"inference_primary_model@{RETRAINED}"}
    assert not [row for row in rows if DRIFTED in row["stage"]]


def test_the_verdict_joins_dvc_lock_on_its_own_hashes(con) -> None:
    joined = query(con, """
        SELECT v.path, v.md5 = d.md5 AS same FROM verdict_lineage v
        LEFT JOIN deps d ON d.revision = v.revision AND d.stage = 'assess_model_risk@' || v.product AND d.path = v.path
        WHERE v.rev_index = 0 AND v.product = '22423' AND v.hash_kind = 'dvc'""").to_pylist()
    assert len(joined) == 5 and all(row["same"] for row in joined), joined
    # and a file md5 of the verdict finds the folder hash dvc.lock records, through the .dir object in the cache
    found = query(con, """
        SELECT o.stage FROM verdict_lineage v JOIN dir_files f ON f.md5 = v.md5 JOIN outs o ON o.md5 = f.dir_md5
        WHERE v.rev_index = 0 AND o.rev_index = 0 AND v.product = '22423' AND v.key = 'features_md5'""").to_pylist()
    assert found == [{"stage": f"etl_pipeline@{RETRAINED}"}]


def test_the_reports_on_the_real_history(project: Path) -> None:
    fleet = pricetrail("lineage", "fleet", "--format", "json", cwd=project)
    rows = {row["product"]: row for row in json.loads(fleet.stdout)}
    assert rows[DRIFTED]["drift_gate"] == "FAILED" and "stale" in rows[DRIFTED]["risk_gate"]
    assert rows[RETRAINED]["risk_gate"] == "FAILED beats_baseline"
    served = pricetrail("lineage", "served", RETRAINED, "--format", "csv", cwd=project).stdout
    assert f"ingest,dep,{RAW},{file_md5(project / RAW)}" in served and "registry,promoted" in served
    diff = json.loads(pricetrail("lineage", "diff", "HEAD~1", "HEAD", "--format", "json", cwd=project).stdout)
    changes = {(row["kind"], row["item"]) for row in diff}
    assert ("param", "assess_model_risk.min_improvement_over_baseline") in changes
    assert ("output", f"assess_model_risk@{RETRAINED} metrics/{RETRAINED}/verdict.json") in changes
    assert not [row for row in diff if row["kind"] == "output" and DRIFTED in row["item"]
                and "data_drift_check" not in row["item"]]
    history = pricetrail("lineage", "query", METRIC_HISTORY, "--revisions", "HEAD~3..HEAD", cwd=project).stdout
    assert "week 4" in history and "week 1" not in history  # a range excludes its base


def test_the_retrained_models_record_carries_the_decisions_of_the_model_it_replaced(project: Path) -> None:
    from pricetrail.registry import records

    versions = records.promoted_versions(project, RETRAINED)
    assert len(versions) == 2  # week 1's, replaced in week 3
    served = records.served_model(project, RETRAINED)
    assert served is not None and served.version == versions[1]
    first = records.version_record(project, RETRAINED, versions[0])
    assert served.record["earlier_decisions"] == {"version": versions[0],
                                                  "decisions": first["verdict"]["price_decisions"]}
    answer = json.loads(pricetrail("recommend", RETRAINED, "--date", "2011-12-12", cwd=project).stdout)
    assert answer["model_version"] == versions[1] and "earlier_change" in answer["decision"]
