"""The README stays true: the two commands exist, every feature is documented, .ci/run runs the test command."""

from __future__ import annotations

from pathlib import Path

from pricetrail.data.etl import FEATURE_DOCS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_feature_has_its_line_in_the_readme() -> None:
    for name, meaning in FEATURE_DOCS.items():
        assert f"| `{name}` | {meaning} |" in README, name


def test_two_commands_and_ci_agree() -> None:
    assert "make run " in README and "make test " in README
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\nrun: " in makefile and "\ntest: " in makefile


def test_every_cli_command_is_in_the_readme() -> None:
    from pricetrail.cli import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices  # noqa: SLF001
    for name in commands:
        assert f"pricetrail {name}" in README, name


def test_test_modules_have_unique_basenames() -> None:
    # pytest's default import mode (rootdir-relative, no packages) refuses to collect two test files with the
    # same basename — CI once failed at collection on tests/test_lineage.py vs tests/integration/test_lineage.py.
    names = sorted(path.name for path in (ROOT / "tests").rglob("test_*.py"))
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"rename one of each: {duplicates}"


def test_one_conftest() -> None:
    # Every conftest.py is imported as the module `conftest`: a second one shadows tests/conftest.py for the unit
    # tests' `from conftest import ...` (collection failed that way once).
    found = [path.relative_to(ROOT).as_posix() for path in (ROOT / "tests").rglob("conftest.py")]
    assert found == ["tests/conftest.py"]
