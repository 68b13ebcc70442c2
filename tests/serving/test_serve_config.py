"""The server's own configuration and the price request's validation: one message naming the value."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pricetrail.pricing.request import PriceRequest, RequestError
from pricetrail.project.files import ConfigError
from pricetrail.serving.config import from_environment, from_mapping


def test_config_from_a_file_overlaid_by_the_environment(tmp_path: Path) -> None:
    (tmp_path / "serve.json").write_text(json.dumps({"registry_dir": "registry", "stockcodes": ["85123A"],
                                                     "cache_dirs": ["cache"], "max_models": 3}))
    config = from_environment({"PRICETRAIL_SERVE_CONFIG": str(tmp_path / "serve.json"),
                               "PRICETRAIL_MAX_MODELS": "5", "PRICETRAIL_S3_URL": "s3://bucket/dvc"})
    assert config.registry_dir == tmp_path / "registry" and config.cache_dirs == (tmp_path / "cache",)
    assert config.max_models == 5 and config.s3 is not None and config.s3.bucket == "bucket"
    assert config.s3.prefix == "dvc" and str(config.s3.cache_dir).startswith("/tmp")


def test_stockcodes_from_a_stockcodes_file(tmp_path: Path) -> None:
    (tmp_path / "stockcodes.yaml").write_text('stockcodes:\n  "22423": {description: CAKESTAND}\n')
    config = from_mapping({"registry_dir": "r", "stockcodes_file": "stockcodes.yaml", "cache_dirs": ["c"]},
                          base=tmp_path)
    assert config.stockcodes == ("22423",) and config.descriptions == {"22423": "CAKESTAND"}


@pytest.mark.parametrize(("values", "message"), [
    ({"stockcodes": "A1", "cache_dirs": "c"}, "registry_dir is not set"),
    ({"registry_dir": "r", "cache_dirs": "c"}, "set stockcodes"),
    ({"registry_dir": "r", "stockcodes": "A1"}, "no artifact source"),
    ({"registry_dir": "r", "stockcodes": "../x", "cache_dirs": "c"}, "letters and digits only"),
    ({"registry_dir": "r", "stockcodes": "A1", "cache_dirs": "c", "max_points": "100000"}, "max_points=100000"),
    ({"registry_dir": "r", "stockcodes": "A1", "cache_dirs": "c", "max_models": "many"}, "max_models='many'"),
    ({"registry_dir": "r", "stockcodes": "A1", "s3_url": "http://bucket"}, "use s3://bucket/prefix"),
    ({"registry_dir": "r", "stockcodes": "A1", "cache_dirs": "c", "dvc_cache_dir": "x"}, "unknown serve settings"),
])
def test_bad_config_is_refused_with_a_named_value(values: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        from_mapping(values, base=tmp_path)


@pytest.mark.parametrize(("fields", "parameter"), [
    ({"date": "2011-13-01"}, "date"), ({"date": "12/01/2011"}, "date"), ({"customer": "vip"}, "customer"),
    ({"min_price": -1.0}, "min_price"), ({"max_price": math.inf}, "max_price"), ({"min_price": math.nan}, "min_price"),
    ({"min_price": 3.0, "max_price": 3.0}, "min_price"), ({"points": 1}, "points"), ({"points": 100_000}, "points"),
    ({"unit_cost": -0.5}, "unit_cost"), ({"country": ""}, "country"), ({"country": "x" * 65}, "country"),
    ({"hour": 24}, "hour"),
])
def test_a_bad_price_request_names_its_parameter(fields: dict, parameter: str) -> None:
    with pytest.raises(RequestError) as error:
        PriceRequest(**{"date": "2011-12-01", **fields})
    assert error.value.parameter == parameter and parameter in str(error.value)
