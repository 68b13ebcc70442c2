"""The demand model: the price-response network, its training, tuning and closed-form refits, the order rate,
the family of plausible price curves, the checkpoint and the loaded bundle, metrics and SHAP explanations."""
