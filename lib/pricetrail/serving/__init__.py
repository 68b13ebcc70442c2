"""What a price server needs beyond the pipeline: its own configuration, artifact sources, and a fast price grid.

Nothing here imports DVC, Prefect, Optuna, Evidently or SHAP: a Lambda image carries only the serving stack.
"""
