"""Stage ``drift_reference@<code>``: the product's drift reference record, created when it is missing.

Its own module: this stage runs in every product's chain and again after each promotion, and must not pay for the
drift gate's imports (Evidently)."""

from __future__ import annotations

from pathlib import Path

from pricetrail.registry import drift_reference as references


def drift_reference(root: Path, code: str) -> None:
    """The "nothing served yet" record for a product that has none (a fresh clone, a product just added), so plain
    ``dvc repro`` needs no pricetrail command first. Promotion, rollback and accepted drift write the record
    outside DVC (a cycle otherwise); the stage's output is ``persist``, so DVC never deletes it or restores an old
    one, and runs this no-op again, then the gate, when a promotion changes it."""
    references.ensure_records(root, [code])
