"""Which products of the ingested transactions the pipeline can model: every stockcode the ETL would admit (a
product code, at least ``etl.min_rows`` clean lines, splits that reach ``preprocess.min_split_rows``), counted by
the ETL's own cleaning rather than estimated, so a listed product never fails its ETL on size.

Two passes keep it quick on a real catalogue: one DuckDB query counts each stockcode's lines that pass the
row-level rules (an upper bound of its clean lines), and only the codes whose bound reaches ``etl.min_rows`` are
cleaned one by one as the ETL cleans them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pricetrail.data.etl import CleaningRules, clean_product, connect, kept_by_row_rules
from pricetrail.data.preprocess import PreprocessSettings, line_days, small_splits, split_sizes
from pricetrail.project.config import STOCKCODE_PATTERN


@dataclass(frozen=True)
class CatalogueEntry:
    stockcode: str
    description: str
    clean_lines: int
    trading_days: int

    def yaml_line(self) -> str:
        """One entry of stockcodes.yaml's ``stockcodes:`` mapping (JSON strings are YAML double-quoted scalars)."""
        return (f"  {json.dumps(self.stockcode)}: {{description: {json.dumps(self.description)}}}"
                f"  # {self.clean_lines} clean lines, {self.trading_days} trading days")


@dataclass(frozen=True)
class Catalogue:
    admitted: list[CatalogueEntry]  # most clean lines first
    refused: Counter[str]  # stockcodes left out, by reason
    stockcodes: int  # distinct stockcodes in the input


def admissible_products(transactions: Path, rules: CleaningRules, splitting: PreprocessSettings,
                        skip: Iterable[str] = ()) -> Catalogue:
    """Every product of ``transactions`` (the ingested Parquet) the ETL would admit, except those in ``skip``."""
    skipped = set(skip)
    con = connect()
    try:
        bounds = con.execute(
            f"""SELECT stockcode, count(*) FILTER (WHERE {kept_by_row_rules()}) AS lines,
                       coalesce(mode(description), '') AS description
                FROM read_parquet($path) GROUP BY stockcode ORDER BY stockcode""",
            {"path": str(transactions)}).fetchall()
        refused: Counter[str] = Counter()
        admitted = []
        for code, upper_bound, description in bounds:
            code = str(code)
            if not STOCKCODE_PATTERN.fullmatch(code) or rules.is_non_product(code):
                refused["not a product code"] += 1
                continue
            if code in skipped:
                refused["listed already"] += 1
                continue
            if upper_bound < rules.min_rows:
                refused[f"fewer than etl.min_rows={rules.min_rows} clean lines"] += 1
                continue
            report = clean_product(con, transactions, code, rules)
            if report.rows_out < rules.min_rows:
                refused[f"fewer than etl.min_rows={rules.min_rows} clean lines"] += 1
                continue
            days = line_days(con.execute("SELECT invoice_date FROM kept").df()["invoice_date"])
            if small_splits(split_sizes(days, splitting), splitting):
                refused[f"splits below preprocess.min_split_rows={splitting.min_split_rows}"] += 1
                continue
            admitted.append(CatalogueEntry(code, str(description), report.rows_out, int(np.unique(days).size)))
    finally:
        con.close()
    admitted.sort(key=lambda entry: (-entry.clean_lines, entry.stockcode))
    return Catalogue(admitted=admitted, refused=refused, stockcodes=len(bounds))
