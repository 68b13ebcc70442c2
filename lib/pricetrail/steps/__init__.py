"""The pipeline's steps, one module per DVC stage of ``dvc.yaml``.

A step reads exactly the stage's declared dependencies, calls the pure library functions of ``data``,
``modeling``, ``gates`` and ``registry``, and writes exactly the stage's declared outputs. The scripts under
``stages/`` only hand a step to :func:`pricetrail.project.stage.run_product_stage` (or ``stage.run``), so each
stage process imports only what its step needs.
"""
