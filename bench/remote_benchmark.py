"""The DVC remote on S3: push and pull times and bytes, and the router's first request from S3 vs the local cache.

Against a real S3-compatible server (`moto_server` on 127.0.0.1, started and stopped here), for two finished
projects: a smoke run (built here unless --smoke-project names one) and a default run (--default-project, e.g. a
clone after `make run`; built here when not given, ~7 minutes). Each is used read-only: a `git clone` of it
borrows its DVC cache (`dvc cache dir --local`), so the push reads exactly its objects.

- push: `pricetrail push` (dvc push --run-cache, plus every object the registry points at) beside plain
  `dvc push` (what dvc.lock names) to another prefix — the naive choice, and what it would leave out;
  then the same push again (nothing new to send);
- pull: a fresh `git clone` with an empty cache, `pricetrail pull` beside plain `dvc pull`;
- the router: a fresh process per case, `create_app` with the local DVC cache vs with only the S3 remote (empty
  object cache), the time of its first /price per product (the model load) and of a second (warm).

    python bench/remote_benchmark.py --default-project /path/to/default-run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, built_project, free_port, path_with_bin, print_table, timed

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "pricetrail-bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
QUERY = "points=100&date=2011-11-15"
RECORDS = ("dvc.lock", "params.yaml", "stockcodes.yaml", "metrics", "plots", "registry")  # what git holds of a run


def environment() -> dict[str, str]:
    return {**os.environ, **CREDENTIALS, "PATH": path_with_bin()}


def sh(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env or environment(), capture_output=True, text=True, check=False,
                            timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


class Moto:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import boto3

        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id="bench", aws_secret_access_key="bench")
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.create_bucket(Bucket=BUCKET)
                return
            except Exception:  # noqa: BLE001 - botocore's connection errors while the server starts
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def usage(self, prefix: str) -> tuple[int, int]:
        """Objects and bytes under a prefix."""
        count = size = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/"):
            for item in page.get("Contents", []):
                count += 1
                size += item["Size"]
        return count, size

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def borrowing_clone(project: Path, target: Path, moto: Moto, prefix: str) -> Path:
    """A git clone of the finished project that reads its DVC cache, with the S3 remote as its default."""
    sh(["git", "clone", "-q", str(project), str(target)], target.parent)
    # The run's records as the project's workspace holds them (a finished run is often not committed yet).
    for name in RECORDS:
        source = project / name
        if source.is_dir():
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(source, target / name)
        elif source.is_file():
            shutil.copy2(source, target / name)
    sh(["git", "add", "-A", *[name for name in RECORDS if (target / name).exists()]], target)
    sh(["git", "commit", "-qm", "the run's records", "--allow-empty"], target)
    sh([sys.executable, "-m", "dvc", "cache", "dir", "--local", str(project / ".dvc" / "cache")], target)
    sh([sys.executable, "-m", "pricetrail.cli", "remote", "add", "s3", f"s3://{BUCKET}/{prefix}", "--endpoint-url",
        moto.endpoint, "--region", "us-east-1"], target)
    sh(["git", "commit", "-qam", "S3 remote"], target)
    return target


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def cache_usage(root: Path) -> tuple[int, int]:
    files = [path for path in (root / ".dvc" / "cache" / "files").rglob("*") if path.is_file()]
    return len(files), sum(path.stat().st_size for path in files)


def measure_transfers(name: str, project: Path, moto: Moto, work: Path) -> list[tuple[str, str, str]]:
    rows = []
    ours = borrowing_clone(project, work / f"{name}-push", moto, f"{name}/pricetrail")
    seconds, _ = timed(sh, [sys.executable, "-m", "pricetrail.cli", "push"], ours)
    objects, size = moto.usage(f"{name}/pricetrail")
    again, _ = timed(sh, [sys.executable, "-m", "pricetrail.cli", "push"], ours)
    naive = borrowing_clone(project, work / f"{name}-naive", moto, f"{name}/dvc")
    naive_seconds, _ = timed(sh, [sys.executable, "-m", "dvc", "push"], naive)
    naive_objects, naive_size = moto.usage(f"{name}/dvc")
    rows.append((f"{name}: push", f"{seconds:.1f} s, {objects} objects, {mib(size)}",
                 f"`dvc push` {naive_seconds:.1f} s, {naive_objects} objects, {mib(naive_size)} (no run-cache, no "
                 "earlier registry versions)"))
    rows.append((f"{name}: push again (nothing new)", f"{again:.1f} s", "run-cache records re-sent by DVC"))
    for label, command, source in (("pricetrail pull", ["pricetrail.cli", "pull"], ours),
                                   ("dvc pull", ["dvc", "pull"], naive)):
        clone = work / f"{name}-{command[0]}-pull"
        sh(["git", "clone", "-q", str(source), str(clone)], work)
        pull_seconds, _ = timed(sh, [sys.executable, "-m", *command], clone)
        files, size = cache_usage(clone)
        rows.append((f"{name}: {label} into a fresh clone", f"{pull_seconds:.1f} s, {files} objects, {mib(size)}",
                     "empty cache before"))
    return rows


def router_child(project: Path, mode: str, endpoint: str, prefix: str, cache_dir: Path) -> None:
    """One fresh process: build the app, then time the first and a second /price of every served product."""
    started = time.perf_counter()
    from pricetrail.project.config import load_stockcodes
    from pricetrail.registry import records
    from pricetrail.registry.artifacts import dvc_cache_dir
    from pricetrail.serving.config import S3Settings, ServeConfig
    from serve.app import create_app

    codes = tuple(code for code in load_stockcodes(project) if records.served_model(project, code) is not None)
    if mode == "local":
        config = ServeConfig(registry_dir=project / "registry", stockcodes=codes,
                             cache_dirs=(dvc_cache_dir(project),))
    else:
        settings = S3Settings(url=f"s3://{BUCKET}/{prefix}", cache_dir=cache_dir, endpoint_url=endpoint,
                              region="us-east-1")
        config = ServeConfig(registry_dir=project / "registry", stockcodes=codes, s3=settings)
    client = create_app(config).test_client()
    ready = time.perf_counter() - started
    first, second = [], []
    for code in codes:
        for bucket in (first, second):
            began = time.perf_counter()
            response = client.get(f"/v1/products/{code}/price?{QUERY}")
            bucket.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise SystemExit(f"{mode}: {code} answered {response.status_code}: {response.get_json()}")
    print(json.dumps({"ready": ready, "first": first, "second": second, "codes": list(codes)}))


def measure_router(name: str, project: Path, moto: Moto, work: Path) -> list[tuple[str, str, str]]:
    results = {}
    for mode in ("local", "s3"):
        cache_dir = work / f"{name}-router-objects-{mode}"
        output = sh([sys.executable, __file__, "--router-child", mode, "--project", str(project), "--endpoint",
                     moto.endpoint, "--prefix", f"{name}/pricetrail", "--cache-dir", str(cache_dir)], ROOT,
                    env=environment())
        results[mode] = json.loads(output.stdout.strip().splitlines()[-1])

    def ms(values: list[float]) -> str:
        ordered = sorted(values)
        return f"median {ordered[len(ordered) // 2] * 1000:.0f} ms (max {ordered[-1] * 1000:.0f})"

    local, remote = results["local"], results["s3"]
    count = len(local["codes"])
    return [(f"{name}: router first /price per product ({count} products, fresh process)",
             f"S3, empty object cache: {ms(remote['first'])}", f"local DVC cache: {ms(local['first'])}"),
            (f"{name}: router second /price (loaded)", f"S3: {ms(remote['second'])}",
             f"local: {ms(local['second'])}")]


def build(kind: str, work: Path) -> Path:
    return built_project(work / f"built-{kind}" / "project", "smoke" if kind == "smoke" else None, f"a {kind} run")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke-project", type=Path, help="a finished smoke run (default: build one)")
    parser.add_argument("--default-project", type=Path, help="a finished default run (default: build one)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway folders")
    parser.add_argument("--router-child", choices=("local", "s3"), help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.router_child:
        os.environ.update(CREDENTIALS)
        router_child(args.project, args.router_child, args.endpoint, args.prefix, args.cache_dir)
        return 0
    work = Path(tempfile.mkdtemp(prefix="pricetrail-remote-bench-"))
    projects = {"smoke": args.smoke_project or build("smoke", work),
                "default": args.default_project or build("default", work)}
    moto = Moto()
    rows: list[tuple[str, str, str]] = []
    try:
        for name, project in projects.items():
            project = project.resolve()
            rows += measure_transfers(name, project, moto, work)
            rows += measure_router(name, project, moto, work)
            print(f"  {name} done", flush=True)
    finally:
        moto.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nmoto_server on 127.0.0.1, projects: {', '.join(f'{k} {v}' for k, v in projects.items())}\n")
    print_table(["", "pricetrail", "beside it"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
