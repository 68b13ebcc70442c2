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

``pooled`` is ``log1p-ls`` with information from the other products: each year-sized sample of every product is
fitted alone, the per-line elasticities at the products' median prices are pooled by random-effects meta-analysis
(DerSimonian-Laird: a mean and a between-product spread, estimated beside the sampling variances), and each
product is fitted again with that as a normal prior on its own elasticity (empirical Bayes). The prior is as
strong as the products agree: when they spread more than their sampling errors say, it is weak.

Last, each family is fitted on the pipeline's own training split of each product (its realisation, not a fresh
draw), with the true order rate: how far these very lines let any of them price.

    python bench/price_response_bias.py --root /tmp/pb/synthetic --seeds 10                   # the training split
    python bench/price_response_bias.py --root /tmp/pb/synthetic --seeds 10 --fit-share 0.85  # and validation
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

from pricetrail.data.synthetic import truth as synthetic
from pricetrail.data.synthetic.truth import clipped_lognormal_mean

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
    curves["tobit"] = lambda rows, b=beta, s=sd: clipped_lognormal_mean(np.exp(rows @ b + s**2 / 2), s, 1e9)
    return curves


def log1p_fit(X: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares of log1p quantity: coefficients, their covariance, and the smearing factor."""
    target = np.log1p(q)
    beta = np.linalg.lstsq(X, target, rcond=None)[0]
    residual = target - X @ beta
    variance = float(residual @ residual) / max(len(q) - X.shape[1], 1)
    return beta, variance * np.linalg.inv(X.T @ X), float(np.mean(np.exp(residual)))


def line_elasticity_of_fit(beta: np.ndarray, smear: float, median: float, group: bool) -> tuple[float, np.ndarray]:
    """The per-line elasticity a log1p fit implies at ``median`` and the gradient of the log1p slope in beta,
    scaled to it (elasticity = gradient @ beta)."""
    row = design(np.array([median]), np.array([group]))[0]
    mean = float(np.exp(row @ beta) * smear - 1.0)
    scale = (1.0 + mean) / max(mean, 1e-9) if mean > 0 else 1.0
    gradient = np.array([0.0, 0.0, median, 1.0]) * scale  # d log1p(q) / d log p = b_price * p + b_log_price
    return float(gradient @ beta), gradient


def dersimonian_laird(estimates: np.ndarray, variances: np.ndarray) -> tuple[float, float]:
    """Random-effects mean and between-product variance of per-product estimates with known variances."""
    weights = 1.0 / variances
    mean = float(np.sum(weights * estimates) / np.sum(weights))
    q = float(np.sum(weights * (estimates - mean) ** 2))
    spread = max(0.0, (q - (len(estimates) - 1)) / (np.sum(weights) - np.sum(weights**2) / np.sum(weights)))
    total = 1.0 / (variances + spread)
    return float(np.sum(total * estimates) / np.sum(total)), spread


def pooled_curves(samples: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], floor: float = 0.02**2) -> dict:
    """Per product, the log1p fit refitted with a normal prior on its per-line elasticity at its median price,
    pooled from every product's own fit (empirical Bayes). ``samples`` maps code -> (X, q, median)."""
    fits = {}
    for code, (X, q, median) in samples.items():
        beta, covariance, smear = log1p_fit(X, q)
        value, gradient = line_elasticity_of_fit(beta, smear, float(median), True)
        fits[code] = (beta, covariance, smear, value, gradient, float(gradient @ covariance @ gradient))
    estimates = np.array([fit[3] for fit in fits.values()])
    variances = np.array([fit[5] for fit in fits.values()])
    mean, spread = dersimonian_laird(estimates, variances)
    spread = max(spread, floor)
    curves = {}
    for code, (X, q, _median) in samples.items():
        beta, covariance, _smear, _value, gradient, _variance = fits[code]
        # Posterior mode of beta under the least-squares likelihood (covariance = sigma^2 (X'X)^-1) and the prior
        # gradient @ beta ~ N(mean, spread).
        precision = np.linalg.inv(covariance) + np.outer(gradient, gradient) / spread
        posterior = np.linalg.solve(precision, np.linalg.inv(covariance) @ beta + gradient * mean / spread)
        target = np.log1p(q)
        smear = float(np.mean(np.exp(target - X @ posterior)))
        curves[code] = lambda rows, b=posterior, sm=smear: np.exp(rows @ b) * sm - 1.0
    return curves


def elasticity(quantity: np.ndarray) -> float:
    return float((np.log(quantity[1]) - np.log(quantity[0])) / (np.log1p(STEP) - np.log1p(-STEP)))


def sample(truth: dict, prices: np.ndarray, registered: np.ndarray, n: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n lines drawn from the truth at prices (and groups) picked from the product's own lines: (design, q)."""
    pick = rng.integers(0, len(prices), n)
    p, reg = prices[pick], registered[pick]
    return design(p, reg), draw_lines(truth, p, reg, rng)


def score(truth: dict, prices: np.ndarray, registered: np.ndarray, curves: dict,
          date: str) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per family: the relative elasticity error at each group's median price, and the regret per day of the
    family's own optimum over the group's observed range (lines per day from the truth's order rate, so only
    the per-line reading of the price is the family's)."""
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
    parser.add_argument("--fit-share", type=float, default=0.7,
                        help="the share of a product's lines a fit sees: 0.7 is the training split, which the "
                             "served price weights are solved on; 0.85 adds the validation rows")
    args = parser.parse_args()
    if not 0 < args.fit_share <= 1:
        parser.error(f"--fit-share {args.fit_share} is not accepted: a share of the lines in (0, 1]")
    truth = json.loads((args.root / "data/raw/synthetic/ground_truth.json").read_text(encoding="utf-8"))["products"]
    table, priced = {}, {}
    products = {}
    for code, product in truth.items():
        lines = pd.read_parquet(args.root / f"data/features/{code}/lines.parquet")
        prices, registered = lines["unit_price"].to_numpy(float), lines["is_registered"].to_numpy(bool)
        date = str((lines["invoice_date"].max() + pd.Timedelta(days=3)).date())
        products[code] = (product, prices, registered, date, int(args.fit_share * len(lines)))
        X, q = sample(product, prices, registered, args.large, np.random.default_rng(0))
        table[(code, "large")], priced[(code, "large")] = score(product, prices, registered, quantity_curves(X, q),
                                                                date)
    for seed in range(args.seeds):
        samples = {code: sample(product, prices, registered, year, np.random.default_rng(seed + 1))
                   for code, (product, prices, registered, date, year) in products.items()}
        pooled = pooled_curves({code: (X, q, float(np.median(products[code][1][products[code][2]])))
                                for code, (X, q) in samples.items()})
        for code, (product, prices, registered, date, _year) in products.items():
            curves = {**quantity_curves(*samples[code]), "pooled": pooled[code]}
            table[(code, f"year{seed}")], priced[(code, f"year{seed}")] = score(product, prices, registered, curves,
                                                                                date)
    title = {"large": "structural", "year": f"{args.fit_share:.0%} of a year of lines"}
    for size in ("large", "year"):
        print(f"\n{title[size]}: elasticity error at the median price "
              f"(registered and guest per product; {args.large if size == 'large' else 'that many'} lines)")
        families = next(v for (code, kind), v in table.items() if kind.startswith(size)).keys()
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
        print(f"\n{title[size]}: regret per day of the family's "
              "optimum (true order rate; each group's observed range)")
        for family in next(v for (code, kind), v in priced.items() if kind.startswith(size)).keys():
            values = np.array([v for (code, kind), result in priced.items() if kind.startswith(size)
                               for v in result[family]])
            print(f"  {family:9s} median {np.median(values):6.2%}  worst {values.max():6.2%}  "
                  f"above 1% in {np.mean(values > 0.01):.0%} of {values.size} cases")
    actual_training_lines(args.root, truth)
    return 0


def actual_training_lines(root: Path, truth: dict) -> None:
    """The same families fitted on each product's own training split (the pipeline's realisation, not a fresh
    draw): what these very lines let any of them read, with the true order rate and no context feature."""
    print("\nthe pipeline's own training lines: regret per day of each family's optimum, registered / guest")
    worst: dict[str, list[float]] = {}
    for code, product in truth.items():
        train_path = root / f"data/preprocessed/{code}/train.parquet"
        if not train_path.is_file():
            print(f"  {code}: no training split at {train_path} (run the pipeline first)")
            continue
        lines = pd.read_parquet(root / f"data/features/{code}/lines.parquet")
        train = pd.read_parquet(train_path)
        date = str((lines["invoice_date"].max() + pd.Timedelta(days=3)).date())
        X = design(train["unit_price"].to_numpy(float), train["is_registered"].to_numpy(bool))
        curves = quantity_curves(X, train["quantity"].to_numpy(float))
        _, regrets = score(product, lines["unit_price"].to_numpy(float), lines["is_registered"].to_numpy(bool),
                           curves, date)
        print(f"  {code:7s} " + "  ".join(f"{name} {regret[0]:.2%} / {regret[1]:.2%}"
                                          for name, regret in regrets.items()))
        for name, regret in regrets.items():
            worst.setdefault(name, []).extend(regret)
    for name, values in worst.items():
        array = np.array(values)
        print(f"  {name:9s} worst {array.max():6.2%}  above 1% in {int((array > 0.01).sum())} of {array.size} cases")


if __name__ == "__main__":
    sys.exit(main())
