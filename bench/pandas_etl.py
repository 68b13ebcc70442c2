"""The project's ingest + per-product ETL written in plain pandas (no DuckDB), as the benchmark's comparison.

It is what a careful engineer would write without DuckDB: vectorised, no per-row Python loops, and the same
rules, features and row order as :func:`pricetrail.data.etl.run_etl`. Price and calendar features come from the
library's pure functions, so only the parsing, cleaning, aggregation and state features are re-implemented here.

Two ways to get the lines :func:`run_etl` works on:

* :func:`ingest` reads every raw CSV (what a straightforward pandas ETL stage does, once per product);
* :func:`read_ingested_product` reads one product from the DuckDB ingest's Parquet (``pd.read_parquet`` with a
  stockcode filter, so pyarrow skips the other products' row groups).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

# Imported here, not lazily inside pd.read_parquet, so every benchmark child pays the same imports before timing.
import pyarrow.dataset  # noqa: F401
import pyarrow.parquet  # noqa: F401

from pricetrail.data.etl import (
    LINE_COLUMNS,
    TARGET,
    CleaningReport,
    CleaningRules,
    ETLError,
    calendar_features,
    price_features,
)
from pricetrail.data.ingest import RAW_COLUMNS, IngestError, resolve_input_files
from pricetrail.project.config import validate_stockcode

# Quantity and UnitPrice must parse (read_csv raises otherwise); CustomerID is a float so that blanks stay NaN.
RAW_DTYPES: dict[str, str] = {"InvoiceNo": "str", "StockCode": "str", "Description": "str", "Quantity": "int64",
                              "UnitPrice": "float64", "CustomerID": "float64", "Country": "str"}
TEXT_COLUMNS = ["invoice_no", "stockcode", "description", "country"]
STATE_COLUMNS = ["max_price_before", "prev_month_quantity", "prev_month_lines", "prev_month_mean_price",
                 "quantity_28d_before", "log_prev_month_quantity", "log_quantity_28d_before"]
# The library's total row order: after the de-duplication the lines are unique on all these columns.
LINE_ORDER = ["invoice_date", "invoice_no", "quantity", "unit_price", "customer_id", "description", "country",
              "stockcode"]


def _date_format(first_file: Path) -> str:
    """The InvoiceDate format of the files, judged from the first data line as the DuckDB ingest does."""
    with first_file.open(encoding="utf-8", errors="replace") as handle:
        handle.readline()
        sample = handle.readline()
    return "%m/%d/%Y %H:%M" if re.search(r",\d{1,2}/\d{1,2}/\d{4} ", sample) else "%Y-%m-%d %H:%M:%S"


def ingest(source: Path, *, csv_glob: str = "*.csv") -> pd.DataFrame:
    """Read every CSV of ``source`` typed, concatenate them and return the lines under the project's column names."""
    files = resolve_input_files(source, csv_glob)
    date_format = _date_format(files[0])
    frames = [pd.read_csv(path, dtype=RAW_DTYPES, parse_dates=["InvoiceDate"], date_format=date_format)
              for path in files]
    lines = pd.concat(frames, ignore_index=True)
    missing = [name for name in RAW_COLUMNS if name not in lines.columns]
    if missing:
        raise IngestError(f"raw input {source} lacks columns {missing}; expected exactly {list(RAW_COLUMNS)}")
    lines = lines[list(RAW_COLUMNS)].rename(columns=RAW_COLUMNS)
    # DuckDB's trim() strips spaces only, not tabs or no-break spaces.
    for column in TEXT_COLUMNS:
        lines[column] = lines[column].str.strip(" ")
    # The DuckDB ingest stores microsecond timestamps; read_csv gives seconds.
    lines["invoice_date"] = lines["invoice_date"].dt.as_unit("us")
    empty = {"StockCode": (lines["stockcode"].isna() | (lines["stockcode"] == "")).sum(),
             "InvoiceDate": lines["invoice_date"].isna().sum()}
    problems = [f"{name}: {count} rows have no value" for name, count in empty.items() if count]
    if problems:
        raise IngestError(f"raw input {source} has rows without required values: " + "; ".join(problems))
    return lines


def read_ingested_product(transactions: Path, stockcode: str) -> pd.DataFrame:
    """One product's lines from the ingested Parquet (sorted by stockcode: pyarrow reads only its row groups)."""
    return pd.read_parquet(transactions, columns=LINE_COLUMNS, filters=[("stockcode", "==", stockcode)])


def volume_tier(lines: pd.DataFrame, rules: CleaningRules) -> pd.Series:
    """A registered customer's big line priced clearly below the list price as known before it: the highest
    registered price charged strictly earlier that day or on the latest earlier day with a registered line."""
    if rules.volume_tier_min_quantity is None:
        return pd.Series(False, index=lines.index)
    registered = lines["customer_id"].notna()
    day = lines["invoice_date"].dt.normalize()
    charged = pd.DataFrame({"moment": lines["invoice_date"], "day": day, "price": lines["unit_price"]})[registered]
    charged = charged.sort_values("moment", kind="stable")
    charged["running_max"] = charged.groupby("day")["price"].cummax()
    query = pd.DataFrame({"moment": lines["invoice_date"], "day": day, "row": np.arange(len(lines))})
    query = query.sort_values("moment", kind="stable")
    earlier = pd.merge_asof(query, charged[["moment", "day", "running_max"]], on="moment", by="day",
                            allow_exact_matches=False)
    day_max = charged.groupby("day")["price"].max().rename("previous_day_max").reset_index()
    previous = pd.merge_asof(query.sort_values("day", kind="stable"), day_max, on="day", allow_exact_matches=False)
    reference = np.fmax(earlier.set_index("row")["running_max"].sort_index().to_numpy(),
                        previous.set_index("row")["previous_day_max"].sort_index().to_numpy())
    return (registered & (lines["quantity"] >= int(rules.volume_tier_min_quantity))
            & (lines["unit_price"] <= (1 - float(rules.volume_tier_min_discount)) * reference))


def outlier_kept(untiered: pd.DataFrame, rules: CleaningRules) -> np.ndarray:
    """The outlier rules as run_etl applies them: an absolute cap, and a multiple of the median of earlier days."""
    day = untiered["invoice_date"].dt.normalize().to_numpy()
    quantity = untiered["quantity"].to_numpy()
    order = np.argsort(day, kind="stable")
    sorted_day, sorted_quantity = day[order], quantity[order]
    days, first = np.unique(sorted_day, return_index=True)
    median_before = np.array([np.median(sorted_quantity[:start]) if start else np.nan for start in first])
    position = np.searchsorted(days, day)
    relative_ok = (first[position] < rules.outlier_min_history_lines) | (
        quantity <= rules.outlier_median_factor * median_before[position])
    return (quantity <= rules.max_quantity) & relative_ok


def clean_lines(lines: pd.DataFrame, rules: CleaningRules) -> tuple[pd.DataFrame, CleaningReport]:
    """The rules of :func:`pricetrail.data.etl.clean_lines`, in the same order; kept lines sorted by time."""
    report = CleaningReport(rows_in=len(lines))
    current = lines[LINE_COLUMNS]
    removals = [
        # A missing invoice number goes too: in SQL, NOT (NULL LIKE 'C%') is NULL, which WHERE rejects.
        ("cancellation", lambda frame: frame["invoice_no"].isna()
                                       | frame["invoice_no"].str.upper().str.startswith("C")),
        ("non_positive_quantity", lambda frame: frame["quantity"] <= 0),
        ("non_positive_price", lambda frame: frame["unit_price"] <= 0),
    ]
    for name, condition in removals:
        kept = current[~condition(current).to_numpy(dtype=bool)]
        report.removed[name] = len(current) - len(kept)
        current = kept
    dedup = current.drop_duplicates()  # NaN equals NaN here, as NULLs do in SELECT DISTINCT
    report.removed["exact_duplicate"] = len(current) - len(dedup)
    untiered = dedup[~volume_tier(dedup, rules).to_numpy(dtype=bool)]
    report.removed["volume_tier"] = len(dedup) - len(untiered)
    kept = untiered[outlier_kept(untiered, rules)]
    report.removed["extreme_outlier"] = len(untiered) - len(kept)
    kept = kept.sort_values(LINE_ORDER, kind="stable", ignore_index=True)  # NaN last, as DuckDB's NULLs
    report.rows_out = len(kept)
    return kept, report


def daily_aggregates(clean: pd.DataFrame) -> pd.DataFrame:
    """One row per trading day: units, lines, highest price and price sum."""
    day = clean["invoice_date"].dt.normalize().rename("day")
    daily = clean.groupby(day, sort=True).agg(quantity=("quantity", "sum"), lines=("quantity", "size"),
                                              max_price=("unit_price", "max"), price_sum=("unit_price", "sum"))
    return daily.astype({"quantity": "int64", "lines": "int64"}).reset_index()


def state_features(daily: pd.DataFrame) -> pd.DataFrame:
    """The product's state at the start of each trading day, from strictly earlier days only (indexed by day)."""
    day = daily["day"]
    state = pd.DataFrame(index=pd.DatetimeIndex(day, name="day"))
    state["max_price_before"] = daily["max_price"].cummax().shift(1).to_numpy()

    # Months as consecutive integers, so "the previous calendar month" is simply month - 1.
    month = (day.dt.year * 12 + day.dt.month - 1).to_numpy()
    monthly = daily.groupby(month, sort=True).agg(quantity=("quantity", "sum"), lines=("lines", "sum"),
                                                  price_sum=("price_sum", "sum"))
    previous = pd.Index(month - 1)
    state["prev_month_quantity"] = monthly["quantity"].reindex(previous).fillna(0).to_numpy(dtype="float64")
    state["prev_month_lines"] = monthly["lines"].reindex(previous).fillna(0).to_numpy(dtype="float64")
    # Every trading day's own month has sales, so the latest earlier month with sales is the previous row.
    mean_before = (monthly["price_sum"] / monthly["lines"]).shift(1)
    state["prev_month_mean_price"] = mean_before.reindex(pd.Index(month)).to_numpy()

    # Units over the 28 calendar days before each day: fill the days without sales, sum, shift out the day itself.
    units = daily.set_index("day")["quantity"].astype("float64").asfreq("D", fill_value=0.0)
    window = units.rolling(28, min_periods=1).sum().shift(1, fill_value=0.0)
    state["quantity_28d_before"] = window.reindex(state.index).to_numpy()
    state["log_prev_month_quantity"] = np.log1p(state["prev_month_quantity"])
    state["log_quantity_28d_before"] = np.log1p(state["quantity_28d_before"])
    return state


def build_features(clean: pd.DataFrame, daily: pd.DataFrame) -> pd.DataFrame:
    """Feature rows for the cleaned lines, with the columns and order of :func:`pricetrail.data.etl.build_features`."""
    day = clean["invoice_date"].dt.normalize()
    state = state_features(daily).reindex(day).reset_index(drop=True)
    prices = price_features(clean["unit_price"], state["max_price_before"], state["prev_month_mean_price"])
    features = pd.concat(
        [
            clean[["invoice_no", "invoice_date", "quantity", "country"]],
            pd.DataFrame({"is_registered": clean["customer_id"].notna().to_numpy()}),
            calendar_features(clean["invoice_date"]),
            state[STATE_COLUMNS],
            prices,
        ],
        axis=1,
    )
    features["country"] = features["country"].fillna("Unspecified").astype("str")
    features[TARGET] = np.log1p(features["quantity"].astype("float64"))
    return features


def run_etl(transactions: pd.DataFrame, stockcode: str, rules: CleaningRules) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                       CleaningReport]:
    """One product's features, daily aggregates and cleaning report from the ingested lines."""
    code = validate_stockcode(stockcode)
    if rules.is_non_product(code):
        raise ETLError(f"stockcode {code} is a non-product code (postage, fees, ...); choose a product")
    raw = transactions[transactions["stockcode"] == code]
    if raw.empty:
        raise ETLError(f"stockcode {code} is not in the data; check stockcodes.yaml")
    clean, report = clean_lines(raw, rules)
    if report.rows_out < rules.min_rows:
        raise ETLError(f"stockcode {code} has {report.rows_out} clean rows, fewer than etl.min_rows={rules.min_rows}"
                       f" (removed: {report.removed})")
    daily = daily_aggregates(clean)
    return build_features(clean, daily), daily, report
