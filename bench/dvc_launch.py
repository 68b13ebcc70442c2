"""A product job's DVC commands: each in a new interpreter (``python -m pricetrail.project.dvc_cli``, as before
the launcher) beside forked from the launcher (:mod:`pricetrail.project.dvc_launcher`), same run, alternating.

The project is DVC alone: a chain of seven stages shaped like a product's, whose commands do nothing, so the
figures are DVC's own cost per command (what every product job pays once, a promoted product's re-check again):
- a no-op ``dvc repro`` (nothing changed: what a re-check costs DVC beyond its stages),
- ``dvc repro --force`` of the whole chain (DVC's work around seven stage processes),
- ``dvc status``.

    python bench/dvc_launch.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pricetrail.project.dvc import dvc_command, dvc_environment
from pricetrail.project.dvc_launcher import Launcher

STAGES = ("etl", "drift_reference", "drift", "preprocess", "tune", "inference", "assess")
COMMANDS = {"no-op repro": ["repro"], "repro --force (7 stages)": ["repro", "--force"], "status": ["status"]}


def chain(root: Path) -> None:
    lines = ["stages:"]
    previous = "in.txt"
    for name in STAGES:
        lines += [f"  {name}:", f"    cmd: python -c \"open('{name}.txt', 'w').write(open('{previous}').read())\"",
                  f"    deps: [{previous}]", f"    outs: [{name}.txt]"]
        previous = f"{name}.txt"
    root.mkdir(parents=True)
    (root / "dvc.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "in.txt").write_text("x", encoding="utf-8")
    subprocess.run(dvc_command(["init", "--no-scm", "-q"]), cwd=root, env=dvc_environment(), check=True)
    subprocess.run(dvc_command(["repro", "-q"]), cwd=root, env=dvc_environment(), check=True)


def new_interpreter(root: Path, args: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(dvc_command(args), cwd=root, env=dvc_environment(), capture_output=True, check=True)
    return time.monotonic() - started


def launched(launcher: Launcher, root: Path, args: list[str]) -> float:
    started = time.monotonic()
    code, output, _ = launcher.run(args, root, dvc_environment(), root / ".dvc" / "tmp" / "out.log",
                                   deadline=time.monotonic() + 300)
    if code != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed under the launcher:\n{output}")
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    launcher = Launcher()
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pricetrail-dvc-launch-") as folder:
        root = Path(folder) / "chain"
        chain(root)
        launched(launcher, root, ["status"])  # the launcher's own start (once per worker), not counted
        for name, command in COMMANDS.items():
            times: dict[str, list[float]] = {"new interpreter": [], "launched": []}
            for _ in range(args.repeats):
                times["new interpreter"].append(new_interpreter(root, command))
                times["launched"].append(launched(launcher, root, command))
            figures[name] = {way: round(statistics.median(values), 3) for way, values in times.items()}
            figures[name]["saved"] = round(figures[name]["new interpreter"] - figures[name]["launched"], 3)
            print(f"{name:<26} new interpreter {figures[name]['new interpreter']:.3f} s   launched "
                  f"{figures[name]['launched']:.3f} s   saved {figures[name]['saved']:.3f} s (medians of "
                  f"{args.repeats})", flush=True)
    launcher.close()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
