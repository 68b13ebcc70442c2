"""DVC commands forked from a process that has already imported DVC, instead of a new interpreter each time.

A product's job runs ``dvc repro`` (and a promoted product's re-check runs it again): a new ``python -m
pricetrail.project.dvc_cli`` spends ~0.6 s of its ~1 s no-op importing DVC before it reads a file, and a catalogue
pays that for every job. A :class:`Launcher` starts ``python -m pricetrail.project.dvc_launcher`` once, which imports
DVC's modules (:data:`PRELOAD`) and then, for each request on its stdin, forks a child that becomes what ``python -m
pricetrail.project.dvc_cli <args>`` would have been:

- in the request's directory and environment (the stage commands DVC starts inherit it: ``PATH``, ``PYTHONPATH``);
- with the pricetrail of the request's ``PYTHONPATH`` (a workspace's own copy), not the launcher's: the launcher's
  ``pricetrail`` modules are dropped in the child before ``dvc_cli`` is imported;
- in a session of its own, so a deadline ends it and every stage process under it with one ``killpg``;
- its stdout and stderr in a file, which the caller reads as it grows.

The launcher answers ``{"pid": N}`` when the child starts and ``{"pid": N, "exit": code}`` when it ends, one child at
a time; it exits when its stdin closes (the caller ended, even by kill -9). It forks only while it has one thread.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

# What ``dvc repro``, ``push``, ``pull`` and ``status`` import, their own lazy imports included (networkx alone is
# 0.15 s), listed from ``sys.modules`` after each ran (tests/project/test_dvc_launcher.py checks that a no-op repro
# imports few modules more). A module missing here is imported by the child as it would be anyway: only time is lost.
PRELOAD = (
    "attrs", "colorama", "configobj", "diskcache", "dpath", "dulwich", "flatten_dict", "flufl.lock", "fsspec", "funcy",
    "networkx", "orjson", "packaging", "pathspec", "platformdirs", "psutil", "pygtrie", "pyparsing", "ruamel.yaml",
    "shtab", "sqltrie", "tqdm", "voluptuous", "yaml", "zc.lockfile", "scmrepo.git", "scmrepo.noscm",
    "dvc.cli", "dvc.cli.parser", "dvc.repo", "dvc.repo.index", "dvc.repo.graph", "dvc.repo.reproduce", "dvc.repo.push",
    "dvc.repo.pull", "dvc.repo.fetch", "dvc.repo.status", "dvc.repo.stage", "dvc.repo.trie", "dvc.repo.plots",
    "dvc.repo.metrics", "dvc.repo.params", "dvc.repo.datasets", "dvc.repo.artifacts", "dvc.repo.open_repo",
    "dvc.repo.scm_context", "dvc.dvcfile", "dvc.stage", "dvc.stage.cache", "dvc.stage.run", "dvc.stage.serialize",
    "dvc.stage.loader", "dvc.dependency", "dvc.dependency.param", "dvc.dependency.repo", "dvc.dependency.dataset",
    "dvc.dependency.db", "dvc.output", "dvc.fs", "dvc.fs.dvc", "dvc.fs.data", "dvc.fs.git", "dvc.data_cloud",
    "dvc.cachemgr", "dvc.rwlock", "dvc.lock", "dvc.ignore", "dvc.parsing", "dvc.schema", "dvc.utils.serialize",
    "dvc.utils.strictyaml", "dvc.utils.threadpool", "dvc_data.hashfile.build", "dvc_data.hashfile.checkout",
    "dvc_data.hashfile.transfer", "dvc_data.hashfile.status", "dvc_data.hashfile.db", "dvc_data.hashfile.state",
    "dvc_data.index", "dvc_data.index.build", "dvc_data.index.save", "dvc_data.index.update", "dvc_data.index.view",
    "dvc_objects.fs.local", "dvc_render", "dvc_http",
)
COMMAND = "pricetrail.project.dvc_cli"


class LauncherError(RuntimeError):
    """The launcher process could not start a command or ended under one (the command's outcome is unknown)."""


# --- the launcher process ----------------------------------------------------------------------------------------

def preload(modules: Sequence[str] = PRELOAD) -> list[str]:
    """Import ``modules``; the ones that could not be imported (each with its error), which a child imports itself."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            missing.append(f"{name}: {error}")
    return missing


def serve(requests: IO[str], answers: IO[str]) -> int:
    """Fork one child per request line until ``requests`` closes; see the module doc."""
    for line in requests:
        request = json.loads(line)
        if threading.active_count() != 1:  # a fork copies one thread: a lock another one held would stay held
            raise LauncherError(f"the launcher has {threading.active_count()} threads; it forks only with one")
        pid = os.fork()
        if pid == 0:
            _become_command(request)  # never returns
        _answer(answers, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _answer(answers, {"pid": pid, "exit": os.waitstatus_to_exitcode(status)})
    return 0


def _answer(answers: IO[str], message: dict[str, Any]) -> None:
    answers.write(json.dumps(message) + "\n")
    answers.flush()


def _become_command(request: dict[str, Any]) -> None:
    """In the forked child: become ``python -m pricetrail.project.dvc_cli <args>`` as the request describes; exits."""
    code: int = 1
    try:
        os.setsid()
        os.chdir(request["cwd"])
        output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.closerange(3, 1 << 16)  # the launcher's pipes: only the caller may hold them
        sys.stdout.reconfigure(line_buffering=True)  # the caller follows the file line by line
        sys.stderr.reconfigure(line_buffering=True)
        environment: Mapping[str, str] = request["env"]
        launcher_path = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
        os.environ.clear()
        os.environ.update(environment)
        own_path = [entry for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
        # sys.path as `python -m` in this directory with this PYTHONPATH would start with it; the rest (the standard
        # library, site-packages) is the same interpreter's.
        rest = [entry for entry in sys.path[1:] if entry not in launcher_path]
        sys.path[:] = [os.getcwd(), *own_path, *rest]
        for name in [name for name in sys.modules if name == "pricetrail" or name.startswith("pricetrail.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        command = importlib.import_module(COMMAND)
        code = int(command.main(list(request["args"])))
    except SystemExit as exiting:
        code = exiting.code if isinstance(exiting.code, int) else (0 if exiting.code is None else 1)
        if not isinstance(exiting.code, int | None):
            sys.stderr.write(f"{exiting.code}\n")  # what the interpreter prints for sys.exit("...")
    except BaseException:  # noqa: BLE001 - the child must end here, whatever happened, with the traceback shown
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # the file is gone or closed: nothing more can be said
                pass
        os._exit(code)


def main() -> int:
    # The answers go to a copy of stdout, and stdout itself to stderr: nothing a module prints can garble them.
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    missing = preload()
    if missing:
        sys.stderr.write("pricetrail.project.dvc_launcher: not preloaded (the commands import them): "
                         + "; ".join(missing) + "\n")
    try:
        return serve(sys.stdin, answers)
    except BrokenPipeError:  # the caller ended (its end of the pipe closed while a command ran): so do we
        return 0


# --- the caller --------------------------------------------------------------------------------------------------

class Launcher:
    """One launcher process, started on first use, running one command at a time (see :func:`borrowed`)."""

    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        self._environment = dict(os.environ if environment is None else environment)
        self._process: subprocess.Popen | None = None
        self._answers = b""
        self.busy = threading.Lock()

    def _started(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._answers = b""
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pricetrail.project.dvc_launcher"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=self._environment, bufsize=0)
        return self._process

    def close(self) -> None:
        """End the launcher process (a command it runs goes on; :meth:`run` kills its group first when it must)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

    def _answer(self, timeout: float | None) -> dict[str, Any] | None:
        """The launcher's next answer; None if it has not come within ``timeout`` s. Raises if the launcher ended."""
        assert self._process is not None and self._process.stdout is not None
        stream = self._process.stdout.fileno()
        while b"\n" not in self._answers:
            ready, _, _ = select.select([stream], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(stream, 65536)
            if not chunk:
                raise LauncherError("the DVC launcher process ended")
            self._answers += chunk
        line, self._answers = self._answers.split(b"\n", 1)
        return json.loads(line)

    def run(self, args: Sequence[str], cwd: Path, env: Mapping[str, str], output: Path, *, deadline: float,
            on_line: Callable[[str], None] | None = None) -> tuple[int, str, bool]:
        """``dvc <args>`` in ``cwd``: (exit code, its output, whether ``deadline`` (a ``time.monotonic()``) passed
        and its process group was killed). Raises :class:`LauncherError` if the launcher ended under it."""
        process = self._started()
        assert process.stdin is not None
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"")
        request = {"args": list(args), "cwd": str(cwd), "env": dict(env), "output": str(output)}
        try:
            process.stdin.write((json.dumps(request) + "\n").encode())
            started = self._answer(timeout=60)
        except (BrokenPipeError, LauncherError) as error:
            self.close()
            raise LauncherError(f"the DVC launcher could not start dvc {' '.join(args)} ({error})") from error
        if started is None:
            self.close()
            raise LauncherError(f"the DVC launcher did not start dvc {' '.join(args)} within 60 s")
        pid = int(started["pid"])
        follower = _Follower(output, on_line)
        expired = False
        try:
            while True:
                ended = self._answer(timeout=0.05)
                follower.poll(final=ended is not None)
                if ended is not None:
                    return int(ended["exit"]), follower.text(), expired
                if not expired and time.monotonic() >= deadline:
                    expired = True
                    kill_group(pid)
        except BaseException:  # the launcher ended, KeyboardInterrupt, the caller's error: never leave it running
            kill_group(pid)
            self.close()
            raise
        finally:
            follower.close()


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a command started in a session of its own), if any is left."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass


class _Follower:
    """The lines of a file another process is writing, as they are completed."""

    def __init__(self, path: Path, on_line: Callable[[str], None] | None) -> None:
        self._file = path.open("rb")
        self._on_line = on_line
        self._pending = b""
        self._lines: list[str] = []

    def poll(self, *, final: bool = False) -> None:
        self._pending += self._file.read()
        *complete, self._pending = self._pending.split(b"\n")
        if final and self._pending:
            complete, self._pending = [*complete, self._pending], b""
        for raw in complete:
            line = raw.decode("utf-8", errors="replace")
            self._lines.append(line + "\n")
            if self._on_line is not None:
                self._on_line(line)

    def close(self) -> None:
        self._file.close()

    def text(self) -> str:
        return "".join(self._lines)


_LAUNCHERS: list[Launcher] = []
_LAUNCHERS_LOCK = threading.Lock()


@contextlib.contextmanager
def borrowed() -> Iterator[Launcher]:
    """A launcher of this process that runs no command now (one per concurrent caller, kept for the next)."""
    with _LAUNCHERS_LOCK:
        chosen = next((candidate for candidate in _LAUNCHERS if candidate.busy.acquire(blocking=False)), None)
        if chosen is None:
            chosen = Launcher()
            chosen.busy.acquire()
            _LAUNCHERS.append(chosen)
    try:
        yield chosen
    finally:
        chosen.busy.release()


def can_launch() -> bool:
    return hasattr(os, "fork") and hasattr(os, "killpg")


if __name__ == "__main__":
    sys.exit(main())
