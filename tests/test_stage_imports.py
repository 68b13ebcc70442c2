"""Each stage's step pulls in only the heavy libraries it runs: a stage process pays their import time on every
product, so one imported by mistake (Evidently in drift_reference once) costs seconds per chain."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "evidently", "shap", "optuna", "prefect", "dvc", "sklearn", "skops")
# step module -> the heavy libraries it runs. Only preprocess fits the transformer (scikit-learn); every later
# stage applies its saved numbers with numpy; the risk gate prices the exported model (serving.json) without torch.
# SHAP and Evidently import scikit-learn themselves. skops is never imported (records from before the JSON format).
RUNS = {
    "synthetic": set(), "ingest": set(), "split": set(), "etl": set(), "drift_reference": set(),
    "drift": {"evidently", "sklearn"}, "preprocess": set(), "tune": {"torch", "optuna"},
    "inference": {"torch", "shap", "sklearn"},
    "assess": set(),
}


@pytest.mark.parametrize("step", sorted(RUNS))
def test_a_step_imports_only_the_heavy_libraries_it_runs(step: str) -> None:
    script = (f"import importlib, json, sys; importlib.import_module('pricetrail.steps.{step}'); "
              f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    imported = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert imported <= RUNS[step], f"steps.{step} imports {sorted(imported - RUNS[step])} without running them"
