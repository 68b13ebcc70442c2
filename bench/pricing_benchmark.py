"""Pricing benchmark: does the served recommendation price well, better than what a user would do otherwise?

Synthetic data has known demand curves and a known order rate (how the price moves the number of lines per day),
so every price can be scored by its regret in revenue per day against the true optimum over the same range:
(revenue per day at the true optimum - at the price) / at the optimum. One
run of the real pipeline (`pricetrail run`, default params) over the default products plus three mispriced ones
(list price 30% and 20% too high, 25% too low; `synthetic.mispriced`), then, for every product and customer
group, from the router's own code path (service.recommend on the promoted model):

- regret of the recommendation over the observed range and over the range widened by 50%;
- the same for the naive policies: the median price paid (the status quo), the last price paid, the middle of
  the range, either end; for a per-product regression an analyst would fit (least squares of log units per day
  on log price and last month's volume, smearing-corrected, on the group's training days); and for the served
  model's own per-line optimum (what it recommended before it modelled the order rate);
- the elasticity at the group's median price paid, per day (per line plus order rate: what the price is set by)
  and per line: the model's, its 90% interval and the truth's; and the order rate's own, posterior and truth;
- the true optimum inside the reported 90% band, and the band's width;
- mispriced products: the share of the achievable uplift captured,
  (revenue at recommended - revenue at status quo) / (revenue at optimum - revenue at status quo).

With `--time-against REV` the same default run of the project at git revision REV is timed first, in the same
benchmark run (the pipeline's time budget: no slower than 1.3x). `--part real` adds the real data (../shared):
test RMSLE against gradient boosting and each product's recommendation with its band and notes.

    python bench/pricing_benchmark.py --time-against d669a3d        # the figures in the closing note
    python bench/pricing_benchmark.py --reuse /tmp/pb/synthetic      # score an existing run again
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "tests" / "integration"))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

from smoke_project import PROJECT_FILES, init_copy, make_copy, run, set_params  # noqa: E402

from pricetrail import service, synthetic  # noqa: E402
from pricetrail.artifacts import local_sources  # noqa: E402
from pricetrail.config import load_stockcodes  # noqa: E402
from pricetrail.etl import state_features  # noqa: E402

MISPRICED = {"90001": 0.3, "90002": 0.2, "90003": -0.25}
GROUPS = (("registered", True), ("guest", False))
POINTS = 201
WIDENING = 0.5


def add_mispriced_products(root: Path) -> None:
    path = root / "stockcodes.yaml"
    text = path.read_text(encoding="utf-8").rstrip("\n")
    extra = "".join(f'\n  "{code}": {{description: MISPRICED TEST PRODUCT {i + 1}}}'
                    for i, code in enumerate(MISPRICED))
    path.write_text(text + extra + "\n", encoding="utf-8")
    set_params(root, {"synthetic.mispriced": dict(MISPRICED)})
    run(["git", "commit", "-qam", "mispriced products"], root)


def copy_at_revision(revision: str, target: Path) -> Path:
    """The project's files at a git revision, initialised the way make_copy initialises the current ones."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision, *PROJECT_FILES], cwd=PROJECT_ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return init_copy(target, profile=None, message=f"project at {revision}")


def run_pipeline(root: Path) -> float:
    """`pricetrail run` with the copy's own library first on the path (the installed one may be another version)."""
    env = {**os.environ, "PYTHONPATH": str(root / "lib"), "PYTHONUNBUFFERED": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pricetrail.cli", "run"], cwd=root, env=env, capture_output=True,
                            text=True, timeout=7200, check=False)
    elapsed = time.perf_counter() - started
    (root / "pricetrail-run.log").write_text(result.stdout + "\n" + result.stderr, encoding="utf-8")
    print(f"  pricetrail run in {root}: exit {result.returncode} in {elapsed:.0f} s", flush=True)
    return elapsed


# --------------------------------------------------------------------------------------------- baselines


def regression_curve(train: pd.DataFrame, daily: pd.DataFrame, state_day: pd.Timestamp,
                     prices: np.ndarray) -> tuple[np.ndarray, float]:
    """Expected units per day on the grid from least squares of log(units per day) on [1, log price, log last
    month's volume] over the group's training days (the day's median price; smearing-corrected), and its
    elasticity (the log price coefficient)."""
    day = pd.to_datetime(train["invoice_date"]).dt.normalize()
    days = train.groupby(day).agg(units=("quantity", "sum"), price=("unit_price", "median"),
                                  state=("log_prev_month_quantity", "first"))
    design = np.c_[np.ones(len(days)), np.log(days["price"]), days["state"]]
    target = np.log(days["units"].to_numpy(dtype=float))
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    smear = float(np.mean(np.exp(target - design @ coef)))
    state = float(state_features(daily, [state_day]).iloc[0]["log_prev_month_quantity"])
    units = np.exp(coef[0] + coef[1] * np.log(prices) + coef[2] * state) * smear
    return units, float(coef[1])


def true_elasticity(truth: dict, price: float, *, is_registered: bool, date: str) -> float:
    step = 1e-3
    q = synthetic.expected_quantity(truth, np.array([price * (1 - step), price * (1 + step)]),
                                    is_registered=is_registered, date=date)
    return float((np.log(q[1]) - np.log(q[0])) / (math.log1p(step) - math.log1p(-step)))


# --------------------------------------------------------------------------------------------- scoring


def score_synthetic(root: Path) -> pd.DataFrame:
    truth = json.loads((root / "data/raw/synthetic/ground_truth.json").read_text())
    sources = local_sources(root)
    registry_dir = root / "registry"
    rows: list[dict[str, Any]] = []
    for code in load_stockcodes(root):
        product = truth["products"][code]
        record = service.read_product_record(registry_dir, code)
        if record.record is None:
            rows.append({"stockcode": code, "group": "-", "note": "no promoted model"})
            continue
        served = service.load_served(registry_dir, record, sources)
        lines = pd.read_parquet(root / f"data/features/{code}/lines.parquet")
        train = pd.read_parquet(root / f"data/preprocessed/{code}/train.parquet")
        daily = pd.read_parquet(root / f"data/features/{code}/daily.parquet")
        last_day = pd.to_datetime(daily["day"]).max()
        date = str((last_day + pd.Timedelta(days=3)).date())
        for group, registered in GROUPS:
            paid = lines[lines["is_registered"] == registered].sort_values("invoice_date", kind="stable")
            ours = service.recommend(served, service.PriceRequest(date=date, customer=group, points=POINTS), sources)
            wide = service.recommend(served, service.PriceRequest(date=date, customer=group, points=POINTS,
                                                                  range_widening=WIDENING), sources)
            low, high = ours["price_range"]
            wide_low, wide_high = wide["price_range"]
            prices = np.array([c["price"] for c in ours["curve"]])
            regression_units, regression_e = regression_curve(train[train["is_registered"] == registered], daily,
                                                              last_day + pd.Timedelta(days=1), prices)
            per_line = np.array([c["expected_revenue"] for c in ours["curve"]])
            policies = {
                "recommended": ours["price"], "point_optimum": ours["point_optimum"],
                "median_paid": float(paid["unit_price"].median()), "last_paid": float(paid["unit_price"].iloc[-1]),
                "middle": (low + high) / 2, "low_end": low, "high_end": high,
                "regression": float(prices[int(np.argmax(prices * regression_units))]),
                "line_optimum": float(prices[int(np.argmax(per_line))]),
            }
            optimum, best_revenue = synthetic.optimal_price(product, low, high, is_registered=registered, date=date)
            wide_optimum, _ = synthetic.optimal_price(product, wide_low, wide_high, is_registered=registered, date=date)

            def regret(price: float, lo: float = low, hi: float = high, truth: dict = product,
                       flag: bool = registered, day: str = date) -> float:
                return 100 * synthetic.revenue_regret(truth, price, lo, hi, is_registered=flag, date=day)

            def revenue(price: float, truth: dict = product, flag: bool = registered, day: str = date) -> float:
                return float(synthetic.expected_profit_per_day(truth, np.array([price]), is_registered=flag,
                                                               date=day)[0])

            status_quo = policies["median_paid"]
            achievable = best_revenue - revenue(status_quo)
            e_line = ours["elasticity"]
            e = e_line.get("per_day") or e_line  # what the price is set by: per day when the model has an order rate
            rate_true = -float(product.get("order_rate_elasticity", 0.0))
            e_line_true = true_elasticity(product, e_line["at_price"], is_registered=registered, date=date)
            e_true = e_line_true + rate_true
            band = ours["band"]
            row: dict[str, Any] = {
                "stockcode": code, "group": group, "mispriced": product.get("mispriced"),
                "range": f"{low:.2f}-{high:.2f}", "optimum": round(optimum, 3), "recommended": ours["price"],
                "band": None if band is None else f"{band[0]:.2f}-{band[1]:.2f}",
                "optimum_in_band": None if band is None else band[0] - 1e-9 <= optimum <= band[1] + 1e-9,
                "band_width_pct": None if band is None else round(100 * (band[1] - band[0]) / ours["price"], 1),
                **{f"regret_{name}": round(regret(price), 2) for name, price in policies.items()},
                "regret_recommended_widened": round(regret(wide["price"], wide_low, wide_high), 2),
                "regret_median_paid_widened": round(regret(status_quo, wide_low, wide_high), 2),
                "wide_optimum": round(wide_optimum, 3),
                "elasticity": round(e["value"], 3) if e["value"] is not None else None,
                "elasticity_90": None if e["interval_90"] is None else [round(v, 3) for v in e["interval_90"]],
                "elasticity_true": round(e_true, 3), "elasticity_regression": round(regression_e, 3),
                "elasticity_error_pct": None if e["value"] is None else round(100 * abs(e["value"] / e_true - 1), 1),
                "line_elasticity": None if e_line["value"] is None else round(e_line["value"], 3),
                "line_elasticity_90": None if e_line["interval_90"] is None else [
                    round(v, 3) for v in e_line["interval_90"]],
                "line_elasticity_true": round(e_line_true, 3),
                "line_elasticity_error_pct": None if e_line["value"] is None else round(
                    100 * abs(e_line["value"] / e_line_true - 1), 1),
                "line_truth_in_interval": None if e_line["interval_90"] is None else
                e_line["interval_90"][0] <= e_line_true <= e_line["interval_90"][1],
                "order_rate": None if "order_rate" not in e_line else round(e_line["order_rate"]["value"], 3),
                "order_rate_true": round(rate_true, 3),
                "regression_elasticity_error_pct": round(100 * abs(regression_e / e_true - 1), 1),
                "truth_in_interval": None if e["interval_90"] is None else
                e["interval_90"][0] <= e_true <= e["interval_90"][1],
                "uplift_captured_pct": None if achievable <= 1e-12 else
                round(100 * (revenue(ours["price"]) - revenue(status_quo)) / achievable, 1),
                "notes": " | ".join(ours["notes"]),
            }
            rows.append(row)
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> list[tuple[str, bool | None, str]]:
    scored = table[table["group"] != "-"]
    mispriced = scored[scored["mispriced"].notna() & scored["uplift_captured_pct"].notna()]
    gap = scored["regret_recommended"] - scored["regret_regression"]
    widths = scored["band_width_pct"].dropna()
    return [
        ("regret over the observed range, median <= 0.3%", scored["regret_recommended"].median() <= 0.3,
         f"median {scored['regret_recommended'].median():.2f}% (status quo "
         f"{scored['regret_median_paid'].median():.2f}%, regression {scored['regret_regression'].median():.2f}%)"),
        ("regret over the observed range, worst <= 1%", scored["regret_recommended"].max() <= 1.0,
         f"worst {scored['regret_recommended'].max():.2f}% "
         f"({scored.loc[scored['regret_recommended'].idxmax(), ['stockcode', 'group']].tolist()}); status quo worst "
         f"{scored['regret_median_paid'].max():.2f}%, regression worst {scored['regret_regression'].max():.2f}%"),
        ("no product worse than the regression by more than 0.3 points", bool((gap <= 0.3).all()),
         f"largest gap {gap.max():+.2f} points"),
        ("regret over the range widened by 50%, worst <= 2%", scored["regret_recommended_widened"].max() <= 2.0,
         f"worst {scored['regret_recommended_widened'].max():.2f}% (status quo worst "
         f"{scored['regret_median_paid_widened'].max():.2f}%)"),
        ("mispriced products: >= 80% of the achievable uplift, each",
         bool((mispriced["uplift_captured_pct"] >= 80).all()) if len(mispriced) else None,
         ", ".join(f"{r.stockcode}/{r.group} {r.uplift_captured_pct:.0f}%" for r in mispriced.itertuples())),
        ("elasticity: median absolute error <= 15% of the truth", scored["elasticity_error_pct"].median() <= 15,
         f"median {scored['elasticity_error_pct'].median():.1f}% (regression "
         f"{scored['regression_elasticity_error_pct'].median():.1f}%), "
         f"worst {scored['elasticity_error_pct'].max():.1f}%"),
        ("elasticity: truth inside the 90% interval for >= 80%", scored["truth_in_interval"].mean() >= 0.8,
         f"{scored['truth_in_interval'].mean():.0%} of {len(scored)} product x group cases"),

        ("true optimum inside the band for >= 80%", scored["optimum_in_band"].mean() >= 0.8,
         f"{scored['optimum_in_band'].mean():.0%}; band median width {widths.median():.1f}% of the price"),
    ]


def show(table: pd.DataFrame, columns: list[str], title: str) -> None:
    print(f"\n{title}")
    print(table[[c for c in columns if c in table.columns]].to_string(index=False))


def report_synthetic(table: pd.DataFrame, elapsed: float | None) -> bool:
    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        show(table, ["stockcode", "group", "mispriced", "range", "optimum", "recommended", "band", "optimum_in_band",
                     "regret_recommended", "regret_recommended_widened", "regret_point_optimum", "regret_line_optimum",
                     "regret_regression",
                     "regret_median_paid", "regret_last_paid", "regret_middle", "regret_low_end", "regret_high_end",
                     "uplift_captured_pct"], "Revenue regret (%) against the true optimum over the same range")
        show(table, ["stockcode", "group", "elasticity", "elasticity_90", "elasticity_true", "elasticity_error_pct",
                     "truth_in_interval", "elasticity_regression", "regression_elasticity_error_pct"],
             "Elasticity per day (per line plus order rate) at the group's median price paid")
        show(table, ["stockcode", "group", "line_elasticity", "line_elasticity_90", "line_elasticity_true",
                     "line_elasticity_error_pct", "line_truth_in_interval", "order_rate", "order_rate_true"],
             "Elasticity per line, and of the order rate")
        show(table, ["stockcode", "group", "notes"], "Notes carried by the recommendation")
    ok = True
    print(f"\nTargets{'' if elapsed is None else f' (pipeline {elapsed:.0f} s)'}:")
    for name, passed, detail in summarise(table):
        ok &= bool(passed)
        print(f"  {'PASS' if passed else 'FAIL' if passed is not None else 'n/a '}  {name}: {detail}")
    scored = table[table["group"] != "-"]
    print(f"  info  per line alone: elasticity error median {scored['line_elasticity_error_pct'].median():.1f}%, "
          f"worst {scored['line_elasticity_error_pct'].max():.1f}%, truth in the 90% interval "
          f"{scored['line_truth_in_interval'].mean():.0%}; the model's per-line optimum (the order rate left out): "
          f"regret per day median {scored['regret_line_optimum'].median():.2f}%, worst "
          f"{scored['regret_line_optimum'].max():.2f}%")
    return ok


def real_recommendations(root: Path) -> pd.DataFrame:
    sources = local_sources(root)
    rows = []
    for code in load_stockcodes(root):
        record = service.read_product_record(root / "registry", code)
        if record.record is None:
            rows.append({"stockcode": code, "note": f"not promoted: {(record.latest or {}).get('reason')}"})
            continue
        served = service.load_served(root / "registry", record, sources)
        date = str((served.last_day + pd.Timedelta(days=3)).date())
        for group, _ in GROUPS:
            ours = service.recommend(served, service.PriceRequest(date=date, customer=group, points=POINTS), sources)
            e = ours["elasticity"]
            per_day = e.get("per_day") or {}
            rows.append({"stockcode": code, "group": group, "range": "{:.2f}-{:.2f}".format(*ours["price_range"]),
                         "recommended": ours["price"], "band": ours["band"], "elasticity_line": e["value"],
                         "elasticity_line_90": e["interval_90"], "elasticity_day": per_day.get("value"),
                         "elasticity_day_90": per_day.get("interval_90"), "notes": " | ".join(ours["notes"])})
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["synthetic", "real", "both", "none"], default="synthetic",
                        help="none: only the --time-against comparison")
    parser.add_argument("--keep", type=Path, help="build the copies here and keep them")
    parser.add_argument("--reuse", type=Path, help="score this finished synthetic copy instead of running one")
    parser.add_argument("--time-against", metavar="REV", help="also time the default run of the project at REV")
    parser.add_argument("--shared", type=Path, default=PROJECT_ROOT.parent / "shared")
    parser.add_argument("--json", type=Path, help="write the per-product table here")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="pricetrail-pricing-"))
    ok = True
    try:
        if args.time_against:
            print(f"default run of the project at {args.time_against} (5 default products):", flush=True)
            before = run_pipeline(copy_at_revision(args.time_against, base / "before"))
            now_root = make_copy(base / "now", profile=None)
            print("default run of the project now (5 default products):", flush=True)
            now = run_pipeline(now_root)
            print(f"time budget: now {now:.0f} s vs {before:.0f} s at {args.time_against}: {now / before:.2f}x "
                  f"({'PASS' if now <= 1.3 * before else 'FAIL'} <= 1.3x)")
            ok &= now <= 1.3 * before
        if args.part in ("synthetic", "both"):
            elapsed = None
            if args.reuse:
                root = args.reuse
            else:
                root = make_copy(base / "synthetic", profile=None)
                add_mispriced_products(root)
                print(f"synthetic data, default params, {len(load_stockcodes(root))} products "
                      f"(3 mispriced: {MISPRICED}):", flush=True)
                elapsed = run_pipeline(root)
            table = score_synthetic(root)
            if args.json:
                table.to_json(args.json, orient="records", indent=1)
            ok &= report_synthetic(table, elapsed)
        if args.part in ("real", "both"):
            from quality_benchmark import real_data_run, report_real_target

            real = real_data_run(base / "real", args.shared, {}, run_pipeline)
            if real is not None:
                root, elapsed, rows = real
                with pd.option_context("display.width", 250, "display.max_colwidth", 160):
                    print(f"\nTest RMSLE against gradient boosting (pipeline {elapsed:.0f} s)")
                    print(pd.DataFrame(rows).to_string(index=False))
                    print("\nRecommendations on the real data")
                    print(real_recommendations(root).to_string(index=False))
                ok &= report_real_target(rows)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
