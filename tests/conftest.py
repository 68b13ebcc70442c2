"""Shared fixtures: tiny inline frames, the real data's location, and a throwaway project copy."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PRICETRAIL_SHARED", PROJECT_ROOT.parent / "shared"))
REAL_DATA = SHARED / "data" / "online-retail" / "by-day"


@pytest.fixture(scope="session", autouse=True)
def own_prefect_home() -> Iterator[Path]:
    """Every test process gets its own Prefect home: the flows the tests run without a server start a temporary
    one on a SQLite file there, and two test processes (make test runs two) must not share it, nor the user's
    ~/.prefect."""
    home = Path(tempfile.mkdtemp(prefix=f"pricetrail-tests-prefect-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"))
    previous = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("PREFECT_HOME", None)
    else:
        os.environ["PREFECT_HOME"] = previous
    shutil.rmtree(home, ignore_errors=True)


def require_real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real UCI data not found at {REAL_DATA} (../shared is absent); real-data tests skipped")
    return REAL_DATA


def lines(rows: list[dict]) -> pd.DataFrame:
    """A product's lines in the ingested (snake_case) schema, with sensible defaults for unspecified fields."""
    defaults = {"invoice_no": "500000", "stockcode": "85123A", "description": "WHITE HANGING HEART",
                "quantity": 6, "invoice_date": "2011-01-03 10:00:00", "unit_price": 2.95,
                "customer_id": 17850.0, "country": "United Kingdom"}
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    frame["invoice_date"] = pd.to_datetime(frame["invoice_date"])
    frame["quantity"] = frame["quantity"].astype("int64")
    frame["unit_price"] = frame["unit_price"].astype("float64")
    frame["customer_id"] = frame["customer_id"].astype("float64")
    return frame


# ------------------------------------------------------------------ integration: one shared first smoke run
# Here, not in tests/integration/conftest.py: pytest imports every conftest.py as the module `conftest`, and a
# second one would shadow this file for the unit tests' `from conftest import ...`.


@dataclass(frozen=True)
class SmokeRun:
    root: Path  # never changed by a test: clone it (copies.clone_project) and change the clone
    stdout: str  # of `pricetrail run`
    dvc_stdout: str  # of the plain `dvc repro -R .` before it


@pytest.fixture(scope="session")
def smoke_week1(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """The smoke profile's two products, as a user who knows DVC would start: a fresh project (no registry records),
    plain `dvc repro -R .` with no pricetrail command before it (every chain must reach its gates), then
    `pricetrail run` (it promotes what passed and re-checks their drift gates), committed as "week 1".

    It takes a minute and a half on two cores; the integration modules that need a first week clone this one
    instead of each running it again. Under pytest-xdist the test processes share one: the first to ask builds it
    in the run's common temporary folder under a file lock, the others wait for it and read it (nobody changes it).
    """
    from filelock import FileLock

    from pricetrail.project.copies import commit, dvc, make_copy, pricetrail

    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent  # the run's folder, common to its test processes
    else:
        shared = tmp_path_factory.getbasetemp()
    folder = shared / "smoke-week1"
    stdout_file = folder / "run-stdout.txt"  # written last: its presence says the run finished and was committed
    dvc_file = folder / "dvc-stdout.txt"
    failure_file = shared / "smoke-week1-failed.txt"  # a failed build fails the other processes' tests at once
    with FileLock(str(shared / "smoke-week1.lock")):
        if failure_file.exists():
            pytest.fail(f"the shared first smoke run failed in another test process:\n{failure_file.read_text()}")
        if not stdout_file.exists():
            try:
                root = make_copy(folder / "project")
                assert not list((root / "registry").glob("*/"))
                plain = dvc("repro", "-R", ".", cwd=root)
                result = pricetrail("run", cwd=root)
                commit(root, "week 1")
            except AssertionError as error:
                failure_file.write_text(str(error)[-8000:], encoding="utf-8")
                raise
            dvc_file.write_text(plain.stdout, encoding="utf-8")
            stdout_file.write_text(result.stdout, encoding="utf-8")
    return SmokeRun(root=folder / "project", stdout=stdout_file.read_text(encoding="utf-8"),
                    dvc_stdout=dvc_file.read_text(encoding="utf-8"))
