"""Stage generate_synthetic: seeded UCI-schema transactions with known demand curves (the default input)."""

from pricetrail.project.stage import run
from pricetrail.steps.synthetic import generate_synthetic

if __name__ == "__main__":
    run("generate_synthetic", generate_synthetic)
