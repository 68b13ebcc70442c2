"""Stage ``etl_pipeline@<code>``: one product's cleaned lines and leakage-free features (DuckDB). A product whose
chronological splits could not reach ``preprocess.min_split_rows`` is refused here, the first stage that knows,
with the number it lacks (and params where the ETL and the splits disagree are refused before any work)."""

from __future__ import annotations

from pathlib import Path

from pricetrail.data.etl import CleaningRules, ETLError, run_etl
from pricetrail.data.preprocess import (
    PreprocessSettings,
    check_thresholds_agree,
    line_days,
    rows_needed,
    small_splits,
    split_sizes,
)
from pricetrail.project.config import load_params, section
from pricetrail.project.files import atomic_path, write_json
from pricetrail.project.paths import ProductPaths


def etl_pipeline(root: Path, code: str) -> None:
    paths = ProductPaths(code)
    params = load_params(root)
    rules = CleaningRules.from_params(section(params, "etl"))
    splitting = PreprocessSettings.from_params(section(params, "preprocess"))
    check_thresholds_agree(rules.min_rows, splitting)
    features, daily, report = run_etl(root / paths.interim_lines, code, rules)
    small = small_splits(split_sizes(line_days(features["invoice_date"]), splitting), splitting)
    if small:
        raise ETLError(f"stockcode {code} has {len(features)} clean lines over {len(daily)} trading days: its "
                       f"{' and '.join(f'{name} split would hold {rows}' for name, rows in small.items())} lines, "
                       f"fewer than preprocess.min_split_rows={splitting.min_split_rows} (splits hold whole trading "
                       f"days; about {rows_needed(splitting)} lines spread over more days are needed)")
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
