"""Registry cost before and after pointers: bytes git gets per promotion, and a weekly run where one product changed.

Runs, in one go and on the same machine, a git revision with the old registry (binaries copied into registry/,
every drift gate depending on the whole folder) and the current tree, each in a throwaway git + DVC copy with the
five default products:

1. `pricetrail run` on the default synthetic data, then `git commit`: bytes under registry/ per promotion;
2. one product's transactions change (its last five lines are dropped), `pricetrail run` again: wall time and the
   stages that ran (only that product's should, plus the ETLs that read the shared ingest output).

    python bench/registry_benchmark.py --before ef2a772 --after HEAD   # ef2a772: the last copied-binaries registry
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import path_with_bin

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHANGED = "47566"


def sh(args: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=3600)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    return result


def export(revision: str, target: Path) -> None:
    """The project files of ``revision`` (or the working tree for "WORKTREE"), without git history or outputs."""
    target.mkdir(parents=True)
    if revision == "WORKTREE":
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT_ROOT, text=True,
                               capture_output=True, check=True).stdout.split()
        for name in files:
            source = PROJECT_ROOT / name
            if source.is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
    else:
        archive = subprocess.run(["git", "archive", revision], cwd=PROJECT_ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)


def measure(label: str, revision: str, workdir: Path) -> dict:
    root = workdir / label
    export(revision, root)
    for stale in (root / "registry").iterdir():
        if stale.is_dir():
            shutil.rmtree(stale)
    # The copy's own library, not the editable install of this checkout, runs its stages.
    env = {**os.environ, "PYTHONPATH": str(root / "lib"), "OMP_WAIT_POLICY": "PASSIVE",
           "PATH": path_with_bin()}
    python = sys.executable
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "bench@example.invalid"],
                 ["git", "config", "user.name", "bench"], [python, "-m", "dvc", "init", "-q", "-f"],
                 [python, "-m", "dvc", "config", "core.analytics", "false"],
                 [python, "-m", "dvc", "remote", "add", "-d", "-f", "local", str(workdir / f"{label}-remote")]):
        sh(args, root, env)
    # A fixed input file, so that one product's rows can be changed without regenerating the others'.
    sh([python, "-m", "dvc", "repro", "generate_synthetic"], root, env)
    custom = root / "data" / "raw" / "custom.parquet"
    shutil.copyfile(root / "data/raw/synthetic/transactions.parquet", custom)
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("input: data/raw/synthetic/transactions.parquet",
                                                     "input: data/raw/custom.parquet"))
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "start"], root, env)
    started = time.perf_counter()
    first = sh([python, "-m", "pricetrail.cli", "run"], root, env, check=False)
    first_seconds = time.perf_counter() - started
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "week 1"], root, env)
    tree = sh(["git", "ls-tree", "-r", "-l", "HEAD", "registry"], root, env).stdout.splitlines()
    registry_bytes = sum(int(line.split()[3]) for line in tree if line.split()[3].isdigit())
    binary_bytes = sum(int(line.split()[3]) for line in tree if line.split()[3].isdigit()
                       and line.endswith((".pt", ".skops", "preprocessor.json", "serving.json", ".parquet")))
    promotions = len(re.findall(r"^  \S+\s+promoted\s", first.stdout, flags=re.M))

    frame = pd.read_parquet(custom)
    product_rows = frame.index[frame["StockCode"] == CHANGED]  # the raw UCI schema
    frame.drop(index=product_rows[-5:]).to_parquet(custom, index=False)
    started = time.perf_counter()
    second = sh([python, "-m", "pricetrail.cli", "run"], root, env, check=False)
    second_seconds = time.perf_counter() - started
    ran = re.findall(r"Running stage '([^']+)'", second.stdout)
    status = sh([python, "-m", "dvc", "status"], root, env).stdout.strip()
    return {"label": label, "revision": revision, "first_run_s": round(first_seconds, 1),
            "first_exit": first.returncode, "promotions": promotions, "registry_bytes_in_git": registry_bytes,
            "binary_bytes_in_git": binary_bytes,
            "registry_bytes_per_promotion": round(registry_bytes / promotions) if promotions else None,
            "one_product_run_s": round(second_seconds, 1), "one_product_exit": second.returncode,
            "stages_run": ran, "status_after": status}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="ef2a772", help="a revision with the old registry layout")
    parser.add_argument("--after", default="HEAD", help="a revision with pointers (WORKTREE: the working tree)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway copies")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pricetrail-registry-bench-"))
    results = [measure("before", args.before, workdir), measure("after", args.after, workdir)]
    print(json.dumps(results, indent=2))
    print("\n| | registry bytes in git per promotion (of which binaries) | run after one product changed | "
          "stages run | drift gates run |")
    print("|---|---|---|---|---|")
    for r in results:
        gates = sorted(s for s in r["stages_run"] if s.startswith("data_drift_check@"))
        per = r["registry_bytes_per_promotion"]
        binary = round(r["binary_bytes_in_git"] / r["promotions"]) if r["promotions"] else None
        print(f"| {r['label']} ({r['revision']}) | {per:,} ({binary:,}) | {r['one_product_run_s']} s | "
              f"{len(r['stages_run'])} | {', '.join(gates)} |")
    if not args.keep:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
