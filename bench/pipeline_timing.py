"""Wall time of the whole pipeline (`pricetrail run`: all stages, promotion, drift re-check) per profile.

Targets (issue: the model half): the smoke profile (2 products) under 4 minutes, the default profile (5 default
products, synthetic data) under 15 minutes, on this 2-core machine. Also times the no-op rerun (`dvc repro`
with nothing to do) and checks that it runs nothing.

    python bench/pipeline_timing.py               # smoke, then default
    python bench/pipeline_timing.py --profiles smoke
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from common import timed

from pricetrail.project.copies import make_copy, run

TARGETS = {"smoke": 4 * 60, "default": 15 * 60}


def measure(profile: str, base: Path) -> dict[str, object]:
    root = make_copy(base / profile, profile=None if profile == "default" else profile)
    elapsed, result = timed(run, [sys.executable, "-m", "pricetrail.cli", "run"], root, check=False, timeout=3600)
    noop_elapsed, noop = timed(run, [sys.executable, "-m", "dvc", "repro"], root, check=False)
    promoted = result.stdout.count("promoted: passed the drift gate")  # decision column of the summary table
    products = len([line for line in (root / "stockcodes.yaml").read_text().splitlines() if line.startswith("  ")])
    return {"profile": profile, "products": products, "exit": result.returncode, "run_s": round(elapsed),
            "promoted": promoted, "noop_repro_s": round(noop_elapsed, 1),
            "noop_ran_nothing": "Running stage" not in noop.stdout,
            "target_s": TARGETS.get(profile), "pass": elapsed <= TARGETS.get(profile, float("inf"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["smoke", "default"], choices=["smoke", "default"])
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pricetrail-timing-"))
    rows = []
    try:
        for profile in args.profiles:
            rows.append(measure(profile, base))
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{'profile':<8} {'products':>8} {'exit':>4} {'run (s)':>8} {'target (s)':>10} {'promoted':>8} "
          f"{'no-op repro (s)':>15} {'no-op ran nothing':>17}  result")
    for row in rows:
        print(f"{row['profile']:<8} {row['products']:>8} {row['exit']:>4} {row['run_s']:>8} {row['target_s']:>10} "
              f"{row['promoted']:>8} {row['noop_repro_s']:>15} {str(row['noop_ran_nothing']):>17}  "
              f"{'PASS' if row['pass'] and row['noop_ran_nothing'] and row['exit'] == 0 else 'FAIL'}")
    return 0 if all(r["pass"] and r["noop_ran_nothing"] and r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
