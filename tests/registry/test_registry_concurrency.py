"""Registry writers in two processes at once: no decision lost, no crash, no decision recorded twice."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from registry_runs import CODE, OTHER, make_run

from pricetrail.registry import promotion, records

pytestmark = pytest.mark.slow

WRITER = """
import sys, time
from pathlib import Path
from pricetrail.registry import operator_actions, promotion
root, action, count, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
while time.time() < start:  # both processes begin together
    time.sleep(0.001)
for index in range(count):
    if action == "accept-drift":
        operator_actions.accept_drift(root, "85123A", reason=f"{sys.argv[5]} {index}")
    elif action == "rollback":
        operator_actions.rollback(root, "85123A", to=("aaaa0000", "bbbb0000")[index % 2], reason=f"flip {index}")
    elif action == "promote":
        promotion.promote(root, "85123A")
print("done", flush=True)
"""


def writers(root: Path, *specs: tuple[str, int, str]) -> list[subprocess.CompletedProcess]:
    start = time.time() + 1.5  # after both interpreters have imported pricetrail
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), action, str(count), str(start), tag],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for action, count, tag in specs]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    for result in results:
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return results


def test_two_processes_times_100_accepted_drifts_lose_no_history_line(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    writers(tmp_path, ("accept-drift", 100, "first"), ("accept-drift", 100, "second"))
    entries = records.history(tmp_path, CODE)
    reasons = [entry["reason"] for entry in entries if entry["action"] == "accepted_drift"]
    assert len(reasons) == 200
    assert {r.split(": ", 1)[1] for r in reasons} == {f"{tag} {i}" for tag in ("first", "second") for i in range(100)}
    assert not list((tmp_path / "registry").rglob("*.tmp"))


def test_rollbacks_racing_promotions_never_crash_and_the_record_follows_the_history(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    make_run(tmp_path, version="bbbb0000", marker=2.0)
    promotion.promote(tmp_path, CODE)
    writers(tmp_path, ("rollback", 100, ""), ("promote", 100, ""))
    served = records.served_model(tmp_path, CODE)
    last = [entry for entry in records.history(tmp_path, CODE) if entry["action"] in ("promoted", "rollback")][-1]
    assert served is not None and served.version == last["version"] == "bbbb0000"  # flip 99 goes to bbbb
    assert json.loads((tmp_path / "registry" / CODE / "drift_reference.json").read_text())["version"] == "bbbb0000"
    assert not list((tmp_path / "registry").rglob("*.tmp"))


def test_two_promotions_of_one_product_at_once_record_it_once(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    make_run(tmp_path, version="cccc0000", marker=3.0)
    writers(tmp_path, ("promote", 1, ""), ("promote", 1, ""))
    actions = [(entry["action"], entry["version"]) for entry in records.history(tmp_path, CODE)]
    assert actions == [("promoted", "aaaa0000"), ("promoted", "cccc0000")]


def test_a_damaged_history_line_is_that_products_error_alone(tmp_path: Path) -> None:
    make_run(tmp_path, CODE)
    make_run(tmp_path, OTHER)
    promotion.promote_all(tmp_path, [CODE, OTHER])
    history = tmp_path / "registry" / CODE / "history.jsonl"
    entry = json.loads(history.read_text().splitlines()[0])
    del entry["version"]  # a hand edit: promotion read entry["version"] and crashed for every product
    history.write_text(json.dumps(entry) + "\n")
    make_run(tmp_path, OTHER, version="eeee0000", marker=5.0)
    decisions = {d.stockcode: d for d in promotion.promote_all(tmp_path, [CODE, OTHER])}
    assert decisions[CODE].action == "error" and "line 1 (promoted) is damaged: version is missing" in (
        decisions[CODE].reason)
    assert decisions[OTHER].action == "promoted"
