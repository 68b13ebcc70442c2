"""Profiles rewrite params.yaml and stockcodes.yaml all or nothing: an injected write failure changes neither."""

from __future__ import annotations

import errno
import shutil
import stat
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT
from ruamel.yaml import YAML

from pricetrail.project.config import load_stockcodes, read_yaml
from pricetrail.project.files import ConfigError
from pricetrail.project.profiles import apply_profile


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("params.yaml", "stockcodes.yaml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
        (tmp_path / name).chmod(0o644)
    shutil.copytree(PROJECT_ROOT / "profiles", tmp_path / "profiles")
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(root.iterdir()) if path.is_file()}


def test_profile_rewrites_values_keeps_comments_and_modes(root: Path) -> None:
    assert apply_profile(root, "smoke") == ["params.yaml", "stockcodes.yaml"]
    params = read_yaml(root / "params.yaml")
    assert params["tune_primary_model"]["n_trials"] == 4 and params["synthetic"]["filler_products"] == 5
    assert "# Every seed, size and threshold" in (root / "params.yaml").read_text()
    assert list(load_stockcodes(root)) == ["85123A", "22423"]
    for name in ("params.yaml", "stockcodes.yaml"):
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o644, name
    assert sorted(path.name for path in root.iterdir()) == ["params.yaml", "profiles", "stockcodes.yaml"]


def half_then_disk_full(original):
    def write(self, *args, **kwargs):
        original(self, "stockcodes:\n  \"85", encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")
    return write


def test_failed_params_write_changes_nothing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(root)
    original = YAML.dump

    def dump(self, data, stream, **kwargs):
        stream.write("base:\n  se")  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(YAML, "dump", dump)
    with pytest.raises(OSError, match="No space left"):
        apply_profile(root, "smoke")
    monkeypatch.setattr(YAML, "dump", original)
    assert snapshot(root) == before  # no half-written file, no temporary file left behind


def test_failed_stockcodes_write_changes_neither_file(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(root)
    monkeypatch.setattr(Path, "write_text", half_then_disk_full(Path.write_text))
    with pytest.raises(OSError, match="No space left"):
        apply_profile(root, "smoke")
    monkeypatch.undo()
    assert snapshot(root) == before


def test_bad_profiles_are_refused_before_anything_is_written(root: Path) -> None:
    before = snapshot(root)
    (root / "profiles" / "bad.yaml").write_text('params:\n  base:\n    seed: 1\nstockcodes:\n  "../victim": {}\n')
    with pytest.raises(ConfigError, match="letters and digits only"):
        apply_profile(root, "bad")
    (root / "profiles" / "typo.yaml").write_text("params:\n  base:\n    sead: 1\n")
    with pytest.raises(ConfigError, match="base.sead"):
        apply_profile(root, "typo")
    assert snapshot(root) == before


@pytest.mark.parametrize(("entry", "message"), [
    ("  NO: {description: x}\n", "reads as False to pricetrail but 'NO' to DVC"),
    ("  123: {description: x}\n", "stockcode 123 is read as int, not text"),
    ("  0123: {description: x}\n", "reads as 83 to pricetrail but 123 to DVC"),
    ("  1e5: {description: x}\n", "reads as '1e5' to pricetrail but 100000.0 to DVC"),
    ('  "85123A": {description: 3}\n', "stockcode 85123A has description 3"),
])
def test_a_profile_product_that_is_not_text_is_refused_and_nothing_is_written(root: Path, entry: str,
                                                                             message: str) -> None:
    (root / "profiles" / "bad.yaml").write_text("stockcodes:\n" + entry)
    before = snapshot(root)
    with pytest.raises(ConfigError, match=message):
        apply_profile(root, "bad")
    assert snapshot(root) == before


def test_descriptions_with_backslashes_quotes_and_colons_stay_readable(root: Path) -> None:
    description = 'HEART \\ "T-LIGHT": 6\'s #1'
    (root / "profiles" / "odd.yaml").write_text(
        "stockcodes:\n  \"85123A\": {description: 'HEART \\ \"T-LIGHT\": 6''s #1'}\n  \"0123\": {description: x}\n")
    apply_profile(root, "odd")
    products = load_stockcodes(root)  # read by both pricetrail's and DVC's YAML readers, the same
    assert products == {"85123A": {"description": description}, "0123": {"description": "x"}}
