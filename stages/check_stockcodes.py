"""Stage check_stockcodes: refuse any stockcodes.yaml key that is not letters and digits, before any per-product
stage runs (every etl_pipeline@<code> depends on this stage's output; see dvc.yaml)."""

from __future__ import annotations

from pathlib import Path

from pricetrail import stage
from pricetrail.config import STOCKCODES_CHECKED, check_stockcodes, write_json


def main(root: Path) -> None:
    write_json(root / STOCKCODES_CHECKED, check_stockcodes(root))


if __name__ == "__main__":
    stage.run("check_stockcodes", main)
