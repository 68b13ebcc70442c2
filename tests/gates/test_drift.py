"""Drift gate: passes on same-distribution data, fails on constructed drift, refuses bad settings."""

from __future__ import annotations

import errno
import gzip
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pricetrail.gates.drift import (
    DriftError,
    DriftSettings,
    bootstrap_windows,
    check_drift,
    current_window,
    frame_key,
    kept_result,
    save_kept_result,
    save_report,
)

SETTINGS = DriftSettings(numerical_columns=("unit_price", "log_quantity"),
                         categorical_columns=("is_registered", "country"))


def window(seed: int, n: int, *, price: float = 2.95, quantity: float = 6.0, uk_share: float = 0.9,
           start: str = "2011-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "invoice_date": pd.Timestamp(start) + pd.to_timedelta(rng.uniform(0, 60, n), unit="D"),
        "unit_price": rng.choice([price * 0.85, price, price], n),
        "log_quantity": np.log1p(rng.poisson(quantity, n)),
        "is_registered": rng.random(n) < 0.75,
        "country": np.where(rng.random(n) < uk_share, "United Kingdom", "Germany"),
    })


def test_same_distribution_passes() -> None:
    result = check_drift(window(1, 800), window(2, 400), SETTINGS, reference_source="test")
    assert not result.drift_detected, result.per_column
    metrics = result.to_metrics(SETTINGS)
    assert metrics["drifted_count"] == 0 and metrics["reference"]["rows"] == 800
    assert set(metrics["per_column"]) == {"unit_price", "log_quantity", "is_registered", "country"}


def test_constructed_drift_fails_and_names_the_columns() -> None:
    drifted = window(2, 400, price=4.5, quantity=20.0, uk_share=0.3)
    result = check_drift(window(1, 800), drifted, SETTINGS, reference_source="test")
    assert result.drift_detected
    assert {"unit_price", "log_quantity", "country"} <= set(result.drifted_columns)
    assert "drifted (" in result.reason() and "unit_price" in result.reason()


def test_one_drifted_column_is_below_the_share() -> None:
    result = check_drift(window(1, 800), window(2, 400, price=5.0), SETTINGS, reference_source="test")
    assert result.drifted_columns == ["unit_price"] and not result.drift_detected


def test_bootstrap_windows_are_the_latest_days_and_the_days_before() -> None:
    """One line a day for 200 days: the current window is the last 60 days, the reference the 60 before."""
    frame = window(1, 200).assign(invoice_date=pd.date_range("2011-01-01 10:00", periods=200, freq="D"))
    settings = DriftSettings(numerical_columns=("unit_price",), categorical_columns=(), current_window_days=60,
                             reference_window_days=60)
    reference, current = bootstrap_windows(frame, settings)
    assert len(current) == 60 and len(reference) == 60
    assert current["invoice_date"].min() == pd.Timestamp("2011-05-21 10:00")
    assert current["invoice_date"].max() == pd.Timestamp("2011-07-19 10:00")
    assert reference["invoice_date"].min() == pd.Timestamp("2011-03-22 10:00")
    assert reference["invoice_date"].max() == pd.Timestamp("2011-05-20 10:00")


def bursts(days: list[tuple[str, int]]) -> pd.DataFrame:
    """``count`` lines on each listed day, at 10:00, 10:01, ..."""
    stamps = [pd.Timestamp(f"{day} 10:00") + pd.Timedelta(minutes=i) for day, count in days for i in range(count)]
    return window(1, len(stamps)).assign(invoice_date=stamps)


def test_bootstrap_windows_widen_to_the_minimum_rows() -> None:
    """The real 22241 had 7 lines in its reference window and failed the gate with an error although its year
    held 200: each window is widened back to min_rows_per_window lines."""
    frame = bursts([("2011-01-10", 100), ("2011-04-02", 3), ("2011-05-02", 4), ("2011-06-20", 10),
                    ("2011-07-15", 10)])
    settings = DriftSettings(numerical_columns=("unit_price",), categorical_columns=(), current_window_days=60,
                             reference_window_days=60, min_rows_per_window=30)
    reference, current = bootstrap_windows(frame, settings)
    # 20 lines in the last 60 days: widened back to 30, which takes the 7 lines of April and May and 3 of the
    # burst of 2011-01-10; the reference is the rest of that day (the 60 days before it hold nothing).
    assert len(current) == 30 and len(reference) == 97
    assert current["invoice_date"].is_monotonic_increasing and reference["invoice_date"].max() < current[
        "invoice_date"].min()
    assert current["invoice_date"].max() == frame["invoice_date"].max()
    # The windows by days where they hold enough: nothing widened.
    plenty = bursts([("2011-01-10", 100), ("2011-03-01", 40), ("2011-06-20", 40)])
    reference, current = bootstrap_windows(plenty, settings)
    assert len(current) == 40 and len(reference) == 40


def test_bootstrap_windows_leave_the_reference_its_lines() -> None:
    """Most lines in the last days: the current window gives back what the reference needs."""
    frame = bursts([("2011-01-10", 20), ("2011-07-01", 180)])
    settings = DriftSettings(numerical_columns=("unit_price",), categorical_columns=(), min_rows_per_window=30)
    reference, current = bootstrap_windows(frame, settings)
    assert len(current) == 170 and len(reference) == 30  # 180 lines in its days: 10 go to the reference
    assert reference["invoice_date"].tolist() == frame["invoice_date"].iloc[:30].tolist()


def test_bootstrap_windows_refuse_a_product_too_small_for_two_windows() -> None:
    settings = DriftSettings(numerical_columns=("unit_price",), categorical_columns=(), min_rows_per_window=30)
    with pytest.raises(DriftError, match=r"has 59 clean lines; .*min_rows_per_window=30 lines each, so it needs 60"):
        bootstrap_windows(bursts([("2011-01-10", 59)]), settings)


def test_the_current_window_against_a_served_model_widens_back_too() -> None:
    frame = bursts([("2011-01-10", 100), ("2011-07-15", 10)])
    settings = DriftSettings(numerical_columns=("unit_price",), categorical_columns=(), min_rows_per_window=30)
    current = current_window(frame, settings)
    assert len(current) == 30 and current["invoice_date"].max() == frame["invoice_date"].max()
    unsorted = frame.iloc[::-1]
    assert current_window(unsorted, settings)["invoice_date"].tolist() == current["invoice_date"].tolist()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"numerical_columns": [], "categorical_columns": []}, "monitors no columns"),
        ({"numerical_columns": ["invoice_date"]}, r"must not monitor time columns \['invoice_date'\]"),
        ({"numerical_columns": ["x"], "drift_share": 0}, "drift_share=0 must be a number in"),
        ({"numerical_columns": ["x"], "current_window_days": 0}, "current_window_days=0"),
        ({"numerical_columns": ["x"], "windows": 3}, r"unknown keys \['windows'\]"),
    ],
)
def test_settings_are_validated(values: dict, message: str) -> None:
    with pytest.raises(DriftError, match=message):
        DriftSettings.from_params(values)


def test_missing_column_and_small_window_are_clear_errors() -> None:
    with pytest.raises(DriftError, match=r"monitored columns \['country'\] are not in the current data"):
        check_drift(window(1, 100), window(2, 100).drop(columns="country"), SETTINGS, reference_source="t")
    with pytest.raises(DriftError, match="the current window has 5 rows"):
        check_drift(window(1, 100), window(2, 5), SETTINGS, reference_source="t")


class FailingSnapshot:
    """An Evidently snapshot whose HTML export writes half a file, then fails (a full disk, a template error)."""

    def save_html(self, filename: str) -> None:
        Path(filename).write_text("<html><body>half a rep", encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_report_save_leaves_no_temporary_file_and_keeps_the_old_report(tmp_path: Path) -> None:
    report = tmp_path / "reports" / "85123A" / "drift.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>previous report</html>", encoding="utf-8")
    with pytest.raises(OSError, match="No space left"):
        save_report(SimpleNamespace(snapshot=FailingSnapshot()), report)
    assert [path.name for path in report.parent.iterdir()] == ["drift.html"]
    assert report.read_text(encoding="utf-8") == "<html>previous report</html>"


def test_report_is_saved_as_html(tmp_path: Path) -> None:
    result = check_drift(window(1, 200), window(2, 200), SETTINGS, reference_source="test")
    report = tmp_path / "drift.html"
    save_report(result, report)
    assert "<html" in report.read_text(encoding="utf-8")[:1000].lower()
    assert [path.name for path in tmp_path.iterdir()] == ["drift.html"]


# ------------------------------------------------------------------ the result kept for the re-check after promotion


def test_the_frame_key_is_what_evidently_is_given() -> None:
    frame = window(1, 200)
    key = frame_key(frame, SETTINGS)
    shuffled_columns = frame[list(reversed(frame.columns))].assign(extra=1.0)
    shuffled_columns.index = shuffled_columns.index + 1000
    assert frame_key(shuffled_columns, SETTINGS) == key  # other columns and the index are not compared
    changed = frame.copy()
    changed.loc[5, "unit_price"] += 0.01
    assert frame_key(changed, SETTINGS) != key
    assert frame_key(frame.iloc[::-1], SETTINGS) != key  # the order is the frame's too
    assert frame_key(frame, DriftSettings(**{**SETTINGS.__dict__, "num_threshold": 0.31})) != key
    with pytest.raises(DriftError, match="current window has 29 rows"):
        frame_key(window(1, 29), SETTINGS, "current")


def test_a_kept_result_is_the_checks_own_for_exactly_the_same_frames(tmp_path: Path) -> None:
    reference, current = window(1, 300), window(2, 200, price=5.0)
    result = check_drift(reference, current, SETTINGS, reference_source="ahead")
    folder = tmp_path / "recheck"
    keys = frame_key(reference, SETTINGS), frame_key(current, SETTINGS, "current")
    save_kept_result(folder, *keys, result, SETTINGS)
    kept = kept_result(folder, *keys, "training data of served model abc")
    assert kept is not None and kept.snapshot is None
    fresh = check_drift(reference, current, SETTINGS, reference_source="training data of served model abc")
    assert kept.to_metrics(SETTINGS) == fresh.to_metrics(SETTINGS)
    save_report(kept, tmp_path / "kept.html")  # the report Evidently rendered for the check, as it was kept
    html = (tmp_path / "kept.html").read_bytes()
    assert html == gzip.decompress((folder / "report.html.gz").read_bytes())
    assert b"<!DOCTYPE html>" in html[:200] and b"unit_price" in html
    # A kill between the report and result.json: the report is not the one the result names, so it is not used.
    (folder / "report.html.gz").write_bytes(gzip.compress(b"<html>another</html>"))
    assert kept_result(folder, *keys, "x") is None
    assert kept_result(folder, keys[0], frame_key(window(3, 200), SETTINGS), "x") is None  # another window
    assert kept_result(folder, frame_key(window(3, 300), SETTINGS), keys[1], "x") is None  # another reference


@pytest.mark.parametrize("content", ["{", '{"format": 1, "none": "splits too small"}', '{"format": 2}',
                                     '{"format": 1, "reference_key": "k", "current_key": "c", "metrics": {}}'])
def test_a_missing_damaged_or_empty_kept_result_means_the_check_runs(tmp_path: Path, content: str) -> None:
    folder = tmp_path / "recheck"
    assert kept_result(folder, "k", "c", "x") is None
    folder.mkdir()
    (folder / "result.json").write_text(content)
    assert kept_result(folder, "k", "c", "x") is None


def test_the_result_checked_ahead_is_for_the_current_window_the_re_check_compares(tmp_path: Path) -> None:
    """A first product with few lines: its bootstrap current window gave lines back to the reference (40 of 50
    recent lines), while the re-check after promotion compares the served model's training rows with all 50. The
    result kept ahead is for those frames, so the re-check finds it (before, it found none and ran Evidently)."""
    from pricetrail.data.preprocess import PreprocessSettings, chronological_split
    from pricetrail.steps.drift import _check_ahead

    settings = DriftSettings(numerical_columns=("unit_price", "log_quantity"), categorical_columns=("country",),
                             current_window_days=60, reference_window_days=120, min_rows_per_window=30)
    splitting = PreprocessSettings(numerical_features=("unit_price",), categorical_features=("country",),
                                   min_split_rows=5)
    older = window(1, 20, start="2011-01-01")
    recent = window(2, 50, start="2011-10-01").assign(invoice_date=lambda f: pd.Timestamp("2011-10-01")
                                                      + pd.to_timedelta(np.arange(50), unit="D"))
    features = pd.concat([older, recent]).sort_values("invoice_date", kind="stable").reset_index(drop=True)
    reference, current = bootstrap_windows(features, settings)
    assert len(current) == 40 and len(current_window(features, settings)) == 50  # the two windows differ
    result = check_drift(reference, current, settings, reference_source="older window")
    _check_ahead(tmp_path, features, frame_key(current, settings, "current"), settings, splitting,
                 frame_key(reference, settings), result)
    candidate = chronological_split(features, splitting)["train"]
    recheck_current = current_window(features, settings)
    kept = kept_result(tmp_path, frame_key(candidate, settings), frame_key(recheck_current, settings, "current"),
                       "served")
    assert kept is not None
    fresh = check_drift(candidate, recheck_current, settings, reference_source="served")
    assert kept.drifted_columns == fresh.drifted_columns
    assert kept_result(tmp_path, frame_key(candidate, settings), frame_key(current, settings, "current"),
                       "served") is None
