"""The registry: pointers into the DVC cache, promotion integrity, history, rollback, accepted drift, migration."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from registry_runs import CODE, OTHER, make_run, snapshot, write_daily

from pricetrail.project.files import file_md5, write_json
from pricetrail.project.paths import ProductPaths
from pricetrail.registry import (
    artifacts,
    drift_reference,
    migration,
    operator_actions,
    promotion,
    records,
    references,
    state_pointer,
)
from pricetrail.registry.artifacts import ArtifactError, dvc_cache_dir, object_relpath


def test_promotion_records_pointers_that_resolve_to_the_assessed_bytes(tmp_path: Path) -> None:
    make_run(tmp_path)
    decision = promotion.promote(tmp_path, CODE)
    assert decision.action == "promoted" and decision.served_version == "aaaa0000"
    served = records.served_model(tmp_path, CODE)
    assert served is not None and served.version == "aaaa0000"
    files = served.resolve([artifacts.local_sources(tmp_path)[0]])
    paths = ProductPaths(CODE)
    assert files["model.pt"].read_bytes() == (tmp_path / paths.checkpoint).read_bytes()
    assert files["reference.parquet"].read_bytes() == (tmp_path / paths.split("train")).read_bytes()
    assert ".dvc/cache/files/md5" in str(files["model.pt"])  # from the cache, not the workspace
    assert served.record["artifacts"]["model.pt"]["out"] == "models/85123A"
    assert served.record["artifacts"]["model.pt"]["out_md5"].endswith(".dir")
    assert served.record["training_data"] == {"first_date": "2011-01-01", "last_date": "2011-02-09", "rows": 40}
    # Only small text: no binary is copied under registry/.
    for name, content in snapshot(tmp_path).items():
        assert name.endswith((".json", ".jsonl")) and len(content) < 10_000, name
        json.loads(content.splitlines()[0] if name.endswith(".jsonl") else content)
    reference = json.loads((tmp_path / "registry" / CODE / "drift_reference.json").read_text())
    assert reference["kind"] == "served_model" and reference["artifact"]["md5"] == file_md5(
        tmp_path / paths.split("train"))
    assert [e["action"] for e in records.history(tmp_path, CODE)] == ["promoted"]
    assert promotion.promote(tmp_path, CODE).action == "unchanged"  # idempotent: no second history line
    assert len(records.history(tmp_path, CODE)) == 1


def test_a_corrupted_cache_object_is_refused_naming_product_file_and_hash(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    served = records.served_model(tmp_path, CODE)
    assert served is not None
    expected = served.record["artifacts"]["model.pt"]["md5"]
    cached = dvc_cache_dir(tmp_path) / object_relpath(expected)
    cached.chmod(0o644)
    cached.write_bytes(b"x" * len(cached.read_bytes()))  # same size, other bytes
    with pytest.raises(ArtifactError, match=rf"85123A version aaaa0000: model.pt .* expected md5 {expected}"):
        records.resolve_version(tmp_path, CODE, "aaaa0000")
    cached.unlink()
    with pytest.raises(ArtifactError, match=r"model.pt \(md5 [0-9a-f]{32}, from models/85123A/model.pt\) is in none"):
        records.resolve_version(tmp_path, CODE, "aaaa0000")


def test_an_unassessed_checkpoint_is_never_promoted(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    make_run(tmp_path, version="bbbb0000", marker=2.0)
    # `dvc repro tune_primary_model@X` with new params: a new checkpoint, but the verdict is the old model's.
    (tmp_path / ProductPaths(CODE).checkpoint).write_bytes(b"retrained, never assessed")
    decision = promotion.promote(tmp_path, CODE)
    assert decision.action == "kept" and decision.served_version == "aaaa0000"
    assert "models/85123A/model.pt" in decision.reason and "is not the file assess_model_risk@85123A assessed" in (
        decision.reason)


def test_failed_gate_keeps_the_earlier_model_records_why_once(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    make_run(tmp_path, version="bbbb0000", marker=2.0, failed=("fairness_mean_outcome_difference",))
    decision = promotion.promote(tmp_path, CODE)
    assert decision.action == "kept" and decision.served_version == "aaaa0000"
    assert "fairness_mean_outcome_difference=0.9 (threshold 0.05)" in decision.reason
    promotion.promote(tmp_path, CODE)  # the same decision next week: not recorded twice
    assert [e["action"] for e in records.history(tmp_path, CODE)] == ["promoted", "kept"]
    assert records.history(tmp_path, CODE)[-1]["git_commit"] is None  # not a git repository here


def test_the_replaced_models_decisions_ride_with_the_next_promotion(tmp_path: Path) -> None:
    first = {"registered": {"day": "2011-02-10", "action": "change", "price": 3.25, "status_quo": 2.95,
                            "probability_of_gain": 0.97},
             "guest": {"day": "2011-02-10", "action": "keep", "price": 5.79, "status_quo": 5.79,
                       "probability_of_gain": None}}
    make_run(tmp_path, price_decisions=first)
    promotion.promote(tmp_path, CODE)
    served = records.served_model(tmp_path, CODE)
    assert served is not None and "earlier_decisions" not in served.record  # nothing was served before it
    assert served.record["verdict"]["price_decisions"] == first
    make_run(tmp_path, version="bbbb0000", marker=2.0, price_decisions={})
    promotion.promote(tmp_path, CODE)
    served = records.served_model(tmp_path, CODE)
    assert served is not None and served.version == "bbbb0000"
    assert served.record["earlier_decisions"] == {"version": "aaaa0000", "decisions": first}
    # The version record is the served one: a rollback to it brings back what it carried.
    assert records.version_record(tmp_path, CODE, "bbbb0000")["earlier_decisions"]["version"] == "aaaa0000"


def test_drift_blocks_promotion_and_retrain_policy_lets_the_risk_gate_decide(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    make_run(tmp_path, version="cccc0000", marker=3.0, drift="block")
    decision = promotion.promote(tmp_path, CODE)
    assert decision.action == "kept" and "drift gate failed" in decision.reason and "unit_price" in decision.reason
    make_run(tmp_path, version="cccc0000", marker=3.0, drift="retrain")
    decision = promotion.promote(tmp_path, CODE)
    assert decision.action == "promoted" and "on_drift=retrain" in decision.reason


def test_stale_verdict_is_never_promoted(tmp_path: Path) -> None:
    make_run(tmp_path)
    paths = ProductPaths(CODE)
    write_daily(tmp_path / paths.lines, "2011-01-01", 61, 1.0)  # new data, chain not rerun
    write_json(tmp_path / paths.drift_gate, {"features_md5": file_md5(tmp_path / paths.lines)})
    decision = promotion.promote(tmp_path, CODE)
    assert decision.action == "none" and "stale" in decision.reason


def test_one_products_failure_stops_no_other_and_leaves_its_record_intact(tmp_path: Path) -> None:
    make_run(tmp_path, CODE)
    make_run(tmp_path, OTHER)
    promotion.promote_all(tmp_path, [CODE, OTHER])
    before = snapshot(tmp_path)
    make_run(tmp_path, CODE, version="dddd0000", marker=4.0)
    make_run(tmp_path, OTHER, version="eeee0000", marker=5.0)
    (tmp_path / ProductPaths(CODE).split("train")).unlink()  # a missing file in one product's outputs
    decisions = promotion.promote_all(tmp_path, [CODE, OTHER])
    assert [d.action for d in decisions] == ["error", "promoted"]
    assert "data/preprocessed/85123A/train.parquet does not exist" in decisions[0].reason
    after = snapshot(tmp_path)
    product_files = [name for name in before if f"/{CODE}/" in name and not name.endswith("history.jsonl")]
    assert all(after[name] == before[name] for name in product_files)
    assert not [name for name in after if ".tmp" in name or "partial" in name]


def test_a_crash_mid_promotion_leaves_the_previous_record_and_is_completed_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    served_before = (tmp_path / "registry" / CODE / "served.json").read_bytes()
    make_run(tmp_path, version="ffff0000", marker=6.0)
    real_replace = os.replace

    def crash_on_served(src: str, dst: str) -> None:
        if str(dst).endswith("served.json"):
            raise KeyboardInterrupt("killed")  # not an Exception: nothing catches it, like a kill
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_served)
    with pytest.raises(KeyboardInterrupt):
        promotion.promote(tmp_path, CODE)
    monkeypatch.setattr(os, "replace", real_replace)
    assert (tmp_path / "registry" / CODE / "served.json").read_bytes() == served_before
    assert not list((tmp_path / "registry").rglob("*.tmp"))
    # The history line was the commit point: the next promote completes the decision.
    assert promotion.promote(tmp_path, CODE).action == "unchanged"
    assert records.served_model(tmp_path, CODE).version == "ffff0000"  # type: ignore[union-attr]
    reference = json.loads((tmp_path / "registry" / CODE / "drift_reference.json").read_text())
    assert reference["version"] == "ffff0000"


def test_rollback_serves_the_earlier_version_from_the_cache_and_is_not_undone(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    first_model = (tmp_path / ProductPaths(CODE).checkpoint).read_bytes()
    make_run(tmp_path, version="bbbb0000", marker=2.0)
    promotion.promote(tmp_path, CODE)
    decision = operator_actions.rollback(tmp_path, CODE, reason="prices too low in store test")
    assert decision.action == "rollback" and decision.served_version == "aaaa0000"
    files = records.resolve_version(tmp_path, CODE, "aaaa0000")
    assert files["model.pt"].read_bytes() == first_model  # the workspace holds bbbb's checkpoint now
    assert json.loads((tmp_path / "registry" / CODE / "drift_reference.json").read_text())["version"] == "aaaa0000"
    # The next weekly run does not re-promote the version an operator rolled back from.
    again = promotion.promote(tmp_path, CODE)
    assert again.action == "kept" and "rolled back by an operator" in again.reason
    assert [e["action"] for e in records.history(tmp_path, CODE)] == ["promoted", "promoted", "rollback", "kept"]
    with pytest.raises(records.RegistryError, match="no version promoted before aaaa0000"):
        operator_actions.rollback(tmp_path, CODE)
    operator_actions.rollback(tmp_path, CODE, to="bbbb0000", reason="fixed")  # explicitly forward again
    assert records.served_model(tmp_path, CODE).version == "bbbb0000"  # type: ignore[union-attr]


def test_rollback_refuses_unknown_versions_and_products_with_nothing_served(tmp_path: Path) -> None:
    make_run(tmp_path)
    with pytest.raises(records.RegistryError, match="serves no model; there is nothing to roll back"):
        operator_actions.rollback(tmp_path, CODE)
    promotion.promote(tmp_path, CODE)
    before = snapshot(tmp_path)
    with pytest.raises(records.RegistryError, match="has never promoted version 1234abcd; promoted versions: "
                                                     "aaaa0000"):
        operator_actions.rollback(tmp_path, CODE, to="1234abcd")
    with pytest.raises(records.RegistryError, match=r"version '\.\./x' is not a model version"):
        operator_actions.rollback(tmp_path, CODE, to="../x")
    with pytest.raises(records.RegistryError, match="no version promoted before"):
        operator_actions.rollback(tmp_path, CODE)
    assert snapshot(tmp_path) == before


def test_rollback_verifies_the_artifacts_before_switching(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    model_md5 = records.served_model(tmp_path, CODE).record["artifacts"]["model.pt"]["md5"]  # type: ignore
    make_run(tmp_path, version="bbbb0000", marker=2.0)
    promotion.promote(tmp_path, CODE)
    (dvc_cache_dir(tmp_path) / object_relpath(model_md5)).unlink()  # e.g. collected by a careless dvc gc
    before = snapshot(tmp_path)
    with pytest.raises(records.RegistryError, match="cannot roll 85123A back to aaaa0000"):
        operator_actions.rollback(tmp_path, CODE)
    assert snapshot(tmp_path) == before


def test_accepted_drift_becomes_the_reference_window_and_is_recorded(tmp_path: Path) -> None:
    make_run(tmp_path, drift="block")
    decision = operator_actions.accept_drift(tmp_path, CODE, reason="new supplier, new price level")
    assert decision.action == "accepted_drift"
    frame, label = drift_reference.drift_reference(tmp_path, CODE)  # type: ignore[misc]
    days = pd.to_datetime(frame["invoice_date"])
    assert str(days.min().date()) == "2011-02-01" and str(days.max().date()) == "2011-03-01"
    assert "new supplier" in label
    entry = records.history(tmp_path, CODE)[-1]
    assert entry["action"] == "accepted_drift" and entry["window"] == ["2011-02-01", "2011-03-01"]
    with pytest.raises(records.RegistryError, match="needs --reason"):
        operator_actions.accept_drift(tmp_path, CODE, reason="  ")
    # The drift result on disk must be about the current data.
    write_daily(tmp_path / ProductPaths(CODE).lines, "2011-01-01", 70, 9.0)
    with pytest.raises(records.RegistryError, match="is not about the current data"):
        operator_actions.accept_drift(tmp_path, CODE, reason="again")


def test_an_accepted_window_newer_than_the_training_rows_survives_promotion(tmp_path: Path) -> None:
    make_run(tmp_path, drift="block")
    operator_actions.accept_drift(tmp_path, CODE, reason="regime change")
    make_run(tmp_path, drift="passed")
    promotion.promote(tmp_path, CODE)
    reference = json.loads((tmp_path / "registry" / CODE / "drift_reference.json").read_text())
    assert reference["kind"] == "accepted_drift"  # the training rows end 2011-02-09, before the accepted window


def test_damaged_records_are_clear_errors(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    served = tmp_path / "registry" / CODE / "served.json"
    served.write_text('{"version": "aaaa0000", "sch')
    with pytest.raises(records.RegistryError, match="registry record of 85123A is damaged: .* is not valid JSON"):
        records.served_model(tmp_path, CODE)
    served.write_text(json.dumps({"schema": 2, "stockcode": CODE, "version": "../../etc"}))
    with pytest.raises(records.RegistryError, match="expected a hex content hash"):
        records.served_model(tmp_path, CODE)
    served.write_text(json.dumps({"schema": 2, "stockcode": CODE, "version": "aaaa0000", "artifacts": {}}))
    with pytest.raises(records.RegistryError, match="artifacts .* are not recorded"):
        records.served_model(tmp_path, CODE)
    history = tmp_path / "registry" / CODE / "history.jsonl"
    history.write_text(history.read_text() + '{"action": "promo')
    with pytest.raises(records.RegistryError, match="history.jsonl line 2 is not JSON"):
        records.history(tmp_path, CODE)


def test_new_products_get_a_drift_reference_record(tmp_path: Path) -> None:
    assert drift_reference.ensure_records(tmp_path, [CODE, OTHER]) == [CODE, OTHER]
    assert drift_reference.ensure_records(tmp_path, [CODE]) == []
    assert drift_reference.drift_reference(tmp_path, CODE) is None  # an older window of its own history
    (tmp_path / "registry" / OTHER / "drift_reference.json").unlink()
    with pytest.raises(records.RegistryError, match="pricetrail run"):
        drift_reference.drift_reference(tmp_path, OTHER)


def test_the_old_copied_binaries_layout_is_migrated_without_loss(tmp_path: Path) -> None:
    make_run(tmp_path)
    paths = ProductPaths(CODE)
    old = tmp_path / "registry" / CODE / "versions" / "aaaa0000"
    old.mkdir(parents=True)
    for name, source in (("model.pt", paths.checkpoint), ("preprocessor.skops", paths.preprocessor),
                         ("daily.parquet", paths.daily), ("reference.parquet", paths.split("train"))):
        shutil.copyfile(tmp_path / source, old / name)
    write_json(old / "verdict.json", {"promoted": True, "checks": [], "risk": {"model_rmsle": 0.4}})
    write_json(old / "lineage.json", {"promoted_at": "2026-01-01T00:00:00+00:00", "dvc_lock": {}})
    write_json(tmp_path / "registry" / CODE / "served.json", {"version": "aaaa0000", "path": str(old)})
    (tmp_path / "registry" / CODE / "history.jsonl").write_text(
        json.dumps({"version": "aaaa0000", "promoted_at": "2026-01-01T00:00:00+00:00"}) + "\n")
    bytes_before = (old / "model.pt").read_bytes()
    shutil.rmtree(dvc_cache_dir(tmp_path))  # the old layout's bytes exist only under registry/
    with pytest.raises(records.RegistryError, match="migrate-registry"):
        records.served_model(tmp_path, CODE)
    assert migration.migrate_layout(tmp_path, [CODE]) == [CODE]
    assert not old.exists()
    assert records.resolve_version(tmp_path, CODE, "aaaa0000")["model.pt"].read_bytes() == bytes_before
    assert [e["action"] for e in records.history(tmp_path, CODE)] == ["promoted"]
    assert migration.migrate_layout(tmp_path, [CODE]) == []  # idempotent


def test_a_state_pointer_naming_another_products_history_is_refused(tmp_path: Path) -> None:
    make_run(tmp_path, CODE)
    make_run(tmp_path, OTHER, marker=2.0)
    promotion.promote_all(tmp_path, [CODE, OTHER])
    other = json.loads((tmp_path / "registry" / OTHER / "state.json").read_text()) if (
        tmp_path / "registry" / OTHER / "state.json").is_file() else None
    forged = {"stockcode": CODE, "first_day": "2011-01-01", "last_day": "2011-03-01",
              "artifact": (other or {}).get("artifact") or {"path": ProductPaths(OTHER).daily.as_posix(),
                                                              "md5": "0" * 32, "size": 1,
                                                              "out": ProductPaths(OTHER).features_dir.as_posix()}}
    (tmp_path / "registry" / CODE / "state.json").write_text(json.dumps(forged))
    with pytest.raises(records.RegistryError, match=r"state pointer .* of 85123A is damaged: it points at "
                                                     r"data/features/22423/daily.parquet"):
        state_pointer.read_state_pointer(tmp_path, CODE)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("verdict", {"promoted": "yes", "checks": []}, "verdict.promoted is str 'yes'; expected bool"),
    ("verdict", {"promoted": True, "checks": [{"name": "x"}]}, "verdict.checks[0].passed is missing"),
    ("metrics", {"test_rmsle": "0.5"}, "metrics.test_rmsle is str '0.5'; expected a finite number or null"),
    ("training_data", {"first_date": "2011-01-01", "last_date": 3, "rows": 1}, "training_data.last_date is int"),
    ("price_range", {"registered": [0, 1e300]}, "price_range.registered is '[0, 1e+300]'"),
    ("served_since", 17, "served_since is int 17; expected str"),
    ("earlier_decisions", {"decisions": {}}, "earlier_decisions is {'decisions': {}}; expected {version:"),
    ("earlier_decisions", {"version": "aaaa0000", "decisions": {"registered": {"action": "change", "price": 3}}},
     "earlier_decisions.decisions.registered is {'action': 'change', 'price': 3}; expected {group: {day: date"),
    ("verdict", {"promoted": True, "checks": [], "price_decisions": {"guest": {
        "day": "2011-02-10", "action": "change", "price": -1, "status_quo": 5.79, "probability_of_gain": 0.95}}},
     "verdict.price_decisions.guest is"),
])
def test_a_wrong_typed_field_in_a_record_is_one_clear_error(tmp_path: Path, field: str, value: object,
                                                            message: str) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    path = tmp_path / "registry" / CODE / "served.json"
    record = json.loads(path.read_text())
    record[field] = value
    path.write_text(json.dumps(record))
    with pytest.raises(records.RegistryError) as error:
        records.served_model(tmp_path, CODE)
    assert "registry record" in str(error.value) and message in str(error.value), str(error.value)


def test_outputs_that_dvc_lock_does_not_name_are_never_promoted(tmp_path: Path) -> None:
    make_run(tmp_path)
    promotion.promote(tmp_path, CODE)
    lock = (tmp_path / "dvc.lock").read_text()
    make_run(tmp_path, version="bbbb0000", marker=2.0)
    (tmp_path / "dvc.lock").write_text(lock)  # outputs moved in, dvc.lock not merged yet: an interrupted landing
    decision = promotion.promote(tmp_path, CODE)
    assert decision.action == "kept" and "the outputs changed without dvc.lock" in decision.reason
    assert records.served_model(tmp_path, CODE).version == "aaaa0000"  # type: ignore[union-attr]


def test_every_registry_folder_is_referenced_listed_or_not_and_a_stray_folder_refuses(tmp_path: Path) -> None:
    make_run(tmp_path, CODE)
    make_run(tmp_path, OTHER, marker=2.0)
    promotion.promote_all(tmp_path, [CODE, OTHER])
    found = references.referenced_artifacts(tmp_path)  # no stockcodes.yaml at all: the folders decide
    assert sorted(found) == [OTHER, CODE] and all(found.values())
    (tmp_path / "registry" / "not a product").mkdir()
    with pytest.raises(records.RegistryError, match="is not a product's registry folder"):
        references.referenced_artifacts(tmp_path)
