"""Stage assess_model_risk@<code>: the risk and fairness gate. Writes one verdict per product; a model whose
verdict fails is never promoted."""

from pricetrail.project.stage import run_product_stage
from pricetrail.steps.assess import assess_model_risk

if __name__ == "__main__":
    run_product_stage("assess_model_risk", __doc__, assess_model_risk)
