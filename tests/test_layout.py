"""The package's rooms: subpackages import only downward, and every stage script is a thin call of one step."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

LIB = PROJECT_ROOT / "lib" / "pricetrail"
# Lower layers never import higher ones; a subpackage may import any lower one.
LAYERS = {"project": 0, "data": 1, "modeling": 2, "registry": 3, "pricing": 4, "lineage": 4, "flow": 4,
          "gates": 5, "serving": 5, "steps": 6, "cli": 7}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pricetrail."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("pricetrail."))
    return found


def test_every_subpackage_has_a_layer_and_says_what_it_holds() -> None:
    rooms = {path.name for path in LIB.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert rooms | {"cli"} == set(LAYERS)
    for room in rooms:
        assert ast.get_docstring(ast.parse((LIB / room / "__init__.py").read_text())), f"{room}/__init__.py"


def test_subpackages_import_only_downward() -> None:
    upward = []
    for path in LIB.rglob("*.py"):
        parts = path.relative_to(LIB).parts
        room = parts[0] if len(parts) > 1 else path.stem
        if room not in LAYERS:
            continue
        for target in _imports(path) - {room}:
            if LAYERS.get(target, 99) >= LAYERS[room]:
                upward.append(f"{path.relative_to(PROJECT_ROOT)} imports pricetrail.{target}")
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("script", sorted((PROJECT_ROOT / "stages").glob("*.py")), ids=lambda path: path.stem)
def test_a_stage_script_is_one_call_of_its_step(script: Path) -> None:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    body = tree.body[1:] if ast.get_docstring(tree) else tree.body
    kinds = [type(node).__name__ for node in body]
    assert set(kinds) <= {"ImportFrom", "If"} and kinds.count("If") == 1, kinds  # imports, then __main__
    main = body[-1]
    assert isinstance(main, ast.If) and len(main.body) == 1 and isinstance(main.body[0], ast.Expr)
    imported = {alias.name for node in body if isinstance(node, ast.ImportFrom) and node.module
                and node.module.startswith("pricetrail.steps.") for alias in node.names}
    assert script.stem in imported, f"{script.name} runs a step named after its stage"
