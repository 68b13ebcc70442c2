"""Each per-product stage's start-up beside the import floor of the libraries it genuinely runs, in one run, for
this checkout and an earlier revision.

    python bench/stage_startup.py [--against 4465042] [--repeats 5]

Start-up is a fresh `python stages/<stage>.py --help` (the interpreter, the script's imports, argument parsing:
everything before the stage's own work), as DVC starts each stage. The floor is a fresh `python -c "import ..."`
of what the stage really runs: DuckDB and pandas for the ETL, Evidently for the drift check, scikit-learn where the
transformer is fitted, torch where the network runs, Optuna in tuning, SHAP in inference; pandas, numpy and
DuckDB for the risk gate (it prices in numpy). Medians of --repeats runs; the revisions alternate, so a busy
machine slows both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_table

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("etl_pipeline", "data_drift_check", "preprocess", "tune_primary_model", "inference_primary_model",
          "assess_model_risk")
FLOORS = {
    "etl_pipeline": "import duckdb, pandas",
    "data_drift_check": ("import pandas; from evidently import DataDefinition, Dataset, Report; "
                         "from evidently.presets import DataDriftPreset"),
    "preprocess": "import pandas; import sklearn.compose, sklearn.preprocessing",
    "tune_primary_model": "import pandas, torch, optuna",
    "inference_primary_model": "import pandas, torch, shap",
    "assess_model_risk": "import duckdb, numpy, pandas",
}

LABELS = {"etl_pipeline": "DuckDB, pandas", "data_drift_check": "Evidently (its drift report), pandas",
          "preprocess": "scikit-learn's transformers, pandas", "tune_primary_model": "torch, Optuna, pandas",
          "inference_primary_model": "torch, SHAP, pandas", "assess_model_risk": "DuckDB, numpy, pandas"}


def seconds(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="4465042", help="the earlier revision to time beside this checkout")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pricetrail-startup-"))
    archive = subprocess.run(["git", "archive", args.against], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)
    trees = {"now": ROOT, args.against: work}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for stage in STAGES:
            for name, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": str(tree / "lib")}
                times.setdefault((name, stage), []).append(
                    seconds([sys.executable, f"stages/{stage}.py", "--help"], tree, env))
            times.setdefault(("floor", stage), []).append(
                seconds([sys.executable, "-c", FLOORS[stage]], ROOT, dict(os.environ)))
    rows = []
    for stage in STAGES:
        now, before, floor = (statistics.median(times[(name, stage)]) for name in ("now", args.against, "floor"))
        rows.append((stage, f"{before:.2f} s", f"{now:.2f} s", f"{floor:.2f} s", f"{now - floor:+.2f} s",
                     LABELS[stage]))
    print(f"medians of {args.repeats} fresh processes each\n")
    print_table(("stage", f"start-up at {args.against}", "start-up now", "floor", "now - floor", "the floor imports"),
                rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
