"""The served model's numbers: the numpy forward pass gives torch's answers, the file is plain JSON whose probe is
re-run on every load, and anything damaged or foreign is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pricetrail.modeling.export import export_network, export_serving_model
from pricetrail.modeling.exported import PROBE_TOLERANCE, ExportError, load_serving_model
from pricetrail.modeling.network import build_network
from pricetrail.modeling.training import predict
from tests.pricing.test_recommend import bundle_with_weight_on

ARCH = {"n_layers": 2, "units": [8, 4], "dropout": [0.2, 0.0], "batch_norm": True}


def trained(config: dict, input_dim: int = 6) -> torch.nn.Module:
    torch.manual_seed(0)
    network = build_network(input_dim, config)
    network.train()
    with torch.no_grad():  # moves the batch-norm running statistics off their defaults
        for _ in range(5):
            network(torch.randn(32, input_dim) * 3 + 1)
    return network.eval()


@pytest.mark.parametrize("config", [ARCH, {**ARCH, "price_columns": [0, 2]}, {**ARCH, "batch_norm": False}])
def test_the_numpy_forward_pass_gives_torchs_answers(config: dict) -> None:
    network = trained(config)
    x = np.random.default_rng(1).normal(size=(200, 6)).astype("float32") * 2
    exported = export_network(network)
    assert np.max(np.abs(exported.predict_log(x) - predict(network, x))) < PROBE_TOLERANCE / 10
    assert exported.price_columns == tuple(config.get("price_columns", ()))


def test_a_bundle_exports_to_a_json_file_that_loads_without_torch_and_prices_the_same(tmp_path: Path) -> None:
    bundle = bundle_with_weight_on("price_to_max")
    model = export_serving_model(bundle, bundle.reference)
    model.save(tmp_path / "serving.json")
    loaded = load_serving_model(tmp_path / "serving.json")
    frame = bundle.reference.head(20)
    np.testing.assert_allclose(loaded.predict_log(loaded.encoding.transform(frame)),
                               bundle.predict_log_quantity(frame), atol=PROBE_TOLERANCE)
    assert (loaded.stockcode, loaded.version, loaded.metadata) == ("85123A", "test", bundle.metadata)
    assert "__unseen__" in set(loaded.probe.frame["country"])  # the unknown-category branch is probed too


def _damaged(tmp_path: Path, change) -> Path:  # noqa: ANN001
    bundle = bundle_with_weight_on("price_to_max")
    export_serving_model(bundle, bundle.reference).save(tmp_path / "serving.json")
    data = json.loads((tmp_path / "serving.json").read_text())
    change(data)
    (tmp_path / "serving.json").write_text(json.dumps(data))
    return tmp_path / "serving.json"


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["network"]["layers"][0]["bias"].__setitem__(0, 9.0), "away from its recorded answers"),
    (lambda d: d["encoding"]["mean"].__setitem__(0, 1e3), "no longer gives the probe's recorded features"),
    (lambda d: d.__setitem__("format", "pickle"), "is not a pricetrail-serving-model file"),
    (lambda d: d.__setitem__("format_version", 9), "format_version 9"),
    (lambda d: d["network"].__setitem__("input_dim", 3), "input is 3 wide|encoding makes"),
    (lambda d: d["network"]["layers"][0].__setitem__("weight", [["x"]]), "array of numbers"),
    (lambda d: d["probe"].__setitem__("log_quantity", []), "same, non-zero length"),
    (lambda d: d.__delitem__("metadata"), "malformed: KeyError"),
])
def test_a_damaged_or_foreign_model_file_is_refused_naming_the_file(tmp_path: Path, change, message: str) -> None:  # noqa: ANN001
    path = _damaged(tmp_path, change)
    with pytest.raises(ExportError, match=message) as error:
        load_serving_model(path)
    assert str(path) in str(error.value)


def test_a_file_that_is_not_json_or_holds_nan_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ExportError, match="not readable JSON"):
        load_serving_model(tmp_path / "a.json")
    path = _damaged(tmp_path, lambda d: None)
    path.write_text(path.read_text().replace('"beta": [', '"beta": [NaN, ', 1))
    with pytest.raises(ExportError, match="NaN is not a number"):
        load_serving_model(path)
