"""Stage ``etl_pipeline@<code>``: one product's cleaned lines and leakage-free features (DuckDB)."""

from __future__ import annotations

from pathlib import Path

from pricetrail.data.etl import CleaningRules, run_etl
from pricetrail.project.config import load_params, section
from pricetrail.project.files import atomic_path, write_json
from pricetrail.project.paths import ProductPaths


def etl_pipeline(root: Path, code: str) -> None:
    paths = ProductPaths(code)
    rules = CleaningRules.from_params(section(load_params(root), "etl"))
    features, daily, report = run_etl(root / paths.interim_lines, code, rules)
    with atomic_path(root / paths.lines) as tmp:
        features.to_parquet(tmp, index=False)
    with atomic_path(root / paths.daily) as tmp:
        daily.to_parquet(tmp, index=False)
    dates = features["invoice_date"]
    write_json(root / paths.etl_metrics, {
        "cleaning": report.to_dict(),
        "rows": len(features),
        "trading_days": len(daily),
        "first_date": str(dates.min().date()),
        "last_date": str(dates.max().date()),
        "distinct_prices": int(features["unit_price"].nunique()),
    })
