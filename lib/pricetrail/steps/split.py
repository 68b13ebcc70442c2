"""Stage ``split_products``: each listed product's lines in its own Parquet, every key checked first."""

from __future__ import annotations

from pathlib import Path

from pricetrail.data.ingest import split_by_product
from pricetrail.project.config import load_stockcodes
from pricetrail.project.paths import INTERIM_PRODUCTS, INTERIM_TRANSACTIONS


def split_products(root: Path) -> None:
    """Every stockcodes.yaml key checked, then each listed product's lines in its own Parquet."""
    codes = list(load_stockcodes(root))  # raises naming the first bad key
    split_by_product(root / INTERIM_TRANSACTIONS, root / INTERIM_PRODUCTS, codes)
