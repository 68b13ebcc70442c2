"""Stage inference_primary_model@<code>: test-set predictions and metrics, SHAP values and their summary."""

from pricetrail.project.stage import run_product_stage
from pricetrail.steps.inference import inference_primary_model

if __name__ == "__main__":
    run_product_stage("inference_primary_model", __doc__, inference_primary_model)
