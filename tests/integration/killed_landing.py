"""A landing in a process that SIGKILLs itself just before one chosen rename: what the kill -9 tests of the
weekly run's landings (a product's, the shared stages') run in a subprocess."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

# Every write of a landing is a rename (a moved output, an atomic file write, dvc.lock, a registry record): each
# is printed before it happens, so an uninterrupted landing lists them; argv[3] names the one to die before.
# argv[4]: "promote" to promote the result's product as the flow does, "none" for the shared stages.
LANDER = """
import base64, json, os, signal, sys
from pathlib import Path
from pricetrail.flow import lockmerge
from pricetrail.flow.workspace import JobResult
from pricetrail.registry import promotion

root, result_file, kill_before, promote = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
data = json.loads(result_file.read_text())
data["files"] = {path: base64.b64decode(content) for path, content in data["files"].items()}
result = JobResult(**data)
real_replace, real_rename = os.replace, Path.rename

def reached(target):
    relpath = os.path.relpath(str(target), str(root))
    print("rename", relpath, flush=True)
    if kill_before and relpath == kill_before:
        os.kill(os.getpid(), signal.SIGKILL)

def replace(source, target, *args, **kwargs):
    reached(target)
    return real_replace(source, target, *args, **kwargs)

def rename(self, target):
    reached(target)
    return real_rename(self, target)

os.replace, Path.rename = replace, rename
if promote == "promote":
    lockmerge.land(root, [result], move_outputs=True, promote=lambda codes: promotion.promote_all(root, codes),
                   promote_codes=[result.code])
else:
    lockmerge.land(root, [result], move_outputs=True, promote=lambda codes: None, promote_codes=[])
print("landed", flush=True)
"""


def save_result(result: object, path: Path) -> Path:
    """A workspace's JobResult as JSON (its files base64), for :func:`land`."""
    data = dataclasses.asdict(result)  # type: ignore[call-overload]
    data["files"] = {name: base64.b64encode(content).decode() for name, content in data["files"].items()}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def land(root: Path, result_file: Path, workspace: Path, kill_before: str = "", *,
         promote: bool) -> subprocess.CompletedProcess:
    """Land the saved result in ``root`` (its workspace now at ``workspace``), killed before ``kill_before``."""
    data = json.loads(result_file.read_text(encoding="utf-8"))
    data["workspace"] = str(workspace)
    local = root.parent / f"{root.name}-result.json"
    local.write_text(json.dumps(data), encoding="utf-8")
    return subprocess.run([sys.executable, "-c", LANDER, str(root), str(local), kill_before,
                           "promote" if promote else "none"], capture_output=True, text=True, timeout=300,
                          check=False)


def renames(output: str) -> list[str]:
    """The renames a landing printed, in order."""
    return [line.split(" ", 1)[1] for line in output.splitlines() if line.startswith("rename ")]
