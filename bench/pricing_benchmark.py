"""Pricing benchmark: is the served price decision a change a retailer can act on, never worse than keeping today's?

Synthetic data has known demand curves and a known order rate (how the price moves the number of lines per day),
so every price can be scored by its regret in revenue per day against the true optimum over the same range:
(revenue per day at the true optimum - at the price) / at the optimum. For each seed (three by default) one run of
the real pipeline (`pricetrail run`, default params) over the default products plus three whose status quo is
wrong (list price 30% and 20% too high, 25% too low; `synthetic.mispriced`), then, for every product and customer
group, the router's own answer (service.recommend with the project's `decision` settings):

- the decision (change or keep), the status quo it is anchored on, its probability of gain and expected change,
  and what truly happens: the true change of revenue per day, and whether the change gains;
- the regret of the decided price beside the naive policies: keeping the status quo, moving to the model's own
  optimum (what the router served before the decision), a per-product regression's optimum;
- for the status-quo-wrong products, the share of the achievable uplift captured, and the same runs decided again
  at other ``delta`` and with no rule (safety against uplift: does any policy meet both targets?);
- the true optimum inside the reported 90% band;
- the closed loop: every proposed price test is run in a follow-on period (`synthetic.follow_on`), long enough for
  the test to fall inside the next run's training split, and the pipeline run again; beside it the same period
  without the tests (the control). The tested products' band and decision before and after, split by whether the
  plan expected to settle its question; the refit's decision as served (the first run's decisions carried into its
  record, as promotion does) beside the same refit deciding afresh; and the ceiling: the band's fall the model
  itself predicts for longer tests, or with the order rate or the price weights known.

With `--time-against REV` the default run of the project at git revision REV is timed first (the time budget);
`--part real` runs the real data (../shared): the five default products and four more, every answer's decision.

    python bench/pricing_benchmark.py --part both --keep /tmp/pb       # the figures in the closing note
    python bench/pricing_benchmark.py --reuse /tmp/pb --no-loop         # score the kept runs again
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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import path_with_bin

from pricetrail.data.etl import state_features
from pricetrail.data.synthetic import truth as synthetic
from pricetrail.pricing import keep, recommend, request
from pricetrail.pricing.decision import BLOCK_DAYS
from pricetrail.project.config import load_stockcodes
from pricetrail.project.copies import PROJECT_FILES, init_copy, make_copy, run, set_params
from pricetrail.registry import product_record
from pricetrail.registry.artifacts import local_sources
from pricetrail.serving import loading

PROJECT_ROOT = Path(__file__).resolve().parents[1]

MISPRICED = {"90001": 0.3, "90002": 0.2, "90003": -0.25}
GROUPS = (("registered", True), ("guest", False))
POINTS = 201


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
           "PATH": path_with_bin()}
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


# --------------------------------------------------------------------------------------------- scoring


def decision_settings(root: Path) -> Any:
    from pricetrail.pricing.decision import DecisionSettings
    from pricetrail.project.config import load_params, section

    return DecisionSettings.from_params(section(load_params(root), "decision"))


def score_decisions(root: Path, seed: int, settings_from: Path | None = None, settings: Any = None,
                    earlier: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Every product x customer group of a finished synthetic run: the router's decision scored against the truth
    (revenue per day, the truth's order rate included), beside the naive policies. The decision settings are
    ``settings``, else the run's own, or ``settings_from``'s (another project's params.yaml). ``earlier``: per
    product, the replaced model's decisions, as promotion would record them in the served record (a follow-on run
    is a new copy, so its registry never served the first run's model)."""
    truth = json.loads((root / "data/raw/synthetic/ground_truth.json").read_text())
    settings = settings or decision_settings(settings_from or root)
    sources = local_sources(root)
    registry_dir = root / "registry"
    rows: list[dict[str, Any]] = []
    for code in load_stockcodes(root):
        product = truth["products"][code]
        record = product_record.read_product_record(registry_dir, code)
        if record.record is None:
            rows.append({"seed": seed, "stockcode": code, "group": "-", "note": "no promoted model"})
            continue
        served = loading.load_served(registry_dir, record, sources)
        if earlier and code in earlier:
            served.product = replace(record, record={**record.record, "earlier_decisions": earlier[code]})
        train = pd.read_parquet(root / f"data/preprocessed/{code}/train.parquet")
        daily = pd.read_parquet(root / f"data/features/{code}/daily.parquet")
        last_day = pd.to_datetime(daily["day"]).max()
        date = str((last_day + pd.Timedelta(days=3)).date())
        for group, registered in GROUPS:
            ours = recommend.recommend(served, request.PriceRequest(date=date, customer=group, points=POINTS), sources,
                                     settings)
            decision = ours["decision"]
            if decision["status_quo"] is None or ours["band"] is None:
                rows.append({"seed": seed, "stockcode": code, "group": group, "note": decision["reason"]})
                continue
            low, high = ours["price_range"]
            prices = np.array([c["price"] for c in ours["curve"]])
            regression_units, _ = regression_curve(train[train["is_registered"] == registered], daily,
                                                   last_day + pd.Timedelta(days=1), prices)
            optimum, best_revenue = synthetic.optimal_price(product, low, high, is_registered=registered, date=date)

            def revenue(price: float, truth_: dict = product, flag: bool = registered, day: str = date) -> float:
                return float(synthetic.expected_profit_per_day(truth_, np.array([price]), is_registered=flag,
                                                               date=day)[0])

            def regret(price: float, best: float = best_revenue) -> float:
                return 100 * (best - revenue(price)) / best

            quo = decision["status_quo"]["price"]
            decided = decision["price"]
            achievable = best_revenue - revenue(quo)
            band = ours["band"]
            plan = decision["test_plan"] or {}
            rows.append({
                "seed": seed, "stockcode": code, "group": group, "mispriced": product.get("mispriced"),
                "range": f"{low:.2f}-{high:.2f}", "optimum": round(optimum, 3), "status_quo": quo,
                "decided": decided, "action": decision["action"], "model_price": ours["model_price"],
                "probability_of_gain": (decision["candidate"] or {}).get("probability_of_gain"),
                "expected_change_pct": None if decision["candidate"] is None else round(
                    100 * decision["candidate"]["expected_change"], 2),
                "true_change_pct": round(100 * (revenue(decided) / revenue(quo) - 1), 2),
                "candidate": None if decision["candidate"] is None else decision["candidate"]["price"],
                "candidate_true_change_pct": None if decision["candidate"] is None else round(
                    100 * (revenue(decision["candidate"]["price"]) / revenue(quo) - 1), 2),
                "truly_gains": revenue(decided) > revenue(quo),
                "regret_decided": round(regret(decided), 3), "regret_status_quo": round(regret(quo), 3),
                "regret_model_price": round(regret(ours["model_price"]), 3),
                "regret_regression": round(regret(float(prices[int(np.argmax(prices * regression_units))])), 3),
                "uplift_captured_pct": None if achievable <= 1e-12 else round(
                    100 * (revenue(decided) - revenue(quo)) / achievable, 1),
                "uplift_model_price_pct": None if achievable <= 1e-12 else round(
                    100 * (revenue(ours["model_price"]) - revenue(quo)) / achievable, 1),
                "uplift_regression_pct": None if achievable <= 1e-12 else round(
                    100 * (revenue(float(prices[int(np.argmax(prices * regression_units))])) - revenue(quo))
                    / achievable, 1),
                "band": f"{band[0]:.2f}-{band[1]:.2f}", "band_width_pct": round(100 * (band[1] - band[0]) / quo, 1),
                "optimum_in_band": band[0] - 1e-9 <= optimum <= band[1] + 1e-9,
                "earlier_outcome": (decision.get("earlier_change") or {}).get("outcome"),
                "test_plan": plan.get("prices"), "test_days_each": plan.get("days_each"),
                "plan_band_share_after": plan.get("band_share_after"), "plan_settles": plan.get("settles"),
            })
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame, delta: float, min_gain: float) -> list[tuple[str, bool | None, str]]:
    scored = table[table["group"] != "-"].dropna(subset=["regret_decided"])
    worse = scored["regret_decided"] - scored["regret_status_quo"]
    # A status quo within min_gain of the best revenue is not wrong in a way the rule may act on: the decision is
    # forbidden to chase a gain below min_gain, so keeping is its right answer (those cases are counted apart).
    listed = scored[scored["mispriced"].notna() & scored["uplift_captured_pct"].notna()]
    mispriced = listed[listed["regret_status_quo"] > 100 * min_gain]

    def uplift(column: str) -> str:
        values = mispriced[column]
        return f"median {values.median():.0f}%, lowest {values.min():.0f}%, {int((values < 50).sum())} below 50%"
    changes = scored[scored["action"] == "change"]
    widths = scored["band_width_pct"]
    return [
        ("worse than the status quo by more than 0.3 points of regret: at most 5% of cases",
         bool((worse > 0.3).mean() <= 0.05),
         f"{int((worse > 0.3).sum())} of {len(scored)} ({(worse > 0.3).mean():.0%}); largest {worse.max():+.2f} "
         f"points ({scored.loc[worse.idxmax(), ['seed', 'stockcode', 'group']].tolist()}); the model's own price: "
         f"{int(((scored['regret_model_price'] - scored['regret_status_quo']) > 0.3).sum())} cases"),
        ("status-quo-wrong products: median uplift captured >= 80%, none below 50%",
         bool(len(mispriced) and mispriced["uplift_captured_pct"].median() >= 80
              and mispriced["uplift_captured_pct"].min() >= 50) if len(mispriced) else None,
         f"{uplift('uplift_captured_pct')} ({len(mispriced)} cases whose status quo loses more than min_gain "
         f"{100 * min_gain:g}%; {len(listed) - len(mispriced)} more are within it). The same cases at the model's "
         f"own optimum, no safety rule: {uplift('uplift_model_price_pct')}; at a plain regression's optimum: "
         f"{uplift('uplift_regression_pct')}" if len(mispriced) else "no case"),
        ("regret against the true optimum: median <= 0.3%", bool(scored["regret_decided"].median() <= 0.3),
         f"median {scored['regret_decided'].median():.2f}% (status quo {scored['regret_status_quo'].median():.2f}%, "
         f"the model's price {scored['regret_model_price'].median():.2f}%, regression "
         f"{scored['regret_regression'].median():.2f}%); worst {scored['regret_decided'].max():.2f}%"),
        ("the true optimum inside the 90% band for >= 80% of cases", bool(scored["optimum_in_band"].mean() >= 0.8),
         f"{scored['optimum_in_band'].mean():.0%}; band median width {widths.median():.1f}% of the price"),
        (f"calibrated: among change decisions, the share that truly gains >= {1 - delta:.0%}",
         bool(changes["truly_gains"].mean() >= 1 - delta) if len(changes) else None,
         f"{int(changes['truly_gains'].sum())} of {len(changes)} changes gain "
         f"({changes['truly_gains'].mean():.0%})" if len(changes) else "no change decided"),
    ]


def report(table: pd.DataFrame, delta: float, min_gain: float, elapsed: list[float], seeds: list[int]) -> bool:
    with pd.option_context("display.width", 250, "display.max_colwidth", 80, "display.max_rows", 500):
        show(table, ["seed", "stockcode", "group", "mispriced", "range", "optimum", "status_quo", "decided", "action",
                     "probability_of_gain", "expected_change_pct", "true_change_pct", "regret_decided",
                     "regret_status_quo", "regret_model_price", "regret_regression", "uplift_captured_pct", "band",
                     "optimum_in_band", "test_plan", "test_days_each"],
             "Decisions against the truth (regret in % of the best revenue per day over the observed range)")
    ok = True
    timing = f"; pipelines {', '.join(f'{e:.0f} s' for e in elapsed)}" if elapsed else " (kept runs scored again)"
    print(f"\nTargets ({len(seeds)} seeds{timing}):")
    for name, passed, detail in summarise(table, delta, min_gain):
        ok &= passed is not False
        print(f"  {'PASS' if passed else 'FAIL' if passed is not None else 'n/a '}  {name}: {detail}")
    return ok


def show(table: pd.DataFrame, columns: list[str], title: str) -> None:
    print(f"\n{title}")
    print(table[[c for c in columns if c in table.columns]].to_string(index=False))


# --------------------------------------------------------------------------------------------- the closed loop


def planning_rows(table: pd.DataFrame) -> dict[str, Any]:
    """Per product, the answer whose price test runs: the registered customers' (their price is the list price),
    else the guests' (scaled to the list price in :func:`plans_of`)."""
    chosen: dict[str, Any] = {}
    scored = table[table["group"] != "-"]
    for code, rows in scored.groupby("stockcode"):
        by_group = {row.group: row for row in rows.itertuples()}
        registered, guest = by_group.get("registered"), by_group.get("guest")
        if registered is not None and isinstance(registered.test_plan, list):
            chosen[code] = registered
        elif guest is not None and isinstance(guest.test_plan, list) and registered is not None:
            chosen[code] = guest
    return chosen


def plans_of(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The price test to run per product (see :func:`planning_rows`), in list prices."""
    plans: dict[str, dict[str, Any]] = {}
    scored = table[table["group"] != "-"]
    for code, row in planning_rows(table).items():
        ratio = 1.0
        if row.group == "guest":
            registered = scored[(scored["stockcode"] == code) & (scored["group"] == "registered")].iloc[0]
            ratio = float(registered["status_quo"]) / float(row.status_quo)  # plain floats: the plan goes to YAML
        plans[code] = {"prices": [round(p * ratio, 2) for p in row.test_plan],
                       "days_each": int(row.test_days_each), "block_days": BLOCK_DAYS}
    return plans


def follow_on_days(root: Path, plans: dict[str, dict[str, Any]]) -> int:
    """Long enough for the tests to fall inside the next run's training split (the oldest 70% of the days)."""
    from pricetrail.project.config import load_params, section

    synthetic_params = section(load_params(root), "synthetic")
    base = (pd.Timestamp(synthetic_params["end"]) - pd.Timestamp(synthetic_params["start"])).days + 1
    test = max(len(plan["prices"]) * plan["days_each"] for plan in plans.values())
    return int(math.ceil((base + test) / 0.68)) - base + 7


def earlier_decisions(root: Path, settings: Any) -> dict[str, dict[str, Any]]:
    """What promotion carries into the record of the model that replaces each served one: the served model's
    decisions as its gate made them (its verdict's; a run made before verdicts recorded them is priced again the
    gate's way)."""
    from pricetrail.gates.assessment import day_after_history, price_decisions, priced_groups
    from pricetrail.project.paths import ProductPaths

    decisions = {}
    for code in load_stockcodes(root):
        record = product_record.read_product_record(root / "registry", code)
        if record.record is None:
            continue
        recorded = (record.record.get("verdict") or {}).get("price_decisions")
        if recorded is None:
            served = loading.load_served(root / "registry", record, local_sources(root))
            seen = pd.concat([pd.read_parquet(root / ProductPaths(code).split(name),
                                              columns=["unit_price", "is_registered"])
                              for name in ("train", "validation", "test")], ignore_index=True)
            recorded = price_decisions(priced_groups(served, seen, day_after_history(served.daily), settings))
        decisions[code] = {"version": record.version, "decisions": recorded}
    return decisions


def closed_loop(base: Path, seed: int, before: pd.DataFrame, *, reuse: bool = False) -> pd.DataFrame | None:
    """Run each proposed test in a follow-on period (and the same period without tests, as the control), run the
    pipeline again, and score the tested products' bands and decisions against their first run. ``reuse``: score
    the kept follow-on runs again (the tests they ran are in their params.yaml)."""
    settings_from = PROJECT_ROOT if reuse else None
    kept = base / f"seed{seed}-after"
    reuse = reuse and kept.is_dir()  # kept base runs without follow-on runs: run them now
    if reuse:
        from pricetrail.project.config import load_params, section

        plans = section(load_params(kept), "synthetic")["follow_on"]["price_tests"]
    else:
        plans = plans_of(before[before["seed"] == seed])
    if not plans:
        return None
    settings = decision_settings(settings_from or base / f"seed{seed}")
    earlier = earlier_decisions(base / f"seed{seed}", settings)
    tables = {}
    for name, tests in (("after", plans), ("control", {})):
        root = base / f"seed{seed}-{name}"
        if not reuse:
            days = follow_on_days(base / f"seed{seed}", plans)
            root = make_copy(root, profile=None)
            add_mispriced_products(root)
            set_params(root, {"base.seed": seed, "synthetic.follow_on": {"days": days, "price_tests": tests}})
            run(["git", "commit", "-qam", f"follow-on {name}"], root)
            print(f"  seed {seed}, {name}: {days} more days{f', tests {tests}' if tests else ''}", flush=True)
            run_pipeline(root)
        tables[name] = score_decisions(root, seed, settings_from, earlier=earlier)
        if name == "after":  # the naive choice beside ours: the same refit deciding afresh, with no memory
            tables["after_no_memory"] = score_decisions(root, seed, settings_from)
    # Whether the plan that ran was expected to settle its question (its own prediction, before the test).
    settles = {code: getattr(row, "plan_settles", None) for code, row in
               planning_rows(before[before["seed"] == seed]).items()}
    rows = []
    for code in plans:
        for group, _ in GROUPS:
            def pick(table: pd.DataFrame, code_: str = code, group_: str = group) -> Any:
                found = table[(table["stockcode"] == code_) & (table["group"] == group_)]
                return None if found.empty or "regret_decided" not in found or pd.isna(
                    found["regret_decided"].iloc[0]) else found.iloc[0]

            first, after, control = pick(before[before["seed"] == seed]), pick(tables["after"]), pick(
                tables["control"])
            afresh = pick(tables["after_no_memory"])
            if first is None or after is None or afresh is None:
                continue
            rows.append({
                "seed": seed, "stockcode": code, "group": group, "test": plans[code]["prices"],
                "days_each": plans[code]["days_each"], "settles": settles.get(code),
                "band_before_pct": first["band_width_pct"],
                "band_predicted_pct": None if first["plan_band_share_after"] is None else round(
                    100 * first["plan_band_share_after"], 1),
                "band_after_pct": after["band_width_pct"],
                "band_control_pct": None if control is None else control["band_width_pct"],
                "band_fall_pct": round(100 * (1 - after["band_width_pct"] / first["band_width_pct"]), 1)
                if first["band_width_pct"] else None,
                "decision_before": f"{first['action']} {first['decided']}",
                "decision_after": f"{after['action']} {after['decided']}", "earlier": after["earlier_outcome"],
                "decision_afresh": f"{afresh['action']} {afresh['decided']}",
                "quo_before": first["status_quo"], "quo_after": after["status_quo"],
                "regret_before": first["regret_decided"], "regret_after": after["regret_decided"],
                "regret_afresh": afresh["regret_decided"],
                "change_after_gains": bool(after["truly_gains"]) if after["action"] == "change" else None,
                "regret_control": None if control is None else control["regret_decided"]})
    return pd.DataFrame(rows)


def report_loop(loop: pd.DataFrame) -> bool:
    with pd.option_context("display.width", 250):
        show(loop, list(loop.columns), "Closed loop: the proposed tests run, the pipeline run again")
    tested = loop[loop["band_before_pct"] > 0]
    predicted = 100 * (1 - tested["band_predicted_pct"] / tested["band_before_pct"])
    print(f"  band fall, median: {tested['band_fall_pct'].median():.0f}% measured, {predicted.median():.0f}% "
          f"predicted by the plans; regret after the test against the control (the same period, no test): "
          f"{int(((loop['regret_after'] - loop['regret_control']) > 0.3).sum())} of {len(loop)} cases higher by "
          f"> 0.3 points, {int(((loop['regret_control'] - loop['regret_after']) > 0.3).sum())} lower")
    paired = pd.DataFrame({"predicted": predicted, "measured": tested["band_fall_pct"]}).dropna()
    if len(paired) > 2:
        print(f"  per case ({len(paired)} with a band), the measured fall against the predicted: correlation "
              f"{paired['predicted'].corr(paired['measured']):.2f}, median difference "
              f"{(paired['measured'] - paired['predicted']).abs().median():.0f} points")
    for expected, cases in loop.groupby(loop["settles"].map({True: "yes", False: "no"}).fillna("-"), sort=False):
        narrowed = cases[cases["band_before_pct"] > 0]
        rise = cases["regret_after"] - cases["regret_before"]
        print(f"  tests their plan expected to settle the question: {expected}: {cases['stockcode'].nunique()} "
              f"products, {len(cases)} cases; band fall median "
              f"{narrowed['band_fall_pct'].median() if len(narrowed) else float('nan'):.0f}%, least "
              f"{narrowed['band_fall_pct'].min() if len(narrowed) else float('nan'):.0f}%; regret rose by > 0.3 "
              f"points in {int((rise > 0.3).sum())} (against the control: "
              f"{int(((cases['regret_after'] - cases['regret_control']) > 0.3).sum())}), fell in "
              f"{int((rise < -0.3).sum())}; mean regret {cases['regret_before'].mean():.2f}% before, "
              f"{cases['regret_after'].mean():.2f}% after, {cases['regret_control'].mean():.2f}% control")
    for label, column in (("deciding afresh (the refit alone, no memory)", "regret_afresh"),
                          ("with the earlier change kept while the refit does not doubt it (served)", "regret_after")):
        rise, first = loop[column] - loop["regret_before"], loop["regret_before"]
        print(f"  regret after the test, {label}: rose by > 0.3 points in {int((rise > 0.3).sum())} of {len(loop)}, "
              f"fell in {int((rise < -0.3).sum())}; largest rise {rise.max():+.2f}; mean {first.mean():.2f}% "
              f"before, {loop[column].mean():.2f}% after; median {first.median():.2f}% before, "
              f"{loop[column].median():.2f}% after")
    control = loop["regret_control"] - loop["regret_before"]
    print(f"  the control (the same period, no test, the same rule): regret rose by > 0.3 points against the first run "
          f"in {int((control > 0.3).sum())}, fell in {int((control < -0.3).sum())}: a refit on more data moves single "
          "decisions either way")
    moved = loop[(loop["quo_after"] / loop["quo_before"] - 1).abs() > 0.005]
    if len(moved):
        print(f"  the status quo moved between the periods in {len(moved)} cases (the shop's price at the first run's "
              f"end was not its price after the test): " + "; ".join(
                  f"{r.seed} {r.stockcode} {r.group} {r.quo_before:g} -> {r.quo_after:g}, regret {r.regret_before:.2f} "
                  f"-> {r.regret_after:.2f} (control {r.regret_control:.2f})" for r in moved.itertuples()))
    held = loop[loop["earlier"] == "kept"]
    gain = held["regret_afresh"] - held["regret_after"]
    changes = loop["change_after_gains"].dropna()
    print(f"  earlier changes kept: {len(held)} cases ({int((gain > 0.3).sum())} better than deciding afresh, "
          f"{int((gain < -0.3).sum())} worse); changes after the test that truly gain: {int(changes.sum())} of "
          f"{len(changes)}")
    falls = bool((tested["band_fall_pct"] >= 40).all()) if len(tested) else None
    no_rise = bool(((loop["regret_after"] - loop["regret_before"]) <= 0.3).all()) if len(loop) else None
    print(f"  {'PASS' if falls else 'FAIL' if falls is not None else 'n/a '}  the tested products' band width falls "
          f"by >= 40%: median fall {tested['band_fall_pct'].median():.0f}%, least {tested['band_fall_pct'].min():.0f}% "
          f"(control, no test: median "
          f"{100 * (1 - (tested['band_control_pct'] / tested['band_before_pct'])).median():.0f}%)"
          if len(tested) else "  n/a   no band to narrow")
    print(f"  {'PASS' if no_rise else 'FAIL' if no_rise is not None else 'n/a '}  their regret does not rise (by more "
          f"than 0.3 points): largest change {(loop['regret_after'] - loop['regret_before']).max():+.2f} points"
          if len(loop) else "  n/a   nothing tested")
    return falls is not False and no_rise is not False


FRONTIER_DELTAS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.45)


def frontier(base: Path, seeds: list[int], settings: Any, settings_from: Path | None) -> pd.DataFrame:
    """The same kept runs decided again at other ``delta`` (how sure a change must be), beside the model's own
    optimum with no rule: does any setting capture half the uplift in every status-quo-wrong case and stay no worse
    than the status quo? The decision is the router's, so no pipeline runs again."""
    def policy(rule: str, scored: pd.DataFrame, mispriced: pd.DataFrame, price: str, gains: str) -> dict[str, Any]:
        uplift = mispriced[f"uplift_{price}_pct"]
        return {"rule": rule,
                "worse_than_status_quo": int(((scored[f"regret_{price}"] - scored["regret_status_quo"]) > 0.3).sum()),
                "uplift_median_pct": uplift.median(), "uplift_lowest_pct": uplift.min(),
                "below_50": int((uplift < 50).sum()), "changes_that_gain": gains,
                "regret_median_pct": scored[f"regret_{price}"].median(), "cases": len(scored)}

    rows = []
    for delta in FRONTIER_DELTAS:
        chosen = replace(settings, delta=delta)
        table = pd.concat([score_decisions(base / f"seed{seed}", seed, settings_from, chosen) for seed in seeds],
                          ignore_index=True).rename(columns={"uplift_captured_pct": "uplift_decided_pct"})
        scored = table[table["group"] != "-"].dropna(subset=["regret_decided"])
        mispriced = scored[scored["mispriced"].notna() & scored["uplift_decided_pct"].notna()
                           & (scored["regret_status_quo"] > 100 * settings.min_gain)]
        changes = scored[scored["action"] == "change"]
        rows.append(policy(f"delta {delta:g}", scored, mispriced, "decided",
                           f"{int(changes['truly_gains'].sum())}/{len(changes)}"))
    rows += [policy(rule, scored, mispriced, price, "-")
             for rule, price in (("the model's own optimum", "model_price"), ("a plain regression's optimum",
                                                                             "regression"))]
    result = pd.DataFrame(rows)
    print(f"\nSafety against uplift: the decision at other delta, and no rule ({len(mispriced)} status-quo-wrong "
          f"cases; 'worse' = more than 0.3 points of regret above the status quo, at most {0.05 * len(scored):.1f} "
          "allowed)")
    print(result.round(2).to_string(index=False))
    both = result[(result["worse_than_status_quo"] <= 0.05 * result["cases"]) & (result["below_50"] == 0)]
    print(f"  meets both 'at most 5% worse' and 'none below 50%': {', '.join(both['rule']) or 'none'}")
    return result


CEILING = (("the plans (<= 56 days a price)", None, None), ("56 days a price", (56,), None),
           ("1 year a price", (365,), None), ("4 years a price", (1460,), None),
           ("56 days, order rate known", (56,), "rate"), ("56 days, price weights known", (56,), "weights"))


def plan_ceiling(base: Path, seeds: list[int]) -> bool:
    """How far could any price test narrow the band, by the model's own uncertainty? Every planned case of the
    first runs, planned again with longer tests, or with one source of uncertainty removed after the test."""
    from pricetrail.pricing import decision

    days, shrunk = decision.TEST_DAYS, decision.shrunk
    rows = []
    try:
        for label, lengths, known in CEILING:
            decision.TEST_DAYS = lengths or days

            def patched(uncertainty: Any, *args: Any, known_: str | None = known) -> Any:
                after = shrunk(uncertainty, *args)
                if known_ == "rate":
                    return replace(after, rate_sd=1e-6)
                return replace(after, covariance=after.covariance * 1e-9) if known_ == "weights" else after

            decision.shrunk = patched
            for seed in seeds:
                table = score_decisions(base / f"seed{seed}", seed, PROJECT_ROOT)
                for row in table[table["test_plan"].notna() & (table["band_width_pct"] > 0)].itertuples():
                    rows.append({"scenario": label, "case": f"{seed} {row.stockcode} {row.group}",
                                 "fall": 100 * (1 - 100 * row.plan_band_share_after / row.band_width_pct)})
    finally:
        decision.TEST_DAYS, decision.shrunk = days, shrunk
    falls = pd.DataFrame(rows)
    summary = falls.groupby("scenario", sort=False)["fall"].agg(
        cases="count", median="median", least="min", at_least_40=lambda f: int((f >= 40).sum()))
    print("\nThe band's predicted fall after a test, by the model's own uncertainty (planned cases of the first runs)")
    print(summary.round(1).to_string())
    flat = falls[(falls["scenario"] == "4 years a price") & (falls["fall"] < 40)]["case"].tolist()
    print(f"  even 4 years a price leaves {len(flat)} cases under 40% (a flat revenue curve: the optimum's band "
          f"spans the range whatever the data): {', '.join(flat) or '-'}")
    return True


REAL_EXTRA = {"20712": "JUMBO BAG WOODLAND ANIMALS", "20718": "RED RETROSPOT SHOPPER BAG",
              "82484": "WOOD BLACK BOARD ANT WHITE FINISH", "22697": "GREEN REGENCY TEACUP AND SAUCER"}


def real_recommendations(root: Path) -> pd.DataFrame:
    """Every product's answer for both groups, as the router gives it: a decision and its reason, always."""
    from pricetrail.pricing.decision import DecisionSettings
    from pricetrail.project.config import load_params, section

    settings = DecisionSettings.from_params(section(load_params(root), "decision"))
    sources = local_sources(root)
    rows = []
    for code in load_stockcodes(root):
        record = product_record.read_product_record(root / "registry", code)
        for group, _ in GROUPS:
            if record.record is None:
                date = str((pd.Timestamp(record.state.last_day) + pd.Timedelta(days=3)).date()) if record.state \
                    else "2011-12-12"
                ours = keep.unmodelled_answer(record, request.PriceRequest(date=date, customer=group), sources,
                                                 settings)
            else:
                served = loading.load_served(root / "registry", record, sources)
                date = str((served.last_day + pd.Timedelta(days=3)).date())
                ours = recommend.recommend(served, request.PriceRequest(date=date, customer=group, points=POINTS),
                                         sources, settings)
            decision = ours["decision"]
            plan = decision.get("test_plan") or {}
            rows.append({"stockcode": code, "group": group, "model": "served" if ours["model_version"] else "-",
                         "status_quo": (decision.get("status_quo") or {}).get("price"), "price": ours["price"],
                         "action": decision["action"], "model_price": ours.get("model_price"),
                         "band": ours.get("band"), "test_plan": plan.get("prices"),
                         "test_days_each": plan.get("days_each"), "reason": decision["reason"]})
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["synthetic", "real", "both", "none"], default="synthetic",
                        help="none: only the --time-against comparison")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 2026], help="synthetic data seeds")
    parser.add_argument("--no-loop", action="store_true", help="skip the closed loop (tests run, pipeline again)")
    parser.add_argument("--keep", type=Path, help="build the copies here and keep them")
    parser.add_argument("--reuse", type=Path, help="score the finished copies under this folder (seed<N>) again")
    parser.add_argument("--time-against", metavar="REV", help="also time the default run of the project at REV")
    parser.add_argument("--shared", type=Path, default=PROJECT_ROOT.parent / "shared")
    parser.add_argument("--json", type=Path, help="write the per-case table here")
    args = parser.parse_args()
    base = args.reuse or args.keep or Path(tempfile.mkdtemp(prefix="pricetrail-pricing-"))
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
            tables, elapsed = [], []
            for seed in args.seeds:
                root = base / f"seed{seed}"
                if not args.reuse:
                    root = make_copy(root, profile=None)
                    add_mispriced_products(root)
                    set_params(root, {"base.seed": seed})
                    run(["git", "commit", "-qam", f"seed {seed}", "--allow-empty"], root)
                    print(f"synthetic data, seed {seed}, default params, {len(load_stockcodes(root))} products "
                          f"(3 mispriced: {MISPRICED}):", flush=True)
                    elapsed.append(run_pipeline(root))
                # Kept runs are scored with this checkout's decision settings (the decision is the router's, not the
                # pipeline's: a new rule needs no new run).
                tables.append(score_decisions(root, seed, PROJECT_ROOT if args.reuse else None))
            table = pd.concat(tables, ignore_index=True)
            settings = decision_settings(PROJECT_ROOT if args.reuse else base / f"seed{args.seeds[0]}")
            if args.json:
                table.to_json(args.json, orient="records", indent=1)
            ok &= report(table, settings.delta, settings.min_gain, elapsed, args.seeds)
            frontier(base, args.seeds, settings, PROJECT_ROOT if args.reuse else None)
            if not args.no_loop:
                loops = [loop for seed in args.seeds
                         if (loop := closed_loop(base, seed, table, reuse=bool(args.reuse))) is not None]
                if loops:
                    ok &= report_loop(pd.concat(loops, ignore_index=True))
                plan_ceiling(base, args.seeds)
        if args.part in ("real", "both"):
            from quality_benchmark import real_data_run, report_real_target

            real = real_data_run(base / "real", args.shared, {}, run_pipeline, extra_products=REAL_EXTRA)
            if real is not None:
                root, elapsed_real, rows = real
                with pd.option_context("display.width", 250, "display.max_colwidth", 200):
                    print(f"\nTest RMSLE against gradient boosting (pipeline {elapsed_real:.0f} s)")
                    print(pd.DataFrame(rows).to_string(index=False))
                    answers = real_recommendations(root)
                    print("\nDecisions on the real data (every product, both groups)")
                    print(answers.to_string(index=False))
                served = {code for code, rows_ in answers.groupby("stockcode") if (rows_["model"] == "served").any()}
                defaults = [code for code in load_stockcodes(PROJECT_ROOT)]
                print(f"  {'PASS' if len(served & set(defaults)) >= 4 else 'FAIL'}  at least four of the default five "
                      f"serve a model for a group: {sorted(served & set(defaults))}")
                ok &= report_real_target(rows)
    finally:
        if not args.keep and not args.reuse:
            shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
