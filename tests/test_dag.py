"""The DAG tells the truth: every stage depends on exactly the pricetrail modules its script runs."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib" / "pricetrail"


def _module_file(name: str) -> Path:
    """lib/pricetrail/<a>/<b>.py for the module pricetrail.a.b (a package's __init__.py for a package)."""
    path = LIB.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imported_modules(path: Path) -> set[str]:
    """Dotted names (below pricetrail) of the pricetrail modules a file imports at module level or inside functions
    (``pricetrail.pricing.grid`` -> ``serving.grid``); importing a module runs its packages' ``__init__`` too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pricetrail":
            base = node.module.split(".")[1:]
            if base:
                names.append(".".join(base))
            # from pricetrail(.x) import y: y may be a module of that package
            names += [".".join([*base, alias.name]) for alias in node.names
                      if _module_file(".".join([*base, alias.name])).is_file()]
        elif isinstance(node, ast.Import):
            names += [".".join(alias.name.split(".")[1:]) for alias in node.names
                      if alias.name.split(".")[0] == "pricetrail" and "." in alias.name]
        for name in names:
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {name for name in found if _module_file(name).is_file()}


def transitive_modules(script: Path) -> set[str]:
    """Every module of lib/pricetrail that running ``script`` imports, directly or through other modules."""
    seen: set[str] = set()
    pending = list(_imported_modules(script))
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(_imported_modules(_module_file(name)) - seen)
    return seen


def _declared(dep: str) -> str:
    """lib/pricetrail/pricing/grid.py -> serving.grid; lib/pricetrail/serving/__init__.py -> serving."""
    parts = Path(dep).relative_to("lib/pricetrail").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_code_deps() -> dict[str, tuple[Path, set[str]]]:
    """For every stage in dvc.yaml: its script and the lib/pricetrail modules listed in its deps."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    result = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        script = next(dep for dep in body["deps"] if str(dep).startswith("stages/"))
        modules = {_declared(dep) for dep in body["deps"] if str(dep).startswith("lib/pricetrail/")}
        result[name] = (ROOT / script, modules)
    return result


def test_every_stage_depends_on_exactly_the_modules_its_script_imports() -> None:
    problems = []
    for name, (script, declared) in stage_code_deps().items():
        imported = transitive_modules(script)
        if imported - declared:
            problems.append(f"{name}: imports {sorted(imported - declared)} but does not depend on them")
        if declared - imported:
            problems.append(f"{name}: depends on {sorted(declared - imported)} but never imports them")
    assert not problems, "\n".join(problems)


def test_the_import_walker_sees_function_level_and_package_imports(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("from pricetrail.project import stage\n\n"
                      "def main():\n    from pricetrail.modeling.bundle import load_bundle\n")
    assert {"project.stage", "modeling.bundle", "modeling.network", "data.preprocess", "project.config"} <= (
        transitive_modules(script))
