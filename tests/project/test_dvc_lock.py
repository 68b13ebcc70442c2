"""Reading dvc.lock: the parsed mapping is reused only while the file keeps the bytes it was parsed from."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricetrail.project import dvc_lock
from pricetrail.project.files import ConfigError

LOCK = """schema: '2.0'
stages:
  etl_pipeline@85123A:
    cmd: python stages/etl_pipeline.py --stockcode 85123A
    deps:
    - path: data/interim/products/85123A.parquet
      hash: md5
      md5: 0123456789abcdef0123456789abcdef
      size: 10
    outs:
    - path: data/features/85123A
      hash: md5
      md5: fedcba9876543210fedcba9876543210.dir
  ingest:
    cmd: python stages/ingest.py
"""


def project(tmp_path: Path, text: str = LOCK) -> Path:
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    (tmp_path / "dvc.lock").write_text(text, encoding="utf-8")
    return tmp_path


def test_the_parsed_lock_is_reused_while_its_bytes_are_unchanged(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path)
    first = dvc_lock.read_stages(root)
    assert set(first) == {"etl_pipeline@85123A", "ingest"}
    assert (root / dvc_lock.PARSED_LOCK).is_file()
    parses: list[str] = []
    real = dvc_lock.stages_of
    monkeypatch.setattr(dvc_lock, "stages_of", lambda text, where="": parses.append(where) or real(text, where=where))
    assert dvc_lock.read_stages(root) == first and parses == []
    # The same length, one byte different: parsed again, never the kept mapping of other bytes.
    (root / "dvc.lock").write_text(LOCK.replace("size: 10", "size: 11"), encoding="utf-8")
    assert dvc_lock.read_stages(root)["etl_pipeline@85123A"]["deps"][0]["size"] == 11 and len(parses) == 1
    assert dvc_lock.read_stages(root)["etl_pipeline@85123A"]["deps"][0]["size"] == 11 and len(parses) == 1


@pytest.mark.parametrize("kept", ['{"sha256": ', '["not", "a", "mapping"]', '{"sha256": "x", "stages": {}}'])
def test_a_damaged_or_foreign_parsed_lock_is_ignored_and_replaced(tmp_path: Path, kept: str) -> None:
    root = project(tmp_path)
    (root / dvc_lock.PARSED_LOCK).parent.mkdir(parents=True)
    (root / dvc_lock.PARSED_LOCK).write_text(kept, encoding="utf-8")
    assert set(dvc_lock.read_stages(root)) == {"etl_pipeline@85123A", "ingest"}
    assert set(dvc_lock.read_stages(root)) == {"etl_pipeline@85123A", "ingest"}  # from the rewritten copy


def test_a_damaged_lock_is_still_one_clear_error(tmp_path: Path) -> None:
    root = project(tmp_path, "stages: [unclosed\n")
    with pytest.raises(ConfigError, match="dvc.lock is not valid YAML"):
        dvc_lock.read_stages(root)
    assert not (root / dvc_lock.PARSED_LOCK).exists()


def test_a_folder_that_is_not_a_project_gets_no_copy(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(LOCK, encoding="utf-8")
    assert set(dvc_lock.read_stages(tmp_path)) == {"etl_pipeline@85123A", "ingest"}
    assert not (tmp_path / ".dvc").exists()


def test_each_product_gets_its_own_entries_and_the_shared_ones(tmp_path: Path) -> None:
    stages = dvc_lock.read_stages(project(tmp_path))
    views = dvc_lock.entries_by_product(stages, ["85123A", "22423"])
    assert set(views["85123A"]) == {"etl_pipeline@85123A", "ingest"} and set(views["22423"]) == {"ingest"}
    assert views["85123A"] == dvc_lock.product_entries(stages, "85123A")


def test_a_lock_json_would_change_is_parsed_each_time_not_kept(tmp_path: Path) -> None:
    # A number as a mapping key (a param such as {90001: 0.3} unquoted) would come back from JSON as text.
    text = LOCK.replace("  ingest:\n    cmd: python stages/ingest.py\n",
                        "  ingest:\n    cmd: python stages/ingest.py\n    params:\n      params.yaml:\n"
                        "        synthetic.mispriced:\n          90001: 0.3\n")
    root = project(tmp_path, text)
    stages = dvc_lock.read_stages(root)
    assert stages["ingest"]["params"]["params.yaml"]["synthetic.mispriced"] == {90001: 0.3}
    assert not (root / dvc_lock.PARSED_LOCK).exists()
    assert dvc_lock.read_stages(root) == stages


def _entry(code: str, stage: str = "etl_pipeline", md5: str = "0" * 32) -> dict:
    return {"cmd": f"python stages/{stage}.py --stockcode {code} --a-long-option-that-wraps " + "x" * 70,
            "deps": [{"path": f"data/interim/products/{code}.parquet", "hash": "md5", "md5": md5, "size": 10}],
            "params": {"params.yaml": {"etl": {"min_rows": 200, "fraction": 0.15, "label": "a label", "none": None}}},
            "outs": [{"path": f"data/features/{code}", "hash": "md5", "md5": md5 + ".dir", "size": 5, "nfiles": 2}]}


def _round_trip(text: str, entries: dict, tmp_path: Path) -> str:
    from dvc.utils.serialize import modify_yaml

    path = tmp_path / "round-trip.lock"
    path.write_text(text, encoding="utf-8")
    with modify_yaml(str(path)) as data:
        if not data:
            data.update({"schema": "2.0"})
        stages = data.setdefault("stages", {})
        for name, entry in entries.items():
            stages[name] = entry
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("entries", [
    {"etl_pipeline@85123A": _entry("85123A", md5="1" * 32)},  # replaced in place
    {"etl_pipeline@22423": _entry("22423"), "preprocess@22423": _entry("22423", "preprocess")},  # added at the end
    {"ingest": {"cmd": "python stages/ingest.py", "outs": []}, "etl_pipeline@9": _entry("9")},  # both
])
@pytest.mark.parametrize("start", ["", LOCK], ids=["no lock yet", "a lock"])
def test_splicing_entries_writes_what_dvcs_own_round_trip_writes(tmp_path: Path, entries: dict, start: str) -> None:
    spliced = dvc_lock.splice_entries(start, entries)
    assert spliced is not None
    assert spliced[0] == _round_trip(start, entries, tmp_path)
    assert dvc_lock.stages_of(spliced[0]) == {**dvc_lock.stages_of(start), **entries}


@pytest.mark.parametrize("text", [LOCK.replace("stages:\n", "stages:\n# a comment\n"),
                                  LOCK.replace("  ingest:", "\n  ingest:"), "schema: '2.0'\n", "stages: {}\n",
                                  LOCK.rstrip("\n")])
def test_a_lock_not_in_dvcs_layout_is_not_spliced(text: str) -> None:
    assert dvc_lock.splice_entries(text, {"etl_pipeline@9": _entry("9")}) is None


def test_merging_entries_keeps_the_parsed_copy_for_the_new_bytes(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from pricetrail.flow.lockmerge import merge_lock_entries

    root = project(tmp_path)
    dvc_lock.read_stages(root)
    entries = {"etl_pipeline@85123A": _entry("85123A", md5="2" * 32), "etl_pipeline@9": _entry("9")}
    merge_lock_entries(root, entries)
    parses: list[str] = []
    monkeypatch.setattr(dvc_lock, "stages_of", lambda text, where="": parses.append(where) or {})
    assert dvc_lock.read_stages(root) == {**dvc_lock.yaml.safe_load(LOCK)["stages"], **entries} and parses == []
    monkeypatch.undo()
    assert dvc_lock.stages_of((root / "dvc.lock").read_text(encoding="utf-8")) == dvc_lock.read_stages(root)


def test_a_lock_in_another_layout_is_merged_by_the_round_trip(tmp_path: Path) -> None:
    from pricetrail.flow.lockmerge import merge_lock_entries

    text = LOCK.replace("stages:\n", "stages:\n# kept by the round-trip\n")
    root = project(tmp_path, text)
    entries = {"etl_pipeline@9": _entry("9")}
    merge_lock_entries(root, entries)
    assert (root / "dvc.lock").read_text(encoding="utf-8") == _round_trip(text, entries, tmp_path)


def test_a_word_yaml_1_1_reads_as_a_boolean_stays_the_text_dvc_wrote(tmp_path: Path) -> None:
    from pricetrail.flow.lockmerge import merge_lock_entries

    root = project(tmp_path)
    dvc_lock.read_stages(root)
    entry = _entry("9")
    entry["params"]["params.yaml"]["etl"].update({"label": "on", "other": "no", "flag": True})
    merge_lock_entries(root, {"etl_pipeline@9": entry})
    assert (root / "dvc.lock").read_text(encoding="utf-8") == _round_trip(LOCK, {"etl_pipeline@9": entry}, tmp_path)
    fresh = dvc_lock.stages_of((root / "dvc.lock").read_text(encoding="utf-8"))["etl_pipeline@9"]
    assert fresh["params"]["params.yaml"]["etl"]["label"] == "on" and fresh == entry  # not True: DVC reads "on"
    assert dvc_lock.read_stages(root)["etl_pipeline@9"] == entry  # the kept copy, carried to the new bytes
