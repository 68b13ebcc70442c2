"""The same pipeline on the real UCI Online Retail data (../shared), for the five default products.

Skips with a reason when ../shared is absent. Uses the smoke profile's tuning budgets with the real input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pricetrail.data.etl import CleaningRules, run_etl
from pricetrail.data.ingest import ingest
from pricetrail.project.config import load_stockcodes
from pricetrail.project.copies import dvc, make_copy, pricetrail, set_params

pytestmark = [pytest.mark.integration, pytest.mark.realdata, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REAL_DATA = PROJECT_ROOT.parent / "shared" / "data" / "online-retail" / "by-day"
DEFAULT_CODES = ["85123A", "22423", "85099B", "84879", "47566"]


@pytest.fixture(scope="module")
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real UCI data not found at {REAL_DATA} (../shared is absent); real-data tests skipped")
    return REAL_DATA


def test_ingest_and_etl_of_all_real_rows(real_data: Path, tmp_path: Path) -> None:
    summary = ingest(real_data, tmp_path / "transactions.parquet")
    assert summary.rows == 541_909 and summary.files == 305 and summary.stockcodes == 4070
    for code in DEFAULT_CODES:
        features, daily, report = run_etl(tmp_path / "transactions.parquet", code, CleaningRules())
        assert report.rows_out == len(features) > 1400
        assert report.removed["cancellation"] > 0
        assert features["invoice_date"].is_monotonic_increasing
        assert features["is_registered"].nunique() == 2


def test_default_products_are_the_defaults(real_data: Path) -> None:
    assert list(load_stockcodes(PROJECT_ROOT)) == DEFAULT_CODES


@pytest.fixture(scope="module")
def real_project(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_copy(tmp_path_factory.mktemp("real") / "project", profile="smoke")
    # The smoke budgets with the real input and all five default products.
    (root / "stockcodes.yaml").write_text((PROJECT_ROOT / "stockcodes.yaml").read_text(encoding="utf-8"))
    set_params(root, {"ingest.input": str(real_data)})
    pricetrail("run", cwd=root, check=False)
    return root


def test_real_pipeline_runs_every_chain_to_a_verdict_or_a_gate(real_project: Path) -> None:
    outcomes = {}
    for code in DEFAULT_CODES:
        drift = json.loads((real_project / "metrics" / code / "drift.json").read_text())
        verdict_path = real_project / "metrics" / code / "verdict.json"
        if drift["drift_detected"]:
            outcomes[code] = f"drift gate: {drift['drifted_columns']}"
        else:
            verdict = json.loads(verdict_path.read_text())
            outcomes[code] = "promoted" if verdict["promoted"] else f"failed {verdict['failed_checks']}"
    print(json.dumps(outcomes, indent=2))  # noqa: T201 - the report asked for: which pass and why not
    # At these smoke budgets 85123A and 85099B beat the median by the gate's 5%; 22423 did too while its 16-unit
    # volume tier stayed in its rows (a step at 10.95 any model reads), and at default budgets it still does.
    assert sum(outcome == "promoted" for outcome in outcomes.values()) >= 2, outcomes


def test_real_pipeline_settles(real_project: Path) -> None:
    """A second repro runs nothing but the drift gates that still fail (they fail again, as they should)."""
    failing = {code for code in DEFAULT_CODES
               if json.loads((real_project / "metrics" / code / "drift.json").read_text())["drift_detected"]}
    rerun = dvc("repro", "--keep-going", cwd=real_project, check=False).stdout
    ran = {line.split("'")[1] for line in rerun.splitlines() if line.startswith("Running stage")}
    assert ran == {f"data_drift_check@{code}" for code in failing}, rerun
