"""Parquet files read through DuckDB: the router reads a product's history without pyarrow (which would
double its image), into the same frame pandas' own reader gives (checked in tests/data/test_frames.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd


def read_parquet(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The file's rows as a DataFrame (only ``columns``, in that order, when given); raises ValueError naming the
    file when it is missing, is not Parquet or lacks a column."""
    selected = "*" if columns is None else ", ".join('"' + name.replace('"', '""') + '"' for name in columns)
    try:
        with duckdb.connect() as connection:
            return connection.execute(f"SELECT {selected} FROM read_parquet(?)", [str(path)]).df()
    except duckdb.Error as error:
        raise ValueError(f"{path} cannot be read as Parquet: {error}") from error
