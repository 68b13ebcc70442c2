"""What a price server needs beyond the pipeline: its own configuration, the artifact sources (the local DVC
cache, an S3 remote), loading a promoted model, and its status and lineage answers.

Nothing here imports DVC, Prefect, Optuna, Evidently or SHAP: a Lambda image carries only the serving stack.
"""
