"""Ingest: schema and type checks, file kinds, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pricetrail.data.etl import PRODUCT_LINES_SQL
from pricetrail.data.ingest import IngestError, ingest, split_by_product
from pricetrail.project.files import ConfigError

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
GOOD = (
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
    "536366,22423,REGENCY CAKESTAND 3 TIER,2,2010-12-01 08:28:00,12.75,,France\n"
    "C536367,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-6,2010-12-02 09:00:00,2.55,17850.0,United Kingdom\n"
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_ingest_csv_types_and_sort(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    summary = ingest(write(tmp_path / "a.csv", HEADER + GOOD), out)
    frame = pd.read_parquet(out)
    assert summary.rows == 3 and summary.stockcodes == 2
    assert list(frame["stockcode"]) == ["22423", "85123A", "85123A"]  # sorted by stockcode, then date
    assert frame["quantity"].dtype == "int64"
    assert str(frame["invoice_date"].dtype).startswith("datetime64")
    assert frame["customer_id"].isna().sum() == 1
    assert frame.loc[0, "customer_id"] != frame.loc[0, "customer_id"]  # NaN for the guest


def test_ingest_us_dates_like_the_uci_csv(tmp_path: Path) -> None:
    text = HEADER + "536365,85123A,WHITE HANGING HEART,6,12/1/2010 8:26,2.55,17850,United Kingdom\n"
    out = tmp_path / "out.parquet"
    ingest(write(tmp_path / "a.csv", text), out)
    assert str(pd.read_parquet(out)["invoice_date"][0]) == "2010-12-01 08:26:00"


def test_ingest_folder_of_csvs_and_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "days"
    folder.mkdir()
    write(folder / "2010-12-01.csv", HEADER + GOOD.splitlines(keepends=True)[0])
    write(folder / "2010-12-02.csv", HEADER + "".join(GOOD.splitlines(keepends=True)[1:]))
    first = ingest(folder, tmp_path / "a.parquet")
    assert first.rows == 3 and first.files == 2
    # Parquet input (e.g. the synthetic data) goes through the same checks.
    raw = pd.read_csv(tmp_path / "days" / "2010-12-01.csv")
    raw.to_parquet(tmp_path / "raw.parquet")
    assert ingest(tmp_path / "raw.parquet", tmp_path / "b.parquet").rows == 1


def test_ingest_xlsx(tmp_path: Path) -> None:
    raw = pd.read_csv(write(tmp_path / "a.csv", HEADER + GOOD))
    raw.to_excel(tmp_path / "Online Retail.xlsx", index=False)
    assert ingest(tmp_path / "Online Retail.xlsx", tmp_path / "x.parquet").rows == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER.replace("Quantity", "Qty") + GOOD, r"missing columns \['Quantity'\] and unexpected columns \['Qty'\]"),
        (HEADER + GOOD.replace(",6,", ",six,", 1), "Quantity: 1 values are not a whole number, e.g. \\['six'\\]"),
        (HEADER + GOOD.replace("2.55", "cheap", 1), "UnitPrice: 1 values are not a number"),
        (HEADER + GOOD.replace("2010-12-01 08:26:00", "yesterday"), "InvoiceDate: 1 values are not a date"),
        (HEADER, "has a header but no rows"),
    ],
)
def test_ingest_rejects_bad_input_and_writes_nothing(tmp_path: Path, text: str, message: str) -> None:
    out = tmp_path / "out.parquet"
    with pytest.raises(IngestError, match=message):
        ingest(write(tmp_path / "a.csv", text), out)
    assert not out.exists()
    assert list(tmp_path.glob(".out.parquet*")) == []  # no temporary file left behind


def test_ingest_rejects_empty_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="is empty"):
        ingest(write(tmp_path / "empty.csv", ""), tmp_path / "o.parquet")
    with pytest.raises(IngestError, match="does not exist"):
        ingest(tmp_path / "nope.csv", tmp_path / "o.parquet")
    with pytest.raises(IngestError, match="suffix '.txt'"):
        ingest(write(tmp_path / "a.txt", HEADER + GOOD), tmp_path / "o.parquet")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(IngestError, match="holds no files matching"):
        ingest(tmp_path / "empty_dir", tmp_path / "o.parquet")


def test_ingest_keeps_previous_output_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    ingest(write(tmp_path / "a.csv", HEADER + GOOD), out)
    before = out.read_bytes()
    with pytest.raises(IngestError):
        ingest(write(tmp_path / "b.csv", HEADER + GOOD.replace(",6,", ",x,", 1)), out)
    assert out.read_bytes() == before


def test_a_products_read_skips_the_other_products_row_groups(tmp_path: Path) -> None:
    """The ETL's own query on the ingested file scans only the row groups that hold the product.

    The input is shuffled, so the skipping comes from ingest's sort by stockcode, not from the input's order.
    """
    codes = ["22423", "47566", "84879", "85123A"]
    per_code = 20_000
    rng = np.random.default_rng(0)
    raw = pd.DataFrame({
        "InvoiceNo": [str(536365 + i) for i in range(per_code * len(codes))],
        "StockCode": np.repeat(codes, per_code),
        "Description": "ITEM",
        "Quantity": rng.integers(1, 12, per_code * len(codes)),
        "InvoiceDate": (pd.Timestamp("2011-01-03") + pd.to_timedelta(rng.integers(0, 300 * 1440, per_code
                                                                                  * len(codes)), unit="min")),
        "UnitPrice": 2.55,
        "CustomerID": 17850.0,
        "Country": "United Kingdom",
    }).sample(frac=1, random_state=1)
    source = tmp_path / "raw.csv"
    raw.to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    ingest(source, out)
    metadata = pq.ParquetFile(out).metadata
    column = metadata.schema.names.index("stockcode")
    holding = [i for i in range(metadata.num_row_groups)
               if metadata.row_group(i).column(column).statistics.min <= "47566"
               <= metadata.row_group(i).column(column).statistics.max]
    assert metadata.num_row_groups >= 4 and len(holding) <= 2

    con = duckdb.connect()
    profile = tmp_path / "profile.json"
    con.execute("PRAGMA enable_profiling='json'")
    con.execute(f"PRAGMA profiling_output='{profile}'")
    rows = con.execute(PRODUCT_LINES_SQL, {"path": str(out), "code": "47566"}).df()
    con.execute("PRAGMA disable_profiling")
    con.close()
    assert len(rows) == per_code and set(rows["stockcode"]) == {"47566"}
    query = json.loads(profile.read_text())["query"]
    assert query["total_row_groups_to_scan"] == metadata.num_row_groups
    assert query["total_row_groups_scanned"] == len(holding)


def test_ingest_is_byte_for_byte_deterministic(tmp_path: Path) -> None:
    text = HEADER + GOOD + GOOD.splitlines(keepends=True)[0].replace(",6,", ",12,")  # ties on invoice and time
    source = write(tmp_path / "a.csv", text)
    ingest(source, tmp_path / "one.parquet")
    ingest(source, tmp_path / "two.parquet")
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()


def test_hostile_column_name_never_reaches_sql_unquoted(tmp_path: Path) -> None:
    """A Parquet column name is data, not SQL: a quote in it must not end the identifier and run statements."""
    pwned = tmp_path / "pwned.csv"
    hostile = f'a" AS VARCHAR) AS "b" FROM (SELECT 1 AS "a"); COPY (SELECT 42 AS x) TO \'{pwned}\' (FORMAT csv); --'
    raw = pd.read_csv(write(tmp_path / "a.csv", HEADER + GOOD))
    raw.insert(0, hostile, "x")
    raw.to_parquet(tmp_path / "raw.parquet")
    with pytest.raises(IngestError, match="unexpected columns") as caught:
        ingest(tmp_path / "raw.parquet", tmp_path / "out.parquet")
    assert f"unexpected columns {[hostile]}" in str(caught.value)
    assert not pwned.exists()
    quoted = raw.drop(columns=hostile).assign(**{'we"ird': 1})
    quoted.to_parquet(tmp_path / "quoted.parquet")
    with pytest.raises(IngestError, match=r"unexpected columns \['we\"ird'\]"):
        ingest(tmp_path / "quoted.parquet", tmp_path / "out.parquet")


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_paths_with_quotes_are_bound_not_interpolated(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "it's here"
    folder.mkdir()
    source = write(folder / "o'brien.csv", HEADER + GOOD)
    if kind == "parquet":
        pd.read_csv(source).to_parquet(folder / "o'brien.parquet")
        source = folder / "o'brien.parquet"
    out = folder / "out'; DROP TABLE typed; --.parquet"
    summary = ingest(source, out)
    assert summary.rows == 3 and len(pd.read_parquet(out)) == 3


EXTRA = "536370,84879,ASSORTED COLOUR BIRD ORNAMENT,8,2010-12-03 10:00:00,1.69,12583.0,France\n"


def test_split_gives_each_product_its_own_file_untouched_by_the_others(tmp_path: Path) -> None:
    ingest(write(tmp_path / "a.csv", HEADER + GOOD), tmp_path / "two.parquet")
    ingest(write(tmp_path / "b.csv", HEADER + GOOD + EXTRA), tmp_path / "three.parquet")
    assert split_by_product(tmp_path / "two.parquet", tmp_path / "before", ["85123A", "22423"]) == {
        "85123A": 2, "22423": 1}
    counts = split_by_product(tmp_path / "three.parquet", tmp_path / "after", ["85123A", "22423", "84879"])
    assert counts == {"85123A": 2, "22423": 1, "84879": 1}
    # A product added to the data and the list leaves the others' files byte for byte: DVC re-runs no other ETL.
    for code in ("85123A", "22423"):
        assert (tmp_path / "before" / f"{code}.parquet").read_bytes() == \
            (tmp_path / "after" / f"{code}.parquet").read_bytes()
    frame = pd.read_parquet(tmp_path / "after" / "85123A.parquet")
    assert set(frame["stockcode"]) == {"85123A"}
    assert sorted(path.name for path in (tmp_path / "after").iterdir()) == [
        "22423.parquet", "84879.parquet", "85123A.parquet"]


def test_split_writes_an_empty_file_for_a_product_missing_from_the_data(tmp_path: Path) -> None:
    ingest(write(tmp_path / "a.csv", HEADER + GOOD), tmp_path / "t.parquet")
    assert split_by_product(tmp_path / "t.parquet", tmp_path / "out", ["99999"]) == {"99999": 0}
    assert list(pd.read_parquet(tmp_path / "out" / "99999.parquet").columns)[:2] == ["invoice_no", "stockcode"]


def test_split_refuses_a_bad_code_and_keeps_the_previous_folder(tmp_path: Path) -> None:
    ingest(write(tmp_path / "a.csv", HEADER + GOOD), tmp_path / "t.parquet")
    split_by_product(tmp_path / "t.parquet", tmp_path / "out", ["85123A"])
    before = (tmp_path / "out" / "85123A.parquet").read_bytes()
    with pytest.raises(ConfigError, match="not accepted"):
        split_by_product(tmp_path / "t.parquet", tmp_path / "out", ["85123A", "../victim"])
    with pytest.raises(IngestError, match="cannot split"):
        split_by_product(tmp_path / "missing.parquet", tmp_path / "out", ["85123A"])
    assert (tmp_path / "out" / "85123A.parquet").read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []  # no staging left
