"""Every params.yaml section has one typed, frozen settings class that refuses unknown keys; defaults live in
params.yaml (where a class keeps one, it is the shipped value), and every profile's params are accepted."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROJECT_ROOT

from pricetrail.data.etl import CleaningRules
from pricetrail.data.ingest import IngestSettings
from pricetrail.data.preprocess import PreprocessSettings
from pricetrail.data.synthetic.settings import SyntheticSettings
from pricetrail.gates.assessment import RiskSettings
from pricetrail.gates.drift import DriftSettings
from pricetrail.modeling.explain import InferenceSettings
from pricetrail.modeling.tuning import TuneSettings
from pricetrail.pricing.decision import DecisionSettings
from pricetrail.pricing.request import PriceRequest, RecommendSettings
from pricetrail.project.config import BaseSettings, load_params
from pricetrail.serving.config import from_project

SETTINGS: dict[str, Callable[[Any], Any]] = {
    "base": BaseSettings.from_params, "synthetic": SyntheticSettings.from_params,
    "ingest": IngestSettings.from_params, "etl": CleaningRules.from_params,
    "data_drift_check": DriftSettings.from_params, "preprocess": PreprocessSettings.from_params,
    "tune_primary_model": TuneSettings.from_params, "inference_primary_model": InferenceSettings.from_params,
    "assess_model_risk": RiskSettings.from_params, "decision": DecisionSettings.from_params,
    "recommend": RecommendSettings.from_params,
}
PARAMS = load_params(PROJECT_ROOT)


def test_every_params_section_has_its_settings_class() -> None:
    assert set(PARAMS) == set(SETTINGS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_shipped_section_is_accepted_and_frozen(name: str) -> None:
    settings = SETTINGS[name](PARAMS[name])
    field = dataclasses.fields(settings)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(settings, field, None)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_an_unknown_key_is_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match=rf"params.yaml {name} has unknown keys \['colour'\]"):
        SETTINGS[name]({**PARAMS[name], "colour": "blue"})


@pytest.mark.parametrize("name", ["base", "synthetic", "ingest", "tune_primary_model", "inference_primary_model",
                                  "assess_model_risk", "recommend"])
def test_a_missing_key_is_named_not_defaulted_in_code(name: str) -> None:
    values = dict(PARAMS[name])
    dropped = sorted(values)[0]
    del values[dropped]
    with pytest.raises(ValueError, match=rf"params.yaml {name} lacks keys \['{dropped}'\]"):
        SETTINGS[name](values)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("cls,name", [(CleaningRules, "etl"), (DriftSettings, "data_drift_check"),
                                      (PreprocessSettings, "preprocess"), (DecisionSettings, "decision")])
def test_a_default_kept_in_code_is_the_shipped_value(cls: type, name: str) -> None:
    # These classes keep defaults for the unit tests' tiny frames; a default that drifted from params.yaml would
    # make a test pass on settings the pipeline never uses.
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            assert _plain(field.default) == _plain(PARAMS[name][field.name]), (name, field.name)


def test_the_router_and_the_command_line_share_the_grid_and_the_decision(tmp_path: Path) -> None:
    config = from_project(PROJECT_ROOT, tmp_path)
    grid = RecommendSettings.from_params(PARAMS["recommend"])
    assert (config.default_points, config.range_widening) == (grid.grid_size, grid.range_widening)
    assert config.decision == DecisionSettings.from_params(PARAMS["decision"])
    assert (PriceRequest(date="2011-12-01").points, PriceRequest(date="2011-12-01").range_widening) == (
        grid.grid_size, grid.range_widening)


@pytest.mark.parametrize("profile", sorted(p.stem for p in (PROJECT_ROOT / "profiles").glob("*.yaml")))
def test_every_profile_gives_accepted_settings(profile: str) -> None:
    overrides = yaml.safe_load((PROJECT_ROOT / "profiles" / f"{profile}.yaml").read_text())["params"]
    for name, values in overrides.items():
        SETTINGS[name]({**PARAMS[name], **values})
