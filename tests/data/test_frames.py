"""Parquet read through DuckDB (the router has no pyarrow): the frame pandas' own reader gives."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pricetrail.data.frames import read_parquet


def test_duckdb_reads_the_frame_pandas_reads(tmp_path: Path) -> None:
    frame = pd.DataFrame({"day": pd.to_datetime(["2011-01-03", "2011-01-04"]), "quantity": [3, 4],
                          "country": ["France", "EIRE"], "is_registered": [True, False], "price": [2.95, float("nan")]})
    path = tmp_path / "daily.parquet"
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(read_parquet(path), pd.read_parquet(path))
    pd.testing.assert_frame_equal(read_parquet(path, columns=["price", "day"]),
                                  pd.read_parquet(path, columns=["price", "day"]))


def test_a_missing_damaged_or_short_file_is_one_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing.parquet cannot be read"):
        read_parquet(tmp_path / "missing.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="bad.parquet cannot be read"):
        read_parquet(tmp_path / "bad.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(ValueError, match='a.parquet cannot be read.*"b"'):
        read_parquet(tmp_path / "a.parquet", columns=['b"'])
