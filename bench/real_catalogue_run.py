"""Every real product through its whole chain in one `pricetrail run`: the weekly job at catalogue scale, for real.

A copy of the project on the real data (../shared, read in place), every product `pricetrail products --all` lists
(the ETL's own cleaning, at least `etl.min_rows` clean lines, splits that reach `preprocess.min_split_rows`), one
`pricetrail run --workers W`, then `dvc status` and a no-op run. Reported from the run's own records
(logs/last-run.json and each product's log, where every stage logs `start-up X s, work Y s`):

- wall time; a product's worker time (its job: workspace, DVC, the stage processes, bring-back) and the stages' own
  work inside it; the fixed cost per product (worker time minus the stages' work);
- bookkeeping: wall time minus the ideal (the stage commands' time / workers), as a share of the wall time — the
  flow benchmark's definition;
- the fleet: products by result, decision and failed check, every failure with its reason, and whether any failed on
  a contradiction between settings (a split below its minimum after the ETL admitted the product);
- `dvc status` after it (clean, or out of date only in the chains of products that failed), then the week after:
  `pricetrail run` again with nothing new (a failed product's chain is tried again).

    python bench/real_catalogue_run.py --budget tiny                   # all products, 1 trial, 2 epochs
    python bench/real_catalogue_run.py --budget default --products 100  # 100 drawn at random (seed 0)

`--budget tiny` only shortens tuning and SHAP: every stage still runs, so the fixed costs are those of a real week.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import path_with_bin

from pricetrail.project.copies import PROJECT_ROOT, commit, dvc, make_copy, run, set_params

TINY_BUDGET = {"tune_primary_model.n_trials": 1, "tune_primary_model.max_epochs": 2,
               "tune_primary_model.patience": 1, "inference_primary_model.shap_background_rows": 10,
               "inference_primary_model.shap_explain_rows": 10}
STAGE_TIMES = re.compile(r"^INFO pricetrail\.project\.stage: (\S+): start-up ([\d.]+|unknown)(?: s)?, work ([\d.]+) s",
                         re.M)
# What a contradiction between settings looks like: the ETL admitted the product, a later size threshold from params
# refused it (a split, a drift window, a customer group below its minimum).
CONTRADICTION = re.compile(r"fewer than \w+\.\w+=|min_split_rows|min_rows_per_window|splits? .* of \d+ rows|"
                           r"too few (rows|lines)", re.I)


def project(base: Path, shared: Path, budget: str, limit: int | None, seed: int) -> tuple[Path, list[str]]:
    root = make_copy(base / "project", profile=None)
    set_params(root, {**(TINY_BUDGET if budget == "tiny" else {}),
                      "ingest.input": str((shared / "data" / "online-retail" / "by-day").resolve()),
                      "ingest.csv_glob": "*.csv"})
    commit(root, "the real data")
    dvc("repro", "ingest", cwd=root)
    listing = run([sys.executable, "-m", "pricetrail.cli", "products", "--all"], root).stdout
    entries = [line for line in listing.splitlines() if line.strip().startswith('"')]
    if limit is not None and limit < len(entries):
        entries = sorted(random.Random(seed).sample(entries, limit))
    (root / "stockcodes.yaml").write_text("stockcodes:\n" + "".join(f"{line}\n" for line in entries),
                                          encoding="utf-8")
    codes = list(yaml.safe_load((root / "stockcodes.yaml").read_text(encoding="utf-8"))["stockcodes"])
    commit(root, f"{len(codes)} real products")
    return root, codes


def pricetrail_run(root: Path, workers: int) -> tuple[float, int, str]:
    import os

    env = {**os.environ, "PATH": path_with_bin(), "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("PREFECT_API_URL", None)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pricetrail.cli", "run", "--workers", str(workers)], cwd=root,
                            env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if result.returncode not in (0, 1):  # 1: some product failed a gate or a stage, reported in the table
        raise SystemExit(f"pricetrail run exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    return wall, result.returncode, result.stdout + result.stderr


def stage_times(root: Path, code: str) -> tuple[float, float, int]:
    """The stages' start-up and work seconds summed from the product's log, and how many stages logged them."""
    path = root / "logs" / f"{code}.log"
    if not path.is_file():
        return 0.0, 0.0, 0
    found = STAGE_TIMES.findall(path.read_text(encoding="utf-8"))
    startup = sum(float(value) for _, value, _ in found if value != "unknown")
    return startup, sum(float(work) for _, _, work in found), len(found)


def figures(root: Path, wall: float, workers: int) -> dict:
    rows = json.loads((root / "logs" / "last-run.json").read_text(encoding="utf-8"))["rows"]
    worked = [row for row in rows if float(row["seconds"]) > 0]
    per_product = []
    for row in worked:
        startup, work, stages = stage_times(root, row["product"])
        per_product.append({"product": row["product"], "worker_s": float(row["seconds"]),
                            "stage_command_s": float(row["stage seconds"]), "startup_s": startup, "work_s": work,
                            "stages": stages, "fixed_s": float(row["seconds"]) - work})
    stage_command = sum(item["stage_command_s"] for item in per_product)
    ideal = stage_command / workers
    fixed = [item["fixed_s"] for item in per_product]
    failures = [row for row in rows if row["result"] == "failed"]
    return {
        "products": len(rows), "workers": workers, "wall_s": round(wall, 1),
        "worker_s_total": round(sum(item["worker_s"] for item in per_product), 1),
        "stage_command_s_total": round(stage_command, 1),
        "stage_work_s_total": round(sum(item["work_s"] for item in per_product), 1),
        "stage_startup_s_total": round(sum(item["startup_s"] for item in per_product), 1),
        "fixed_s_per_product": {"mean": round(statistics.fmean(fixed), 2) if fixed else None,
                                "median": round(statistics.median(fixed), 2) if fixed else None,
                                "p90": round(sorted(fixed)[int(0.9 * (len(fixed) - 1))], 2) if fixed else None},
        "worker_s_per_product_median": round(statistics.median(i["worker_s"] for i in per_product), 2)
        if per_product else None,
        "bookkeeping_s": round(wall - ideal, 1), "bookkeeping_share": round((wall - ideal) / wall, 3),
        "results": _count(str(row["result"]) for row in rows),
        "decisions": _count(str(row["decision"]).split(":", 1)[0] or "no decision" for row in rows),
        "failed_stages": _count(str(row["failed stage"]) for row in failures),
        "settings_contradictions": [f"{row['product']}: {row['reason']}" for row in failures
                                    if CONTRADICTION.search(str(row["reason"]))],
        "without_decision_or_reason": [row["product"] for row in rows
                                       if not str(row["decision"]).strip() and not str(row["reason"]).strip()],
        "failed_products": sorted(row["product"] for row in failures),
        "failures": [f"{row['product']}: {row['failed stage']}: {row['reason']}" for row in failures],
    }


def status_figures(root: Path, failed: list[str]) -> dict:
    """`dvc status` after the run: clean, or out of date only in the chains of products that failed (a stage
    after a failed gate or error never ran, so DVC lists it; the run reported why)."""
    status = dvc("status", "--json", cwd=root, check=False)
    if status.returncode != 0:
        raise SystemExit(f"dvc status failed:\n{status.stderr[-3000:]}")
    stale = json.loads(status.stdout or "{}")
    products = {name.split("@", 1)[1] if "@" in name else "(shared)" for name in stale}
    return {"status_clean": not stale, "status_stale_stages": len(stale),
            "status_stale_outside_failed_products": sorted(products - set(failed))}


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=("tiny", "default"), default="tiny")
    parser.add_argument("--products", type=int, help="this many products drawn at random (default: every one)")
    parser.add_argument("--seed", type=int, default=0, help="the draw's seed (with --products)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=PROJECT_ROOT.parent / "shared")
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a new temporary folder)")
    args = parser.parse_args()
    if not (args.shared / "data" / "online-retail" / "by-day").is_dir():
        raise SystemExit(f"the real data is not under {args.shared}: pass --shared")
    if args.products is not None and args.products < 1:
        raise SystemExit(f"--products {args.products}: give at least 1")
    base = args.keep or Path(tempfile.mkdtemp(prefix="pricetrail-real-catalogue-"))
    base.mkdir(parents=True, exist_ok=True)
    root, codes = project(base, args.shared, args.budget, args.products, args.seed)
    print(f"{len(codes)} real products, {args.budget} budgets, {args.workers} workers, in {root}", flush=True)
    wall, exit_code, output = pricetrail_run(root, args.workers)
    (base / "run.log").write_text(output, encoding="utf-8")
    print(f"pricetrail run: {wall:.1f} s, exit {exit_code}", flush=True)
    result = figures(root, wall, args.workers)
    result.update(status_figures(root, result["failed_products"]))
    commit(root, "week 1")
    noop_wall, _, noop_output = pricetrail_run(root, args.workers)
    (base / "noop.log").write_text(noop_output, encoding="utf-8")
    nothing_to_do = "nothing to do" in noop_output  # then the run writes no summary: last-run.json is week 1's
    rerun = [] if nothing_to_do else json.loads((root / "logs" / "last-run.json").read_text(encoding="utf-8"))["rows"]
    result["week_after"] = {"wall_s": round(noop_wall, 1), "nothing_to_do": nothing_to_do,
                            "products_rerun": sorted(row["product"] for row in rerun if int(row["stages run"]) > 0)}
    (base / "figures.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    summary = {key: value for key, value in result.items() if key not in ("failures", "failed_products")}
    print(json.dumps(summary, indent=1), flush=True)
    print(f"failures ({len(result['failures'])}), all in {base / 'figures.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
