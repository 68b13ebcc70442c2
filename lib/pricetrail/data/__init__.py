"""The data steps: ingest the raw transactions, clean one product's lines and build its features (DuckDB), split
them by time and fit the column transformer; and the synthetic data with known demand curves (``synthetic``)."""
