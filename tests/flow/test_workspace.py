"""One product's job in its own workspace: a real `dvc repro`, ended at its deadline whatever it prints."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pricetrail.flow.workspace import ProductJob, run_job
from pricetrail.project.files import pid_alive

HANGING = """stages:
  hang:
    foreach: {X1: {}}
    do:
      cmd: python -c "import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep(120)"
      deps: [in.txt]
      outs: [out.txt]
"""


@pytest.mark.slow
def test_a_stage_that_hangs_silently_is_ended_at_the_deadline(tmp_path: Path) -> None:
    job = ProductJob(code="X1", targets=("hang@X1",), downstream=False,
                     files={"dvc.yaml": HANGING.encode(), "dvc.lock": b"schema: '2.0'\nstages: {}\n",
                            "in.txt": b"x"}, outputs=(),
                     main_root=str(tmp_path), cache_dir=str(tmp_path / "cache"), timeout_seconds=4)
    started = time.monotonic()
    result = run_job(job, tmp_path / "workspaces")
    assert time.monotonic() - started < 30
    assert not result.ok and result.failed_stage == "hang@X1" and result.lock_entries == {}
    assert result.reason == "timed out after 4 s (--timeout); its processes were ended"
    pid = int((tmp_path / "workspaces" / "X1" / "pid").read_text())
    for _ in range(50):  # the kill is asynchronous to the stage's own process
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    assert not pid_alive(pid)
