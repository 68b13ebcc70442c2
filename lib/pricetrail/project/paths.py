"""Where each stage of each product reads and writes: one place, so dvc.yaml, stages and tests agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pricetrail.project.config import validate_stockcode

SYNTHETIC_DIR = Path("data/raw/synthetic")
INTERIM_TRANSACTIONS = Path("data/interim/transactions.parquet")
# split_products: one Parquet per listed product, each product's ETL depends on its own file.
INTERIM_PRODUCTS = Path("data/interim/products")
INGEST_METRICS = Path("metrics/ingest.json")
REGISTRY_DIR = Path("registry")


@dataclass(frozen=True)
class ProductPaths:
    """Per-product paths, relative to the project root (they match dvc.yaml's ``${key}`` paths)."""

    code: str

    def __post_init__(self) -> None:
        validate_stockcode(self.code)

    @property
    def interim_lines(self) -> Path:
        return INTERIM_PRODUCTS / f"{self.code}.parquet"

    @property
    def features_dir(self) -> Path:
        return Path("data/features") / self.code

    @property
    def lines(self) -> Path:
        return self.features_dir / "lines.parquet"

    @property
    def daily(self) -> Path:
        return self.features_dir / "daily.parquet"

    @property
    def metrics_dir(self) -> Path:
        return Path("metrics") / self.code

    @property
    def etl_metrics(self) -> Path:
        return self.metrics_dir / "etl.json"

    @property
    def drift_metrics(self) -> Path:
        return self.metrics_dir / "drift.json"

    @property
    def drift_report(self) -> Path:
        return Path("reports") / self.code / "drift.html"

    @property
    def drift_gate(self) -> Path:
        return Path("data/gates") / self.code / "drift.json"

    @property
    def drift_recheck(self) -> Path:
        """The drift gate's result against this week's training rows, kept for the re-check after promotion."""
        return Path("data/gates") / self.code / "recheck"

    @property
    def preprocessed_dir(self) -> Path:
        return Path("data/preprocessed") / self.code

    @property
    def preprocessor(self) -> Path:
        return self.preprocessed_dir / "preprocessor.json"

    @property
    def preprocess_metrics(self) -> Path:
        return self.metrics_dir / "preprocess.json"

    def split(self, name: str) -> Path:
        return self.preprocessed_dir / f"{name}.parquet"

    @property
    def model_dir(self) -> Path:
        return Path("models") / self.code

    @property
    def checkpoint(self) -> Path:
        return self.model_dir / "model.pt"

    @property
    def serving_model(self) -> Path:
        """The checkpoint's numbers as the router loads them (:mod:`pricetrail.modeling.exported`)."""
        return self.model_dir / "serving.json"

    @property
    def tuning_record(self) -> Path:
        return self.model_dir / "tuning.json"

    @property
    def validation_metrics(self) -> Path:
        return self.metrics_dir / "validation.json"

    @property
    def inference_dir(self) -> Path:
        return Path("data/inference") / self.code

    @property
    def predictions(self) -> Path:
        return self.inference_dir / "predictions.parquet"

    @property
    def shap_values(self) -> Path:
        return self.inference_dir / "shap_values.parquet"

    @property
    def test_metrics(self) -> Path:
        return self.metrics_dir / "test.json"

    @property
    def shap_plot(self) -> Path:
        return Path("plots") / self.code / "shap_importance.csv"

    @property
    def prediction_plot(self) -> Path:
        return Path("plots") / self.code / "predicted_vs_actual.csv"

    @property
    def decision_plot(self) -> Path:
        return Path("plots") / self.code / "price_decision.csv"

    @property
    def verdict(self) -> Path:
        return self.metrics_dir / "verdict.json"

    @property
    def registry_dir(self) -> Path:
        return REGISTRY_DIR / self.code
