"""Stage data_drift_check@<code>: the drift gate. Always writes the report and metrics. On drift, with
``on_drift: block`` it exits 1 without writing the gate file, so the product's chain stops here; with
``on_drift: retrain`` it records the drift and lets the chain go on (the risk gate on recent data decides)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from pricetrail import registry
from pricetrail.gates.drift import DriftSettings, bootstrap_windows, check_drift, current_window, save_report
from pricetrail.project import stage
from pricetrail.project.config import load_params, section
from pricetrail.project.files import file_md5, write_json
from pricetrail.project.paths import ProductPaths


def main(root: Path) -> None:
    paths = ProductPaths(CODE)
    settings = DriftSettings.from_params(section(load_params(root), "data_drift_check"))
    features = pd.read_parquet(root / paths.lines)
    features_md5 = file_md5(root / paths.lines)
    # The product's own registry record (its only registry dependency) says what to compare against.
    served_reference = registry.drift_reference(root, CODE)
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
        message = f"{CODE}: {result.reason()} against the {source}; see {paths.drift_report}"
        if settings.on_drift == "block":
            raise stage.GateFailed(message)
        sys.stderr.write(f"GATE WARNING data_drift_check@{CODE}: {message}; continuing (on_drift: retrain)\n")
    # The gate file depends only on the data that passed, so re-checking against a newly promoted model's
    # reference rewrites the same bytes and nothing downstream reruns.
    write_json(root / paths.drift_gate, {"stockcode": CODE, "passed": True, "features_md5": features_md5})


if __name__ == "__main__":
    CODE = stage.stockcode_argument(__doc__ or "")
    stage.run(f"data_drift_check@{CODE}", main)
