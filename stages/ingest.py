"""Stage ingest: the raw input, checked and typed, as one Parquet sorted by stockcode and date."""

from pricetrail.project.stage import run
from pricetrail.steps.ingest import ingest

if __name__ == "__main__":
    run("ingest", ingest)
