"""Listing the catalogue: exactly the products the ETL would admit, counted by its own cleaning, as
stockcodes.yaml entries that extend the list."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import PROJECT_ROOT, lines

from pricetrail import cli
from pricetrail.data.etl import ETLError, run_etl
from pricetrail.project.config import load_stockcodes
from pricetrail.project.paths import INTERIM_TRANSACTIONS


def product(code: str, days: int, per_day: int, description: str = "A THING", **extra: object) -> list[dict]:
    return [{"stockcode": code, "description": description, "invoice_no": f"{code}{day:03d}{line:03d}",
             "invoice_date": f"{(pd.Timestamp('2011-01-03') + pd.Timedelta(days=day)).date()} 10:{line % 60:02d}:00",
             "customer_id": 17850.0 + line % 5, **extra} for day in range(days) for line in range(per_day)]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(PROJECT_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "stockcodes.yaml").write_text('stockcodes:\n  "85123A": {description: LISTED}\n')
    rows = (product("85123A", 60, 5) + product("22423", 50, 5, 'CAKE "STAND" 3 TIER')  # admitted, 250 lines
            + product("11111", 30, 5)  # 150 lines: below etl.min_rows
            + product("22222", 3, 80)  # 240 lines on 3 days: its splits cannot hold 30 lines each
            + product("33333", 60, 5, quantity=-1)  # every line a return: no clean line
            + product("POST", 80, 5) + product("BANK CHARGES", 80, 5))  # not products
    path = tmp_path / INTERIM_TRANSACTIONS
    path.parent.mkdir(parents=True)
    lines(rows).to_parquet(path, index=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_products_lists_what_the_etl_admits_and_extends_the_list(project: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["products"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ['  "22423": {description: "CAKE \\"STAND\\" 3 TIER"}  # 250 clean lines, 50 trading '
                                "days"]
    assert "1 of 7 stockcodes can be modelled with etl.min_rows=200 and are not listed yet" in err, err
    assert "2 fewer than etl.min_rows=200 clean lines" in err and "1 listed already" in err, err
    assert "2 not a product code" in err and "1 splits below preprocess.min_split_rows=30" in err, err
    with (project / "stockcodes.yaml").open("a") as listing:
        listing.write(out)
    assert list(load_stockcodes(project)) == ["85123A", "22423"]
    assert yaml.safe_load((project / "stockcodes.yaml").read_text())["stockcodes"]["22423"] == {
        "description": 'CAKE "STAND" 3 TIER'}
    # the ETL agrees with the listing, both ways
    rules_params = yaml.safe_load((project / "params.yaml").read_text())["etl"]
    from pricetrail.data.etl import CleaningRules

    features, _, _ = run_etl(project / INTERIM_TRANSACTIONS, "22423", CleaningRules.from_params(rules_params))
    assert len(features) == 250
    with pytest.raises(ETLError, match="fewer than etl.min_rows=200"):
        run_etl(project / INTERIM_TRANSACTIONS, "11111", CleaningRules.from_params(rules_params))


def test_products_takes_another_minimum_and_refuses_bad_input(project: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["products", "--all", "--min-rows", "150"]) == 2  # 150 lines at 15% cannot hold 30
    assert "etl.min_rows=150 admits products too small to split" in capsys.readouterr().err
    assert cli.main(["products", "--min-rows", "0"]) == 2
    assert "'0' is not accepted" in capsys.readouterr().err
    assert cli.main(["products", "--all", "--min-rows", "250"]) == 0
    out, _ = capsys.readouterr()
    assert [line.split(":")[0].strip() for line in out.splitlines()] == ['"85123A"', '"22423"']
    (project / INTERIM_TRANSACTIONS).unlink()
    assert cli.main(["products"]) == 2
    assert "run `dvc repro ingest` first" in capsys.readouterr().err
