"""The plan record (pricetrail.flow.plan_record): DVC's last answer is reused only while the workspace is as DVC
saw it, and after every kind of change the plan is DVC's own again (`dvc status`, run as a user would).

One clone of the shared first smoke week; each change is made, planned, compared with `dvc status`, then undone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from pricetrail.flow import plan_record, planning
from pricetrail.flow.preflight import RunOptions
from pricetrail.project.config import load_stockcodes
from pricetrail.project.copies import clone_project, dvc, pricetrail, run, set_params
from pricetrail.registry import promotion

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def project(smoke_week1, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001 - conftest's SmokeRun
    return clone_project(smoke_week1.root, tmp_path_factory.mktemp("plan-record") / "project")


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times DVC itself was asked."""
    calls: list[int] = []
    real = planning.dvc_plan

    def counting(root: Path, codes: list[str]) -> planning.Plan:
        calls.append(1)
        return real(root, codes)

    monkeypatch.setattr(planning, "dvc_plan", counting)
    return calls


def status_plan(root: Path) -> tuple[bool, set[str]]:
    """`dvc status`, as the CLI says it: (a shared stage changed, the product stages that changed)."""
    answer = json.loads(dvc("status", "--json", cwd=root).stdout or "{}")
    return any("@" not in name for name in answer), {name for name in answer if "@" in name}


def planned(root: Path) -> tuple[bool, set[str]]:
    result = planning.plan(root, list(load_stockcodes(root)))
    return bool(result.shared), {stage for stages in result.products.values() for stage in stages}


def undo(root: Path) -> None:
    run(["git", "checkout", "--", "."], root)
    run(["git", "clean", "-fdq", "--", "models", "metrics"], root)
    dvc("checkout", "-f", cwd=root)


def drop_a_row(root: Path) -> None:
    path = root / "data" / "interim" / "products" / "22423.parquet"
    frame = pd.read_parquet(path)
    path.unlink()  # the cached copy may be a link: write a new file, never through it
    frame.iloc[:-1].to_parquet(path, index=False)


def append(path: Path, text: str) -> None:
    content = path.read_text(encoding="utf-8")
    path.unlink()
    path.write_text(content + text, encoding="utf-8")


def change_lock(root: Path) -> None:
    lock = root / "dvc.lock"
    text = lock.read_text(encoding="utf-8")
    entry = text.index("assess_model_risk@85123A:")
    md5 = text.index("md5: ", text.index("metrics/85123A/verdict.json", entry)) + len("md5: ")
    lock.write_text(text[:md5] + "0123456789abcdef" * 2 + text[md5 + 32:], encoding="utf-8")


def rewrite_same_bytes(root: Path) -> None:
    path = root / "metrics" / "85123A" / "verdict.json"
    content = path.read_bytes()
    path.unlink()
    path.write_bytes(content)


CHANGES: dict[str, Callable[[Path], None]] = {
    "params": lambda root: set_params(root, {"tune_primary_model.max_epochs": 7}),
    "code": lambda root: append(root / "lib" / "pricetrail" / "steps" / "assess.py", "\n# changed\n"),
    "data": drop_a_row,
    "stockcodes": lambda root: append(root / "stockcodes.yaml", '  "85099B": {}\n'),
    "lock": change_lock,
    "a file added to an output folder": lambda root: (root / "models" / "22423" / "extra.txt").write_text("x"),
    "an output rewritten with the same bytes": rewrite_same_bytes,
}


@pytest.fixture
def settled(project: Path) -> Iterator[Path]:
    assert planned(project) == status_plan(project) == (False, set())  # asked and recorded
    yield project
    undo(project)


def test_a_settled_workspace_is_planned_from_the_record_without_dvc(settled: Path, asked: list[int]) -> None:
    assert planned(settled) == (False, set())
    assert planned(settled) == (False, set())
    assert asked == []


@pytest.mark.parametrize("change", list(CHANGES))
def test_after_every_kind_of_change_the_plan_is_dvcs_own(settled: Path, asked: list[int], change: str) -> None:
    CHANGES[change](settled)
    expected = status_plan(settled)
    assert planned(settled) == expected, change
    assert asked == [1], f"{change}: DVC was not asked"
    if change != "an output rewritten with the same bytes":
        assert expected != (False, set()), f"{change} changed nothing DVC sees: the test proves nothing"
    assert planned(settled) == expected and asked == [1]  # recorded: the same state asks DVC once
    undo(settled)
    assert planned(settled) == status_plan(settled) == (False, set())
    assert asked == [1, 1]


def test_a_damaged_record_is_ignored_and_rewritten(settled: Path, asked: list[int]) -> None:
    record = settled / plan_record.RECORD
    record.write_text('{"format": 1, "fingerprint": ')
    assert planned(settled) == (False, set()) and asked == [1]
    assert plan_record.read_record(settled) is not None
    record.write_text(json.dumps({"format": 99}))
    assert planned(settled) == (False, set()) and asked == [1, 1]


def test_a_no_op_run_reuses_the_decisions_of_the_same_state(settled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_api = os.environ.pop("PREFECT_API_URL", None)
    try:
        first = pricetrail("run", cwd=settled)  # asks nothing of DVC (recorded), promotes, records the decisions
        assert "nothing to do: all 2 products are up to date" in first.stdout, first.stdout
        from pricetrail.flow import weekly

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("asked again in a state whose answer is recorded")

        monkeypatch.setattr(planning, "dvc_plan", refuse)
        monkeypatch.setattr(promotion, "promote_all", refuse)
        ok, rows, message = weekly.run(settled, RunOptions(codes=(), workers=2), lambda line: None)
        assert ok and message == "nothing to do: all 2 products are up to date (dvc status is clean)"
        record = plan_record.read_record(settled)
        assert record is not None and record.decisions is not None
        assert {row["product"]: row["decision"] for row in rows} == {
            code: decision["decision"] for code, decision in record.decisions.items()}
        assert all(row["decision"].startswith("unchanged: the served model is already") for row in rows), rows
    finally:
        if env_api is not None:
            os.environ["PREFECT_API_URL"] = env_api


def test_after_the_shared_stages_the_products_to_run_are_dvcs_own(settled: Path, asked: list[int]) -> None:
    codes = list(load_stockcodes(settled))
    before = planning.plan(settled, codes)  # recorded: nothing to do
    assert before.products == {} and asked == []
    drop_a_row(settled)  # what a shared stage does when one product's input rows changed: its file of the split
    after = {code: set(names) for code, names in planning.after_shared(settled, codes, before.products).items()}
    assert after == {code: set(names) for code, names in planning.dvc_plan(settled, codes).products.items()}
    assert set(after) == {"22423"} and "etl_pipeline@22423" in after["22423"]
    undo(settled)
    assert planning.after_shared(settled, codes, {"85123A": ["preprocess@85123A"]}) == {
        "85123A": ["preprocess@85123A"]}  # what had changed before stays; nothing else changed


def test_when_only_the_shared_stages_inputs_changed_dvc_is_not_asked(settled: Path, asked: list[int]) -> None:
    path = settled / "data" / "raw" / "synthetic" / "transactions.parquet"  # read by the ingest alone
    frame = pd.read_parquet(path)
    path.unlink()  # the cached copy may be a link: write a new file, never through it
    frame.iloc[:-1].to_parquet(path, index=False)
    assert status_plan(settled) == (True, set())  # DVC: the shared stages have work, no product yet
    result = planning.plan(settled, list(load_stockcodes(settled)))
    assert result.shared == ["generate_synthetic", "ingest", "split_products"] and result.products == {}
    assert asked == []
