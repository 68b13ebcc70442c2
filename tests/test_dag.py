"""The DAG tells the truth: every stage depends on exactly the pricetrail modules its script runs."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib" / "pricetrail"


def _imported_modules(path: Path) -> set[str]:
    """Names of pricetrail modules a file imports at module level or inside functions (``pricetrail.x`` -> x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pricetrail":
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from pricetrail import registry, stage
                found.update(alias.name for alias in node.names if (LIB / f"{alias.name}.py").is_file())
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "pricetrail" and len(parts) > 1:
                    found.add(parts[1])
    return found


def transitive_modules(script: Path) -> set[str]:
    """Every module of lib/pricetrail that running ``script`` imports, directly or through other modules."""
    seen: set[str] = set()
    pending = list(_imported_modules(script))
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(_imported_modules(LIB / f"{name}.py") - seen)
    return seen


def stage_code_deps() -> dict[str, tuple[Path, set[str]]]:
    """For every stage in dvc.yaml: its script and the lib/pricetrail modules listed in its deps."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    result = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        script = next(dep for dep in body["deps"] if str(dep).startswith("stages/"))
        modules = {Path(dep).stem for dep in body["deps"] if str(dep).startswith("lib/pricetrail/")}
        result[name] = (ROOT / script, modules)
    return result


def test_every_stage_depends_on_exactly_the_modules_its_script_imports() -> None:
    problems = []
    for name, (script, declared) in stage_code_deps().items():
        imported = transitive_modules(script) - {"__init__"}
        if imported - declared:
            problems.append(f"{name}: imports {sorted(imported - declared)} but does not depend on them")
        if declared - imported:
            problems.append(f"{name}: depends on {sorted(declared - imported)} but never imports them")
    assert not problems, "\n".join(problems)


def test_the_import_walker_sees_function_level_and_package_imports(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("from pricetrail import stage\n\ndef main():\n    from pricetrail.bundle import load_bundle\n")
    assert {"stage", "bundle", "model", "preprocess", "config"} <= transitive_modules(script)
