"""The Lambda handler as its image runs it, beside the naive design, in one run.

    python bench/lambda_benchmark.py [--project DIR] [--naive-rev 4465042] [--requests 500] [--starts 3]

Both designs are installed by their own revision's image recipe (serve/image/install.sh) into a fresh venv, and
each serves a default run made by its own revision (ours built here unless --project names one; an older router
cannot read newer records; the runs are seeded, so they train the same models) from a real S3 server
(`moto_server` on 127.0.0.1), each process with an empty object cache, as a new Lambda sandbox has.
The naive design is --naive-rev (the router that loaded the torch checkpoint and the skops preprocessor); ours
prices each model's exported numbers (serving.json) with numpy. Measured per design:

- image install size (the venv's files) and its time;
- init: process start until `serve.lambda_handler` is imported (the app built) — Lambda's init phase; median of
  --starts fresh processes;
- first price from S3 after init (the model's load from the remote, then the answer);
- warm p50/p99 of --requests invocations of the handler (100-point curve) for a loaded product;
- RSS (VmRSS and its peak) with every served product loaded;
- the answers: every product and customer group asked of both; prices and decisions must be equal, and the curve's
  expected revenue per day within the stated tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import path_with_bin, print_table
from remote_benchmark import BUCKET, CREDENTIALS, Moto, borrowing_clone, sh

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("registered", "guest")
DATE = "2011-12-10"
# Relative gap allowed between the two designs' curve values (float32 torch against float64 numpy, both
# smeared and exponentiated); prices and decisions must be identical.
CURVE_TOLERANCE = 1e-4

CHILD = r"""
import json, os, sys, time
started = float(os.environ["BENCH_STARTED"])
import serve.lambda_handler as handler
ready = time.time() - started
if os.environ.get("BENCH_INIT_ONLY"):
    print(json.dumps({"init": ready}))
    sys.exit(0)
events = json.loads(os.environ["BENCH_EVENTS"])
codes = list(events)

def call(event):
    began = time.perf_counter()
    answer = handler.handler(event, None)
    return time.perf_counter() - began, answer

first, answer = call(events[codes[0]]["registered"])
if answer["statusCode"] != 200:
    raise SystemExit(f"first price: {answer}")
warm = []
for _ in range(int(os.environ["BENCH_REQUESTS"])):
    seconds, answer = call(events[codes[0]]["registered"])
    if answer["statusCode"] != 200:
        raise SystemExit(f"warm price: {answer}")
    warm.append(seconds)
bodies = {}
loads = []
for code in codes:
    for group, event in events[code].items():
        seconds, answer = call(event)
        if group == "registered" and code != codes[0]:
            loads.append(seconds)
        bodies[f"{code}/{group}"] = {"status": answer["statusCode"], "body": json.loads(answer["body"])}
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"init": ready, "first": first, "warm": warm, "loads": loads, "answers": bodies,
                  "rss_mib": int(status["VmRSS"].split()[0]) / 1024, "peak_mib": int(status["VmHWM"].split()[0]) / 1024,
                  "modules": sorted(m for m in ("torch", "sklearn", "skops", "scipy", "pyarrow") if m in sys.modules)}))
"""


def event(code: str, group: str, points: int) -> dict:
    """An HTTP API (v2) event for the price endpoint, as API Gateway sends it."""
    query = f"points={points}&date={DATE}&customer={group}"
    path = f"/v1/products/{code}/price"
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
            "headers": {"host": "bench.example", "accept": "application/json"},
            "queryStringParameters": dict(part.split("=") for part in query.split("&")),
            "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "127.0.0.1", "userAgent": "bench"}, "stage": "$default"},
            "isBase64Encoded": False}


def install(source: Path, venv: Path) -> tuple[float, int]:
    """The revision's image recipe into a fresh venv: (seconds, bytes of the venv)."""
    sh([sys.executable, "-m", "venv", str(venv)], venv.parent)
    started = time.perf_counter()
    sh(["sh", str(source / "serve" / "image" / "install.sh"), str(venv / "bin" / "python"), str(source)], source)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    return seconds, size


def run_child(venv: Path, env: dict[str, str], task: Path, extra: dict[str, str]) -> dict:
    environment = {**env, **extra, "BENCH_STARTED": repr(time.time())}
    result = subprocess.run([str(venv / "bin" / "python"), "-c", CHILD], cwd=task, env=environment,
                            capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{venv.name}: the handler failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(ours: dict, naive: dict) -> tuple[int, int, float, list[str]]:
    """(cases, equal price and decision, largest relative curve gap, differences)."""
    cases = equal = 0
    gap = 0.0
    differences = []
    for key, answer in ours.items():
        other = naive[key]
        cases += 1
        if answer["status"] != other["status"]:
            differences.append(f"{key}: status {answer['status']} vs {other['status']}")
            continue
        if answer["status"] != 200:
            equal += 1
            continue
        a, b = answer["body"], other["body"]
        same = (a["price"], a["decision"]["action"]) == (b["price"], b["decision"]["action"])
        equal += same
        if not same:
            differences.append(f"{key}: {a['price']} {a['decision']['action']} vs {b['price']} "
                               f"{b['decision']['action']}")
        for p, q in zip(a["curve"], b["curve"], strict=True):
            for field in ("expected_quantity", "expected_revenue_per_day", "expected_revenue_per_day_p05",
                          "expected_revenue_per_day_p95"):
                if field in p and p[field] is not None:
                    gap = max(gap, abs(p[field] - q[field]) / max(abs(q[field]), 1e-9))
    return cases, equal, gap, differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, help="a finished default run (default: build one, ~2 minutes)")
    parser.add_argument("--naive-rev", default="4465042", help="the revision of the naive design (torch serving)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="pricetrail-lambda-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    from common import built_project  # noqa: I001 - after the clocks' imports, as the other benchmarks do
    from pricetrail.project.copies import PROJECT_FILES, init_copy
    from pricetrail.project.config import load_stockcodes
    from pricetrail.registry import records

    project = args.project or built_project(work / "built" / "project", None, "a default run")
    naive_source = work / "naive-source"
    if not naive_source.is_dir():
        naive_source.mkdir()
        archive = subprocess.run(["git", "archive", args.naive_rev], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(naive_source)], input=archive.stdout, check=True)
    # Each design serves a default run made by its own revision (an older router cannot read newer records); the
    # runs are seeded, so both hold the same models (their versions are compared below).
    naive_project = work / "naive-built" / "project"
    if not naive_project.is_dir():
        print(f"building a default run with {args.naive_rev} in {naive_project} ...", flush=True)
        naive_project.mkdir(parents=True)
        for name in PROJECT_FILES:  # the project's own files, as make_copy takes them
            source = naive_source / name
            if source.is_dir():
                shutil.copytree(source, naive_project / name)
            elif source.is_file():
                shutil.copy2(source, naive_project / name)
        init_copy(naive_project, None, "the naive revision")
        subprocess.run([sys.executable, "-m", "pricetrail.cli", "run"], cwd=naive_project, check=False,
                       env={**os.environ, "PYTHONPATH": str(naive_project / "lib"), "PATH": path_with_bin()},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
    moto = Moto()
    try:
        clones, served = {}, {}
        for name, built, lib in (("ours", project, ROOT / "lib"), ("naive", naive_project, naive_project / "lib")):
            clones[name] = borrowing_clone(built, work / f"pushed-{name}", moto, f"lambda-{name}")
            sh([sys.executable, "-m", "pricetrail.cli", "push"], clones[name],
               env={**os.environ, **CREDENTIALS, "PYTHONPATH": str(lib), "PATH": path_with_bin()})
            served[name] = {code: records.served_model(clones[name], code) for code in load_stockcodes(clones[name])}
        codes = [code for code in served["ours"] if served["ours"][code] and served["naive"].get(code)]
        same_models = [code for code in codes if served["ours"][code].version == served["naive"][code].version]
        events = {code: {group: event(code, group, 100) for group in GROUPS} for code in codes}
        results: dict[str, dict] = {}
        for name, source in (("ours", ROOT), ("naive", naive_source)):
            clone = clones[name]
            venv = work / f"venv-{name}"
            print(f"installing {name} from {source} ...", flush=True)
            seconds, size = install(source, venv)
            task = work / f"task-{name}"  # /var/task: nothing but the registry and the product list
            task.mkdir(exist_ok=True)
            env = {"PATH": f"{venv / 'bin'}{os.pathsep}{path_with_bin()}", "HOME": str(work), **CREDENTIALS,
                   "PRICETRAIL_REGISTRY_DIR": str(clone / "registry"), "PRICETRAIL_STOCKCODES": ",".join(codes),
                   "PRICETRAIL_S3_URL": f"s3://{BUCKET}/lambda-{name}", "PRICETRAIL_S3_ENDPOINT_URL": moto.endpoint,
                   "PRICETRAIL_S3_REGION": "us-east-1", "OMP_NUM_THREADS": "1"}
            inits = [run_child(venv, {**env, "PRICETRAIL_S3_CACHE_DIR": str(work / f"objects-{name}-init{i}")},
                               task, {"BENCH_INIT_ONLY": "1"})["init"] for i in range(args.starts)]
            measured = run_child(venv, {**env, "PRICETRAIL_S3_CACHE_DIR": str(work / f"objects-{name}")}, task,
                                 {"BENCH_EVENTS": json.dumps(events), "BENCH_REQUESTS": str(args.requests)})
            results[name] = {"install_seconds": seconds, "size": size, "inits": inits, **measured}
    finally:
        moto.stop()

    def ms(values: list[float], q: float) -> str:
        ordered = sorted(values)
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f} ms"

    ours, naive = results["ours"], results["naive"]
    cases, equal, gap, differences = compare(ours["answers"], naive["answers"])
    print(f"\n{len(codes)} served products ({', '.join(codes)}), {args.requests} warm requests, "
          f"{args.starts} cold starts per design; naive = {args.naive_rev}\n")
    rows = []
    for label, target, fn in (
            ("image install size", "≤ 400 MB", lambda r: f"{r['size'] / 1e6:.0f} MB ({r['install_seconds']:.0f} s)"),
            ("init: start to handler ready (median)", "≤ 1.0 s",
             lambda r: f"{statistics.median(r['inits']):.2f} s ({', '.join(f'{s:.2f}' for s in r['inits'])})"),
            ("first price from S3 after init", "≤ 300 ms", lambda r: f"{r['first'] * 1000:.0f} ms"),
            ("first price of each other product (load + answer)", "",
             lambda r: ", ".join(f"{s * 1000:.0f}" for s in r["loads"]) + " ms"),
            ("warm p50", "", lambda r: ms(r["warm"], 0.5)),
            ("warm p99", "≤ 20 ms", lambda r: ms(r["warm"], 0.99)),
            (f"RSS with {len(codes)} models loaded (peak)", "≤ 200 MiB",
             lambda r: f"{r['rss_mib']:.0f} MiB ({r['peak_mib']:.0f})"),
            ("heavy modules imported", "none", lambda r: ", ".join(r["modules"]) or "none")):
        rows.append((label, target, fn(ours), fn(naive)))
    print_table(("", "target", "ours (numpy, serving.json)", f"naive ({args.naive_rev}: torch + skops)"), rows)
    print(f"\nanswers: {cases} product × group cases; price and decision equal in {equal}; largest relative gap of "
          f"the curve {gap:.2e} (tolerance {CURVE_TOLERANCE:g}); the two runs trained the same model version for "
          f"{len(same_models)} of {len(codes)} products")
    for line in differences:
        print("  differs:", line)
    (work / "lambda-benchmark.json").write_text(json.dumps(results, indent=1))
    print(f"\nfigures: {work / 'lambda-benchmark.json'}")
    return 0 if equal == cases and gap <= CURVE_TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
