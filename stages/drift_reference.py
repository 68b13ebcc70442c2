"""Stage drift_reference@<code>: the product's drift reference record, created when it is missing.

The record is written by promotion, rollback and accepted drift (outside DVC: a cycle otherwise) and read by the
product's drift gate, which declares it as a dependency. This stage only gives a product that has none (a fresh
clone, a product just added) the "nothing served yet" record, so plain ``dvc repro`` needs no pricetrail command
first. Its output is ``persist`` (DVC never deletes it, and never restores an old one from the run-cache); when a
promotion changes it, DVC runs this no-op again and then the drift gate, against the newly served model.
"""

from __future__ import annotations

from pathlib import Path

from pricetrail import registry
from pricetrail.project import stage


def main(root: Path) -> None:
    registry.ensure_records(root, [CODE])


if __name__ == "__main__":
    CODE = stage.stockcode_argument(__doc__ or "")
    stage.run(f"drift_reference@{CODE}", main)
