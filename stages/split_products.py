"""Stage split_products: every stockcodes.yaml key checked, then each listed product's lines in its own Parquet.

Every etl_pipeline@<code> depends on its own file here (see dvc.yaml), so this stage runs before any per-product
stage: a key that is not letters and digits is refused before DVC runs a command or deletes an output built from
it, and adding a product re-runs only that product's chain.
"""

from pricetrail.project.stage import run
from pricetrail.steps.split import split_products

if __name__ == "__main__":
    run("split_products", split_products)
