"""Promotion: only a current, gate-passing verdict is promoted; otherwise the served model stays, with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pricetrail import registry
from pricetrail.config import write_json
from pricetrail.hashing import file_md5
from pricetrail.paths import ProductPaths

CODE = "85123A"


def make_run(root: Path, *, version: str, passed: bool = True, drift_passed: bool = True, data: bytes = b"v1",
             failed: tuple[str, ...] = ()) -> None:
    """The outputs of one product's chain, as the stages leave them (artifact contents do not matter here)."""
    paths = ProductPaths(CODE)
    for path in (paths.lines, paths.daily, paths.checkpoint, paths.preprocessor, paths.split("train")):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data + path.name.encode())
    features_md5 = file_md5(root / paths.lines)
    gate = root / paths.drift_gate
    if drift_passed:
        write_json(gate, {"stockcode": CODE, "passed": True, "features_md5": features_md5})
        write_json(root / paths.drift_metrics, {"drift_detected": False, "drifted_columns": []})
    else:
        gate.unlink(missing_ok=True)
        write_json(root / paths.drift_metrics, {"drift_detected": True, "drifted_columns": ["unit_price"]})
    checks = [{"name": name, "passed": name not in failed, "value": 0.9, "threshold": 0.05} for name in
              ("beats_baseline", "fairness_mean_outcome_difference")]
    write_json(root / paths.verdict, {"stockcode": CODE, "promoted": passed and not failed, "model_version": version,
                                      "checks": checks, "failed_checks": list(failed),
                                      "lineage": {"features_md5": features_md5, "params_hash": "p"}})


def test_first_passing_model_is_promoted_with_history(tmp_path: Path) -> None:
    make_run(tmp_path, version="aaaa")
    decision = registry.promote(tmp_path, CODE)
    assert decision.action == "promoted" and decision.served_version == "aaaa"
    served = registry.served_model(tmp_path, CODE)
    assert served is not None and served.version == "aaaa"
    assert json.loads(served.file("lineage.json").read_text())["features_md5"]
    assert [entry["version"] for entry in registry.history(tmp_path, CODE)] == ["aaaa"]
    assert registry.promote(tmp_path, CODE).action == "unchanged"  # idempotent: no second history line
    assert len(registry.history(tmp_path, CODE)) == 1


def test_failed_gate_keeps_the_earlier_model_and_says_which_check(tmp_path: Path) -> None:
    make_run(tmp_path, version="aaaa")
    registry.promote(tmp_path, CODE)
    make_run(tmp_path, version="bbbb", data=b"v2", failed=("fairness_mean_outcome_difference",))
    decision = registry.promote(tmp_path, CODE)
    assert decision.action == "kept" and decision.served_version == "aaaa"
    assert "fairness_mean_outcome_difference=0.9 (threshold 0.05)" in decision.reason


def test_drift_failure_blocks_promotion_even_with_an_old_passing_verdict(tmp_path: Path) -> None:
    make_run(tmp_path, version="aaaa")
    registry.promote(tmp_path, CODE)
    # New data arrives and fails the drift gate: the verdict left on disk is last week's.
    paths = ProductPaths(CODE)
    verdict = json.loads((tmp_path / paths.verdict).read_text())
    make_run(tmp_path, version="cccc", data=b"v3", drift_passed=False)
    write_json(tmp_path / paths.verdict, {**verdict, "model_version": "cccc"})
    decision = registry.promote(tmp_path, CODE)
    assert decision.action == "kept" and "drift gate failed" in decision.reason and "unit_price" in decision.reason


def test_stale_verdict_is_never_promoted(tmp_path: Path) -> None:
    make_run(tmp_path, version="aaaa")
    paths = ProductPaths(CODE)
    (tmp_path / paths.lines).write_bytes(b"new data, chain not rerun")
    write_json(tmp_path / paths.drift_gate, {"features_md5": file_md5(tmp_path / paths.lines)})
    decision = registry.promote(tmp_path, CODE)
    assert decision.action == "none" and "stale" in decision.reason


def test_never_passed_product_serves_nothing_and_says_why(tmp_path: Path) -> None:
    make_run(tmp_path, version="aaaa", failed=("beats_baseline",))
    decision = registry.promote(tmp_path, CODE)
    assert decision.action == "none" and "serves no model yet" in decision.reason
    assert registry.served_model(tmp_path, CODE) is None
    assert registry.promote(tmp_path, "22423").reason.startswith("no features")


def test_damaged_registry_is_a_clear_error(tmp_path: Path) -> None:
    make_run(tmp_path, version="aaaa")
    registry.promote(tmp_path, CODE)
    (tmp_path / "registry" / CODE / "versions" / "aaaa" / "model.pt").unlink()
    with pytest.raises(registry.RegistryError, match=r"lacks \['model.pt'\]"):
        registry.served_model(tmp_path, CODE)
    (tmp_path / "registry" / CODE / "served.json").write_text('{"version": "../../etc"}')
    with pytest.raises(registry.RegistryError, match="expected a hex content hash"):
        registry.served_model(tmp_path, CODE)
