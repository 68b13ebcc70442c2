"""Lineage in SQL on a tiny hand-made project: the views, their joins on DVC's hashes, history from git objects,
the reports, the shell, and one clear message for every kind of bad input."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from registry_runs import CODE, OTHER, make_run

from pricetrail import cli
from pricetrail.lineage import LineageError, connect, reports, run, view_docs
from pricetrail.lineage.command import shell
from pricetrail.project.files import file_md5, write_json
from pricetrail.project.paths import ProductPaths
from pricetrail.registry import promotion, records
from pricetrail.registry.artifacts import dvc_cache_dir

ROOT = Path(__file__).resolve().parents[2]
RAW = "data/raw/transactions.csv"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def dir_object(root: Path, folder: Path) -> str:
    """Write ``folder``'s .dir object into the DVC cache the way DVC 3 does; return its ``<md5>.dir`` hash."""
    entries = sorted(({"md5": file_md5(path), "relpath": path.relative_to(root / folder).as_posix()}
                      for path in (root / folder).rglob("*") if path.is_file()), key=lambda entry: entry["relpath"])
    text = json.dumps(entries, sort_keys=True)
    md5 = hashlib.md5(text.encode()).hexdigest() + ".dir"
    target = dvc_cache_dir(root) / "files" / "md5" / md5[:2] / md5[2:]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return md5


def out(path: str, md5: str) -> dict:
    return {"path": path, "hash": "md5", "md5": md5, "size": 10}


def complete_run(root: Path, code: str, *, rmsle: float = 0.5, rows: int = 60) -> None:
    """Give make_run's chain what a real run also records: a raw input and ingest, real folder hashes with their
    .dir objects, the etl and risk-gate entries in dvc.lock, an etl metrics file and the verdict's dvc_deps."""
    paths = ProductPaths(code)
    (root / RAW).parent.mkdir(parents=True, exist_ok=True)
    if not (root / RAW).is_file():
        (root / RAW).write_text("InvoiceNo,StockCode\n1,85123A\n")
    (root / "data/interim").mkdir(parents=True, exist_ok=True)
    (root / "data/interim/transactions.parquet").write_bytes((root / RAW).read_bytes() * 2)
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    stages = lock["stages"]
    stages["ingest"] = {"cmd": "python stages/ingest.py", "deps": [out(RAW, file_md5(root / RAW))],
                        "params": {"params.yaml": {"ingest": {"input": RAW}}},
                        "outs": [out("data/interim/transactions.parquet",
                                     file_md5(root / "data/interim/transactions.parquet"))]}
    features = dir_object(root, paths.features_dir)
    write_json(root / paths.etl_metrics, {"rows": rows, "cleaning": {"rows_in": rows + 5, "rows_out": rows}})
    stages[f"etl_pipeline@{code}"] = {
        "cmd": f"python stages/etl_pipeline.py --stockcode {code}",
        "deps": [out("data/interim/transactions.parquet", file_md5(root / "data/interim/transactions.parquet"))],
        "params": {"params.yaml": {"etl": {"min_rows": 20, "non_product_codes": ["POST", "DOT"]}}},
        "outs": [out(paths.features_dir.as_posix(), features),
                 out(paths.etl_metrics.as_posix(), file_md5(root / paths.etl_metrics))]}
    stages[f"preprocess@{code}"]["deps"] = [out(paths.features_dir.as_posix(), features)]
    stages[f"preprocess@{code}"]["outs"][0]["md5"] = dir_object(root, paths.preprocessed_dir)
    stages[f"tune_primary_model@{code}"]["outs"][0]["md5"] = dir_object(root, paths.model_dir)
    test = json.loads((root / paths.test_metrics).read_text())
    write_json(root / paths.test_metrics, {**test, "rmsle": rmsle})
    verdict = json.loads((root / paths.verdict).read_text())
    verdict["lineage"]["dvc_deps"] = {paths.features_dir.as_posix(): features,
                                      paths.test_metrics.as_posix(): file_md5(root / paths.test_metrics)}
    write_json(root / paths.verdict, verdict)
    stages[f"assess_model_risk@{code}"] = {
        "cmd": f"python stages/assess_model_risk.py --stockcode {code}",
        "deps": [out(path, md5) for path, md5 in verdict["lineage"]["dvc_deps"].items()],
        "params": {"params.yaml": {"assess_model_risk": {"min_improvement_over_baseline": 0.05}}},
        "outs": [out(paths.verdict.as_posix(), file_md5(root / paths.verdict))]}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two products, both promoted, committed once: a git repository like a user's after a first run."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "ci@example.invalid")
    git(root, "config", "user.name", "ci")
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "stockcodes.yaml").write_text(f'stockcodes:\n  "{CODE}": {{description: HEART}}\n  "{OTHER}": {{}}\n')
    (root / "params.yaml").write_text("base:\n  seed: 42\nassess_model_risk:\n  min_improvement_over_baseline: 0.05\n")
    for code, marker in ((CODE, 1.0), (OTHER, 3.0)):  # other data: content-addressed files must differ
        make_run(root, code, marker=marker)
        complete_run(root, code)
    assert [d.action for d in promotion.promote_all(root, [CODE, OTHER])] == ["promoted", "promoted"]
    git(root, "add", "-A")
    git(root, "commit", "-qm", "week 1")
    monkeypatch.chdir(root)
    return root


def rows(con, sql: str, params=None) -> list[dict]:
    return run(con, sql, params).to_pylist()


def test_every_view_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Lineage in SQL"):]
    for name in view_docs():
        assert f"`{name}" in section, name


def test_stages_deps_outs_and_params_come_from_dvc_lock(project: Path) -> None:
    con = connect(project)
    stages = {row["stage"]: row for row in rows(con, "SELECT * FROM stages")}
    assert stages[f"etl_pipeline@{CODE}"]["kind"] == "etl_pipeline" and stages["ingest"]["product"] is None
    assert stages[f"etl_pipeline@{CODE}"]["cmd"] == f"python stages/etl_pipeline.py --stockcode {CODE}"
    assert rows(con, "SELECT md5, is_dir FROM deps WHERE stage = 'ingest'") == [
        {"md5": file_md5(project / RAW), "is_dir": False}]
    outs = rows(con, "SELECT path, md5, is_dir FROM outs WHERE stage = ?", [f"etl_pipeline@{CODE}"])
    assert {row["path"]: row["is_dir"] for row in outs} == {f"data/features/{CODE}": True,
                                                            f"metrics/{CODE}/etl.json": False}
    params = rows(con, "SELECT param, value, number FROM stage_params WHERE stage = ?", [f"etl_pipeline@{CODE}"])
    assert {"param": "etl.min_rows", "value": "20", "number": 20.0} in params
    assert {"param": "etl.non_product_codes", "value": '["POST","DOT"]', "number": None} in params  # compact JSON
    # The entries recorded with the served version read the same as dvc.lock's (flattened by DuckDB there).
    recorded = rows(con, "SELECT v.stage, v.param, v.value, v.number FROM version_params v JOIN served s "
                         "USING (revision, product, version) WHERE s.product = ? ORDER BY 1, 2", [CODE])
    in_lock = rows(con, "SELECT stage, param, value, number FROM stage_params WHERE stage IN (SELECT stage FROM "
                        "version_params WHERE product = ?) ORDER BY 1, 2", [CODE])
    assert recorded == in_lock and len(recorded) >= 3
    assert rows(con, "SELECT value FROM params WHERE param = 'base.seed'") == [{"value": "42"}]
    assert rows(con, "SELECT product, description FROM products ORDER BY product") == [
        {"product": OTHER, "description": None}, {"product": CODE, "description": "HEART"}]
    assert rows(con, "SELECT revision, rev_index, commit_time FROM revisions") == [
        {"revision": "workspace", "rev_index": 0, "commit_time": None}]


def test_metrics_are_flattened_with_their_stage_and_file_hash(project: Path) -> None:
    con = connect(project)
    test = rows(con, "SELECT stage, number, file_md5 FROM metrics WHERE product = ? AND metric = 'rmsle'", [CODE])
    assert test == [{"stage": f"inference_primary_model@{CODE}", "number": 0.5,
                     "file_md5": file_md5(project / ProductPaths(CODE).test_metrics)}]
    etl = {row["metric"]: row["value"] for row in rows(con, "SELECT metric, value FROM metrics WHERE stage = ?",
                                                        [f"etl_pipeline@{CODE}"])}
    assert etl == {"rows": "60", "cleaning.rows_in": "65", "cleaning.rows_out": "60"}
    drifted = rows(con, "SELECT value, json_type FROM metrics WHERE product = ? AND metric = 'drifted_columns'",
                   [CODE])
    assert drifted == [{"value": "[]", "json_type": "ARRAY"}]  # a list stays one value


def test_gates_list_every_check_with_value_and_threshold(project: Path) -> None:
    make_run(project, OTHER, version="bbbb0000", marker=3.0, failed=("beats_baseline",))
    con = connect(project)
    failed = rows(con, "SELECT product, stage, check_name, value, threshold, gate_passed FROM gates "
                       "WHERE NOT passed")
    assert failed == [{"product": OTHER, "stage": f"assess_model_risk@{OTHER}", "check_name": "beats_baseline",
                       "value": 0.9, "threshold": 0.05, "gate_passed": False}]
    drift = rows(con, "SELECT passed, value FROM gates WHERE product = ? AND check_name = 'drifted_share'", [CODE])
    assert drift == [{"passed": True, "value": None}]  # make_run's drift.json records no share


def test_a_file_md5_joins_the_folder_hash_dvc_lock_records(project: Path) -> None:
    con = connect(project)
    features = file_md5(project / ProductPaths(CODE).lines)
    joined = rows(con, """
        SELECT o.stage, o.path, v.md5 FROM verdict_lineage v
        JOIN dir_files f ON f.md5 = v.md5
        JOIN outs o ON o.md5 = f.dir_md5 AND o.revision = v.revision
        WHERE v.product = ? AND v.key = 'features_md5'""", [CODE])
    assert joined == [{"stage": f"etl_pipeline@{CODE}", "path": f"data/features/{CODE}", "md5": features}]
    # The verdict's dvc_deps join dvc.lock directly.
    direct = rows(con, "SELECT d.stage FROM verdict_lineage v JOIN deps d ON d.md5 = v.md5 AND d.path = v.path "
                       "WHERE v.product = ? AND v.hash_kind = 'dvc' ORDER BY d.stage", [CODE])
    assert {row["stage"] for row in direct} == {f"assess_model_risk@{CODE}", f"preprocess@{CODE}"}
    # and the registry's artifacts join through their out_md5
    served_from = rows(con, "SELECT o.stage FROM version_artifacts a JOIN outs o ON o.md5 = a.out_md5 "
                            "WHERE a.product = ? AND a.artifact = 'daily.parquet'", [CODE])
    assert served_from == [{"stage": f"etl_pipeline@{CODE}"}]


def test_flowed_into_follows_a_hash_downstream(project: Path) -> None:
    con = connect(project)
    reached = {row["stage"]: row["depth"] for row in rows(con, "SELECT stage, depth FROM flowed_into(?)",
                                                             [file_md5(project / RAW)])}
    assert reached["ingest"] == 0 and reached[f"etl_pipeline@{CODE}"] == 1
    assert reached[f"assess_model_risk@{CODE}"] == 2 and reached[f"preprocess@{OTHER}"] == 2
    inside = rows(con, "SELECT stage, depth, via FROM flowed_into(?) WHERE depth = 0 ORDER BY stage",
                  [file_md5(project / ProductPaths(CODE).lines)])
    assert [row["stage"] for row in inside] == [f"assess_model_risk@{CODE}", f"preprocess@{CODE}"]
    assert inside[0]["via"] == f"data/features/{CODE}/lines.parquet"


def test_registry_views_read_the_records_the_registry_wrote(project: Path) -> None:
    con = connect(project)
    served = rows(con, "SELECT product, version, served_by, train_rows, test_rmsle FROM served ORDER BY product")
    assert served == [{"product": OTHER, "version": "aaaa0000", "served_by": "promoted", "train_rows": 40,
                       "test_rmsle": 0.5},
                      {"product": CODE, "version": "aaaa0000", "served_by": "promoted", "train_rows": 40,
                       "test_rmsle": 0.5}]
    assert rows(con, "SELECT action, seq FROM registry_history WHERE product = ?", [CODE]) == [
        {"action": "promoted", "seq": 1}]
    raw = rows(con, "SELECT md5 FROM version_lineage WHERE product = ? AND stage = 'ingest' AND role = 'dep'", [CODE])
    assert raw == [{"md5": file_md5(project / RAW)}]
    assert rows(con, "SELECT kind, md5 FROM drift_references WHERE product = ?", [CODE]) == [
        {"kind": "served_model", "md5": file_md5(project / ProductPaths(CODE).split("train"))}]
    assert rows(con, "SELECT is_served FROM versions WHERE product = ?", [CODE]) == [{"is_served": True}]


def test_history_is_read_from_git_objects_without_a_checkout(project: Path) -> None:
    first = git(project, "rev-parse", "HEAD")
    make_run(project, CODE, version="bbbb0000", marker=2.0)
    complete_run(project, CODE, rmsle=0.4)
    promotion.promote(project, CODE)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "week 2")
    (project / ProductPaths(CODE).test_metrics).write_text('{"rmsle": 0.1}')  # uncommitted: not in history
    con = connect(project, "2")
    history = rows(con, "SELECT rev_index, revision, number FROM metrics WHERE product = ? AND metric = 'rmsle' "
                        "ORDER BY rev_index", [CODE])
    assert [row["number"] for row in history] == [0.4, 0.5] and history[1]["revision"] == first
    assert rows(con, "SELECT count(*) AS n FROM revisions WHERE commit_time IS NOT NULL") == [{"n": 2}]
    assert rows(con, "SELECT rev_index, version FROM served WHERE product = ? ORDER BY rev_index", [CODE]) == [
        {"rev_index": 0, "version": "bbbb0000"}, {"rev_index": 1, "version": "aaaa0000"}]
    versions = rows(con, "SELECT version, is_served FROM versions WHERE rev_index = 0 AND product = ? "
                         "ORDER BY version", [CODE])
    assert versions == [{"version": "aaaa0000", "is_served": False}, {"version": "bbbb0000", "is_served": True}]
    # A range and a single commit name the same revisions; the workspace can be listed beside them.
    assert rows(connect(project, "HEAD~1..HEAD"), "SELECT count(*) AS n FROM revisions") == [{"n": 1}]
    both = rows(connect(project, f"workspace,{first}"), "SELECT revision FROM revisions ORDER BY rev_index")
    assert both == [{"revision": "workspace"}, {"revision": first}]
    pair = rows(connect(project, [first, "HEAD"]), "SELECT revision FROM revisions ORDER BY rev_index")
    assert [row["revision"] for row in pair] == [first, git(project, "rev-parse", "HEAD")]  # in the order named


def test_the_git_path_and_the_workspace_share_the_registrys_parsers(project: Path) -> None:
    history = project / "registry" / CODE / "history.jsonl"
    text = history.read_text()
    assert records.parse_history(text, str(history)) == records.history(project, CODE)
    history.write_text(text + "not json\n")
    git(project, "commit", "-qam", "damaged")
    sha = git(project, "rev-parse", "--short=10", "HEAD")
    with pytest.raises(records.RegistryError, match=rf"{sha}:registry/{CODE}/history.jsonl line 2 is not JSON"):
        connect(project, "1")
    with pytest.raises(records.RegistryError, match=r"history.jsonl line 2 is not JSON"):
        connect(project)


def test_fleet_served_lineage_and_diff_reports(project: Path) -> None:
    fleet = reports.fleet(connect(project)).to_pylist()
    assert [row["product"] for row in fleet] == [OTHER, CODE]
    assert fleet[1]["serving"] == "aaaa0000" and fleet[1]["risk_gate"] == "passed"
    assert fleet[1]["test_rmsle"] == 0.5 and fleet[1]["last_decision"].startswith("promoted ")
    lineage = reports.served_lineage(connect(project), CODE).to_pylist()
    assert {"step": 1, "stage": "ingest", "item": "dep", "name": RAW, "value": file_md5(project / RAW)} in lineage
    assert lineage[-1]["stage"] == "registry" and lineage[-1]["item"] == "promoted"
    assert any(row["item"] == "check" and row["name"] == "beats_baseline" for row in lineage)
    first = git(project, "rev-parse", "HEAD")
    make_run(project, OTHER, version="bbbb0000", marker=3.0, failed=("beats_baseline",))
    complete_run(project, OTHER, rmsle=0.9)
    promotion.promote(project, OTHER)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "week 2")
    changes = reports.diff(connect(project, [first, "HEAD"])).to_pylist()
    kinds = {(row["kind"], row["product"], row["item"]) for row in changes}
    assert ("metric", OTHER, f"inference_primary_model@{OTHER} rmsle") in kinds
    assert ("decision", OTHER, "kept aaaa0000") in kinds
    assert ("output", OTHER, f"assess_model_risk@{OTHER} metrics/{OTHER}/verdict.json") in kinds
    assert not any(row["product"] == CODE for row in changes if row["kind"] != "input")
    stale = reports.fleet(connect(project)).to_pylist()[0]
    assert stale["risk_gate"] == "FAILED beats_baseline" and stale["serving"] == "aaaa0000"


def test_the_connection_cannot_touch_files(project: Path) -> None:
    con = connect(project)
    with pytest.raises(LineageError, match="file system operations are disabled"):
        run(con, "SELECT * FROM read_text('dvc.lock')")
    with pytest.raises(LineageError, match="refused COPY"):
        run(con, "COPY (SELECT 1) TO 'x.csv'")
    with pytest.raises(LineageError, match="refused SET"):
        run(con, "SET enable_external_access = true")
    assert not (project / "x.csv").exists()


def fails_cleanly(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert cli.main(["lineage", *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err, captured.err
    assert captured.err.count("\n") == 1, captured.err


def test_bad_input_is_one_clear_line_and_exit_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".git/" not in p.as_posix()}
    fails_cleanly(capsys, ["query", "SELECT FROM WHERE"], "SQL error: Parser Error: syntax error")
    fails_cleanly(capsys, ["query", "SELECT * FROM nosuch"], "no view named nosuch; the views are: revisions")
    fails_cleanly(capsys, ["query", "SELECT 1", "--revisions", "nosuch"], "unknown git revision 'nosuch'")
    fails_cleanly(capsys, ["fleet", "--revisions", "HEAD~5"], "unknown git revision 'HEAD~5'")
    for statement in ("CREATE TABLE t AS SELECT 1", "DROP VIEW stages", "INSERT INTO stages VALUES (1)",
                      "COPY stages TO 'stolen.csv'", "ATTACH 'other.db'", "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1"):
        fails_cleanly(capsys, ["query", statement], "the lineage views are read-only")
    fails_cleanly(capsys, ["query", "--file", "missing.sql"], "SQL file missing.sql does not exist")
    fails_cleanly(capsys, ["query", "SELECT 1", "--format", "parquet"], "--format parquet needs --output FILE")
    fails_cleanly(capsys, ["served", "99999"], "stockcode 99999 is not in stockcodes.yaml")
    after = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".git/" not in p.as_posix()}
    assert after == before  # nothing written, nothing changed
    (project / ProductPaths(CODE).test_metrics).write_text('{"rmsle": 0.4, "ma')
    fails_cleanly(capsys, ["fleet"], f"metrics/{CODE}/test.json is not valid JSON (truncated or damaged?)")
    (project / "dvc.lock").unlink()
    fails_cleanly(capsys, ["fleet"], "dvc.lock does not exist: nothing has run yet")


def test_a_repository_with_no_run_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.email=a@b.c", "-c", "user.name=a", "commit", "-qm", "empty")
    monkeypatch.chdir(tmp_path)
    fails_cleanly(capsys, ["query", "SELECT 1", "--revisions", "1"], "no dvc.lock in")
    fails_cleanly(capsys, ["query", "SELECT 1"], "dvc.lock does not exist: nothing has run yet")


def test_output_formats_write_only_the_named_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT product, version, test_rmsle FROM served ORDER BY product"
    assert cli.main(["lineage", "query", sql]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["product", "version", "test_rmsle"] and table[-1] == "(2 rows)"
    assert cli.main(["lineage", "query", sql, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["product,version,test_rmsle", f"{OTHER},aaaa0000,0.5",
                                                    f"{CODE},aaaa0000,0.5"]
    assert cli.main(["lineage", "query", sql, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[1] == {"product": CODE, "version": "aaaa0000", "test_rmsle": 0.5}
    (project / "q.sql").write_text(f"-- the served versions\n{sql};\n")
    assert cli.main(["lineage", "query", "--file", "q.sql", "--format", "parquet", "--output", "out/s.parquet"]) == 0
    assert "wrote 2 rows to out/s.parquet" in capsys.readouterr().out
    assert pq.read_table(project / "out" / "s.parquet").column("product").to_pylist() == [OTHER, CODE]
    assert cli.main(["lineage", "views", "--format", "csv"]) == 0
    assert "flowed_into" in capsys.readouterr().out
    assert cli.main(["lineage", "fleet"]) == 0 and "risk_gate" in capsys.readouterr().out
    assert cli.main(["lineage", "served", CODE, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["step"] == 1


def test_the_shell_runs_statements_and_goes_on_after_an_error(project: Path) -> None:
    script = io.StringIO(".views\nSELECT product\n  FROM served ORDER BY product;\nSELECT * FROM nosuch;\n"
                         "DELETE FROM stages;\n.format csv\nSELECT count(*) AS n FROM stages;\n.schema served\n"
                         ".quit\nSELECT 'never';\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    assert shell(connect(project), script, stdout, stderr) == 1
    printed = stdout.getvalue()
    assert "registry_history" in printed and f"{OTHER}\n{CODE}\n(2 rows)" in printed
    assert "n\n" in printed and "never" not in printed and "column_name" in printed
    assert stderr.getvalue().count("error:") == 2 and "no view named nosuch" in stderr.getvalue()
    assert "refused DELETE" in stderr.getvalue()


def test_the_risk_gate_records_its_inputs_as_dvc_lock_hashes_them(tmp_path: Path) -> None:
    from pricetrail.project.dvc_lock import dvc_hash

    folder = tmp_path / "data" / "features" / CODE
    (folder / "sub").mkdir(parents=True)
    (folder / "lines.parquet").write_bytes(b"lines")
    (folder / "sub" / "daily.parquet").write_bytes(b"daily")
    assert dvc_hash(folder) == dir_object(tmp_path, Path("data/features") / CODE)
    assert dvc_hash(folder / "lines.parquet") == file_md5(folder / "lines.parquet")


def test_the_fast_lockfile_reader_agrees_with_yaml_and_falls_back() -> None:
    from dvc.utils.serialize import dumps_yaml

    from pricetrail.lineage.lockfile import _fast, _Unexpected, read_lock
    from pricetrail.project.dvc_lock import stages_of

    stages = {
        "ingest": {"cmd": "python stages/ingest.py", "deps": [
            {"path": "data/raw/transactions 2011.csv", "hash": "md5", "md5": "1" + "a" * 31, "size": 12}],
            "params": {"params.yaml": {"ingest": {"input": "data/raw/x.csv", "csv_glob": "*.csv", "start": "2010-12-01",
                                                  "codes": ["POST", "DOT"], "empty": {}, "none": None},
                                       "base.seed": 42}},
            "outs": [{"path": "data/interim/t.parquet", "hash": "md5", "md5": "b" * 32, "size": 3},
                     {"path": "data/features/X", "hash": "md5", "md5": "c" * 32 + ".dir", "size": 9, "nfiles": 2}]},
        "etl_pipeline@22423": {"cmd": "python stages/etl_pipeline.py --stockcode 22423", "frozen": True,
                               "deps": [{"path": "data/interim/t.parquet", "hash": "md5", "md5": "b" * 32, "size": 3}]},
    }
    text = dumps_yaml({"schema": "2.0", "stages": stages})  # the layout DVC writes
    assert _fast(text, {}) == stages_of(text) == stages
    long_cmd = {"schema": "2.0", "stages": {"s": {"cmd": "python " + "x" * 120 + " --flag " + "y" * 40}}}
    for odd in (dumps_yaml(long_cmd), "schema: '2.0'\nstages:\n  s: {cmd: run}\n",
                "schema: '2.0'\nstages:\n  s:\n    cmd: it's\n", "schema: '2.0'\nstages:\n  s:\n    cmd: 2010-12-01\n",
                "schema: '2.0'\nstages:\n  s:\n    cmd: run  # why\n"):
        with pytest.raises(_Unexpected):
            _fast(odd, {})
        assert read_lock(odd, where="dvc.lock") == stages_of(odd)
