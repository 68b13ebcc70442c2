"""Throwaway copies of a pricetrail project, for the tests and the benchmarks: copy the project files, init git and
DVC (with a local remote beside the copy), apply a profile, set params, run commands.

The files come from the checkout this library lives in (``PROJECT_ROOT``): it needs a source checkout (an
editable install, ``pip install -e .``), not a built wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from pricetrail.project.dvc import dvc_command, dvc_environment

# lib/pricetrail/project/copies.py -> the checkout holding lib/pricetrail
PROJECT_ROOT = Path(__file__).resolve().parents[3]
PROJECT_FILES = ["dvc.yaml", "params.yaml", "stockcodes.yaml", "stages", "lib", "profiles", "registry", ".dvcignore",
                 ".gitignore"]


def run(args: list[str], cwd: Path, *, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    # The copy's stages must find this interpreter's dvc and python first.
    env = dvc_environment({"PYTHONUNBUFFERED": "1", "OMP_WAIT_POLICY": "PASSIVE"})
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\nSTDOUT:\n{result.stdout[-4000:]}\n"
                             f"STDERR:\n{result.stderr[-6000:]}")
    return result


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run(dvc_command(args), cwd, check=check)


def pricetrail(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "pricetrail.cli", *args], cwd, check=check)


def make_copy(target: Path, profile: str | None = "smoke") -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, target / name)
    return init_copy(target, profile)


def init_copy(target: Path, profile: str | None = "smoke", message: str = "copy") -> Path:
    """Make a folder holding the project's files a project of its own: no promoted models, git, DVC with a local
    remote beside it, the profile applied, everything committed."""
    for stale in (target / "registry").iterdir():  # start with no promoted models
        if stale.is_dir():
            shutil.rmtree(stale)
    run(["git", "init", "-q"], target)
    run(["git", "config", "user.email", "ci@example.invalid"], target)
    run(["git", "config", "user.name", "ci"], target)
    dvc("init", "-q", cwd=target)
    dvc("config", "core.analytics", "false", cwd=target)
    templates = PROJECT_ROOT / ".dvc" / "plots"  # the project's custom plot templates (dvc init makes .dvc anew)
    if templates.is_dir():
        shutil.copytree(templates, target / ".dvc" / "plots", dirs_exist_ok=True)
    dvc("remote", "add", "-d", "local", str(target.parent / f"{target.name}-remote"), cwd=target)
    if profile:
        pricetrail("profile", profile, cwd=target)
    run(["git", "add", "-A"], target)
    run(["git", "commit", "-qm", message], target)
    return target


def set_params(root: Path, values: dict) -> None:
    """Set dotted keys in params.yaml, keeping its comments (``{"assess_model_risk.min_group_size": 5}``)."""
    yaml = YAML()
    path = root / "params.yaml"
    params = yaml.load(path)
    for dotted, value in values.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(params, handle)


def commit(root: Path, message: str) -> str:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", message], root)
    return run(["git", "rev-parse", "HEAD"], root).stdout.strip()


def clone_project(source: Path, target: Path) -> Path:
    """An independent copy of a project made by ``make_copy`` (its git history, DVC cache and local remote), so
    tests that change a project can start from one shared run instead of running the pipeline again."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, symlinks=True)
    remote = source.parent / f"{source.name}-remote"
    if remote.is_dir():
        shutil.copytree(remote, target.parent / f"{target.name}-remote", symlinks=True)
    # The committed .dvc/config names the source's remote; the copy's own one overrides it, uncommitted.
    dvc("remote", "modify", "--local", "local", "url", str(target.parent / f"{target.name}-remote"), cwd=target)
    return target
