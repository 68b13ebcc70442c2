"""Stage generate_synthetic: seeded UCI-schema transactions with known demand curves (the default input)."""

from __future__ import annotations

from pathlib import Path

from pricetrail.project import stage
from pricetrail.project.config import load_params, load_stockcodes, section
from pricetrail.project.files import atomic_path, write_json
from pricetrail.project.paths import SYNTHETIC_DIR
from pricetrail.synthetic import generate_transactions


def main(root: Path) -> None:
    params = load_params(root)
    settings = section(params, "synthetic")
    transactions, truth = generate_transactions(
        load_stockcodes(root),
        seed=int(section(params, "base")["seed"]),
        start=str(settings["start"]),
        end=str(settings["end"]),
        lines_per_day=float(settings["lines_per_day"]),
        filler_products=int(settings["filler_products"]),
        drift={str(code): float(strength) for code, strength in (settings.get("drift") or {}).items()},
        drift_days=int(settings["drift_days"]),
        mispriced={str(code): float(offset) for code, offset in (settings.get("mispriced") or {}).items()},
        follow_on=settings.get("follow_on") or {},
    )
    with atomic_path(root / SYNTHETIC_DIR / "transactions.parquet") as tmp:
        transactions.to_parquet(tmp, index=False)
    write_json(root / SYNTHETIC_DIR / "ground_truth.json", truth)


if __name__ == "__main__":
    stage.run("generate_synthetic", main)
