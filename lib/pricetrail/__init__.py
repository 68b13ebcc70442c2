"""pricetrail: per-product demand models and price recommendations with full lineage."""

__version__ = "0.1.0"
