"""How far can a price-response family read the true elasticity, with the sampling error taken away?

For each product of a finished synthetic project (e.g. one kept by ``pricing_benchmark.py --keep DIR``), draw
order lines from the product's *true* demand curve (``data/raw/synthetic/ground_truth.json``) at the prices its
own lines were sold at, the generator's way (lognormal noise, the floor at one unit, pack sizes), and fit each
family with the price terms shared by the customer groups, as the served network's price term is:

- ``log1p-ls``: least squares of log1p quantity on unit_price + log_price (the network's structure), smearing;
- ``log-ls``: the same on log quantity;
- ``poisson``: a Poisson (mean) fit of quantity on the same terms;
- ``tobit``: a normal model of log demand, censored at one unit (``q == 1`` stands for a latent below 1.5).

Then compare the elasticity each family implies at each group's median price with the truth's, for a large
sample (the structural error) and for a year's worth of lines (structural plus sampling). Not a timed
benchmark: the figures are the errors.

    python bench/price_response_bias.py --root /tmp/pb/synthetic
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.stats import norm

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "lib"))

from pricetrail import synthetic  # noqa: E402
from pricetrail.synthetic import _clipped_lognormal_mean  # noqa: E402

STEP = 1e-3
GRID = 201  # the router's default grid
CENSOR = np.log(1.5)


def draw_lines(truth: dict, prices: np.ndarray, registered: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Quantities of regular lines at these prices, drawn as the generator draws them (season factor 1)."""
    n = len(prices)
    return synthetic.regular_quantities(truth, prices, registered, 1.0, rng.standard_normal(n), rng.random(n),
                                        rng.random(n))


def design(prices: np.ndarray, registered: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(prices), registered.astype(float), prices, np.log(prices)])


def poisson(X: np.ndarray, q: np.ndarray) -> np.ndarray:
    beta = np.zeros(X.shape[1])
    beta[0] = np.log(q.mean())
    for _ in range(60):
        mu = np.exp(X @ beta)
        beta = np.linalg.solve(X.T @ (mu[:, None] * X), X.T @ (mu * (X @ beta + (q - mu) / mu)))
    return beta


def tobit(X: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, float]:
    y, censored = np.log(q), q <= 1

    def loss(theta: np.ndarray) -> float:
        m, s = X @ theta[:-1], np.exp(theta[-1])
        return -float(np.where(censored, norm.logcdf((CENSOR - m) / s), norm.logpdf((y - m) / s) - np.log(s)).sum())

    start = np.linalg.lstsq(X, y, rcond=None)[0]
    theta = minimize(loss, np.r_[start, np.log(np.std(y - X @ start))], method="L-BFGS-B").x
    return theta[:-1], float(np.exp(theta[-1]))


def quantity_curves(X: np.ndarray, q: np.ndarray) -> dict:
    """Per family, a function from design rows to expected quantity."""
    curves = {}
    for name, target, offset in (("log1p-ls", np.log1p(q), 1.0), ("log-ls", np.log(q), 0.0)):
        beta = np.linalg.lstsq(X, target, rcond=None)[0]
        smear = float(np.mean(np.exp(target - X @ beta)))
        curves[name] = (lambda rows, b=beta, s=smear, o=offset: np.exp(rows @ b) * s - o)
    beta = poisson(X, q)
    curves["poisson"] = lambda rows, b=beta: np.exp(rows @ b)
    beta, sd = tobit(X, q)
    curves["tobit"] = lambda rows, b=beta, s=sd: _clipped_lognormal_mean(np.exp(rows @ b + s**2 / 2), s, 1e9)
    return curves


def elasticity(quantity: np.ndarray) -> float:
    return float((np.log(quantity[1]) - np.log(quantity[0])) / (np.log1p(STEP) - np.log1p(-STEP)))


def errors(truth: dict, prices: np.ndarray, registered: np.ndarray, n: int, rng: np.random.Generator,
           date: str) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per family: the relative elasticity error at each group's median price, and the regret per day of the
    family's own optimum over the group's observed range (lines per day from the truth's order rate, so only
    the per-line reading of the price is the family's)."""
    pick = rng.integers(0, len(prices), n)
    p, reg = prices[pick], registered[pick]
    curves = quantity_curves(design(p, reg), draw_lines(truth, p, reg, rng))
    result: dict[str, list[float]] = {name: [] for name in curves}
    regrets: dict[str, list[float]] = {name: [] for name in curves}
    for group in (True, False):
        own = prices[registered == group]
        median = float(np.median(own))
        pivot = np.array([median * (1 - STEP), median * (1 + STEP)])
        true = elasticity(synthetic.expected_quantity(truth, pivot, is_registered=group, date=date))
        rows = design(pivot, np.full(2, group))
        low, high = float(own.min()), float(own.max())
        grid = np.linspace(low, high, GRID)
        lines = synthetic.expected_lines_per_day(truth, grid, is_registered=group, date=date)
        for name, curve in curves.items():
            result[name].append(elasticity(curve(rows)) / true - 1)
            best = float(grid[np.argmax(grid * lines * curve(design(grid, np.full(GRID, group))))])
            regrets[name].append(synthetic.revenue_regret(truth, best, low, high, is_registered=group, date=date))
    return result, regrets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a finished synthetic project")
    parser.add_argument("--large", type=int, default=100_000, help="lines per product for the structural error")
    parser.add_argument("--seeds", type=int, default=3, help="year-sized samples per product")
    args = parser.parse_args()
    truth = json.loads((args.root / "data/raw/synthetic/ground_truth.json").read_text(encoding="utf-8"))["products"]
    table, priced = {}, {}
    for code, product in truth.items():
        lines = pd.read_parquet(args.root / f"data/features/{code}/lines.parquet")
        prices, registered = lines["unit_price"].to_numpy(float), lines["is_registered"].to_numpy(bool)
        date = str((lines["invoice_date"].max() + pd.Timedelta(days=3)).date())
        year = int(0.7 * len(lines))  # the training split's size
        table[(code, "large")], priced[(code, "large")] = errors(product, prices, registered, args.large,
                                                                  np.random.default_rng(0), date)
        for seed in range(args.seeds):
            table[(code, f"year{seed}")], priced[(code, f"year{seed}")] = errors(
                product, prices, registered, year, np.random.default_rng(seed + 1), date)
    for size in ("large", "year"):
        print(f"\n{'structural' if size == 'large' else 'a year of lines'}: elasticity error at the median price "
              f"(registered and guest per product; {args.large if size == 'large' else 'training-split'} lines)")
        families = next(iter(table.values())).keys()
        for family in families:
            values = [v for (code, kind), result in table.items() if kind.startswith(size)
                      for v in result[family]]
            absolute = np.abs(values)
            # A negative error is an elasticity closer to zero than the truth's: a curve read too flat.
            print(f"  {family:9s} median {np.median(absolute):5.1%}  worst {absolute.max():5.1%}  "
                  f"too flat in {np.mean(np.array(values) < 0):.0%} of cases")
    # What the worst-case regret target asks of one product's year: each family's own optimum, priced with the
    # true order rate, over each group's observed range.
    for size in ("large", "year"):
        print(f"\n{'structural' if size == 'large' else 'a year of lines'}: regret per day of the family's "
              "optimum (true order rate; each group's observed range)")
        for family in next(iter(priced.values())).keys():
            values = np.array([v for (code, kind), result in priced.items() if kind.startswith(size)
                               for v in result[family]])
            print(f"  {family:9s} median {np.median(values):6.2%}  worst {values.max():6.2%}  "
                  f"above 1% in {np.mean(values > 0.01):.0%} of {values.size} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
