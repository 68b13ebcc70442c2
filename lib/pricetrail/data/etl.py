"""Per-product ETL: clean one product's transactions and build leakage-free features with DuckDB.

Every feature of a line dated on day ``d`` uses only the line itself and data from days strictly before ``d``:
the reference implementation divided prices by the all-time maximum price, which tells the model the future.

Price-derived features are computed by one pure function, :func:`price_features`, that the price recommender
calls again at every grid price — so a demand curve never carries the sampled rows' old price features.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pricetrail.project.config import settings_from_params, validate_stockcode

log = logging.getLogger(__name__)

LINE_COLUMNS = ["invoice_no", "stockcode", "description", "quantity", "invoice_date", "unit_price", "customer_id",
                "country"]

# What each feature means; the README's feature table is generated from the same words.
FEATURE_DOCS: dict[str, str] = {
    "unit_price": "the line's price",
    "log_price": "natural log of the line's price",
    "price_squared": "the line's price squared (lets a linear layer bend the demand curve)",
    "reference_max_price": "highest price charged on any earlier day, or the line's price if higher or if none",
    "price_to_max": "price / reference_max_price: 1 at the highest price seen so far, below 1 in a markdown",
    "reference_mean_price": "mean price in the latest earlier calendar month with sales (the line's price if none)",
    "price_to_prev_month_mean": "price / reference_mean_price: below 1 when cheaper than last month",
    "prev_month_quantity": "units of the product sold in the previous calendar month (0 if none)",
    "prev_month_lines": "order lines of the product in the previous calendar month (0 if none)",
    "quantity_28d_before": "units sold in the 28 days before the line's day (the day itself excluded)",
    "log_prev_month_quantity": "log1p(prev_month_quantity): volumes on the scale the network extrapolates well",
    "log_quantity_28d_before": "log1p(quantity_28d_before)",
    "is_registered": "the customer has a CustomerID (guests pay about twice the list price)",
    "country": "the customer's country",
    "year": "calendar year of the invoice",
    "month": "calendar month of the invoice (1-12)",
    "month_sin": "sin(2*pi*month/12): season without a jump from December to January",
    "month_cos": "cos(2*pi*month/12)",
    "day_of_week": "ISO day of week, 1 = Monday (the shop does not trade on Saturdays)",
    "hour": "hour of the invoice",
}
TARGET = "log_quantity"  # log1p(quantity): demand is skewed and multiplicative


class ETLError(ValueError):
    """A product's transactions cannot be turned into features."""


@dataclass(frozen=True)
class CleaningRules:
    """The cleaning rules of ``params.yaml: etl``."""

    non_product_codes: tuple[str, ...] = ("POST", "DOT", "M", "D", "S", "C2", "B", "BANK CHARGES", "AMAZONFEE",
                                          "CRUK", "PADS")
    non_product_prefixes: tuple[str, ...] = ("gift_0001_", "DCGS")
    max_quantity: int = 10_000
    outlier_median_factor: float = 100.0
    min_rows: int = 200
    # The relative outlier cap compares a line with the median of the product's lines on earlier days; it waits
    # until there are this many of them (before that only max_quantity applies).
    outlier_min_history_lines: int = 20
    # Volume-tier lines: their price is set by their quantity (big orders get a lower price), so they say nothing
    # about how demand responds to price and would teach the model that a small discount brings 10x orders.
    # None keeps them.
    volume_tier_min_quantity: int | None = 12
    volume_tier_min_discount: float = 0.08

    def __post_init__(self) -> None:
        for name in ("min_rows", "max_quantity", "outlier_min_history_lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ETLError(f"etl.{name}={value!r} makes no sense: use a whole number >= 1")
        factor = self.outlier_median_factor
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not (math.isfinite(factor)
                                                                                    and factor > 1):
            raise ETLError(f"etl.outlier_median_factor={factor!r} must be a finite number > 1")
        tier = self.volume_tier_min_quantity
        if tier is not None and (isinstance(tier, bool) or not isinstance(tier, int) or tier < 2):
            raise ETLError(f"etl.volume_tier_min_quantity={tier!r} must be a whole number >= 2, or null to keep "
                           "volume-tier lines")
        if not 0 < self.volume_tier_min_discount < 1:
            raise ETLError(f"etl.volume_tier_min_discount={self.volume_tier_min_discount!r} must be a fraction "
                           "in (0, 1)")

    @classmethod
    def from_params(cls, etl: dict[str, Any]) -> CleaningRules:
        return settings_from_params(cls, "etl", etl, error=ETLError,
                                    list_fields=("non_product_codes", "non_product_prefixes"))

    def is_non_product(self, code: str) -> bool:
        return code.upper() in {c.upper() for c in self.non_product_codes} or any(
            code.startswith(prefix) for prefix in self.non_product_prefixes)


@dataclass
class CleaningReport:
    rows_in: int
    removed: dict[str, int] = field(default_factory=dict)
    rows_out: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"rows_in": self.rows_in, "removed": dict(self.removed), "rows_out": self.rows_out}


# Rules in the order they apply; each removes rows the earlier ones kept, so the counts add up.
_RULES: list[tuple[str, str]] = [
    ("cancellation", "upper(invoice_no) LIKE 'C%'"),
    ("non_positive_quantity", "quantity <= 0"),
    ("non_positive_price", "unit_price <= 0"),
]


def connect() -> duckdb.DuckDBPyConnection:
    """One thread: a product's few thousand rows gain nothing from more, and float sums added in a fixed order
    give the same bits every run (with several threads the monthly mean price varied in its last bits, so DVC
    saw a new output for the same input)."""
    return duckdb.connect(config={"threads": 1})


def check_lines_frame(lines: pd.DataFrame) -> None:
    missing = [name for name in LINE_COLUMNS if name not in lines.columns]
    if missing:
        raise ETLError(f"transactions frame lacks columns {missing}; it has {list(lines.columns)}")


# After DISTINCT the lines are unique on all columns, so this order is total: the same input always gives the
# same bytes (ties on time and invoice would otherwise come out in any order, and DVC would see new outputs).
_LINE_ORDER = "invoice_date, invoice_no, quantity, unit_price, customer_id, description, country, stockcode"


def clean_lines(lines: pd.DataFrame, rules: CleaningRules) -> tuple[pd.DataFrame, CleaningReport]:
    """Apply the cleaning rules to one product's lines; return the kept lines (sorted by time) and the counts."""
    check_lines_frame(lines)
    con = connect()
    try:
        con.register("product_lines", lines[LINE_COLUMNS])
        report = _clean(con, "product_lines", rules)
        return con.execute(f"SELECT {', '.join(LINE_COLUMNS)} FROM kept ORDER BY {_LINE_ORDER}").df(), report
    finally:
        con.close()


def _clean(con: duckdb.DuckDBPyConnection, relation: str, rules: CleaningRules) -> CleaningReport:
    """Create the table ``kept`` from ``relation`` by the rules, in order; return the counts."""
    flags = ", ".join(f"count(*) FILTER (WHERE {' OR '.join(c for _, c in _RULES[:i + 1])})"
                      for i in range(len(_RULES)))
    rows_in, *removed_by_then = con.execute(f"SELECT count(*), {flags} FROM {relation}").fetchall()[0]
    report = CleaningReport(rows_in=int(rows_in))
    previous = 0
    for (name, _), cumulative in zip(_RULES, removed_by_then, strict=True):
        report.removed[name] = int(cumulative) - previous
        previous = int(cumulative)
    kept_by_rules = kept_by_row_rules()
    # Exact duplicates: the same line recorded twice (5,268 in the real data).
    con.execute(f"CREATE OR REPLACE TEMP TABLE dedup AS SELECT DISTINCT {', '.join(LINE_COLUMNS)} FROM {relation} "
                f"WHERE {kept_by_rules}")
    deduplicated = _count(con, "dedup")
    report.removed["exact_duplicate"] = report.rows_in - previous - deduplicated
    # Volume tier: a registered customer's big line priced clearly below the list price as known before it: the
    # highest registered price charged earlier that day (strictly earlier: lines of the same moment do not see
    # each other) or on the latest earlier day with a registered line. Never a later line: whether one comes
    # depends on demand the model is asked to predict. The previous day counts even after lines today, because
    # a day's first registered lines may all be tier lines (the real 85123A sells 2.55 only in bulk, 2.95 list).
    # The cost: on the first day of a markdown of more than volume_tier_min_discount, big orders are taken for
    # tier lines; from its second day on the markdown price is the reference.
    tier_rule = "false" if rules.volume_tier_min_quantity is None else (
        f"customer_id IS NOT NULL AND quantity >= {int(rules.volume_tier_min_quantity)} "
        f"AND unit_price <= {1 - float(rules.volume_tier_min_discount)!r} * list_price_before")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE untiered AS
            WITH lines AS (
                SELECT *, CAST(invoice_date AS DATE) AS day,
                       max(unit_price) FILTER (WHERE customer_id IS NOT NULL) OVER (
                           PARTITION BY CAST(invoice_date AS DATE) ORDER BY invoice_date
                           RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW EXCLUDE GROUP) AS earlier_today
                FROM dedup
            ), registered_days AS (
                SELECT day, max(unit_price) AS day_max FROM lines WHERE customer_id IS NOT NULL GROUP BY day
            ), previous_days AS (
                SELECT d.day, (SELECT arg_max(r.day_max, r.day) FROM registered_days r WHERE r.day < d.day)
                    AS previous_day_max
                FROM (SELECT DISTINCT day FROM lines) d
            ), referenced AS (
                SELECT l.*, greatest(l.earlier_today, p.previous_day_max) AS list_price_before  -- NULLs ignored
                FROM lines l JOIN previous_days p USING (day)
            )
            SELECT {', '.join(LINE_COLUMNS)} FROM referenced WHERE NOT COALESCE({tier_rule}, false)"""
    )
    untiered = _count(con, "untiered")
    report.removed["volume_tier"] = deduplicated - untiered
    # Extreme outliers: an absolute cap (the real data has an 80,995-unit line) and a cap relative to the
    # product's median sale, so one pallet-sized order does not dominate a product sold in sixes. The median is
    # of the lines on earlier days only, so a line's fate never depends on what was sold after it.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE kept AS
           WITH history AS (
               SELECT d.day,
                      (SELECT median(u.quantity) FROM untiered u WHERE CAST(u.invoice_date AS DATE) < d.day)
                          AS median_before,
                      COALESCE((SELECT count(*) FROM untiered u WHERE CAST(u.invoice_date AS DATE) < d.day), 0)
                          AS lines_before
               FROM (SELECT DISTINCT CAST(invoice_date AS DATE) AS day FROM untiered) d
           )
           SELECT u.* FROM untiered u JOIN history h ON CAST(u.invoice_date AS DATE) = h.day
           WHERE u.quantity <= $max_quantity
             AND (h.lines_before < $min_history OR u.quantity <= $factor * h.median_before)""",
        {"max_quantity": rules.max_quantity, "factor": rules.outlier_median_factor,
         "min_history": rules.outlier_min_history_lines},
    )
    report.rows_out = _count(con, "kept")
    report.removed["extreme_outlier"] = untiered - report.rows_out
    return report


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


# Per customer group too (lines and the median line price): the price each group pays today, the status quo a
# price decision is anchored on (pricetrail.pricing.decision), comes from the newest days of this history.
_DAILY_SQL = """
SELECT CAST(invoice_date AS DATE) AS day, sum(quantity)::BIGINT AS quantity, count(*)::BIGINT AS lines,
       max(unit_price) AS max_price, sum(unit_price) AS price_sum,
       count(*) FILTER (WHERE customer_id IS NOT NULL)::BIGINT AS registered_lines,
       median(unit_price) FILTER (WHERE customer_id IS NOT NULL)::DOUBLE AS registered_price,
       count(*) FILTER (WHERE customer_id IS NULL)::BIGINT AS guest_lines,
       median(unit_price) FILTER (WHERE customer_id IS NULL)::DOUBLE AS guest_price
FROM {source} GROUP BY 1 ORDER BY 1
"""


def daily_aggregates(clean: pd.DataFrame) -> pd.DataFrame:
    """One row per trading day of the product: units, lines, highest price and price sum (for monthly means), and
    each customer group's lines and median price."""
    con = connect()
    try:
        con.register("clean", clean[["invoice_date", "quantity", "unit_price", "customer_id"]])
        return con.execute(_DAILY_SQL.format(source="clean")).df()
    finally:
        con.close()


_STATE_SQL = """
WITH months AS (
    SELECT CAST(date_trunc('month', day) AS DATE) AS month, sum(quantity) AS quantity, sum(lines) AS lines,
           sum(price_sum) / sum(lines) AS mean_price
    FROM daily GROUP BY 1
), state AS (
    SELECT q.day,
        (SELECT max(d.max_price) FROM daily d WHERE d.day < q.day) AS max_price_before,
        COALESCE((SELECT m.quantity FROM months m
                  WHERE m.month = CAST(date_trunc('month', q.day) - INTERVAL 1 MONTH AS DATE)), 0)::DOUBLE
            AS prev_month_quantity,
        COALESCE((SELECT m.lines FROM months m
                  WHERE m.month = CAST(date_trunc('month', q.day) - INTERVAL 1 MONTH AS DATE)), 0)::DOUBLE
            AS prev_month_lines,
        (SELECT arg_max(m.mean_price, m.month) FROM months m
         WHERE m.month < CAST(date_trunc('month', q.day) AS DATE)) AS prev_month_mean_price,
        COALESCE((SELECT sum(d.quantity) FROM daily d
                  WHERE d.day >= q.day - INTERVAL 28 DAY AND d.day < q.day), 0)::DOUBLE AS quantity_28d_before
    FROM query_days q
)
SELECT *,
    -- Volumes on a log scale: the November peak sits far above the training months, and a ReLU network
    -- extrapolates raw counts linearly; log1p keeps the peak within reach of what it learned.
    ln(1 + prev_month_quantity) AS log_prev_month_quantity,
    ln(1 + quantity_28d_before) AS log_quantity_28d_before
FROM state ORDER BY day
"""
STATE_COLUMNS = ["max_price_before", "prev_month_quantity", "prev_month_lines", "prev_month_mean_price",
                 "quantity_28d_before", "log_prev_month_quantity", "log_quantity_28d_before"]


def state_features(daily: pd.DataFrame, days: Sequence[Any] | pd.Series) -> pd.DataFrame:
    """The product's state at the start of each of ``days``, from days strictly before it (no look-ahead).

    Used for the training lines and, at serving time, for the date a price is asked for.
    """
    query = pd.DataFrame({"day": pd.to_datetime(pd.Series(list(days))).dt.normalize().dt.date}).drop_duplicates()
    con = connect()
    try:
        con.register("daily", daily[["day", "quantity", "lines", "max_price", "price_sum"]])
        con.register("query_days", query)
        state = con.execute(_STATE_SQL).df()
    finally:
        con.close()
    state["day"] = pd.to_datetime(state["day"])
    return state


# The columns price_features() returns. Every one is non-decreasing in the price for a fixed state (the reference
# prices are the state's unless the price exceeds them); the demand network relies on that to keep its predicted
# demand non-increasing in the price (model.PriceResponseNetwork; tests/test_etl.py checks it).
PRICE_FEATURES = ("unit_price", "log_price", "price_squared", "reference_max_price", "price_to_max",
                  "reference_mean_price", "price_to_prev_month_mean")


def price_features(price: np.ndarray | pd.Series, max_price_before: np.ndarray | pd.Series,
                   prev_month_mean_price: np.ndarray | pd.Series) -> pd.DataFrame:
    """Every feature that depends on the price, for prices and the state they are charged in (broadcasts).

    The single definition used by the ETL and by the price grid: change it here and both change.
    """
    p = np.asarray(price, dtype="float64")
    if np.any(~np.isfinite(p)) or np.any(p <= 0):
        raise ETLError(f"prices must be finite and positive; got min {np.nanmin(p)!r}")
    max_before = np.broadcast_to(np.asarray(max_price_before, dtype="float64"), p.shape)
    mean_before = np.broadcast_to(np.asarray(prev_month_mean_price, dtype="float64"), p.shape)
    reference_max = np.fmax(max_before, p)  # fmax: a missing history (NaN) gives the price itself
    reference_mean = np.where(np.isnan(mean_before), p, mean_before)
    return pd.DataFrame({
        "unit_price": p,
        "log_price": np.log(p),
        "price_squared": p ** 2,
        "reference_max_price": reference_max,
        "price_to_max": p / reference_max,
        "reference_mean_price": reference_mean,
        "price_to_prev_month_mean": p / reference_mean,
    })


def calendar_features(timestamps: pd.Series) -> pd.DataFrame:
    ts = pd.to_datetime(timestamps)
    month = ts.dt.month.astype("int64")
    return pd.DataFrame({
        "year": ts.dt.year.astype("int64"),
        "month": month,
        "month_sin": np.sin(2 * np.pi * month / 12),
        "month_cos": np.cos(2 * np.pi * month / 12),
        "day_of_week": (ts.dt.dayofweek + 1).astype("int64"),
        "hour": ts.dt.hour.astype("int64"),
    }, index=timestamps.index)


def build_features(clean: pd.DataFrame, daily: pd.DataFrame) -> pd.DataFrame:
    """Feature rows for the cleaned lines of one product (one row per order line, sorted by time)."""
    check_lines_frame(clean)
    lines = clean.reset_index(drop=True)
    day = pd.to_datetime(lines["invoice_date"]).dt.normalize()
    state = state_features(daily, day).set_index("day").reindex(day).reset_index(drop=True)
    return _assemble(lines, state)


def _assemble(lines: pd.DataFrame, state: pd.DataFrame) -> pd.DataFrame:
    """Lines plus their state (row-aligned) -> the feature table."""
    prices = price_features(lines["unit_price"], state["max_price_before"], state["prev_month_mean_price"])
    features = pd.concat(
        [
            lines[["invoice_no", "invoice_date", "quantity", "country"]].reset_index(drop=True),
            pd.DataFrame({"is_registered": lines["customer_id"].notna().to_numpy()}),
            calendar_features(lines["invoice_date"]).reset_index(drop=True),
            state[STATE_COLUMNS].reset_index(drop=True),
            prices,
        ],
        axis=1,
    )
    features["country"] = features["country"].fillna("Unspecified").astype("str")
    features[TARGET] = np.log1p(features["quantity"].astype("float64"))
    return features


# One product's raw lines from the ingested Parquet: sorted by stockcode with small row groups, so DuckDB reads
# only the row groups whose statistics can hold the code (tests/data/test_ingest.py checks it in DuckDB's profile).
PRODUCT_LINES_SQL = f"SELECT {', '.join(LINE_COLUMNS)} FROM read_parquet($path) WHERE stockcode = $code"


def kept_by_row_rules() -> str:
    """SQL true for a line no row-level rule removes (cancellations, non-positive quantity or price, ...): an upper
    bound of a product's clean lines, cheap over the whole catalogue."""
    return " AND ".join(f"NOT ({condition})" for _, condition in _RULES)


def clean_product(con: duckdb.DuckDBPyConnection, transactions: Path, code: str, rules: CleaningRules
                  ) -> CleaningReport:
    """Read one product's lines from the ingested file and clean them into the temp table ``kept``."""
    if rules.is_non_product(code):
        raise ETLError(f"stockcode {code} is a non-product code (postage, fees, ...); choose a product")
    con.execute(f"CREATE OR REPLACE TEMP TABLE product_lines AS {PRODUCT_LINES_SQL}",
                {"path": str(transactions), "code": code})
    if _count(con, "product_lines") == 0:
        raise ETLError(f"stockcode {code} is not in the data ({transactions}); check stockcodes.yaml")
    return _clean(con, "product_lines", rules)


def run_etl(transactions: Path, stockcode: str, rules: CleaningRules) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                               CleaningReport]:
    """Clean one product's lines and build its features; raise if the product cannot support a model.

    One DuckDB connection does the reading, cleaning, daily aggregation and state features; only the result
    crosses into pandas (for the price and calendar features shared with the price grid).
    """
    code = validate_stockcode(stockcode)
    con = connect()
    try:
        report = clean_product(con, transactions, code, rules)
        if report.rows_out < rules.min_rows:
            raise ETLError(f"stockcode {code} has {report.rows_out} clean rows, fewer than etl.min_rows="
                           f"{rules.min_rows} (removed: {report.removed})")
        con.execute(f"CREATE TEMP TABLE daily AS {_DAILY_SQL.format(source='kept')}")
        con.execute("CREATE TEMP TABLE query_days AS SELECT DISTINCT CAST(invoice_date AS DATE) AS day FROM kept")
        con.execute(f"CREATE TEMP TABLE state AS {_STATE_SQL}")
        joined = con.execute(
            f"""SELECT {', '.join('k.' + c for c in LINE_COLUMNS)}, {', '.join('s.' + c for c in STATE_COLUMNS)}
                FROM kept k JOIN state s ON CAST(k.invoice_date AS DATE) = s.day
                ORDER BY {', '.join('k.' + c for c in _LINE_ORDER.split(', '))}"""
        ).df()
        daily = con.execute("SELECT * FROM daily ORDER BY day").df()
    finally:
        con.close()
    features = _assemble(joined[LINE_COLUMNS], joined[STATE_COLUMNS])
    log.info("%s: %s clean lines over %s days", code, len(features), len(daily))
    return features, daily, report
