"""The weekly run's fixed costs at catalogue scale: the no-op and one product's data changed, at every product of
the real data, beside the previous design (``--naive-rev``) on the same project, in one run.

A real 800-product first run takes hours here, and these figures only need its end state. So:

1. a copy of the project on the real data (../shared, copied beside it so one product's rows can change), tiny
   budgets, runs one product's chain for real (the template, 85123A); then the template's data changes (one line
   fewer) and ``pricetrail run`` runs again: ingest, the split and that chain, at one product;
2. every other product ``pricetrail products`` lists joins stockcodes.yaml; the split stage runs for real (each
   product's own input file), and every other product's outputs and registry records are the template's, copied
   under its own paths (``dvc commit`` records them, so ``dvc status`` is clean: the state a finished run leaves,
   though those products' models are the template's);
3. ``pricetrail run`` with nothing to do: the naive revision's code, then ours with no plan recorded (DVC asked),
   after a run (DVC's plan recorded) and the week after (its promotion
   decisions recorded too); each followed by ``dvc status``;
4. the template's data changes again, ``pricetrail run`` at every product; then a no-op on the plan that run
   recorded from its own results.

    python bench/catalogue_benchmark.py --naive-rev dfd4261        # the figures in the closing note
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import path_with_bin

from pricetrail.project.copies import PROJECT_ROOT, commit, dvc, make_copy, run, set_params
from pricetrail.project.dvc_lock import read_stages

TEMPLATE = "85123A"
TINY_BUDGET = {"tune_primary_model.n_trials": 1, "tune_primary_model.max_epochs": 2,
               "tune_primary_model.patience": 1, "inference_primary_model.shap_background_rows": 10,
               "inference_primary_model.shap_explain_rows": 10}


def timed(args: list[str], root: Path, pythonpath: Path | None = None) -> tuple[float, str]:
    import os

    env = {**os.environ, "PATH": path_with_bin(), "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("PREFECT_API_URL", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    started = time.monotonic()
    result = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    return wall, result.stdout + result.stderr


def base_project(base: Path, shared: Path) -> Path:
    input_copy = base / "input"
    shutil.copytree(shared / "data" / "online-retail" / "by-day", input_copy)
    for path in input_copy.iterdir():
        path.chmod(0o644)
    root = make_copy(base / "project", profile=None)
    set_params(root, {**TINY_BUDGET, "ingest.input": str(input_copy)})
    (root / "stockcodes.yaml").write_text(yaml.safe_dump({"stockcodes": {TEMPLATE: {}}}))
    commit(root, "real data, one product")
    wall, _ = timed([sys.executable, "-m", "pricetrail.cli", "run", "--workers", "2"], root)
    print(f"template {TEMPLATE}: first run {wall:.0f} s", flush=True)
    return root


def template_paths(root: Path) -> list[str]:
    """The template's own outputs (from dvc.lock) and registry folder."""
    paths = [out["path"] for name, stage in read_stages(root).items() if name.endswith(f"@{TEMPLATE}")
             for out in stage.get("outs", [])]
    return [*paths, f"registry/{TEMPLATE}"]


def clone_catalogue(root: Path, limit: int | None) -> list[str]:
    listing = run([sys.executable, "-m", "pricetrail.cli", "products"], root).stdout
    entries = [line for line in listing.splitlines() if line.strip().startswith('"')]
    if limit:
        entries = entries[:limit - 1]
    with (root / "stockcodes.yaml").open("a", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" for line in entries))
    codes = list(yaml.safe_load((root / "stockcodes.yaml").read_text())["stockcodes"])
    started = time.monotonic()
    dvc("repro", "split_products", cwd=root)
    sources = template_paths(root)
    for code in codes:
        if code == TEMPLATE:
            continue
        for source in sources:
            _copy(root / source, root / source.replace(TEMPLATE, code), code)
    dvc("commit", "-f", cwd=root)
    status = dvc("status", cwd=root).stdout
    if "up to date" not in status:
        raise SystemExit(f"the cloned catalogue is not clean:\n{status[:3000]}")
    commit(root, f"{len(codes)} products")
    print(f"catalogue: {len(codes)} products cloned and committed in {time.monotonic() - started:.0f} s", flush=True)
    return codes


def _copy(source: Path, target: Path, code: str) -> None:
    if source.is_dir():
        for path in source.rglob("*"):
            if path.is_file():
                _copy(path, target / path.relative_to(source), code)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # Records name their product (registry, metrics); the model files stay the bytes the template's gate assessed.
    if source.suffix in (".json", ".jsonl") and source.parts[-3:-2] != ("models",) and (
            "registry" in source.parts or "metrics" in source.parts):
        target.write_text(source.read_text(encoding="utf-8").replace(TEMPLATE, code), encoding="utf-8")
    else:
        shutil.copyfile(source, target)


def naive_library(base: Path, rev: str) -> Path:
    target = base / f"naive-{rev}"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", rev, "lib"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "lib"


def pricetrail_run(root: Path, label: str, pythonpath: Path | None = None, *, no_op: bool) -> float:
    wall, output = timed([sys.executable, "-m", "pricetrail.cli", "run", "--workers", "2"], root, pythonpath)
    if no_op != ("nothing to do" in output):
        raise SystemExit(f"{label}: expected {'a no-op' if no_op else 'a run'}:\n{output[-3000:]}")
    status = dvc("status", cwd=root).stdout
    if "up to date" not in status:
        raise SystemExit(f"{label}: dvc status is not clean after it:\n{status[:2000]}")
    print(f"  {label}: {wall:.1f} s (dvc status clean)", flush=True)
    return wall


def record_plan_only(root: Path) -> None:
    """The state a finished run leaves: DVC's plan recorded (the flow's last step), no no-op decisions yet."""
    (root / ".dvc" / "tmp" / "pricetrail" / "plan.json").unlink(missing_ok=True)
    run([sys.executable, "-c", "import sys; from pathlib import Path; from pricetrail.flow.planning import plan; "
         "from pricetrail.project.config import load_stockcodes; root = Path.cwd(); "
         "plan(root, list(load_stockcodes(root)))"], root)


def change_template(input_copy: Path) -> None:
    """Drop the template's last line of its last trading day in the input (one product's data changed)."""
    for day in sorted(input_copy.iterdir(), reverse=True):
        lines = day.read_text(encoding="utf-8").splitlines(keepends=True)
        mine = [index for index, line in enumerate(lines) if f",{TEMPLATE}," in line]
        if mine:
            del lines[mine[-1]]
            day.write_text("".join(lines), encoding="utf-8")
            return
    raise SystemExit(f"{TEMPLATE} has no line in {input_copy}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--naive-rev", default="dfd4261", help="the previous design's revision")
    parser.add_argument("--products", type=int, help="at most this many products (default: every listed one)")
    parser.add_argument("--shared", type=Path, default=PROJECT_ROOT.parent / "shared")
    parser.add_argument("--keep", type=Path, help="build here and keep it")
    args = parser.parse_args()
    if not (args.shared / "data" / "online-retail").is_dir():
        raise SystemExit(f"the real data is not under {args.shared}: pass --shared")
    base = args.keep or Path(tempfile.mkdtemp(prefix="pricetrail-catalogue-"))
    base.mkdir(parents=True, exist_ok=True)
    root = base_project(base, args.shared)
    figures: dict[str, float | int] = {}
    print(f"one product ({TEMPLATE}) listed, its data changed:", flush=True)
    change_template(base / "input")
    figures["one_changed_alone_s"] = pricetrail_run(root, "pricetrail run", no_op=False)
    codes = clone_catalogue(root, args.products)
    figures["products"] = len(codes)
    naive = naive_library(base, args.naive_rev)
    print(f"{len(codes)} products, nothing changed (`pricetrail run`):", flush=True)
    figures["noop_naive_s"] = pricetrail_run(root, f"naive ({args.naive_rev})", naive, no_op=True)
    (root / ".dvc" / "tmp" / "pricetrail" / "plan.json").unlink(missing_ok=True)
    figures["noop_no_record_s"] = pricetrail_run(root, "ours, no plan recorded (DVC asked)", no_op=True)
    started = time.monotonic()
    record_plan_only(root)
    figures["dvc_plan_s"] = round(time.monotonic() - started, 1)
    print(f"  (DVC's plan alone, recorded: {figures['dvc_plan_s']} s; the flow's last step paid it until 33ec74e)",
          flush=True)
    figures["noop_after_run_s"] = pricetrail_run(root, "ours, after a run (plan recorded)", no_op=True)
    figures["noop_s"] = pricetrail_run(root, "ours, the week after (plan and decisions recorded)", no_op=True)
    print(f"{len(codes)} products, {TEMPLATE}'s data changed:", flush=True)
    change_template(base / "input")
    figures["one_changed_s"] = pricetrail_run(root, "ours", no_op=False)
    figures["noop_after_change_s"] = pricetrail_run(root, "ours, then nothing changed (the plan that run recorded)",
                                                    no_op=True)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
