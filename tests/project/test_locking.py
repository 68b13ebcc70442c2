"""The project locks: exclusive across processes, reentrant within one, released by a kill, and a holder named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pricetrail.project import locking
from pricetrail.project.files import atomic_path, remove_stale_temporaries

HOLD = """
import sys, time
from pathlib import Path
from pricetrail.project import locking
with locking.hold(Path(sys.argv[1]), sys.argv[2], command="pricetrail test-holder"):
    print("held", flush=True)
    time.sleep(60)
"""


def holder_process(root: Path, name: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(root), name], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_process_waits_its_bound_then_is_told_who_holds_the_lock(tmp_path: Path) -> None:
    process = holder_process(tmp_path, locking.REGISTRY)
    try:
        started = time.monotonic()
        with pytest.raises(locking.LockTimeout, match=rf"registry lock is held by pid {process.pid} "
                                                       r"\(pricetrail test-holder, since .*\); waited 0.3 s"):
            with locking.hold(tmp_path, locking.REGISTRY, wait=0.3):
                pass
        assert time.monotonic() - started >= 0.3
        with locking.hold(tmp_path, locking.PIPELINE, wait=0):  # the other lock is free
            pass
    finally:
        process.kill()
        process.wait()


def test_kill_9_of_the_holder_releases_the_lock(tmp_path: Path) -> None:
    process = holder_process(tmp_path, locking.PIPELINE)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with locking.hold(tmp_path, locking.PIPELINE, wait=5):
        assert f'"pid": {os.getpid()}' in locking.lock_path(tmp_path, locking.PIPELINE).read_text()


def test_the_lock_is_reentrant_within_a_thread(tmp_path: Path) -> None:
    with locking.hold(tmp_path, locking.REGISTRY, wait=0), locking.hold(tmp_path, locking.REGISTRY, wait=0):
        pass
    with locking.hold(tmp_path, locking.REGISTRY, wait=0):  # released after the outer block
        pass


def test_a_bad_wait_is_refused() -> None:
    with pytest.raises(locking.LockTimeout, match="--wait -1 is not accepted"):
        locking.set_default_wait(-1)


def test_clean_up_removes_only_temporaries_whose_writer_is_gone(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = tmp_path / f".served.json.{dead.stdout.strip()}.abc123.tmp"
    stale.write_text("{")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".served.json.{alive.pid}.def456.tmp"
        live.write_text("{")
        old_style = tmp_path / ".history.jsonl.xyz.tmp"  # before the pid was in the name
        old_style.write_text("")
        with atomic_path(tmp_path / "state.json") as own:
            own.write_text("{}")
            assert sorted(p.name for p in remove_stale_temporaries(tmp_path)) == sorted([stale.name, old_style.name])
            assert live.exists() and own.exists()
    finally:
        alive.kill()
        alive.wait()
