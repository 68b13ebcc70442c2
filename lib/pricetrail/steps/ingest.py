"""Stage ``ingest``: the raw input, checked and typed, as one Parquet sorted by stockcode and date."""

from __future__ import annotations

from pathlib import Path

from pricetrail.data.ingest import IngestSettings, input_description
from pricetrail.data.ingest import ingest as ingest_input
from pricetrail.project.config import load_params, section
from pricetrail.project.files import write_json
from pricetrail.project.paths import INGEST_METRICS, INTERIM_TRANSACTIONS


def ingest(root: Path) -> None:
    """The raw input, checked and typed, as one Parquet sorted by stockcode and date."""
    settings = IngestSettings.from_params(section(load_params(root), "ingest"))
    summary = ingest_input(root / settings.input, root / INTERIM_TRANSACTIONS, csv_glob=settings.csv_glob)
    write_json(root / INGEST_METRICS, {"input": input_description(settings.input), **summary.to_dict()})
