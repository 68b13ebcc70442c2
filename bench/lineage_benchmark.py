"""Lineage in SQL at catalogue scale, against the naive ways of answering the same questions.

Builds a throwaway git + DVC repository per size: this project's dvc.yaml and params.yaml, N generated products,
and R weekly commits in which every product's data, dvc.lock entries and metrics change and half the products
promote a new model (registry records in the registry's schema, .dir objects in the DVC cache) — the worst case
for sharing files between commits. Then, per size:

- one revision: build the views and run the fleet report (in process, and the whole `pricetrail lineage fleet`
  command), beside `dvc metrics show --json` and a plain-Python loop reading every metrics file;
- history: load R revisions from git objects and query one metric for every product, beside a plain-Python loop
  calling `git show <rev>:<file>` per revision and product (and, at the smallest size, `dvc metrics show
  --json --all-commits`).

    python bench/lineage_benchmark.py                     # 100 and 1,000 products, 20 revisions
    python bench/lineage_benchmark.py --products 100 --revisions 20 --keep /tmp/lineage-bench
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import print_table, timed
from dvc.utils.serialize import dumps_yaml

from pricetrail.lineage import connect, reports, run

ROOT = Path(__file__).resolve().parents[1]

CODES_PER_CHAIN = ("etl", "drift", "preprocess", "validation", "test", "verdict")


def md5_of(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def sh(args: list[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=True, **kwargs)


# --------------------------------------------------------------------------------------------- the fixture


class Fixture:
    """A repository whose records look like the pipeline's, week after week."""

    def __init__(self, root: Path, products: int, seed: int = 7) -> None:
        self.root = root
        self.codes = [f"P{i:05d}" for i in range(products)]
        self.random = random.Random(seed)
        self.week = 0
        self.dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
        self.params = yaml.safe_load((ROOT / "params.yaml").read_text())
        self.history: dict[str, list[str]] = {code: [] for code in self.codes}
        self.served: dict[str, dict[str, Any]] = {}

    def create(self) -> None:
        self.root.mkdir(parents=True)
        sh(["git", "init", "-q"], self.root)
        sh(["git", "config", "user.email", "bench@example.invalid"], self.root)
        sh(["git", "config", "user.name", "bench"], self.root)
        sh([sys.executable, "-m", "dvc", "init", "-q"], self.root)
        sh([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], self.root)
        shutil.copy(ROOT / "dvc.yaml", self.root / "dvc.yaml")
        shutil.copy(ROOT / "params.yaml", self.root / "params.yaml")
        (self.root / "stockcodes.yaml").write_text(yaml.safe_dump(
            {"stockcodes": {code: {"description": f"PRODUCT {code}"} for code in self.codes}}))

    def hash(self) -> str:
        return f"{self.random.getrandbits(128):032x}"

    def dir_object(self, relpath: str, files: list[str]) -> str:
        entries = [{"md5": self.hash(), "relpath": name} for name in sorted(files)]
        text = json.dumps(entries, sort_keys=True)
        md5 = md5_of(text) + ".dir"
        target = self.root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return md5

    def param_values(self, names: list[str]) -> dict[str, Any]:
        values = {}
        for name in names:
            node: Any = self.params
            for part in name.split("."):
                node = node[part]
            values[name] = copy.deepcopy(node)  # DVC writes each stage's values, never an alias to another's
        return values

    def entry(self, spec: dict[str, Any], key: str | None) -> dict[str, Any]:
        def sub(text: str) -> str:
            text = text.replace("${ingest.input}", str(self.params["ingest"]["input"]))
            return text.replace("${key}", key) if key else text

        def item(path: str) -> dict[str, Any]:
            name = path.rsplit("/", 1)[-1]
            if "." in name:
                return {"path": path, "hash": "md5", "md5": self.hash(), "size": self.random.randint(200, 90_000)}
            files = {"features": ["lines.parquet", "daily.parquet"],
                     "preprocessed": ["train.parquet", "validation.parquet", "test.parquet", "preprocessor.json"],
                     "inference": ["predictions.parquet", "shap_values.parquet"]}.get(path.split("/")[1] if
                                                                                        "/" in path else "",
                                                                                        ["model.pt", "tuning.json"])
            return {"path": path, "hash": "md5", "md5": self.dir_object(path, files),
                    "size": self.random.randint(10_000, 200_000), "nfiles": len(files)}

        outs = [sub(o if isinstance(o, str) else next(iter(o))) for o in spec.get("outs", [])]
        outs += [sub(next(iter(m))) for m in spec.get("metrics", [])] + [sub(next(iter(p))) for p in
                                                                       spec.get("plots", [])]
        entry = {"cmd": sub(spec["cmd"]), "deps": [item(sub(d)) for d in spec.get("deps", [])]}
        if spec.get("params"):
            entry["params"] = {"params.yaml": self.param_values(spec["params"])}
        entry["outs"] = [item(path) for path in outs]
        return entry

    def lock(self) -> dict[str, dict[str, Any]]:
        stages = {}
        for name, spec in self.dvc_yaml["stages"].items():
            if "foreach" in spec:
                for code in self.codes:
                    stages[f"{name}@{code}"] = self.entry(spec["do"], code)
            else:
                stages[name] = self.entry(spec, None)
        return stages

    def metrics(self, code: str, version: str, stages: dict[str, Any]) -> dict[str, dict[str, Any]]:
        r = self.random
        rmsle, baseline = r.uniform(0.3, 0.7), r.uniform(0.45, 0.9)
        columns = ["unit_price", "log_quantity", "is_registered", "country", "day_of_week"]
        drifted = [c for c in columns if r.random() < 0.1]
        checks = [{"name": name, "passed": passed, "value": value, "threshold": threshold,
                   "comparison": "value <= threshold", "detail": f"{name}: {value:.4f} vs {threshold}"}
                  for name, value, threshold, passed in (
                      ("predictions_finite", 0.0, 0.0, True),
                      ("beats_baseline", 1 - rmsle / baseline, 0.05, 1 - rmsle / baseline >= 0.05),
                      ("fairness_computable", float(r.randint(10, 90)), 10.0, True),
                      ("fairness_mae_difference", r.uniform(0, 0.4), 1.0, True),
                      ("fairness_mean_outcome_difference", r.uniform(0, 0.1), 1.0, True))]
        paths = {k: f"{k}/{code}" for k in ("data/features", "data/preprocessed", "models", "data/inference")}
        return {
            "etl": {"cleaning": {"removed": {"cancellation": r.randint(0, 60), "exact_duplicate": r.randint(0, 9),
                                             "extreme_outlier": 0, "non_positive_price": r.randint(0, 4),
                                             "non_positive_quantity": 2, "volume_tier": r.randint(0, 60)},
                                 "rows_in": 2200, "rows_out": 2100}, "distinct_prices": r.randint(5, 15),
                    "first_date": "2010-12-01", "last_date": "2011-12-09", "rows": r.randint(1500, 2500),
                    "trading_days": 310},
            "drift": {"current": {"first_date": "2011-10-11", "last_date": "2011-12-09", "rows": 516,
                                  "source": "most recent window"},
                      "drift_detected": len(drifted) / 5 >= 0.5, "drift_share_threshold": 0.5,
                      "drifted_columns": drifted, "drifted_count": len(drifted), "drifted_share": len(drifted) / 5,
                      "features_md5": self.hash(), "monitored_columns": columns, "on_drift": "block",
                      "per_column": {c: {"drifted": c in drifted, "method": "wasserstein", "score": r.random() / 3,
                                         "threshold": 0.3} for c in columns},
                      "reference": {"first_date": "2010-12-01", "last_date": "2011-09-19", "rows": 1474,
                                    "source": "training data of served model"}},
            "preprocess": {"feature_names": [f"num__feature_{i}" for i in range(23)], "n_features": 23,
                           "splits": {s: {"first_date": "2011-01-01", "last_date": "2011-02-01", "rows": 300}
                                      for s in ("train", "validation", "test")}},
            "validation": {"best_epoch": 10, "epochs_run": 15, "mae": r.uniform(1, 3), "model_version": version,
                           "mse_log": rmsle ** 2, "n": 316, "rmsle": rmsle * 1.04, "trials_complete": 4,
                           "trials_failed": 0, "trials_pruned": 0},
            "test": {"mae": r.uniform(1, 3), "model_version": version, "mse_log": rmsle ** 2, "n": 321,
                     "rmsle": rmsle, "shap_base_value": 1.19, "shap_method": "deep", "top_feature": "num__feature_3"},
            "verdict": {"baseline_quantity": 2.0, "checks": checks,
                        "failed_checks": [c["name"] for c in checks if not c["passed"]],
                        "groups": [{"group": g, "log_bias": r.random() / 10, "log_mae": r.random(), "n": 100}
                                   for g in ("False", "True")],
                        "lineage": {"checkpoint_md5": self.hash(), "daily_md5": self.hash(),
                                    "features_md5": self.hash(), "predictions_md5": self.hash(),
                                    "preprocessor_md5": self.hash(), "train_md5": self.hash(),
                                    "dvc_deps": {path: stages[f"assess_model_risk@{code}"]["deps"][0]["md5"]
                                                 for path in paths.values()}},
                        "model_version": version, "params": {"assess_model_risk": self.params["assess_model_risk"]},
                        "promoted": all(c["passed"] for c in checks), "risk": {"baseline_rmsle": baseline,
                                                                               "model_rmsle": rmsle},
                        "sensitive_feature": "is_registered", "stockcode": code},
        }

    def record(self, code: str, version: str, stages: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
        outs = {out["path"]: out["md5"] for name, entry in stages.items() if name.endswith(f"@{code}")
                for out in entry["outs"]}
        artifacts = {name: {"path": f"{folder}/{file}", "md5": self.hash(), "size": 10_000, "out": folder,
                            "out_md5": outs.get(folder)}
                     for name, folder, file in (
                         ("model.pt", f"models/{code}", "model.pt"),
                         ("preprocessor.json", f"data/preprocessed/{code}", "preprocessor.json"),
                         ("daily.parquet", f"data/features/{code}", "daily.parquet"),
                         ("reference.parquet", f"data/preprocessed/{code}", "train.parquet"))}
        compact = {name: {"cmd": entry["cmd"], "deps": {d["path"]: d["md5"] for d in entry["deps"]},
                          "params": (entry.get("params") or {}).get("params.yaml", {}),
                          "outs": {o["path"]: o["md5"] for o in entry["outs"]}}
                   for name, entry in stages.items() if name in ("generate_synthetic", "ingest")
                   or name.endswith(f"@{code}")}
        when = f"2026-{1 + self.week // 4:02d}-{1 + self.week % 4 * 7:02d}T06:00:00+00:00"
        return {"schema": 2, "stockcode": code, "version": version, "promoted_at": when, "git_commit": self.hash()[:40],
                "git_dirty": False, "artifacts": artifacts,
                "training_data": {"first_date": "2010-12-01", "last_date": "2011-09-19", "rows": 1474},
                "verdict": {"promoted": True, "checks": metrics["verdict"]["checks"],
                            "params": metrics["verdict"]["params"], "lineage": metrics["verdict"]["lineage"]},
                "metrics": {"test_rmsle": metrics["test"]["rmsle"], "test_mae": metrics["test"]["mae"],
                            "baseline_rmsle": metrics["verdict"]["risk"]["baseline_rmsle"]},
                "drift": "the drift gate passed on the current data", "stages": compact}

    def write_week(self) -> None:
        self.week += 1
        stages = self.lock()
        lock = {"schema": "2.0", "stages": stages}
        text = yaml.dump(lock, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
        if self.week == 1:  # the layout `dvc repro` leaves: byte for byte what DVC's own (ruamel) dumper writes
            sample = {"schema": "2.0", "stages": dict(list(stages.items())[:40])}
            assert yaml.dump(sample, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False,
                             allow_unicode=True) == dumps_yaml(sample)
        (self.root / "dvc.lock").write_text(text)
        for code in self.codes:
            version = self.hash()[:16]
            metrics = self.metrics(code, version, stages)
            for name, payload in metrics.items():
                path = self.root / "metrics" / code / f"{name}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
            directory = self.root / "registry" / code
            (directory / "versions").mkdir(parents=True, exist_ok=True)
            when = f"2026-{1 + self.week // 4:02d}-{1 + self.week % 4 * 7:02d}T06:00:00+00:00"
            if self.week == 1 or self.random.random() < 0.5:
                record = self.record(code, version, stages, metrics)
                (directory / "versions" / f"{version}.json").write_text(json.dumps(record, indent=2, sort_keys=True))
                served = {k: v for k, v in record.items() if k != "stages"}
                served.update(served_by="promoted", served_since=when, reason="passed the drift gate")
                (directory / "served.json").write_text(json.dumps(served, indent=2, sort_keys=True))
                (directory / "drift_reference.json").write_text(json.dumps(
                    {"stockcode": code, "kind": "served_model", "version": version,
                     "artifact": record["artifacts"]["reference.parquet"]}, indent=2, sort_keys=True))
                line = {"action": "promoted", "version": version, "candidate": version, "time": when,
                        "reason": "passed the drift gate and assess_model_risk", "git_commit": record["git_commit"],
                        "git_dirty": False, "metrics": record["metrics"]}
            else:
                served_version = json.loads((directory / "served.json").read_text())["version"]
                line = {"action": "kept", "version": served_version, "candidate": version, "time": when,
                        "reason": f"model {version} failed its gate: beats_baseline=0.01 (threshold 0.05)",
                        "git_commit": self.hash()[:40], "git_dirty": False}
            with (directory / "history.jsonl").open("a") as handle:
                handle.write(json.dumps(line, sort_keys=True) + "\n")
        sh(["git", "add", "-A"], self.root)
        sh(["git", "commit", "-qm", f"week {self.week}"], self.root)


# --------------------------------------------------------------------------------------------- measurements


def naive_metrics_loop(root: Path) -> int:
    """What a script would do without the views: read every metrics file and pick the fields by hand."""
    rows = 0
    for path in sorted((root / "metrics").glob("*/*.json")):
        data = json.loads(path.read_text())
        rows += len(data)
    return rows


def naive_history_loop(root: Path, revisions: int, codes: list[str]) -> int:
    """One `git show` per revision and product: the test RMSLE of every product over the last revisions."""
    shas = sh(["git", "rev-list", "-n", str(revisions), "HEAD"], root).stdout.split()
    values = 0
    for sha in shas:
        for code in codes:
            shown = subprocess.run(["git", "show", f"{sha}:metrics/{code}/test.json"], cwd=root, capture_output=True,
                                   text=True, check=False)
            if shown.returncode == 0:
                json.loads(shown.stdout)["rmsle"]
                values += 1
    return values


def measure(products: int, revisions: int, base: Path, dvc_history: bool, reuse: bool) -> list[tuple[str, str, str]]:
    fixture = Fixture(base / f"repo-{products}", products)
    started = time.perf_counter()
    if reuse and (fixture.root / ".git").is_dir():
        count = int(sh(["git", "rev-list", "--count", "HEAD"], fixture.root).stdout)
        if count != revisions:
            raise SystemExit(f"{fixture.root} holds {count} commits, not {revisions}; build it again without --reuse")
    else:
        fixture.create()
        for _ in range(revisions):
            fixture.write_week()
    build = time.perf_counter() - started
    root = fixture.root
    lock_kb = (root / "dvc.lock").stat().st_size / 1024
    print(f"{products} products x {revisions} revisions generated in {build:.0f} s (dvc.lock {lock_kb:.0f} KiB)",
          flush=True)
    figures = []

    seconds, con = timed(lambda: connect(root))
    fleet_seconds, fleet = timed(lambda: reports.fleet(con))
    assert fleet.num_rows == products
    figures.append(("views at one revision + fleet report (in process)", f"{seconds + fleet_seconds:.2f} s",
                    f"build {seconds:.2f} s + fleet {fleet_seconds:.2f} s"))
    command = [sys.executable, "-m", "pricetrail.cli", "lineage", "fleet", "--format", "csv"]
    cli_seconds, _ = timed(lambda: sh(command, root))
    figures.append(("`pricetrail lineage fleet` (whole command)", f"{cli_seconds:.2f} s", "incl. Python start-up"))
    dvc_seconds, shown = timed(lambda: sh([sys.executable, "-m", "dvc", "metrics", "show", "--json"], root))
    width = max(len(line) for line in sh([sys.executable, "-m", "dvc", "metrics", "show"], root).stdout.splitlines())
    figures.append(("naive: `dvc metrics show --json`", f"{dvc_seconds:.2f} s",
                    f"{len(shown.stdout) // 1024} KiB of JSON; the table form is {width} characters wide"))
    loop_seconds, _ = timed(lambda: naive_metrics_loop(root))
    figures.append(("naive: Python loop reading every metrics file", f"{loop_seconds:.2f} s",
                    "no gates, registry or dvc.lock joined"))

    history_seconds, history = timed(lambda: connect(root, str(revisions)))
    every_product = ("SELECT product, revision, number FROM metrics WHERE metric = 'rmsle' "
                     "AND stage LIKE 'inference_primary_model@%'")
    query_seconds, result = timed(lambda: run(history, every_product))
    assert result.num_rows == products * revisions, result.num_rows
    one_seconds, one = timed(lambda: run(history, "SELECT commit_time, number FROM metrics WHERE product = ? AND "
                                                  "metric = 'rmsle' AND stage LIKE 'inference%' ORDER BY 1",
                                         [fixture.codes[0]]))
    assert one.num_rows == revisions
    figures.append((f"history: {revisions} revisions loaded + test RMSLE of every product",
                    f"{history_seconds + query_seconds:.2f} s",
                    f"load {history_seconds:.2f} s + query {query_seconds:.3f} s (one product {one_seconds:.3f} s)"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures.append(("peak memory of this process so far", f"{rss:.0f} MiB", ""))
    sample = fixture.codes if products <= 100 else fixture.codes[:100]
    naive_seconds, values = timed(lambda: naive_history_loop(root, revisions, sample))
    scale = f" (measured on 100 products, x{products // 100} = {naive_seconds * products / 100:.0f} s for all)" if (
        products > 100) else ""
    figures.append((f"naive: `git show` per revision and product ({values} files)", f"{naive_seconds:.2f} s",
                    f"test RMSLE only{scale}"))
    if dvc_history:
        dvc_all, _ = timed(lambda: subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json",
                                                   "--all-commits"], cwd=root, capture_output=True, check=True,
                                                  timeout=1800))
        figures.append((f"naive: `dvc metrics show --json --all-commits` ({revisions + 1} commits)",
                        f"{dvc_all:.2f} s", ""))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--revisions", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="build the repositories here and keep them")
    parser.add_argument("--reuse", action="store_true", help="measure the repositories already in --keep")
    parser.add_argument("--skip-dvc-history", action="store_true",
                        help="leave out `dvc metrics show --all-commits` (10 minutes at 100 products)")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="lineage-bench-"))
    try:
        results = {}
        for products in args.products:
            results[products] = measure(products, args.revisions, base, reuse=args.reuse and args.keep is not None,
                                        dvc_history=products <= 100 and not args.skip_dvc_history)
        for products, figures in results.items():
            print(f"\n{products} products, {args.revisions} revisions")
            print_table(["", "time", "note"], figures)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
