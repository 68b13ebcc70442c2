"""One product's DVC chain in an isolated workspace: what a flow task runs, here or on a cluster worker.

DVC cannot run chains in parallel in one workspace (one repository lock, and a whole-file dvc.lock rewrite after
every stage). So each product gets a workspace of its own: the project's code and params, a ``stockcodes.yaml``
holding only that product (DVC then loads 6 stages, not 6 per product), and a ``dvc.lock`` holding only its
entries. On this machine the workspace shares the main DVC cache and links the outputs it starts from; on a
cluster worker it has a cache of its own and pulls from, then pushes to, the DVC remote. Either way ``dvc repro``
decides what runs (and restores from DVC's run-cache what ran before), and the job returns the dvc.lock entries
that DVC wrote, for :mod:`pricetrail.flow.lockmerge` to bring back in one write.

Everything in a :class:`ProductJob` and :class:`JobResult` is plain data, so Dask can ship it between machines.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pricetrail.project import dvc_launcher
from pricetrail.project.dvc import dvc_command, dvc_environment, last_error
from pricetrail.project.dvc_lock import stages_of

log = logging.getLogger(__name__)

# A stage script's one-line failure (pricetrail.project.stage.run) and DVC's own.
FAILURE_LINE = re.compile(r"^(GATE FAILED|ERROR) (\S+@\S+): (.*)$")
DVC_FAILED = re.compile(r"ERROR: failed to reproduce '([^']+)'")
RUNNING = re.compile(r"Running stage '([^']+)'")
CACHED = re.compile(r"Stage '([^']+)' is cached - skipping run")
# A launched DVC command writes its output here, read as it grows (the workspace is a job's own).
COMMAND_OUTPUT = Path(".dvc/tmp/pricetrail-command.log")
# DVC errors worth a retry: another process held a lock, or the remote did not answer.
TRANSIENT = re.compile(r"Unable to acquire lock|is busy|Connection (refused|reset)|timed out|ReadTimeout", re.I)


class TransientJobError(RuntimeError):
    """A failure that another attempt may not meet (a lock, the network); gate failures never are."""


@dataclass(frozen=True)
class RemoteSpec:
    """The DVC remote a cluster worker pulls from and pushes to (credentials come from the worker's environment)."""

    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)  # e.g. {"endpointurl": "http://127.0.0.1:9000"}


@dataclass(frozen=True)
class ProductJob:
    code: str
    targets: tuple[str, ...]  # stages to reproduce
    downstream: bool  # reproduce everything downstream of the targets too (the whole chain from the ETL)
    files: dict[str, bytes]  # project files by relative path: code, params, dvc.yaml, stockcodes, dvc.lock, registry
    outputs: tuple[str, ...]  # outputs the chain starts from (shared ingest, the product's current outputs)
    main_root: str | None = None  # this machine: link ``outputs`` from the main workspace
    cache_dir: str | None = None  # this machine: the main DVC cache
    remote: RemoteSpec | None = None  # a cluster worker: pull and push through this remote
    fetch_objects: tuple[tuple[str, int], ...] = ()  # (md5, size) a cluster worker must fetch (drift reference)
    timeout_seconds: float = 3600.0
    shared: bool = False  # the shared stages (no @product), not a product's chain

    def owns(self, stage: str) -> bool:
        """Whether the lock entry of ``stage`` is this job's to bring back."""
        return "@" not in stage if self.shared else stage.endswith(f"@{self.code}")


@dataclass
class JobResult:
    code: str
    ok: bool
    ran: list[str]  # stages whose command ran
    restored: list[str]  # stages restored from the run-cache
    failed_stage: str | None
    reason: str | None  # the failing stage's one line (gate verdict or error)
    lock_entries: dict[str, Any]  # dvc.lock entries of the product's stages that DVC changed
    files: dict[str, bytes]  # outputs not in the DVC cache (metrics, plots, a failed gate's report), by path
    workspace: str  # where the outputs are (this machine: moved into the main workspace from here)
    seconds: float
    log: str
    # Wall time of each stage: from DVC's "Running stage" line to its "Updating lock file" line, i.e. the command
    # plus DVC saving that stage's outputs (what the benchmark subtracts from the run's wall time).
    stage_seconds: dict[str, float] = field(default_factory=dict)


def project_files(root: Path, code: str, *, stockcodes_entry: dict[str, Any], lock_entries: dict[str, Any]) -> dict[
        str, bytes]:
    """The files a workspace for ``code`` needs: code, params, dvc.yaml, its own stockcodes, lock and registry."""
    files: dict[str, bytes] = {}
    for folder in ("lib/pricetrail", "stages"):
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        if (root / name).is_file():
            files[name] = (root / name).read_bytes()
    registry_dir = root / "registry" / code
    if registry_dir.is_dir():
        for path in sorted(registry_dir.rglob("*")):
            if path.is_file() and not path.name.endswith(".tmp"):
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    files["stockcodes.yaml"] = yaml.safe_dump({"stockcodes": {code: stockcodes_entry}}, sort_keys=False).encode()
    files["dvc.lock"] = yaml.safe_dump({"schema": "2.0", "stages": lock_entries}, sort_keys=False).encode()
    return files


def _write_config(workspace: Path, job: ProductJob, cache_dir: Path) -> None:
    lines = ["[core]", "    no_scm = true", "    analytics = false", "    autostage = false"]
    if job.remote is not None:
        lines.append(f"    remote = {job.remote.name}")
    lines += ["[cache]", f"    dir = {cache_dir}", "    type = \"reflink,hardlink,copy\""]
    if job.remote is not None:
        lines.append(f"['remote \"{job.remote.name}\"']")
        lines.append(f"    url = {job.remote.url}")
        lines += [f"    {key} = {value}" for key, value in job.remote.options.items()]
    (workspace / ".dvc").mkdir(parents=True, exist_ok=True)
    (workspace / ".dvc" / "config").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link a file or a folder's files (a copy where links are impossible); DVC replaces, never edits, them."""
    if source.is_dir():
        for path in source.rglob("*"):
            if path.is_file():
                _link_tree(path, target / path.relative_to(source))
        return
    if not source.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _environment(workspace: Path) -> dict[str, str]:
    # Stage commands run `python stages/x.py`: the interpreter of this environment, importing the workspace's own
    # copy of pricetrail (the code the stages' deps hash), not whatever version is installed.
    return dvc_environment({"PYTHONPATH": str(workspace / "lib"), "PYTHONUNBUFFERED": "1",
                            "OMP_WAIT_POLICY": "PASSIVE", "DVC_NO_ANALYTICS": "1"})


class ChainTimedOut(RuntimeError):
    """A product's DVC command passed its deadline and was ended."""

    def __init__(self, seconds: float, output: str) -> None:
        super().__init__(f"timed out after {seconds:g} s")
        self.seconds = seconds
        self.output = output


def _dvc(workspace: Path, args: list[str], *, timeout: float, on_line: Callable[[str], None] | None = None,
         launch: bool = True) -> tuple[int, str]:
    """Run a DVC command in the workspace, streaming its output lines; at the deadline its whole process group is
    killed, whether or not it prints anything (a stage that hangs silently is ended too).

    Forked from this process's DVC launcher (:mod:`pricetrail.project.dvc_launcher`: DVC already imported, ~0.4 s
    less per command) where the platform can fork, else a new interpreter; ``launch=False`` asks for the latter."""
    if launch and dvc_launcher.can_launch():
        deadline = time.monotonic() + timeout
        with dvc_launcher.borrowed() as launcher:
            try:
                code, output, expired = launcher.run(args, workspace, _environment(workspace),
                                                     workspace / COMMAND_OUTPUT, deadline=deadline, on_line=on_line)
            except dvc_launcher.LauncherError as error:
                raise TransientJobError(f"{workspace.name}: {error}") from error
        if expired:
            raise ChainTimedOut(timeout, output)
        return code, output
    process = subprocess.Popen(dvc_command(args), cwd=workspace, env=_environment(workspace),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    expired_event = threading.Event()

    def kill_at_deadline() -> None:
        expired_event.set()
        dvc_launcher.kill_group(process.pid)

    watchdog = threading.Timer(timeout, kill_at_deadline)
    watchdog.daemon = True
    watchdog.start()
    lines: list[str] = []
    assert process.stdout is not None
    try:
        for line in process.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        process.wait()
    except BaseException:  # KeyboardInterrupt, or the caller's own error: never leave the chain running
        dvc_launcher.kill_group(process.pid)
        process.wait()
        raise
    finally:
        watchdog.cancel()
    if expired_event.is_set():
        raise ChainTimedOut(timeout, "".join(lines))
    return process.returncode, "".join(lines)


def run_job(job: ProductJob, workdir: Path, *, on_stage: Callable[[str, str], None] | None = None) -> JobResult:
    """Reproduce ``job.targets`` for one product in a fresh workspace under ``workdir``; see the module doc."""
    started = time.monotonic()
    workspace = workdir / job.code
    if workspace.exists():
        shutil.rmtree(workspace)
    workspace.mkdir(parents=True)
    for relpath, content in job.files.items():
        path = workspace / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    cache_dir = Path(job.cache_dir) if job.cache_dir else workdir / ".dvc-cache"  # a worker keeps its cache
    _write_config(workspace, job, cache_dir)
    log_lines: list[str] = []
    timer = StageTimer()

    def dvc(args: list[str], what: str) -> tuple[int, str]:
        def line(text: str) -> None:
            timer.line(text)
            for pattern, event in ((RUNNING, "running"), (CACHED, "restored")):
                match = pattern.search(text)
                if match and on_stage is not None:
                    on_stage(match.group(1), event)

        code, output = _dvc(workspace, args, timeout=job.timeout_seconds, on_line=line)
        log_lines.append(f"$ dvc {' '.join(args)}   ({what})\n{output}")
        return code, output

    if job.main_root is not None:
        for relpath in job.outputs:
            _link_tree(Path(job.main_root) / relpath, workspace / relpath)
    else:
        _pull_inputs(job, workspace, dvc)
    before = stages_of(job.files["dvc.lock"].decode())
    args = ["repro", *(["--downstream"] if job.downstream else []), *job.targets]
    try:
        exit_code, output = dvc(args, "the product's chain")
    except ChainTimedOut as timed_out:
        # A deadline is a verdict on this run, not a transient error: no retry, nothing brought back.
        running = RUNNING.findall(timed_out.output)
        log_lines.append(f"$ dvc {' '.join(args)}   (the product's chain)\n{timed_out.output}\n"
                         f"[ended after {timed_out.seconds:g} s: --timeout]\n")
        return JobResult(
            code=job.code, ok=False, ran=running, restored=CACHED.findall(timed_out.output),
            failed_stage=running[-1] if running else "dvc",
            reason=f"timed out after {timed_out.seconds:g} s (--timeout); its processes were ended",
            lock_entries={}, files={}, workspace=str(workspace), seconds=time.monotonic() - started,
            log="".join(log_lines), stage_seconds=timer.seconds)
    after = stages_of((workspace / "dvc.lock").read_text(encoding="utf-8")) if (workspace / "dvc.lock").is_file() \
        else {}
    changed = {name: entry for name, entry in after.items() if job.owns(name) and before.get(name) != entry}
    failed_stage, reason = _failure(output) if exit_code != 0 else (None, None)
    if exit_code != 0 and failed_stage is None:
        if TRANSIENT.search(output):
            raise TransientJobError(f"{job.code}: dvc repro failed transiently: {last_error(output)}")
        failed_stage, reason = "dvc", last_error(output)
    if job.remote is not None and changed:
        push_code, push_output = dvc(["push", "--run-cache"], "outputs and run-cache to the remote")
        if push_code != 0:
            raise TransientJobError(f"{job.code}: dvc push to {job.remote.url} failed: {last_error(push_output)}")
    return JobResult(
        code=job.code, ok=exit_code == 0, ran=RUNNING.findall(output), restored=CACHED.findall(output),
        failed_stage=failed_stage, reason=reason, lock_entries=changed,
        files=_uncached_stage_outputs(workspace, changed) if job.shared else _uncached_outputs(
            workspace, job.code, failed_stage), workspace=str(workspace),
        seconds=time.monotonic() - started, log="".join(log_lines), stage_seconds=timer.seconds)


class StageTimer:
    """Stage command times from ``dvc repro``'s streamed output (see :attr:`JobResult.stage_seconds`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self._stage: str | None = None
        self._started = 0.0

    def line(self, text: str) -> None:
        now = self.clock()
        running = RUNNING.search(text)
        if running:
            self._stage, self._started = running.group(1), now
        elif self._stage is not None and ("Updating lock file" in text or FAILURE_LINE.match(text.strip())
                                          or text.startswith("ERROR")):
            self.seconds[self._stage] = now - self._started
            self._stage = None


def _pull_inputs(job: ProductJob, workspace: Path, dvc: Callable[[list[str], str], tuple[int, str]]) -> None:
    """A cluster worker's workspace: the outputs the chain starts from, and objects named by the registry."""
    if job.fetch_objects:
        # A .dvc pointer per object lets DVC fetch it by hash through its own remote code (S3 or a folder).
        pointers = workspace / ".pricetrail-fetch"
        for index, (md5, size) in enumerate(job.fetch_objects):
            pointer = pointers / f"object{index}.dvc"
            pointer.parent.mkdir(parents=True, exist_ok=True)
            pointer.write_text(yaml.safe_dump({"outs": [{"md5": md5, "size": size, "hash": "md5",
                                                         "path": f"object{index}"}]}), encoding="utf-8")
        code, output = dvc(["fetch", *[str(p.relative_to(workspace)) for p in sorted(pointers.glob("*.dvc"))]],
                           "objects the registry names")
        shutil.rmtree(pointers)
        if code != 0:
            raise TransientJobError(f"{job.code}: cannot fetch registry objects from the DVC remote: "
                                    f"{last_error(output)}")
    code, output = dvc(["pull", "--allow-missing", *job.outputs], "the outputs the chain starts from")
    if code != 0:
        raise TransientJobError(f"{job.code}: dvc pull from the remote failed: {last_error(output)}")


def _failure(output: str) -> tuple[str | None, str | None]:
    for line in output.splitlines():
        match = FAILURE_LINE.match(line.strip())
        if match:
            return match.group(2), f"{match.group(1)}: {match.group(3)}"
    match = DVC_FAILED.search(output)
    if match:
        return match.group(1), last_error(output)
    return None, None


def _uncached_stage_outputs(workspace: Path, stages: Iterable[str]) -> dict[str, bytes]:
    """The outputs these stages declare ``cache: false`` in the workspace's dvc.yaml (the ingest's metrics), carried
    back by value as a product's metrics are: a landing killed before it moved them in is completed from its
    journal, and DVC's cache, which restores the other outputs, does not hold them."""
    definition = yaml.safe_load((workspace / "dvc.yaml").read_text(encoding="utf-8"))
    declared = definition.get("stages", {}) if isinstance(definition, dict) else {}
    files: dict[str, bytes] = {}
    for name in stages:
        stage = declared.get(name)
        for kind in ("outs", "metrics", "plots"):
            for item in (stage or {}).get(kind) or []:
                for relpath, options in (item.items() if isinstance(item, dict) else ()):
                    if not (isinstance(options, dict) and options.get("cache") is False):
                        continue
                    path = workspace / relpath
                    found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
                    files.update({file.relative_to(workspace).as_posix(): file.read_bytes() for file in found})
    return files


def _uncached_outputs(workspace: Path, code: str, failed_stage: str | None) -> dict[str, bytes]:
    """What the DVC cache does not hold: the product's metrics and plots (``cache: false``) and a failed gate's
    report (DVC caches a stage's outputs only when it succeeds); small files, carried back by value."""
    files = {}
    folders = [f"metrics/{code}", f"plots/{code}"]
    if failed_stage and failed_stage.startswith("data_drift_check@"):
        folders.append(f"reports/{code}")
    for folder in folders:
        base = workspace / folder
        if base.is_dir():
            for path in base.rglob("*"):
                if path.is_file():
                    files[path.relative_to(workspace).as_posix()] = path.read_bytes()
    return files

