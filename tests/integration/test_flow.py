"""The weekly flow for real: Prefect server, Dask scheduler and workers on loopback, `pricetrail run` in a copy.

Two scenarios, each on its own throwaway project:
- a local Dask cluster of 2 workers and 3 smoke products against a test Prefect server (`prefect server start`);
- an existing cluster (`dask scheduler` and two `dask worker`s, each in its own directory) that shares only the
  DVC remote with the client, killed with SIGINT mid-run and with kill -9 of a worker, then finishing the work.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from pricetrail.flow import plan_record, planning
from pricetrail.project.copies import dvc, make_copy, run, set_params
from pricetrail.registry import artifacts, records

pytestmark = [pytest.mark.integration, pytest.mark.slow]

THIRD = "85099B"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check, timeout: float, what: str) -> None:  # noqa: ANN001 - a predicate
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def commit(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", message], root)


def untracked_outputs(root: Path) -> list[str]:
    """Untracked paths that are not records meant for git (dvc.lock, metrics, plots, registry, DVC's .gitignores)."""
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], root).stdout.splitlines()
    untracked = [line[3:] for line in status if line.startswith("??")]
    return [path for path in untracked if not (path == "dvc.lock" or path.startswith(("metrics/", "plots/",
                                                                                       "registry/"))
                                               or path.endswith(".gitignore"))]


def ran_stages(output: str) -> set[str]:
    return {f"{stage}@{code}" for code, stage in re.findall(r"^  (\S+)\s+(?:running|restored)\s+(\S+)\s", output,
                                                               flags=re.M)}


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 180, "the Prefect server")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def local_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_copy(tmp_path_factory.mktemp("flow-local") / "project")
    stockcodes = root / "stockcodes.yaml"
    stockcodes.write_text(stockcodes.read_text() + f'  "{THIRD}": {{description: JUMBO BAG RED RETROSPOT}}\n')
    commit(root, "three products")
    return root


def run_flow(root: Path, *args: str, api: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("PREFECT_API_URL", None)
    if api:
        env["PREFECT_API_URL"] = api
    result = subprocess.run([sys.executable, "-m", "pricetrail.cli", "run", *args], cwd=root, env=env,
                            capture_output=True, text=True, timeout=1500, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"pricetrail run exited {result.returncode}\n{result.stdout[-5000:]}\n"
                             f"{result.stderr[-5000:]}")
    return result


def test_local_cluster_run_settles_and_is_recorded_in_prefect(local_project: Path, prefect_server: str) -> None:
    result = run_flow(local_project, "--workers", "2", api=prefect_server)
    assert result.stdout.count("promoted: passed the drift gate") == 3, result.stdout
    assert {f"assess_model_risk@{code}" for code in ("85123A", "22423", THIRD)} <= ran_stages(result.stdout)
    assert "Data and pipelines are up to date" in dvc("status", cwd=local_project).stdout
    assert untracked_outputs(local_project) == []
    lock = yaml.safe_load((local_project / "dvc.lock").read_text())["stages"]
    assert {f"{stage}@{THIRD}" for stage in ("etl_pipeline", "assess_model_risk")} <= set(lock)
    # Prefect holds the run, its table artifact and every product's log.
    flow_runs = httpx.post(f"{prefect_server}/flow_runs/filter", json={"limit": 10}).json()
    weekly = [r for r in flow_runs if r["state_type"] == "COMPLETED"]
    assert weekly, flow_runs
    artifacts = httpx.post(f"{prefect_server}/artifacts/filter", json={"limit": 10}).json()
    table = next(a for a in artifacts if a["key"] == "pricetrail-weekly-summary")
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert sorted(row["product"] for row in rows) == sorted(["85123A", "22423", THIRD])
    logs = httpx.post(f"{prefect_server}/logs/filter", json={"limit": 200}).json()
    assert any("Running stage 'tune_primary_model@85099B'" in entry["message"] for entry in logs)
    assert recorded_plan_is_dvcs(local_project) == set()
    commit(local_project, "week 1")


def recorded_plan_is_dvcs(root: Path) -> set[str]:
    """The plan the run recorded for the state it left (from its own results) agrees with DVC's own answer in that
    state; the products it names."""
    record = plan_record.read_record(root)
    assert record is not None and record.fingerprint == plan_record.current(root)[1].fingerprint
    asked = planning.dvc_plan(root, list(record.codes))
    assert not record.shared and not asked.shared
    assert set(record.products) == set(asked.products), (record.products, asked.products)
    for code, stages in asked.products.items():
        assert set(stages) <= set(record.products[code])  # the whole chain: DVC skips what did not change
    return set(record.products)


def test_a_second_run_does_nothing(local_project: Path, prefect_server: str) -> None:
    lock_before = (local_project / "dvc.lock").read_bytes()
    result = run_flow(local_project, "--workers", "2", api=prefect_server)
    assert ran_stages(result.stdout) == set() and "3 products done" in result.stdout, result.stdout
    assert (local_project / "dvc.lock").read_bytes() == lock_before
    offline = run_flow(local_project, "--workers", "2")  # no server: nothing to do costs one planning pass
    assert "nothing to do: all 3 products are up to date" in offline.stdout


def test_a_drifted_product_fails_alone_and_is_named(local_project: Path, prefect_server: str) -> None:
    set_params(local_project, {"synthetic.drift": {THIRD: 2.0}})
    result = run_flow(local_project, "--workers", "2", api=prefect_server, check=False)
    assert result.returncode == 1
    assert f"1 of 3 products failed: {THIRD} (data_drift_check@{THIRD}: GATE FAILED" in result.stdout, result.stdout
    assert re.search(rf"^  {THIRD}: data_drift_check@{THIRD}: GATE FAILED: {THIRD}: \d of \d monitored columns "
                     "drifted", result.stdout, flags=re.M), result.stdout
    for code in ("85123A", "22423"):
        assert not re.search(rf"^  {code}: ", result.stdout, flags=re.M)
    assert (local_project / "reports" / THIRD / "drift.html").is_file()  # the failed gate's report came back
    drift = json.loads((local_project / "metrics" / THIRD / "drift.json").read_text())
    assert drift["drift_detected"]
    assert recorded_plan_is_dvcs(local_project) == {THIRD}
    # Nothing changed: the gate's verdict stands and nothing runs, with or without a Prefect server (the flow).
    for api in (None, prefect_server):
        again = run_flow(local_project, "--workers", "2", api=api, check=False)
        assert again.returncode == 1 and ran_stages(again.stdout) == set(), again.stdout
        assert re.search(rf"^  {THIRD}: data_drift_check@{THIRD}: GATE FAILED: .* \(nothing it reads changed since: "
                         r"not run again\)$", again.stdout, flags=re.M), again.stdout
        assert recorded_plan_is_dvcs(local_project) == {THIRD}
    assert "nothing to do: 2 of 3 products are up to date; 1 stopped by a gate before" in run_flow(
        local_project, "--workers", "2", check=False).stdout
    set_params(local_project, {"synthetic.drift": {}})


# --------------------------------------------------------------------------------------------- an existing cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_LOGGING__DISTRIBUTED": "warning", "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("PREFECT_API_URL", None)
    processes = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--no-dashboard"], cwd=base, env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    workers = []
    for index in range(2):
        directory = base / f"worker{index}"
        directory.mkdir()
        worker = subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                   "--no-dashboard", "--local-directory", str(directory), "--name", f"w{index}"],
                                  cwd=directory, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        processes.append(worker)
        workers.append({"process": worker, "directory": directory})
    from distributed import Client

    def two_workers() -> bool:
        try:
            with Client(address, timeout="5s") as client:
                return len(client.scheduler_info()["workers"]) == 2
        except (OSError, TimeoutError):
            return False

    try:
        wait_until(two_workers, 120, "a scheduler with two workers")
        yield {"address": address, "workers": workers}
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_copy(tmp_path_factory.mktemp("flow-cluster") / "project")


def start_flow(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ}
    env.pop("PREFECT_API_URL", None)
    # Ctrl-C's disposition as in a terminal: a suite started in the background (`pytest &`) would pass SIGINT on
    # ignored, and Python then never turns it into KeyboardInterrupt.
    return subprocess.Popen([sys.executable, "-m", "pricetrail.cli", "run", *args], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509


def read_until(process: subprocess.Popen, pattern: str, timeout: float) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f} s:\n{''.join(seen)[-4000:]}")


def test_sigint_mid_run_leaves_a_consistent_workspace(cluster_project: Path, cluster: dict) -> None:
    def product_entries() -> dict:
        lock = cluster_project / "dvc.lock"
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.exists() else {}
        return {name: entry for name, entry in stages.items() if "@" in name}

    before = product_entries()
    flow = start_flow(cluster_project, "--dask-address", cluster["address"])
    read_until(flow, r"running\s+tune_primary_model", 600)
    flow.send_signal(signal.SIGINT)
    flow.communicate(timeout=120)
    assert flow.returncode != 0
    # The shared stages ran in this workspace before the fan-out and are recorded; no product's stage is
    # half-registered: the products' results come back in one write at the end.
    assert product_entries() == before
    dvc("status", cwd=cluster_project)  # no stale lock blocks DVC


def test_a_cluster_run_shares_only_the_remote_and_settles(cluster_project: Path, cluster: dict) -> None:
    result = run_flow(cluster_project, "--dask-address", cluster["address"])
    assert result.stdout.count("promoted: passed the drift gate") == 2, result.stdout
    assert "Data and pipelines are up to date" in dvc("status", cwd=cluster_project).stdout
    assert untracked_outputs(cluster_project) == []
    for code in ("85123A", "22423"):
        served = records.served_model(cluster_project, code)
        assert served is not None
        served.resolve(artifacts.local_sources(cluster_project))  # pulled back from the remote, verified
    # The chains ran in the workers' own directories, not in the client's workspace.
    assert not (cluster_project / ".dvc" / "tmp" / "pricetrail" / "workspaces").exists()
    assert any((worker["directory"]).rglob("dvc.lock") for worker in cluster["workers"])
    commit(cluster_project, "week 1 on the cluster")


def test_kill_9_of_a_worker_mid_run_then_the_next_run_finishes(cluster_project: Path, cluster: dict) -> None:
    set_params(cluster_project, {"tune_primary_model.search_space.units": [8, 12]})
    flow = start_flow(cluster_project, "--dask-address", cluster["address"])
    read_until(flow, r"running\s+tune_primary_model", 600)
    victim = cluster["workers"][0]["process"]
    os.killpg(victim.pid, signal.SIGKILL)  # the worker and its nanny, without warning
    output, _ = flow.communicate(timeout=1200)
    assert flow.returncode in (0, 1), output
    run_flow(cluster_project, "--dask-address", cluster["address"])  # finishes whatever the kill left undone
    assert "Data and pipelines are up to date" in dvc("status", cwd=cluster_project).stdout
    again = run_flow(cluster_project, "--dask-address", cluster["address"])
    assert ran_stages(again.stdout) == set(), again.stdout
