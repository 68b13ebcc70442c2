"""The price router under waitress on 127.0.0.1, beside the naive design, in one run.

    python bench/router_benchmark.py [--project DIR] [--requests 500]

Without --project a throwaway smoke project is built first (`pricetrail run`, a few minutes). Measured:
process start to ready; the first /price of a product after start (its model load); warm /price with 100 points,
one client (p50/p99); 8 concurrent clients (requests/s, errors); memory per loaded model (the server's RSS and the
router's own estimate). The naive design loads the bundle per request, as `pricetrail recommend` did, and prices
through the one pricing function (pricetrail.pricing.served.served_from_bundle, then
pricetrail.pricing.recommend.recommend); the router loads each model once and keeps it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from common import built_project, print_table

QUERY = "points=100&date=2011-11-15"


def get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read()


def latencies(url: str, path: str, count: int) -> list[float]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    result = []
    for _ in range(count):
        started = time.perf_counter()
        status, _ = get(connection, path)
        result.append(time.perf_counter() - started)
        if status != 200:
            raise SystemExit(f"{path} answered {status}")
    connection.close()
    return result


def concurrent(url: str, path: str, clients: int, per_client: int) -> tuple[float, int]:
    parts = urlsplit(url)
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        barrier.wait()
        for _ in range(per_client):
            try:
                status, _ = get(connection, path)
            except (OSError, http.client.HTTPException):
                status = 0
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            if status != 200:
                with lock:
                    errors[0] += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return clients * per_client / (time.perf_counter() - started), errors[0]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ms(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) >= 2 else values[0] * 1000


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> float:
    started = time.perf_counter()
    parts = urlsplit(url)
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            if get(connection, "/readyz")[0] == 200:
                return time.perf_counter()
        except OSError:
            time.sleep(0.02)
    raise SystemExit("the server did not become ready")


def naive_app(project: Path) -> Callable:
    """A WSGI app that does per request what `pricetrail recommend` did: load the bundle, then price it."""
    from pricetrail.data.price_ranges import observed_price_ranges
    from pricetrail.pricing.candidate import load_served_bundle, served_from_bundle
    from pricetrail.pricing.recommend import recommend
    from pricetrail.pricing.request import PriceRequest

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        code = environ["PATH_INFO"].split("/")[3]
        bundle = load_served_bundle(project, code)
        served = served_from_bundle(bundle, observed_price_ranges(bundle.reference), verdict=None)
        answer = recommend(served, PriceRequest(date="2011-11-15", customer="registered", points=100))
        body = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, help="a project with promoted models (default: build a smoke one)")
    parser.add_argument("--requests", type=int, default=500, help="warm requests of the one-client run")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    project = args.project
    if project is None:
        project = built_project(Path(tempfile.mkdtemp(prefix="router-bench-")) / "project", "smoke",
                                "a smoke project")
    from pricetrail.project.config import load_stockcodes
    from pricetrail.registry import records

    codes = [c for c in load_stockcodes(project) if records.served_model(project, c) is not None]
    if len(codes) < 2:
        raise SystemExit(f"{project} serves {codes}; the benchmark needs two promoted products")
    first, second = codes[:2]
    url = f"http://127.0.0.1:{args.port}"
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "pricetrail.cli", "serve", "--port", str(args.port)],
                               cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: list[tuple[str, str, str, str]] = []
    try:
        ready = wait_ready(url, process) - started
        idle_rss = rss_mib(process.pid)
        price = f"/v1/products/{first}/price?{QUERY}"
        first_request = latencies(url, price, 1)[0]
        one_loaded_rss = rss_mib(process.pid)
        first_other = latencies(url, f"/v1/products/{second}/price?{QUERY}", 1)[0]
        loaded_rss = rss_mib(process.pid)
        latencies(url, price, 50)  # warm-up
        warm = latencies(url, price, args.requests)
        rate, errors = concurrent(url, price, 8, max(50, args.requests // 4))
        parts = urlsplit(url)
        stats = json.loads(get(http.client.HTTPConnection(parts.hostname, parts.port), "/v1/stats")[1])
    finally:
        process.terminate()
        process.wait(timeout=30)
    # The first load also pays lazy allocations of the process; the second product's is the model's own.
    per_model_rss = loaded_rss - one_loaded_rss
    rows.append(("process start to ready (/readyz 200)", f"{ready:.2f} s", "-", "reference 3.5 s"))
    rows.append(("first /price after start (model load)", f"{first_request * 1000:.0f} ms "
                 f"(second product {first_other * 1000:.0f} ms)", "-", "target <= 300 ms"))
    # The naive design, same machine, same run, served by waitress in this process.
    from waitress.server import create_server

    server = create_server(naive_app(project), host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    naive_url = f"http://127.0.0.1:{server.effective_port}"
    naive_path = f"/v1/products/{first}/price"
    latencies(naive_url, naive_path, 3)
    naive = latencies(naive_url, naive_path, 40)
    naive_rate, naive_errors = concurrent(naive_url, naive_path, 8, 8)
    server.close()
    rows.append(("warm /price, 100 points, one client: p50", f"{ms(warm, 50):.2f} ms", f"{ms(naive, 50):.1f} ms",
                 "target <= 5 ms"))
    rows.append(("warm /price, 100 points, one client: p99", f"{ms(warm, 99):.2f} ms", f"{ms(naive, 99):.1f} ms",
                 "target <= 20 ms"))
    rows.append(("8 concurrent clients", f"{rate:.0f} req/s, {errors} errors",
                 f"{naive_rate:.0f} req/s, {naive_errors} errors", "target >= 200 req/s, no errors"))
    rows.append(("memory per loaded model", f"{per_model_rss:.1f} MiB RSS (second model; first "
                 f"{one_loaded_rss - idle_rss:.1f} MiB with one-time allocations); router estimate "
                 f"{stats['loaded_bytes'] / max(stats['loaded_models'], 1) / 1024:.0f} KiB", "-", "-"))
    print(f"\nproject {project}, products {first} and {second}, {args.requests} warm requests\n")
    print_table(["", "router", "naive (bundle loaded per request)", "target / reference"], rows)
    print(f"\nrouter stats: {json.dumps(stats)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
