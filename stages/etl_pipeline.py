"""Stage etl_pipeline@<code>: one product's cleaned lines and leakage-free features (DuckDB)."""

from pricetrail.project.stage import run_product_stage
from pricetrail.steps.etl import etl_pipeline

if __name__ == "__main__":
    run_product_stage("etl_pipeline", __doc__, etl_pipeline)
