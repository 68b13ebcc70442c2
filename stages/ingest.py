"""Stage ingest: the raw input, checked and typed, as one Parquet sorted by stockcode and date."""

from __future__ import annotations

from pathlib import Path

from pricetrail.data.ingest import ingest, input_description
from pricetrail.project import stage
from pricetrail.project.config import load_params, section
from pricetrail.project.files import write_json
from pricetrail.project.paths import INGEST_METRICS, INTERIM_TRANSACTIONS


def main(root: Path) -> None:
    settings = section(load_params(root), "ingest")
    source = Path(str(settings["input"]))
    summary = ingest(root / source, root / INTERIM_TRANSACTIONS, csv_glob=str(settings.get("csv_glob", "*.csv")))
    write_json(root / INGEST_METRICS, {"input": input_description(source), **summary.to_dict()})


if __name__ == "__main__":
    stage.run("ingest", main)
