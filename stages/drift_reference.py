"""Stage drift_reference@<code>: the product's drift reference record, created when it is missing (see
pricetrail.steps.drift.drift_reference)."""

from pricetrail.project.stage import run_product_stage
from pricetrail.steps.drift_reference import drift_reference

if __name__ == "__main__":
    run_product_stage("drift_reference", __doc__, drift_reference)
