"""One smoke project for the router tests: a real pipeline run, a second promoted version, helpers to serve it."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from waitress.server import create_server

from pricetrail.project.copies import clone_project, dvc, make_copy, pricetrail, run, set_params
from pricetrail.registry import records, state_pointer
from pricetrail.registry.artifacts import dvc_cache_dir, object_relpath
from pricetrail.serving.config import ServeConfig, from_project

CODES = ("85123A", "22423")
RETRAINED = "22423"  # promoted twice: v1 by the first run, v2 after a retrain
NEVER_RUN = "85099B"  # in the server's list, never run by the pipeline: no promoted model


def build(target: Path, week1: Path | None = None) -> tuple[Path, dict[str, list[str]]]:
    """The smoke pipeline's first week (a clone of the suite's shared one when given), then one product retrained
    and promoted again (cheap tuning budget)."""
    if week1 is not None:
        root = clone_project(week1, target)
    else:
        root = make_copy(target)
        pricetrail("run", cwd=root)
        run(["git", "add", "-A"], root)
        run(["git", "commit", "-qm", "week 1"], root)
    set_params(root, {"tune_primary_model.n_trials": 1, "tune_primary_model.max_epochs": 6})
    dvc("repro", f"assess_model_risk@{RETRAINED}", cwd=root)
    pricetrail("promote", "--stockcode", RETRAINED, cwd=root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "week 2"], root)
    versions = {code: records.promoted_versions(root, code) for code in CODES}
    assert len(versions[RETRAINED]) == 2, versions
    return root, versions


def config(root: Path, **overrides: object) -> ServeConfig:
    base = from_project(root, dvc_cache_dir(root))
    values = {"stockcodes": (*CODES, NEVER_RUN), **overrides}
    return ServeConfig(**{**base.__dict__, **values})  # type: ignore[arg-type]


def copy_objects(root: Path, codes: tuple[str, ...], target: Path) -> Path:
    """A cache holding only what the served records point at (to damage one without touching the project's)."""
    source = dvc_cache_dir(root)
    for code in codes:
        served = records.served_model(root, code)
        assert served is not None
        pointers = [a.md5 for a in served.artifacts.values()]
        state = state_pointer.read_state_pointer(root, code)
        if state is not None:
            pointers.append(state.artifact.md5)
        for md5 in pointers:
            destination = target / object_relpath(md5)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / object_relpath(md5), destination)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def waitress_server(app: object, threads: int = 8) -> Iterator[str]:
    """The app under waitress on 127.0.0.1, as `pricetrail serve` runs it; yields its base URL."""
    server = create_server(app, host="127.0.0.1", port=0, threads=threads, channel_timeout=30)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)
