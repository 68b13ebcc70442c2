"""Ingest: normalise the raw transactions once into a typed Parquet sorted by stockcode and date, then split it
into one file per listed product.

The expensive parse of the raw input happens once, not once per product (the reference re-ran the full-data ETL
for every product); each product's ETL then reads only its own file, so a change to another product's lines (or a
product added) leaves it alone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from pricetrail.project.config import validate_stockcode
from pricetrail.project.files import atomic_path

log = logging.getLogger(__name__)

# The UCI Online Retail schema, and the snake_case names we store it under.
RAW_COLUMNS: dict[str, str] = {
    "InvoiceNo": "invoice_no",
    "StockCode": "stockcode",
    "Description": "description",
    "Quantity": "quantity",
    "InvoiceDate": "invoice_date",
    "UnitPrice": "unit_price",
    "CustomerID": "customer_id",
    "Country": "country",
}

# Small row groups let a per-product read skip everything but its own rows (Parquet min/max statistics).
ROW_GROUP_SIZE = 16_384

# One total order for every file written here: the same rows always give the same bytes.
_TOTAL_ORDER = "stockcode, invoice_date, invoice_no, quantity, unit_price, customer_id, description, country"


class IngestError(ValueError):
    """The raw input cannot be read as UCI Online Retail transactions."""


@dataclass(frozen=True)
class IngestSettings:
    """``params.yaml: ingest``: the raw input (a file or folder, relative to the project) and, for a folder of CSV
    files, which of them to read."""

    input: Path
    csv_glob: str

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> IngestSettings:
        from pricetrail.project.config import settings_from_params

        raw = settings_from_params(cls, "ingest", values, error=IngestError)
        for name in ("input", "csv_glob"):
            value = getattr(raw, name)
            if not isinstance(value, str) or not value.strip():
                raise IngestError(f"ingest.{name}={value!r} is not accepted: a non-empty path text")
        return cls(input=Path(str(raw.input)), csv_glob=str(raw.csv_glob))


@dataclass(frozen=True)
class IngestSummary:
    rows: int
    files: int
    stockcodes: int
    first_invoice: str
    last_invoice: str

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def resolve_input_files(source: Path, csv_glob: str = "*.csv") -> list[Path]:
    """The files behind ``source``: one .csv/.parquet/.xlsx file, or the files matching ``csv_glob`` in a folder."""
    if not source.exists():
        raise IngestError(f"raw input {source} does not exist; set ingest.input in params.yaml to a file or folder")
    if source.is_dir():
        files = sorted(source.glob(csv_glob))
        if not files:
            raise IngestError(f"raw input folder {source} holds no files matching {csv_glob!r}")
    else:
        files = [source]
    kinds = {_kind(path) for path in files}
    if len(kinds) != 1:
        raise IngestError(f"raw input {source} mixes file kinds {sorted(kinds)}; use one kind")
    for path in files:
        if path.stat().st_size == 0:
            raise IngestError(f"raw input file {path} is empty")
    return files


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet", ".xlsx"}:
        raise IngestError(f"raw input file {path} has suffix {suffix!r}; accepted: .csv, .parquet, .xlsx")
    return suffix


def _csv_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        first = handle.readline().strip().lstrip("\ufeff")
    return [name.strip().strip('"') for name in first.split(",")] if first else []


def _typed_csv_fast(con: duckdb.DuckDBPyConnection, files: list[Path]) -> bool:
    """Parse well-formed CSVs straight into types (about 8x faster than text + casts on the full real data).

    Returns False, having created nothing, when the files need the careful path: headers in another order, or
    values DuckDB cannot convert (the careful path then names them).
    """
    if any(_csv_header(path) != list(RAW_COLUMNS) for path in files):
        return False
    with files[0].open(encoding="utf-8", errors="replace") as handle:
        handle.readline()
        sample = handle.readline()
    us_dates = bool(re.search(r",\d{1,2}/\d{1,2}/\d{4} ", sample))
    date_format = ", timestampformat = '%m/%d/%Y %H:%M'" if us_dates else ""
    columns = ("{'InvoiceNo': 'VARCHAR', 'StockCode': 'VARCHAR', 'Description': 'VARCHAR', 'Quantity': 'BIGINT', "
               "'InvoiceDate': 'TIMESTAMP', 'UnitPrice': 'DOUBLE', 'CustomerID': 'DOUBLE', 'Country': 'VARCHAR'}")
    try:
        con.execute(
            f"""CREATE TEMP TABLE typed AS SELECT
                    trim(InvoiceNo) AS invoice_no, trim(StockCode) AS stockcode, trim(Description) AS description,
                    Quantity AS quantity, InvoiceDate AS invoice_date, UnitPrice AS unit_price,
                    CAST(CustomerID AS BIGINT) AS customer_id, trim(Country) AS country
                FROM read_csv({_sql_list([str(path) for path in files])}, header = true,
                              columns = {columns}{date_format})"""
        )
    except duckdb.ConversionException:
        con.execute("DROP TABLE IF EXISTS typed")
        return False
    return True


def _raw_relation(con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
    """Create the view ``raw`` with every column as text, whatever the file kind, so one parser checks types."""
    kind = _kind(files[0])
    names = [str(path) for path in files]
    if kind == ".csv":
        # union_by_name: a file with a misspelt header shows up as an extra column instead of silently shifting data.
        con.execute(
            f"CREATE VIEW raw AS SELECT * FROM read_csv({_sql_list(names)}, all_varchar = true, header = true, "
            "union_by_name = true)"
        )
    elif kind == ".parquet":
        relation = con.read_parquet(names, union_by_name=True)
        # Column names come from the file: quoted as identifiers, so a quote in one cannot end it and run SQL.
        casts = ", ".join(f"CAST({_sql_identifier(name)} AS VARCHAR) AS {_sql_identifier(name)}"
                          for name in relation.columns)
        con.execute(f"CREATE VIEW raw AS SELECT {casts} FROM read_parquet({_sql_list(names)}, union_by_name = true)")
    else:
        # DuckDB's excel extension is not bundled with its wheel: read the workbook with pandas.
        frames = [pd.read_excel(path, dtype=str) for path in files]
        con.register("raw_frame", pd.concat(frames, ignore_index=True))
        con.execute("CREATE VIEW raw AS SELECT * FROM raw_frame")


def _sql_list(values: list[str]) -> str:
    """A SQL list literal (views cannot take prepared parameters); quotes are escaped."""
    return "[" + ", ".join("'" + value.replace("'", "''") + "'" for value in values) + "]"


def _sql_identifier(name: str) -> str:
    """A quoted SQL identifier: embedded double quotes are doubled, so any text stays one column name."""
    return '"' + name.replace('"', '""') + '"'


def _check_columns(columns: list[str], source: Path) -> None:
    missing = [name for name in RAW_COLUMNS if name not in columns]
    unexpected = [name for name in columns if name not in RAW_COLUMNS]
    if missing or unexpected:
        raise IngestError(
            f"raw input {source} has missing columns {missing} and unexpected columns {unexpected}; "
            f"expected exactly {list(RAW_COLUMNS)}"
        )


_TYPED_SELECT = """
SELECT
    trim(InvoiceNo) AS invoice_no,
    trim(StockCode) AS stockcode,
    trim(Description) AS description,
    TRY_CAST(TRY_CAST(Quantity AS DOUBLE) AS BIGINT) AS quantity,
    COALESCE(TRY_CAST(InvoiceDate AS TIMESTAMP),
             try_strptime(InvoiceDate, '%m/%d/%Y %H:%M'),
             try_strptime(InvoiceDate, '%m/%d/%Y %H:%M:%S')) AS invoice_date,
    TRY_CAST(UnitPrice AS DOUBLE) AS unit_price,
    TRY_CAST(TRY_CAST(NULLIF(trim(CustomerID), '') AS DOUBLE) AS BIGINT) AS customer_id,
    trim(Country) AS country,
    -- the raw text, kept only to report values that do not parse
    Quantity AS raw_quantity, InvoiceDate AS raw_invoice_date, UnitPrice AS raw_unit_price,
    CustomerID AS raw_customer_id
FROM raw
"""

# (typed column, raw column, column as the user named it, what was expected)
_PARSE_CHECKS = [
    ("quantity", "raw_quantity", "Quantity", "a whole number"),
    ("invoice_date", "raw_invoice_date", "InvoiceDate", "a date like 2010-12-01 08:26:00 or 12/1/2010 8:26"),
    ("unit_price", "raw_unit_price", "UnitPrice", "a number"),
    ("customer_id", "raw_customer_id", "CustomerID", "a customer number or empty"),
]


def _check_types(con: duckdb.DuckDBPyConnection, source: Path) -> None:
    problems = []
    for typed, raw, column, expected in _PARSE_CHECKS:
        bad_count, examples = con.execute(
            f"""SELECT count(*), list(DISTINCT {raw}) FILTER (WHERE {raw} IS NOT NULL)[1:3] FROM typed
                WHERE {typed} IS NULL AND NULLIF(trim({raw}), '') IS NOT NULL"""
        ).fetchall()[0]
        if bad_count:
            problems.append(f"{column}: {bad_count} values are not {expected}, e.g. {examples}")
    if problems:
        raise IngestError(f"raw input {source} has values of the wrong type: " + "; ".join(problems))


def _check_required(con: duckdb.DuckDBPyConnection, source: Path) -> None:
    problems = []
    missing = con.execute(
        "SELECT count(*) FILTER (WHERE stockcode IS NULL OR stockcode = ''), "
        "count(*) FILTER (WHERE invoice_date IS NULL), count(*) FILTER (WHERE quantity IS NULL), "
        "count(*) FILTER (WHERE unit_price IS NULL) FROM typed"
    ).fetchall()[0]
    for name, count in zip(["StockCode", "InvoiceDate", "Quantity", "UnitPrice"], missing, strict=True):
        if count:
            problems.append(f"{name}: {count} rows have no value")
    if problems:
        raise IngestError(f"raw input {source} has rows without required values: " + "; ".join(problems))


def ingest(source: Path, output: Path, *, csv_glob: str = "*.csv") -> IngestSummary:
    """Read ``source``, check its schema and types, and write typed, sorted Parquet to ``output`` atomically."""
    files = resolve_input_files(source, csv_glob)
    con = duckdb.connect()
    try:
        fast = _kind(files[0]) == ".csv" and _typed_csv_fast(con, files)
        if not fast:
            try:
                _raw_relation(con, files)
                columns = [row[0] for row in con.execute("DESCRIBE raw").fetchall()]
            except duckdb.Error as error:
                raise IngestError(f"raw input {source} cannot be read: {error}") from error
            _check_columns(columns, source)
            con.execute(f"CREATE TEMP TABLE typed AS {_TYPED_SELECT}")
        rows = con.execute("SELECT count(*) FROM typed").fetchall()[0][0]
        if rows == 0:
            raise IngestError(f"raw input {source} has a header but no rows")
        if not fast:
            _check_types(con, source)
        _check_required(con, source)
        with atomic_path(output) as tmp:
            con.execute(
                f"""COPY (
                    SELECT invoice_no, stockcode, description, quantity, invoice_date, unit_price, customer_id, country
                    FROM typed
                    ORDER BY {_TOTAL_ORDER}  -- a total order: the same input always gives the same file
                ) TO $path (FORMAT parquet, ROW_GROUP_SIZE {int(ROW_GROUP_SIZE)})""",
                {"path": str(tmp)},  # bound, not interpolated: any character is fine in the output path
            )
        stockcodes, first, last = con.execute(
            "SELECT count(DISTINCT stockcode), min(invoice_date), max(invoice_date) FROM typed"
        ).fetchall()[0]
    finally:
        con.close()
    summary = IngestSummary(rows=int(rows), files=len(files), stockcodes=int(stockcodes),
                            first_invoice=str(first), last_invoice=str(last))
    log.info("ingested %s rows from %s file(s) into %s", summary.rows, summary.files, output)
    return summary


def input_description(source: Path) -> str:
    """A short, stable description of the input for metrics (not an absolute path: metrics are committed)."""
    return os.path.normpath(str(source))


def split_by_product(transactions: Path, output_dir: Path, codes: list[str]) -> dict[str, int]:
    """Write each listed product's lines to ``output_dir/<code>.parquet``; return the row count per product.

    Each product's ETL depends on its own file, so adding or removing a product rewrites no other product's
    file (same rows, same bytes) and DVC re-runs no other product's chain — with one shared transactions file,
    every ETL re-ran. A listed product with no lines gets an empty file with the schema: its ETL then names the
    product as missing from the data, rather than DVC reporting a missing dependency.

    The folder is built beside ``output_dir`` and moved into place whole: a failure leaves the previous folder.
    """
    for code in codes:  # the codes become file names: refuse anything but letters and digits first
        validate_stockcode(code)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".tmp", dir=output_dir.parent))
    counts: dict[str, int] = {}
    con = duckdb.connect(config={"threads": 1})  # one thread: a fixed row order within each file
    try:
        for code in codes:
            target = staging / f"{code}.parquet"
            written = con.execute(  # COPY answers with the number of rows it wrote
                f"""COPY (SELECT * FROM read_parquet($source) WHERE stockcode = $code ORDER BY {_TOTAL_ORDER})
                    TO $target (FORMAT parquet, ROW_GROUP_SIZE {int(ROW_GROUP_SIZE)})""",
                {"source": str(transactions), "code": code, "target": str(target)},
            ).fetchall()
            counts[code] = int(written[0][0])
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    except duckdb.Error as error:
        raise IngestError(f"cannot split {transactions} by product: {error}") from error
    finally:
        con.close()
        if staging.exists():
            shutil.rmtree(staging)
    for code, rows in counts.items():
        if rows == 0:
            log.warning("stockcode %s has no lines in %s", code, transactions)
    return counts
