"""Stage data_drift_check@<code>: the drift gate. On drift with ``on_drift: block`` it fails and the product's chain
stops here; with ``on_drift: retrain`` the chain goes on and the risk gate decides."""

from pricetrail.project.stage import run_product_stage
from pricetrail.steps.drift import data_drift_check

if __name__ == "__main__":
    run_product_stage("data_drift_check", __doc__, data_drift_check)
