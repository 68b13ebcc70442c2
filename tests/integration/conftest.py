"""Fixtures shared by the integration tests: one first smoke run that several modules start from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from smoke_project import commit, make_copy, pricetrail


@dataclass(frozen=True)
class SmokeRun:
    root: Path  # never changed by a test: clone it (smoke_project.clone_project) and change the clone
    stdout: str


@pytest.fixture(scope="session")
def smoke_week1(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """The smoke profile's two products after a first `pricetrail run`, committed as "week 1".

    The run takes minutes on two cores; the modules that need a first week clone this one instead of each
    running it again.
    """
    root = make_copy(tmp_path_factory.mktemp("smoke-week1") / "project")
    result = pricetrail("run", cwd=root)
    commit(root, "week 1")
    return SmokeRun(root=root, stdout=result.stdout)
