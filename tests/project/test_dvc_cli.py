"""DVC run through pricetrail.project.dvc_cli writes the dvc.lock plain DVC writes, and reads it from a kept parse
only while the file keeps the bytes that parse was made from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pricetrail.project.dvc import dvc_environment
from pricetrail.project.dvc_cli import DVC_PARSED_LOCK

pytestmark = pytest.mark.integration

DVC_YAML = """stages:
  first:
    cmd: python -c "open('a.txt', 'w').write(open('in.txt').read() * 2)"
    deps: [in.txt]
    params: [x]
    outs: [a.txt]
  second:
    foreach: [p, q]
    do:
      cmd: python -c "open('${item}.txt', 'w').write(open('a.txt').read() + '${item}')"
      deps: [a.txt]
      outs: ["${item}.txt"]
"""


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "dvc.yaml").write_text(DVC_YAML, encoding="utf-8")
    (root / "params.yaml").write_text("x: on\n", encoding="utf-8")  # a word YAML 1.1 would read as a boolean
    (root / "in.txt").write_text("1", encoding="utf-8")
    _dvc(root, "plain", "init", "--no-scm", "-q")
    return root


def _dvc(root: Path, how: str, *args: str) -> str:
    module = "dvc" if how == "plain" else "pricetrail.project.dvc_cli"
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=root, env=dvc_environment(),
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_lock_written_and_the_stages_run_are_plain_dvcs(tmp_path: Path) -> None:
    plain, ours = _project(tmp_path / "plain"), _project(tmp_path / "ours")
    for step in range(4):
        if step == 3:  # a changed param (parsed once per process while the file is unchanged)
            for root in (plain, ours):
                (root / "params.yaml").write_text("x: off\n", encoding="utf-8")
        if step == 1:  # a changed input: the lock is rewritten in place
            for root in (plain, ours):
                (root / "in.txt").write_text("2", encoding="utf-8")
        if step == 2:  # a new foreach item: an entry added at the end
            for root in (plain, ours):
                (root / "dvc.yaml").write_text(DVC_YAML.replace("[p, q]", "[p, q, r]"), encoding="utf-8")
        plain_out, ours_out = _dvc(plain, "plain", "repro"), _dvc(ours, "ours", "repro")
        assert ("Running stage 'first'" in ours_out) == (step in (0, 1, 3))
        assert (ours / "dvc.lock").read_bytes() == (plain / "dvc.lock").read_bytes()
        assert ("Updating lock file" in ours_out) == ("Updating lock file" in plain_out)
        assert sorted(line for line in ours_out.splitlines() if line.startswith("Running stage")) == sorted(
            line for line in plain_out.splitlines() if line.startswith("Running stage"))
    assert _dvc(ours, "ours", "status").strip() == _dvc(ours, "plain", "status").strip() == \
        "Data and pipelines are up to date."


def test_the_kept_parse_is_used_only_for_its_own_bytes(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    _dvc(root, "ours", "repro")
    kept = json.loads((root / DVC_PARSED_LOCK).read_text(encoding="utf-8"))
    assert kept["data"]["stages"]["first"]["params"]["params.yaml"]["x"] == "on"  # DVC's reading (YAML 1.2)
    # A plain DVC command changes dvc.lock behind the kept parse: ours reads the new bytes, not the copy.
    (root / "in.txt").write_text("3", encoding="utf-8")
    _dvc(root, "plain", "repro", "first")
    assert "changed deps" in _dvc(root, "ours", "status") or "modified" in _dvc(root, "ours", "status")
    _dvc(root, "ours", "repro")
    assert _dvc(root, "plain", "status").strip() == "Data and pipelines are up to date."
    # A kept parse of these bytes with other contents would be believed: so it must be the file's own.
    (root / DVC_PARSED_LOCK).write_text("{damaged", encoding="utf-8")
    assert _dvc(root, "ours", "status").strip() == "Data and pipelines are up to date."


def test_the_kept_parse_is_what_dvc_reads_while_the_bytes_match(tmp_path: Path) -> None:
    import hashlib

    root = _project(tmp_path / "p")
    _dvc(root, "ours", "repro")
    path = root / DVC_PARSED_LOCK
    kept = json.loads(path.read_text(encoding="utf-8"))
    assert kept["sha256"] == hashlib.sha256((root / "dvc.lock").read_bytes()).hexdigest()
    kept["data"]["stages"]["first"]["outs"][0]["md5"] = "0" * 32  # believed, since it names these bytes
    path.write_text(json.dumps(kept), encoding="utf-8")
    assert "first" in _dvc(root, "ours", "status") and _dvc(root, "plain", "status").strip() == \
        "Data and pipelines are up to date."


def test_a_landing_carries_dvcs_reading_over_to_the_new_bytes(tmp_path: Path) -> None:
    import hashlib

    from dvc.utils.serialize import parse_yaml

    from pricetrail.flow.lockmerge import merge_lock_entries
    from pricetrail.project.dvc_lock import stages_of

    root = _project(tmp_path / "p")
    _dvc(root, "ours", "repro")
    entry = stages_of((root / "dvc.lock").read_text(encoding="utf-8"))["first"]
    merge_lock_entries(root, {"third": {**entry, "cmd": "echo third"}})
    text = (root / "dvc.lock").read_text(encoding="utf-8")
    kept = json.loads((root / DVC_PARSED_LOCK).read_text(encoding="utf-8"))
    assert kept["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert kept["data"] == parse_yaml(text, "dvc.lock")  # what DVC's own loader reads from the new bytes
    assert kept["data"]["stages"]["third"]["params"]["params.yaml"]["x"] == "on"
