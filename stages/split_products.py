"""Stage split_products: every stockcodes.yaml key checked, then each listed product's lines in its own Parquet.

Every etl_pipeline@<code> depends on its own file here (see dvc.yaml), so this stage runs before any per-product
stage: a key that is not letters and digits is refused before DVC runs a command or deletes an output built from
it, and adding a product re-runs only that product's chain.
"""

from __future__ import annotations

from pathlib import Path

from pricetrail.data.ingest import split_by_product
from pricetrail.project import stage
from pricetrail.project.config import load_stockcodes
from pricetrail.project.paths import INTERIM_PRODUCTS, INTERIM_TRANSACTIONS


def main(root: Path) -> None:
    codes = list(load_stockcodes(root))  # raises naming the first bad key
    split_by_product(root / INTERIM_TRANSACTIONS, root / INTERIM_PRODUCTS, codes)


if __name__ == "__main__":
    stage.run("split_products", main)
