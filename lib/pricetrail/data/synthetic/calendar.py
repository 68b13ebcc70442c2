"""The generator's calendar: trading days (no Saturdays, a Christmas break) and the seasonal bump of demand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

_YEAR_DAYS = 365.25

# Seasonality: a bump around mid-November on top of a flat year (the real data is flat Jan-Aug, then rises).
SEASON_PEAK_DOY = 320.0
SEASON_WIDTH_DAYS = 30.0
LINES_SEASON_AMPLITUDE = 1.1  # November has ~2x the lines of the flat months


@dataclass(frozen=True)
class Calendar:
    start: date
    end: date
    n_days: int
    doy: np.ndarray  # day of year of each day
    trading: np.ndarray  # bool per day
    drift_start: int  # offset of the first day of the drift window


def make_calendar(start: date, end: date, drift_days: int) -> Calendar:
    if end < start:
        raise ValueError(f"end {end.isoformat()!r} is before start {start.isoformat()!r}: end must be on or "
                         "after start")
    days = pd.date_range(start, end, freq="D")
    # No Saturdays (the real data has none) and the Christmas break (no sales 24 Dec - 3 Jan in the real data).
    christmas = ((days.month == 12) & (days.day >= 24)) | ((days.month == 1) & (days.day <= 3))
    trading = np.asarray((days.dayofweek != 5) & ~christmas)
    if not trading.any():
        raise ValueError(f"{start.isoformat()}..{end.isoformat()} holds no trading day (Saturdays and "
                         "24 Dec - 3 Jan are closed): use a longer period")
    n_days = len(days)
    return Calendar(start=start, end=end, n_days=n_days, doy=np.asarray(days.dayofyear, dtype=float),
                     trading=trading, drift_start=max(0, n_days - drift_days))


def day_str(cal: Calendar, offset: int) -> str:
    return (cal.start + timedelta(days=int(offset))).isoformat()


def season_bump(doy: np.ndarray | float) -> np.ndarray:
    distance = np.abs(np.asarray(doy, dtype=float) - SEASON_PEAK_DOY)
    distance = np.minimum(distance, _YEAR_DAYS - distance)
    return np.exp(-0.5 * (distance / SEASON_WIDTH_DAYS) ** 2)


def lines_season(doy: np.ndarray) -> np.ndarray:
    """Multiplier on the number of lines, averaging 1 over a year so lines_per_day stays the yearly mean."""
    mean_bump = float(season_bump(np.arange(1, 366)).mean())
    return (1 + LINES_SEASON_AMPLITUDE * season_bump(doy)) / (1 + LINES_SEASON_AMPLITUDE * mean_bump)
