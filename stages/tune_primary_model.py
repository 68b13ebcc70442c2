"""Stage tune_primary_model@<code>: Optuna tunes the feed-forward demand model; the best one is saved as a
weights-only checkpoint with the records a served model carries."""

from pricetrail.project.stage import run_product_stage
from pricetrail.steps.tune import tune_primary_model

if __name__ == "__main__":
    run_product_stage("tune_primary_model", __doc__, tune_primary_model)
