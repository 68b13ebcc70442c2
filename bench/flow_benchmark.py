"""The weekly flow against sequential `dvc repro`, measured side by side in one run on this machine.

For N products (the two smoke products plus generated stockcodes, smoke budgets), each in a fresh throwaway copy:

- sequential: `dvc repro` in one workspace (what a user would do without the flow), wall time and the sum of its
  stage times (from DVC's own "Running stage" / "Updating lock file" lines); and the same end state as the
  flow's: then `pricetrail promote` and `dvc repro` again (the drift gates promotion changed);
- flow: `pricetrail run --workers W` (Prefect temporary server, local Dask cluster, promotion and the drift
  re-check included), wall time and the sum of its stage times (logs/last-run.json);
- bookkeeping: wall time minus the ideal (sum of stage times / workers), as a share of the wall time;
- no-op: a second `pricetrail run` with nothing to do, without a Prefect server (planning only) and against a
  running `prefect server start` (a flow run is recorded);
- one product changed: its rows change in the input, `pricetrail run` again.

    python bench/flow_benchmark.py --products 8 40          # the figures in the closing note
    python bench/flow_benchmark.py --products 200 --skip-sequential --budget tiny

Sequential `dvc repro` runs only up to --sequential-up-to products (default 8): it is the comparison the
0.65x target names, and at 40 products it alone would take an hour here. `--budget tiny` (one trial, two
epochs, a few SHAP rows) makes a 200-product first run affordable; it only exists to reach the state in which
the no-op and the one-product change are measured, and it makes stage commands shorter, so the bookkeeping
share it reports is a worst case.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
import yaml
from common import BIN, free_port, path_with_bin

from pricetrail.project.copies import make_copy, run, set_params

RUNNING = re.compile(r"Running stage '([^']+)'")


def env(api: str | None = None) -> dict[str, str]:
    values = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PATH": path_with_bin()}
    values.pop("PREFECT_API_URL", None)
    if api:
        values["PREFECT_API_URL"] = api
    return values


TINY_BUDGET = {"tune_primary_model.n_trials": 1, "tune_primary_model.max_epochs": 2,
               "tune_primary_model.patience": 1, "inference_primary_model.shap_background_rows": 10,
               "inference_primary_model.shap_explain_rows": 10}


def project(base: Path, name: str, n: int, budget: str) -> Path:
    root = make_copy(base / name)
    if budget == "tiny":
        set_params(root, TINY_BUDGET)
    codes = ["85123A", "22423"] + [f"T{index:04d}" for index in range(1, n - 1)]
    (root / "stockcodes.yaml").write_text(yaml.safe_dump({"stockcodes": {code: {} for code in codes[:n]}}))
    # A fixed input file, so that one product's rows can change without regenerating the others'.
    run([sys.executable, "-m", "dvc", "repro", "generate_synthetic"], root)
    shutil.copyfile(root / "data/raw/synthetic/transactions.parquet", root / "data/raw/input.parquet")
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("input: data/raw/synthetic/transactions.parquet",
                                                     "input: data/raw/input.parquet"))
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", f"{n} products"], root)
    return root


def timed(args: list[str], root: Path, environment: dict[str, str]) -> tuple[float, str, float]:
    """Wall time, output, and the sum of stage times read from DVC's lines as they stream."""
    started = time.monotonic()
    process = subprocess.Popen(args, cwd=root, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    lines, stage_total, stage_start = [], 0.0, None
    assert process.stdout is not None
    for line in process.stdout:
        now = time.monotonic()
        lines.append(line)
        if RUNNING.search(line):
            stage_start = now
        elif stage_start is not None and "Updating lock file" in line:
            stage_total += now - stage_start
            stage_start = None
    process.wait()
    return time.monotonic() - started, "".join(lines), stage_total


def flow_stage_seconds(root: Path) -> float:
    summary = json.loads((root / "logs" / "last-run.json").read_text())
    return sum(sum(stages.values()) for stages in summary["stage_seconds"].values())


def change_one_product(root: Path, code: str) -> None:
    path = root / "data/raw/input.parquet"
    frame = pd.read_parquet(path)
    rows = frame.index[frame["StockCode"] == code]
    frame.drop(index=rows[-5:]).to_parquet(path, index=False)


def prefect_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    environment = {**env(), "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the Prefect server did not start")


def measure(base: Path, n: int, workers: int, sequential: bool, budget: str) -> dict:
    result: dict = {"products": n, "workers": workers, "budget": budget}
    if sequential:
        seq = project(base, f"sequential-{n}", n, budget)
        # New products need their drift reference record before plain `dvc repro` (pricetrail run makes them).
        run([sys.executable, "-m", "pricetrail.cli", "promote"], seq)
        wall, output, stages = timed([sys.executable, "-m", "dvc", "repro"], seq, env())
        if "ERROR" in output:
            raise SystemExit(f"sequential dvc repro failed:\n{output[-3000:]}")
        # The same end state as the flow's: promote, then `dvc repro` again for the drift gates promotion changed
        # (without it `dvc status` is not clean and the next run would re-check them).
        promote_wall, _, _ = timed([sys.executable, "-m", "pricetrail.cli", "promote"], seq, env())
        settle_wall, settle_output, settle_stages = timed([sys.executable, "-m", "dvc", "repro"], seq, env())
        status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=seq, env=env(), capture_output=True,
                                text=True, check=False).stdout
        result["sequential"] = {"wall_s": round(wall, 1), "stage_s": round(stages, 1),
                                "bookkeeping_share": round((wall - stages) / wall, 3),
                                "exit_ok": "ERROR" not in output}
        result["sequential_same_end_state"] = {
            "wall_s": round(wall + promote_wall + settle_wall, 1), "promote_s": round(promote_wall, 1),
            "settle_s": round(settle_wall, 1), "settle_stage_s": round(settle_stages, 1),
            "status_clean": "up to date" in status}
        print(f"  {n}: sequential dvc repro {wall:.0f} s; + promote {promote_wall:.0f} s + dvc repro again "
              f"{settle_wall:.0f} s", flush=True)
    flow = project(base, f"flow-{n}", n, budget)
    wall, output, _ = timed([sys.executable, "-m", "pricetrail.cli", "run", "--workers", str(workers)], flow, env())
    stages = flow_stage_seconds(flow)
    ideal = stages / workers
    result["flow"] = {"wall_s": round(wall, 1), "stage_s": round(stages, 1), "ideal_s": round(ideal, 1),
                      "bookkeeping_s": round(wall - ideal, 1), "bookkeeping_share": round((wall - ideal) / wall, 3),
                      "done": "products done" in output}
    print(f"  {n}: flow {wall:.0f} s", flush=True)
    if "sequential" in result:
        result["flow_vs_sequential"] = round(wall / result["sequential"]["wall_s"], 3)
        result["flow_vs_sequential_same_end_state"] = round(
            wall / result["sequential_same_end_state"]["wall_s"], 3)
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=flow, env=env(), capture_output=True,
                            text=True, check=False).stdout
    result["flow"]["status_clean"] = "up to date" in status
    run(["git", "add", "-A"], flow)
    run(["git", "commit", "-qm", "week 1"], flow)
    wall, output, _ = timed([sys.executable, "-m", "pricetrail.cli", "run", "--workers", str(workers)], flow, env())
    result["noop_without_server_s"] = round(wall, 1)
    # A standing `prefect server start` only for this measurement: idle, it still uses 5-15% of a core.
    server, api = prefect_server(base / "prefect-home")
    try:
        wall, output, _ = timed([sys.executable, "-m", "pricetrail.cli", "run", "--workers", str(workers)], flow,
                                env(api))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    result["noop_with_server_s"] = round(wall, 1)
    change_one_product(flow, "85123A")
    wall, output, _ = timed([sys.executable, "-m", "pricetrail.cli", "run", "--workers", str(workers)], flow, env())
    ran = sorted(set(re.findall(r"^  (\S+)\s+running\s+(\S+)", output, flags=re.M)))
    result["one_product_changed"] = {"wall_s": round(wall, 1), "stages_run": [f"{s}@{c}" for c, s in ran]}
    print(f"  {n}: no-op {result['noop_without_server_s']} s / {result['noop_with_server_s']} s, one product "
          f"{wall:.0f} s", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, nargs="+", default=[8, 40])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--sequential-up-to", type=int, default=8,
                        help="run sequential dvc repro only for sizes up to this many products")
    parser.add_argument("--budget", choices=("smoke", "tiny"), default="smoke")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pricetrail-flow-bench-"))
    try:
        results = []
        for n in args.products:
            sequential = not args.skip_sequential and n <= args.sequential_up_to
            results.append(measure(base, n, args.workers, sequential, args.budget))
            print(json.dumps(results[-1]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
