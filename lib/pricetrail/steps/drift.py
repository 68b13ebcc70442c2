"""Stage ``data_drift_check@<code>``: the drift gate, against the record ``drift_reference@<code>`` keeps.

The gate always writes its report and metrics. On drift, with ``on_drift: block`` it fails without writing the
gate file, so the product's chain stops there; with ``on_drift: retrain`` it records the drift and lets the chain
go on (the risk gate on recent data decides).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from pricetrail.gates.drift import DriftSettings, bootstrap_windows, check_drift, current_window, save_report
from pricetrail.project.config import load_params, section
from pricetrail.project.files import file_md5, write_json
from pricetrail.project.paths import ProductPaths
from pricetrail.project.stage import GateFailed
from pricetrail.registry import drift_reference as references


def data_drift_check(root: Path, code: str) -> None:
    paths = ProductPaths(code)
    settings = DriftSettings.from_params(section(load_params(root), "data_drift_check"))
    features = pd.read_parquet(root / paths.lines)
    features_md5 = file_md5(root / paths.lines)
    # The product's own registry record (its only registry dependency) says what to compare against.
    served_reference = references.drift_reference(root, code)
    if served_reference is None:
        reference, current = bootstrap_windows(features, settings)
        source = "older window of history (no served model yet)"
    else:
        reference, source = served_reference
        current = current_window(features, settings)
    result = check_drift(reference, current, settings, reference_source=source)
    save_report(result, root / paths.drift_report)
    write_json(root / paths.drift_metrics, {**result.to_metrics(settings), "on_drift": settings.on_drift,
                                            "features_md5": features_md5})
    if result.drift_detected:
        message = f"{code}: {result.reason()} against the {source}; see {paths.drift_report}"
        if settings.on_drift == "block":
            raise GateFailed(message)
        sys.stderr.write(f"GATE WARNING data_drift_check@{code}: {message}; continuing (on_drift: retrain)\n")
    # The gate file depends only on the data that passed, so re-checking against a newly promoted model's
    # reference rewrites the same bytes and nothing downstream reruns.
    write_json(root / paths.drift_gate, {"stockcode": code, "passed": True, "features_md5": features_md5})
