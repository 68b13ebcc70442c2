"""Stage preprocess@<code>: chronological splits and the fitted column transformer, saved as its numbers (JSON)."""

from pricetrail.project.stage import run_product_stage
from pricetrail.steps.preprocess import preprocess

if __name__ == "__main__":
    run_product_stage("preprocess", __doc__, preprocess)
