"""Canned reports for the common questions, each one SQL file over the views (``sql/<name>.sql``)."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pricetrail.lineage.database import sql_text
from pricetrail.lineage.errors import LineageError
from pricetrail.lineage.query import run


def fleet(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every product at the newest loaded revision: gates, served and latest model, key metrics, last decision."""
    return run(con, sql_text("fleet.sql"))


def served_lineage(con: duckdb.DuckDBPyConnection, product: str) -> pa.Table:
    """The served model of ``product`` from raw data to promotion: step, stage, item, name, value."""
    found = run(con, "SELECT version FROM served WHERE rev_index = 0 AND product = ?", [product])
    if found.num_rows == 0:
        known = run(con, "SELECT product FROM products WHERE rev_index = 0 ORDER BY product").column(0).to_pylist()
        if product not in known:
            raise LineageError(f"stockcode {product} is not in stockcodes.yaml; products: {', '.join(known)}")
        raise LineageError(f"{product} serves no model yet (`pricetrail lineage fleet` shows its gates, "
                           f"`pricetrail history {product}` its decisions)")
    return run(con, sql_text("served.sql"), {"product": product})


def diff(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """What changed from the first loaded revision to the second: kind, product, item, before, after."""
    revisions = run(con, "SELECT revision FROM revisions ORDER BY rev_index").column(0).to_pylist()
    if len(revisions) != 2:
        raise LineageError(f"a diff compares two revisions; {len(revisions)} are loaded (name two distinct commits, "
                           "or one and the workspace)")
    return run(con, sql_text("diff.sql"), {"before": revisions[0], "after": revisions[1]})
