"""Stage ``data_drift_check@<code>``: the drift gate, against the record ``drift_reference@<code>`` keeps.

The gate always writes its report and metrics. On drift, with ``on_drift: block`` it fails without writing the
gate file, so the product's chain stops there; with ``on_drift: retrain`` it records the drift and lets the chain
go on (the risk gate on recent data decides).

Promoting this week's model makes its training rows the reference, and the gate is checked again (so the reports
describe the served model). Those rows are the preprocess stage's training split of these same features, so the
gate checks them now too, while Evidently is loaded, and keeps the result (``data/gates/<code>/recheck``, a
persistent output); the re-check finds it under the hash of exactly the frames it compares and starts no Evidently.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd

from pricetrail.data.preprocess import PreprocessError, PreprocessSettings, chronological_split
from pricetrail.gates.drift import (
    DriftError,
    DriftResult,
    DriftSettings,
    bootstrap_windows,
    check_drift,
    clear_kept_result,
    current_window,
    frame_key,
    kept_result,
    save_kept_result,
    save_report,
)
from pricetrail.project.config import load_params, section
from pricetrail.project.files import file_md5, write_json
from pricetrail.project.paths import ProductPaths
from pricetrail.project.stage import GateFailed
from pricetrail.registry import drift_reference as references

log = logging.getLogger(__name__)

REUSED = "the result checked ahead for exactly these frames is reused (Evidently not started)"
CANDIDATE_SOURCE = "training data of this week's model (checked ahead for its promotion)"


def data_drift_check(root: Path, code: str) -> None:
    paths = ProductPaths(code)
    params = load_params(root)
    settings = DriftSettings.from_params(section(params, "data_drift_check"))
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
    reference_key, current_key = frame_key(reference, settings), frame_key(current, settings, "current")
    kept = root / paths.drift_recheck
    result = kept_result(kept, reference_key, current_key, source)
    if result is not None:
        log.info("%s: %s", code, REUSED)
    else:
        result = check_drift(reference, current, settings, reference_source=source)
    save_report(result, root / paths.drift_report)
    _check_ahead(kept, features, current_key, settings, PreprocessSettings.from_params(section(params, "preprocess")),
                 reference_key, result)
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


def _check_ahead(folder: Path, features: pd.DataFrame, current_key: str, settings: DriftSettings,
                 splitting: PreprocessSettings, reference_key: str, result: DriftResult) -> None:
    """Keep the gate's result against the training rows this week's model will have (see the module doc), for the
    current window the re-check will compare with them: the one a served model's gate uses, which differs from a
    first product's while its bootstrap windows share out few lines."""
    try:
        candidate = chronological_split(features, splitting)["train"]
        candidate_key = frame_key(candidate, settings)
        recheck_current = current_window(features, settings)
        recheck_current_key = frame_key(recheck_current, settings, "current")
    except (PreprocessError, DriftError) as error:  # preprocess refuses it too: no model, no re-check
        clear_kept_result(folder, str(error))
        return
    if (candidate_key, recheck_current_key) != (reference_key, current_key):
        result = check_drift(candidate, recheck_current, settings, reference_source=CANDIDATE_SOURCE)
    save_kept_result(folder, candidate_key, recheck_current_key, result, settings)
