"""Running a user's SQL on the lineage views: queries only, one clear message for anything else."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from pricetrail.lineage.database import view_docs
from pricetrail.lineage.errors import LineageError

# SELECT covers WITH, FROM-first queries, VALUES, DESCRIBE, SHOW, SUMMARIZE and PIVOT inside a query. EXPLAIN is
# left out: EXPLAIN ANALYZE runs the statement it explains.
READ_ONLY = frozenset({duckdb.StatementType.SELECT})
_MISSING = re.compile(r"Table with name (\S+) does not exist|Table Function with name (\S+) does not exist")


def statements(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """The statements of ``sql``, each a query; anything that writes or changes settings is refused."""
    try:
        parsed = con.extract_statements(sql)
    except duckdb.Error as error:
        raise LineageError(message(error)) from error
    if not parsed:
        raise LineageError("no SQL statement given; try: SELECT * FROM stages LIMIT 5")
    for statement in parsed:
        if statement.type not in READ_ONLY:
            kind = statement.type.name
            raise LineageError(f"refused {kind}: the lineage views are read-only (queries only: "
                               "SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE); to save a result use "
                               "--format csv|json|parquet --output FILE")
    return [statement.query for statement in parsed]


def run(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
    """The result of one query as an Arrow table (``table.to_pylist()`` gives JSON-ready rows)."""
    texts = statements(con, sql)
    if len(texts) != 1:
        raise LineageError(f"give one query at a time; found {len(texts)} statements (`pricetrail lineage shell` "
                           "runs several)")
    try:
        return con.sql(texts[0], params=params).to_arrow_table()
    except duckdb.Error as error:
        raise LineageError(message(error)) from error


def message(error: duckdb.Error) -> str:
    """DuckDB's error on one line: an unknown view names the views there are."""
    text = str(error)
    missing = _MISSING.search(text)
    if missing:
        name = missing.group(1) or missing.group(2)
        return (f"no view named {name}; the views are: {', '.join(view_docs())} (`pricetrail lineage views` "
                "lists their columns)")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    hints = [line for line in lines[1:] if line.startswith(("Candidate", "Did you mean", "LINE "))]
    return f"SQL error: {first}" + (f" ({'; '.join(hints)})" if hints else "")
