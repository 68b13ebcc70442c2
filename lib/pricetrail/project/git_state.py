"""What git says about the project: the commit a run's code came from, so every registry decision names it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitState:
    commit: str | None  # None outside a git repository or before the first commit
    dirty: bool  # the run's inputs (code, params, products) differ from that commit

    def to_dict(self) -> dict[str, object]:
        return {"git_commit": self.commit, "git_dirty": self.dirty}


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=60)


# What a run is made of. Its outputs (dvc.lock, metrics, registry) always differ from HEAD until committed.
RUN_INPUTS = ("lib", "stages", "dvc.yaml", "params.yaml", "stockcodes.yaml")


def git_state(root: Path) -> GitState:
    head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    if head.returncode != 0:
        return GitState(commit=None, dirty=True)
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *RUN_INPUTS)
    return GitState(commit=head.stdout.strip(), dirty=bool(status.stdout.strip()))

