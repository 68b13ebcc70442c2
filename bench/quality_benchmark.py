"""Quality benchmark: how good are the promoted models and their price recommendations?

1. Synthetic data (known demand curves): for every default product, the revenue regret of the recommended price
   (the model's own optimum over a 201-point grid: ``model_price`` of pricetrail.pricing.recommend.recommend)
   against the true revenue-optimal price over the same price range (registered customers only; the full
   pricing benchmark, with the decision, naive policies, a regression, both customer groups, elasticities, bands
   and mispriced products, is bench/pricing_benchmark.py).
2. Real data (UCI Online Retail, ../shared): test RMSLE and MAE of the promoted model next to the naive median
   baseline and a scikit-learn HistGradientBoostingRegressor on the same features and split.
   Target: the promoted model at least as good as gradient boosting on RMSLE for most default products.

Each part runs the real pipeline (`pricetrail run`) in a throwaway copy of the project, with the default params,
and times it. Usage:

    python bench/quality_benchmark.py                 # both parts (about 2 x 10 minutes on 2 cores)
    python bench/quality_benchmark.py --part synthetic
    python bench/quality_benchmark.py --keep /tmp/q   # keep the copies for inspection
    python bench/quality_benchmark.py --part real --set etl.volume_tier_min_quantity=null   # keep tier lines
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from common import timed

from pricetrail.data.etl import TARGET
from pricetrail.data.preprocess import load_preprocessor, transform
from pricetrail.data.price_ranges import observed_price_ranges
from pricetrail.data.synthetic.truth import optimal_price, revenue_regret
from pricetrail.modeling.bundle import load_bundle
from pricetrail.modeling.metrics import regression_metrics
from pricetrail.pricing.candidate import load_served_bundle, served_from_bundle
from pricetrail.pricing.recommend import recommend
from pricetrail.pricing.request import PriceRequest
from pricetrail.project.config import load_stockcodes
from pricetrail.project.copies import make_copy, run, set_params
from pricetrail.registry import records

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_pipeline(root: Path) -> float:
    elapsed, result = timed(run, [sys.executable, "-m", "pricetrail.cli", "run"], root, check=False, timeout=3600)
    (root / "pricetrail-run.log").write_text(result.stdout + "\n" + result.stderr, encoding="utf-8")
    print(f"  pricetrail run: exit {result.returncode} in {elapsed:.0f} s (log: {root / 'pricetrail-run.log'})")
    return elapsed


def served_bundle(root: Path, code: str):
    if records.served_model(root, code) is None:
        return None
    return load_served_bundle(root, code)


def synthetic_part(root: Path) -> list[dict]:
    truth = json.loads((root / "data/raw/synthetic/ground_truth.json").read_text())
    rows = []
    for code in load_stockcodes(root):
        bundle = served_bundle(root, code)
        if bundle is None:
            rows.append({"stockcode": code, "note": "no promoted model"})
            continue
        date = str((pd.to_datetime(bundle.daily["day"]).max() + pd.Timedelta(days=3)).date())
        # The bundle's training rows bound the grid (the observed range), as promotion records them for the router.
        served = served_from_bundle(bundle, observed_price_ranges(bundle.reference), verdict=None)
        answer = recommend(served, PriceRequest(date=date, customer="registered", points=201))
        low, high = answer["price_range"]
        # The model's own robust optimum over the grid, not the decision (which keeps the status quo unless a change
        # surely gains): this scores the model's curve.
        price = answer["model_price"]
        product = truth["products"][code]
        best, _ = optimal_price(product, low, high, is_registered=True, date=date)
        regret = revenue_regret(product, price, low, high, is_registered=True, date=date)
        rows.append({"stockcode": code, "range": f"{low:.2f}-{high:.2f}", "true_optimum": round(best, 3),
                     "recommended": round(price, 3), "regret_pct": round(100 * regret, 2)})
    return rows


def real_part(root: Path) -> list[dict]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rows = []
    for code in load_stockcodes(root):
        prefix = root / "data/preprocessed" / code
        verdict_path = root / "metrics" / code / "verdict.json"
        if not (prefix / "test.parquet").is_file() or not verdict_path.is_file():
            rows.append({"stockcode": code, "note": "chain did not complete (see pricetrail-run.log)"})
            continue
        train, validation, test = (pd.read_parquet(prefix / f"{name}.parquet")
                                   for name in ("train", "validation", "test"))
        preprocessor = load_preprocessor(prefix / "preprocessor.json")
        x_train, x_val, x_test = (transform(preprocessor, frame) for frame in (train, validation, test))
        y_test = test[TARGET].to_numpy()
        model = load_bundle(root / "models" / code / "model.pt", prefix / "preprocessor.json")
        ours = regression_metrics(y_test, model.predict_log_quantity(test))
        median = float(np.median(train["quantity"]))
        baseline = regression_metrics(y_test, np.full(len(test), np.log1p(median)))
        # Gradient boosting gets the same training and validation rows (validation for its early stopping).
        hgb = HistGradientBoostingRegressor(random_state=0, early_stopping=True)
        hgb.fit(np.vstack([x_train, x_val]), np.concatenate([train[TARGET], validation[TARGET]]))
        boosted = regression_metrics(y_test, hgb.predict(x_test))
        # Beside it, on the training rows alone: the rows the network's weights are fitted on (validation only
        # picks its trial and epoch), so the two columns bracket a like-for-like comparison.
        hgb_train = HistGradientBoostingRegressor(random_state=0, early_stopping=True).fit(x_train, train[TARGET])
        boosted_train = regression_metrics(y_test, hgb_train.predict(x_test))
        verdict = json.loads(verdict_path.read_text())
        rows.append({"stockcode": code, "test_rows": len(test),
                     "model_rmsle": round(ours["rmsle"], 3), "hgb_rmsle": round(boosted["rmsle"], 3),
                     "hgb_train_only_rmsle": round(boosted_train["rmsle"], 3),
                     "median_rmsle": round(baseline["rmsle"], 3),
                     "model_mae": round(ours["mae"], 2), "hgb_mae": round(boosted["mae"], 2),
                     "median_mae": round(baseline["mae"], 2),
                     "model_beats_hgb": ours["rmsle"] <= boosted["rmsle"],
                     "promoted": verdict["promoted"], "failed_checks": ",".join(verdict["failed_checks"])})
    return rows


def real_data_run(target: Path, shared: Path, overrides: dict, pipeline: Callable[[Path], float],
                  extra_products: dict[str, str] | None = None) -> tuple[Path, float, list[dict]] | None:
    """The real data (UCI Online Retail, CC BY 4.0) through the default pipeline in a copy at ``target``: (copy,
    pipeline seconds, real_part rows), or None when ../shared is absent. ``extra_products``: code -> description
    beside the five default products."""
    data = shared / "data" / "online-retail" / "by-day"
    if not data.is_dir():
        print(f"\nreal data skipped: {data} not found")
        return None
    root = make_copy(target, profile=None)
    set_params(root, {"ingest.input": str(data), **overrides})
    if extra_products:
        path = root / "stockcodes.yaml"
        path.write_text(path.read_text(encoding="utf-8") + "".join(
            f'  "{code}": {{description: "{text}"}}\n' for code, text in extra_products.items()), encoding="utf-8")
    print(f"\nreal data (UCI Online Retail, CC BY 4.0), default params, {5 + len(extra_products or {})} products:",
          flush=True)
    elapsed = pipeline(root)
    return root, elapsed, real_part(root)


def report_real_target(rows: list[dict]) -> bool:
    wins = sum(bool(row.get("model_beats_hgb")) for row in rows)
    passed = wins > len(rows) / 2
    print(f"target: model at least as good as gradient boosting on RMSLE for most products: "
          f"{wins} of {len(rows)} ({'PASS' if passed else 'FAIL'})")
    return passed


def show(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(pd.DataFrame(rows).to_string(index=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["synthetic", "real", "both"], default="both")
    parser.add_argument("--keep", type=Path, help="build the copies here and keep them")
    parser.add_argument("--shared", type=Path, default=PROJECT_ROOT.parent / "shared")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param in both copies, e.g. etl.volume_tier_min_quantity=null")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: use KEY=VALUE, e.g. etl.volume_tier_min_quantity=null")
        overrides[key] = yaml.safe_load(value)
    base = args.keep or Path(tempfile.mkdtemp(prefix="pricetrail-quality-"))
    ok = True
    try:
        if args.part in ("synthetic", "both"):
            root = make_copy(base / "synthetic", profile=None)
            set_params(root, overrides)
            print("synthetic data, default params, 5 default products:")
            elapsed = run_pipeline(root)
            rows = synthetic_part(root)
            show(f"Revenue regret of the recommended price (registered customers), pipeline {elapsed:.0f} s", rows)
            worst = max((row.get("regret_pct", 100.0) for row in rows), default=100.0)
            target = worst <= 3.0
            ok &= target
            print(f"target: regret <= 3% for every product: {'PASS' if target else 'FAIL'} (worst {worst}%)")
        if args.part in ("real", "both"):
            real = real_data_run(base / "real", args.shared, overrides, run_pipeline)
            if real is not None:
                _, elapsed, rows = real
                show(f"Test-set RMSLE / MAE on the real data, pipeline {elapsed:.0f} s", rows)
                ok &= report_real_target(rows)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
