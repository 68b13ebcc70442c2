"""Stage ``generate_synthetic``: the default input, drawn from known demand curves."""

from __future__ import annotations

from pathlib import Path

from pricetrail.data.synthetic.generator import generate_transactions
from pricetrail.data.synthetic.settings import SyntheticSettings
from pricetrail.project.config import load_params, load_stockcodes, section, seed_of
from pricetrail.project.files import atomic_path, write_json
from pricetrail.project.paths import SYNTHETIC_DIR


def generate_synthetic(root: Path) -> None:
    """Seeded UCI-schema transactions with known demand curves, and the truth they were drawn from."""
    params = load_params(root)
    settings = SyntheticSettings.from_params(section(params, "synthetic"))
    transactions, truth = generate_transactions(
        load_stockcodes(root), seed=seed_of(params), start=settings.start, end=settings.end,
        lines_per_day=settings.lines_per_day, filler_products=settings.filler_products, drift=settings.drift,
        drift_days=settings.drift_days, mispriced=settings.mispriced, follow_on=settings.follow_on)
    with atomic_path(root / SYNTHETIC_DIR / "transactions.parquet") as tmp:
        transactions.to_parquet(tmp, index=False)
    write_json(root / SYNTHETIC_DIR / "ground_truth.json", truth)
