"""The two gates: data drift (Evidently) before training, and the risk and fairness assessment of a candidate
model after it; each check is a named pass or fail with the value and the threshold behind it."""
