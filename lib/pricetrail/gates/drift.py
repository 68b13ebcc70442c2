"""The drift gate: does the product's recent data still look like the data its served model learned from?

Evidently 0.7 runs fully offline. The reference is the training data of the product's promoted model when it
has one, otherwise an older window of history; the current data is the most recent window. A time index (the
invoice date, year, month) always differs between windows, so only the columns named in params are monitored.

Evidently is imported by the check itself (3 s of a process's start-up): a result kept for exactly the frames it
is given (:func:`frame_key`) is reused without it (see :func:`save_kept_result`).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pricetrail.project.config import settings_from_params
from pricetrail.project.files import atomic_path, read_finite_json, write_json

log = logging.getLogger(__name__)

TIME_COLUMNS = frozenset({"invoice_date", "invoice_no", "year", "month", "month_sin", "month_cos"})


class DriftError(ValueError):
    """The drift check cannot be run as configured."""


# Jensen-Shannon distances lie in [0, 1]; a normed Wasserstein distance can exceed 1, but not by this much.
MAX_THRESHOLD = 10.0


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class DriftSettings:
    """``params.yaml: data_drift_check``."""

    numerical_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    num_method: str = "wasserstein"
    cat_method: str = "jensenshannon"
    num_threshold: float = 0.3
    cat_threshold: float = 0.2
    drift_share: float = 0.5
    current_window_days: int = 60
    reference_window_days: int = 120
    min_rows_per_window: int = 30
    # What a detected drift does: "block" stops the product's chain (nothing new is promoted); "retrain" records
    # it and lets the chain go on, so the risk gate on the most recent data decides (see README: Drift lock-out).
    on_drift: str = "block"

    def __post_init__(self) -> None:
        monitored = self.numerical_columns + self.categorical_columns
        if not monitored:
            raise DriftError("data_drift_check monitors no columns: list numerical_columns or categorical_columns")
        timeish = sorted(set(monitored) & TIME_COLUMNS)
        if timeish:
            raise DriftError(f"data_drift_check must not monitor time columns {timeish}: they always differ "
                             "between windows")
        if not _number(self.drift_share) or not 0 < self.drift_share <= 1:
            raise DriftError(f"data_drift_check.drift_share={self.drift_share!r} must be a number in (0, 1]")
        # A NaN or infinite threshold would switch the gate off while it still reports "no drift".
        for name in ("num_threshold", "cat_threshold"):
            value = getattr(self, name)
            if not _number(value) or not 0 < value <= MAX_THRESHOLD:
                raise DriftError(f"data_drift_check.{name}={value!r} is not accepted: a finite number in "
                                 f"(0, {MAX_THRESHOLD:g}]")
        if self.on_drift not in ("block", "retrain"):
            raise DriftError(f"data_drift_check.on_drift={self.on_drift!r} is not accepted: use block or retrain")
        for name in ("current_window_days", "reference_window_days", "min_rows_per_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DriftError(f"data_drift_check.{name}={value!r} must be a whole number >= 1")

    @classmethod
    def from_params(cls, drift: Mapping[str, Any]) -> DriftSettings:
        return settings_from_params(cls, "data_drift_check", drift, error=DriftError,
                                    list_fields=("numerical_columns", "categorical_columns"))

    @property
    def monitored(self) -> list[str]:
        return [*self.numerical_columns, *self.categorical_columns]


@dataclass
class DriftResult:
    drift_detected: bool
    drifted_columns: list[str]
    drifted_share: float
    per_column: dict[str, dict[str, Any]]
    reference: dict[str, Any] = field(default_factory=dict)
    current: dict[str, Any] = field(default_factory=dict)
    snapshot: Any = None  # evidently Snapshot, for the HTML report
    report_html: bytes | None = None  # the report of a kept result (no snapshot)

    def to_metrics(self, settings: DriftSettings) -> dict[str, Any]:
        return {
            "drift_detected": self.drift_detected,
            "drifted_columns": self.drifted_columns,
            "drifted_count": len(self.drifted_columns),
            "drifted_share": self.drifted_share,
            "drift_share_threshold": settings.drift_share,
            "monitored_columns": settings.monitored,
            "per_column": self.per_column,
            "reference": self.reference,
            "current": self.current,
        }

    def reason(self) -> str:
        return (f"{len(self.drifted_columns)} of {len(self.per_column)} monitored columns drifted "
                f"({', '.join(self.drifted_columns)})")


def bootstrap_windows(features: pd.DataFrame, settings: DriftSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, current) for a product with no promoted model: an older window against the latest one.

    The windows are in days (the last ``current_window_days``, then the ``reference_window_days`` before them),
    each widened to hold at least ``min_rows_per_window`` lines where the product's history has them: a product
    sold in bursts can have 7 lines in its reference window and 200 in its year (the real 22241), and the ETL
    admitted it for those 200. The current window is widened back first, but never into the lines the reference
    needs; with fewer than twice the minimum in all, the check refuses the product, naming both numbers."""
    ordered = _by_date(features)
    dates = pd.to_datetime(ordered["invoice_date"])
    total, least = len(ordered), settings.min_rows_per_window
    if total < 2 * least:
        raise DriftError(f"the product has {total} clean lines; the drift check compares two windows of at least "
                         f"data_drift_check.min_rows_per_window={least} lines each, so it needs {2 * least}")
    end = dates.max().normalize() + pd.Timedelta(days=1)
    current_start = end - pd.Timedelta(days=settings.current_window_days)
    current_rows = min(max(int((dates >= current_start).sum()), least), total - least)
    boundary = total - current_rows
    # The reference's days end where the current window's begin, or at its first line once widened back.
    reference_start = min(current_start, dates.iloc[boundary].normalize()) - pd.Timedelta(
        days=settings.reference_window_days)
    reference_rows = min(max(int((dates.iloc[:boundary] >= reference_start).sum()), least), boundary)
    return ordered.iloc[boundary - reference_rows:boundary], ordered.iloc[boundary:]


def current_window(features: pd.DataFrame, settings: DriftSettings) -> pd.DataFrame:
    """The latest ``current_window_days``, widened back to ``min_rows_per_window`` lines where there are that
    many (what is compared with a served model's training rows)."""
    ordered = _by_date(features)
    dates = pd.to_datetime(ordered["invoice_date"])
    start = dates.max().normalize() + pd.Timedelta(days=1) - pd.Timedelta(days=settings.current_window_days)
    rows = min(max(int((dates >= start).sum()), settings.min_rows_per_window), len(ordered))
    return ordered.iloc[len(ordered) - rows:]


def _by_date(features: pd.DataFrame) -> pd.DataFrame:
    """The lines in time order (the ETL writes them so; a stable sort keeps them as they are)."""
    if features.empty:
        raise DriftError("the product has no lines to check for drift")
    dates = pd.to_datetime(features["invoice_date"])
    return features if dates.is_monotonic_increasing else features.iloc[
        dates.argsort(kind="stable").to_numpy()]


def _describe(frame: pd.DataFrame, source: str) -> dict[str, Any]:
    dates = pd.to_datetime(frame["invoice_date"]) if "invoice_date" in frame else None
    return {
        "source": source,
        "rows": len(frame),
        "first_date": str(dates.min().date()) if dates is not None and len(frame) else None,
        "last_date": str(dates.max().date()) if dates is not None and len(frame) else None,
    }


def _checked(frame: pd.DataFrame, name: str, settings: DriftSettings) -> None:
    missing = [column for column in settings.monitored if column not in frame.columns]
    if missing:
        raise DriftError(f"monitored columns {missing} are not in the {name} data; it has {list(frame.columns)}")
    if len(frame) < settings.min_rows_per_window:
        raise DriftError(f"the {name} window has {len(frame)} rows, fewer than "
                         f"data_drift_check.min_rows_per_window={settings.min_rows_per_window}; "
                         "widen the windows or lower the minimum")


def _monitored(frame: pd.DataFrame, settings: DriftSettings) -> pd.DataFrame:
    """Exactly what Evidently is given of ``frame``."""
    data = frame[settings.monitored].copy()
    for column in settings.categorical_columns:
        data[column] = data[column].astype("str")  # booleans and codes compared as categories
    for column in settings.numerical_columns:
        data[column] = data[column].astype("float64")
    return data.reset_index(drop=True)


def frame_key(frame: pd.DataFrame, settings: DriftSettings, name: str = "reference") -> str:
    """A hash of what Evidently is given of ``frame`` (its monitored columns, cast as the check casts them, in
    order) and of the settings: equal keys, equal inputs to the check."""
    _checked(frame, name, settings)
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode())
    digest.update(pd.util.hash_pandas_object(_monitored(frame, settings), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def check_drift(reference: pd.DataFrame, current: pd.DataFrame, settings: DriftSettings, *,
                reference_source: str) -> DriftResult:
    """Compare ``current`` against ``reference`` on the monitored columns."""
    for name, frame in (("reference", reference), ("current", current)):
        _checked(frame, name, settings)
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=list(settings.numerical_columns),
                                categorical_columns=list(settings.categorical_columns))

    def dataset(frame: pd.DataFrame) -> Dataset:
        return Dataset.from_pandas(_monitored(frame, settings), data_definition=definition)

    report = Report([DataDriftPreset(num_method=settings.num_method, cat_method=settings.cat_method,
                                     num_threshold=settings.num_threshold, cat_threshold=settings.cat_threshold,
                                     drift_share=settings.drift_share)], include_tests=True)
    snapshot = report.run(dataset(current), dataset(reference))  # evidently 0.7: current first
    per_column = _per_column(snapshot.dict(), settings)
    drifted = [column for column, info in per_column.items() if info["drifted"]]
    share = len(drifted) / len(per_column)
    return DriftResult(
        drift_detected=share >= settings.drift_share,
        drifted_columns=drifted,
        drifted_share=share,
        per_column=per_column,
        reference=_describe(reference, reference_source),
        current=_describe(current, "most recent window"),
        snapshot=snapshot,
    )


def _per_column(snapshot: dict[str, Any], settings: DriftSettings) -> dict[str, dict[str, Any]]:
    """Score, method, threshold and verdict per monitored column, from the snapshot's ValueDrift tests."""
    scores = {}
    for metric in snapshot["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            scores[config["column"]] = (float(metric["value"]), config["method"], config.get("threshold"))
    statuses = {}
    for test in snapshot.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift"):
            statuses[params["column"]] = test["status"]
    result = {}
    for column in settings.monitored:
        if column not in scores or column not in statuses:
            raise DriftError(f"evidently returned no drift score for column {column!r}")
        score, method, threshold = scores[column]
        result[column] = {"score": score, "method": method, "threshold": threshold,
                          "drifted": statuses[column] != "SUCCESS"}
    return result


def save_report(result: DriftResult, path: Path) -> None:
    """Write the HTML report atomically; a failed export leaves the previous report and no temporary file."""
    if result.snapshot is None:
        if result.report_html is None:
            raise DriftError("the drift result has no report to write")
        with atomic_path(path) as tmp:
            tmp.write_bytes(result.report_html)
        return
    with atomic_path(path) as tmp:
        html = tmp.with_suffix(".html")  # Evidently picks the format from the suffix
        try:
            result.snapshot.save_html(str(html))
            html.replace(tmp)
        finally:
            html.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- a result kept for later

KEPT_FORMAT = 1
KEPT_REPORT = "report.html.gz"


def save_kept_result(folder: Path, key: str, current_key: str, result: DriftResult, settings: DriftSettings) -> None:
    """Keep ``result`` (of the frames whose keys are ``key`` and ``current_key``) and its report, for a later
    check of the same frames: the drift gate's re-check once this week's model is served compares the same
    current window with its training rows, which the gate checked already, with Evidently loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    # Compressed (Evidently's report is ~4 MB of mostly script, kept for every product every week); written
    # first and named by its hash in result.json, so a kill between the two files leaves a mismatch, not a
    # report paired with another result.
    html = _report_bytes(result)
    packed = gzip.compress(html, mtime=0)
    with atomic_path(folder / KEPT_REPORT) as tmp:
        tmp.write_bytes(packed)
    write_json(folder / "result.json", {"format": KEPT_FORMAT, "reference_key": key, "current_key": current_key,
                                        "report_md5": hashlib.md5(packed, usedforsecurity=False).hexdigest(),
                                        "metrics": result.to_metrics(settings)})


def clear_kept_result(folder: Path, why: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "result.json", {"format": KEPT_FORMAT, "none": why})
    (folder / KEPT_REPORT).unlink(missing_ok=True)


def _report_bytes(result: DriftResult) -> bytes:
    if result.snapshot is None:
        if result.report_html is None:
            raise DriftError("the drift result has no report to keep")
        return result.report_html
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.html"
        result.snapshot.save_html(str(path))
        return path.read_bytes()


def kept_result(folder: Path, key: str, current_key: str, source: str) -> DriftResult | None:
    """The kept result for exactly these frames (labelled with ``source``), or None: nothing kept, other frames,
    or an unreadable file (then the check runs, as it would have)."""
    path = folder / "result.json"
    if not path.is_file():
        return None
    try:
        kept = read_finite_json(path)
        if kept.get("format") != KEPT_FORMAT or "none" in kept:
            return None
        if kept["reference_key"] != key or kept["current_key"] != current_key:
            return None
        metrics = kept["metrics"]
        packed = (folder / KEPT_REPORT).read_bytes()
        if hashlib.md5(packed, usedforsecurity=False).hexdigest() != kept["report_md5"]:
            raise ValueError(f"{KEPT_REPORT} is not the report result.json names")
        result = DriftResult(drift_detected=bool(metrics["drift_detected"]),
                             drifted_columns=[str(c) for c in metrics["drifted_columns"]],
                             drifted_share=float(metrics["drifted_share"]), per_column=dict(metrics["per_column"]),
                             reference={**metrics["reference"], "source": source}, current=dict(metrics["current"]),
                             report_html=gzip.decompress(packed))
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("ignoring the kept drift result in %s (%s): the check runs instead", folder, error)
        return None
    return result
