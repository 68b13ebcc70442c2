"""The project's DuckDB ingest + per-product ETL against a plain-pandas port (bench/pandas_etl.py), on the real data.

    python bench/etl_benchmark.py [--mode all|stage|memory] [--data DIR] [--products 85123A 22423 ...] [--repeat 3]

Two modes, both measured by default (``--mode all``):

``stage`` (the headline: the pipeline as DVC runs it)
    Every product's ETL is its own DVC stage, i.e. its own process, which reads its input from disk. Per
    repetition, one process runs the ingest (DuckDB: ``ingest()`` to a temporary Parquet; straightforward pandas:
    nothing, it has no shared ingest step), then a fresh process per product runs that product's ETL: DuckDB's
    ``run_etl(parquet, code, CleaningRules())``; straightforward pandas reads every raw CSV and runs the port's ETL.
    A third column, ``pandas (shared parquet)``, runs the port's ETL on ``pd.read_parquet(parquet,
    filters=[("stockcode", "==", code)])`` of DuckDB's ingested Parquet: the design (ingest once, read one product)
    with the pandas engine, to show how much of the difference is the design and how much the engine.
``memory`` (one process per implementation, the raw data ingested once and the five products run from memory)
    What the pipeline cannot do, since its stages are separate processes; it compares the engines on equal terms.

Every process is a fresh subprocess (``--impl ... --step memory|ingest|etl --json``), so the peak memory it reports
is its own (VmHWM); a child that only imports the libraries gives the baseline. Wall times are measured inside the
children and leave out interpreter start-up and imports (the same for every implementation). The implementations run
in alternating order. The feature frames of every implementation and mode are compared in the same run.

The targets are judged on stage mode, which is what the pipeline does: DuckDB at least 5x faster than a
straightforward pandas ETL, and DuckDB's ingest + ETL of the products under 3 s.

Exit status: 0 when stage mode ran, both targets pass and the features agree, or when the real data is absent
(skipped); 1 otherwise (so ``--mode memory`` alone exits 1: it does not judge the targets).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pandas_etl

import pricetrail.data.etl
import pricetrail.data.ingest
from pricetrail.data.etl import CleaningRules, run_etl
from pricetrail.data.ingest import ingest
from pricetrail.project.config import validate_stockcode
from pricetrail.project.files import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_SUBPATH = Path("data/online-retail/by-day")
DEFAULT_DATA = [PROJECT_ROOT.parent / "shared" / DATA_SUBPATH, Path("/work/shared") / DATA_SUBPATH]
DEFAULT_PRODUCTS = ["85123A", "22423", "85099B", "84879", "47566"]
MODES = ["stage", "memory"]
# The implementations each mode runs; the first is the reference the others are compared with.
MODE_IMPLEMENTATIONS = {"stage": ["duckdb", "pandas", "pandas-parquet"], "memory": ["duckdb", "pandas"]}
LABELS = {"duckdb": "duckdb", "pandas": "pandas", "pandas-parquet": "pandas (shared parquet)"}
TARGET_SPEEDUP = 5.0
TARGET_DUCKDB_SECONDS = 3.0
# Relative tolerance for float features: the two engines sum prices in different orders.
FLOAT_RTOL = 1e-9
CHILD_TIMEOUT_S = 900
# Other processes' CPU use, as a share of one CPU, above which the timings are flagged as disturbed.
CONTENTION_WARNING = 0.10
MIB = 1024.0


class BenchmarkError(RuntimeError):
    """A benchmark child process failed."""


# The source digest each child reported (see source_digest): more than one means the code changed during the run.
CHILD_SOURCES: set[str] = set()


def source_digest() -> str:
    """A digest of the code measured (the library's ETL and ingest, the pandas port), read as this process started.

    The library may be edited while the benchmark runs; children that ran different versions cannot be compared.
    """
    digest = hashlib.sha256()
    for module in (pricetrail.data.etl, pricetrail.data.ingest, pandas_etl):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:12]


def peak_rss_kib() -> int:
    """Peak resident memory of this process in KiB.

    VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts at its parent's RSS at the time of the fork (measured:
    a child of a parent holding 800 MB reported 830 MB, VmHWM 9 MB), so it would charge the parent to the child.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def save_features(features: dict[str, pd.DataFrame], features_out: Path | None) -> None:
    """Pickle each product's features (called after the timing and after the peak was read)."""
    if features_out is None:
        return
    features_out.mkdir(parents=True, exist_ok=True)
    for code, frame in features.items():
        frame.to_pickle(features_out / f"{code}.pkl")


# --- what the children run -------------------------------------------------------------------------------------


def run_memory(impl: str, data: Path, products: list[str], csv_glob: str,
               features_out: Path | None) -> dict[str, Any]:
    """Memory mode: one ingest and one ETL per product with ``impl`` in this process; timings, rows, peak memory."""
    rules = CleaningRules()
    result: dict[str, Any] = {"impl": impl}
    features: dict[str, pd.DataFrame] = {}
    reports: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="pricetrail-bench-") as tmp:
        start = time.perf_counter()
        if impl == "duckdb":
            parquet = Path(tmp) / "transactions.parquet"
            rows = ingest(data, parquet, csv_glob=csv_glob).rows
        else:
            lines = pandas_etl.ingest(data, csv_glob=csv_glob)
            rows = len(lines)
        ingested = time.perf_counter()
        for code in products:
            if impl == "duckdb":
                frame, _, report = run_etl(parquet, code, rules)
            else:
                frame, _, report = pandas_etl.run_etl(lines, code, rules)
            features[code] = frame
            reports[code] = report.to_dict()
        finished = time.perf_counter()
    result.update(rows=rows, ingest_s=ingested - start, etl_s=finished - ingested, total_s=finished - start,
                  peak_rss_kib=peak_rss_kib(), reports=reports)
    save_features(features, features_out)
    return result


def run_stage_ingest(data: Path, csv_glob: str, parquet: Path) -> dict[str, Any]:
    """Stage mode, the ingest process: DuckDB's ``ingest()`` of the raw CSVs to ``parquet``."""
    start = time.perf_counter()
    rows = ingest(data, parquet, csv_glob=csv_glob).rows
    finished = time.perf_counter()
    return {"impl": "duckdb", "step": "ingest", "rows": rows, "ingest_s": finished - start,
            "peak_rss_kib": peak_rss_kib()}


def run_stage_etl(impl: str, data: Path, csv_glob: str, parquet: Path | None, code: str,
                  features_out: Path | None) -> dict[str, Any]:
    """Stage mode, one product's ETL process: read the input from disk, then that product's ETL.

    duckdb: ``run_etl`` on the ingested Parquet (reading is inside it); pandas: every raw CSV, then the port;
    pandas-parquet: the product's rows of the ingested Parquet via ``pd.read_parquet(filters=...)``, then the port.
    """
    rules = CleaningRules()
    rows: int | None = None
    read_s: float | None = None
    start = time.perf_counter()
    if impl == "duckdb":
        assert parquet is not None
        frame, _, report = run_etl(parquet, code, rules)
    else:
        if impl == "pandas":
            lines = pandas_etl.ingest(data, csv_glob=csv_glob)
            rows = len(lines)
        else:
            assert parquet is not None
            lines = pandas_etl.read_ingested_product(parquet, code)
        read_s = time.perf_counter() - start
        frame, _, report = pandas_etl.run_etl(lines, code, rules)
    finished = time.perf_counter()
    result = {"impl": impl, "step": "etl", "product": code, "rows": rows, "read_s": read_s,
              "etl_s": finished - start, "peak_rss_kib": peak_rss_kib(), "report": report.to_dict()}
    save_features({code: frame}, features_out)
    return result


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    source = source_digest()
    if args.impl == "imports":
        result = {"impl": "imports", "peak_rss_kib": peak_rss_kib()}
    elif args.step == "memory":
        result = run_memory(args.impl, args.data, args.products, args.csv_glob, args.features_out)
    elif args.step == "ingest":
        result = run_stage_ingest(args.data, args.csv_glob, args.parquet)
    else:
        result = run_stage_etl(args.impl, args.data, args.csv_glob, args.parquet, args.products[0], args.features_out)
    return {**result, "source": source}


# --- the parent ------------------------------------------------------------------------------------------------


def spawn(args: argparse.Namespace, impl: str, step: str | None = None, *, products: list[str] | None = None,
          parquet: Path | None = None, features_out: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--impl", impl, "--json", "--data", str(args.data),
               "--csv-glob", args.csv_glob, "--products", *(products or args.products)]
    if step is not None:
        command += ["--step", step]
    if parquet is not None:
        command += ["--parquet", str(parquet)]
    if features_out is not None:
        command += ["--features-out", str(features_out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise BenchmarkError(f"{' '.join(command)} failed with exit status {done.returncode}: {last[0]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    CHILD_SOURCES.add(result["source"])
    return result


def rotated(items: list[str], shift: int) -> list[str]:
    shift %= len(items)
    return items[shift:] + items[:shift]


def stage_repeat(args: argparse.Namespace, repeat: int, tmp: Path) -> dict[str, dict[str, Any]]:
    """One repetition of stage mode: the ingest process, then one process per (product, implementation)."""
    parquet = tmp / f"transactions-{repeat}.parquet"
    ingested = spawn(args, "duckdb", "ingest", parquet=parquet)
    impls = MODE_IMPLEMENTATIONS["stage"]
    etls: dict[str, dict[str, dict[str, Any]]] = {impl: {} for impl in impls}
    for index, code in enumerate(args.products):
        for impl in rotated(impls, repeat + index):  # each implementation in turn goes first
            etls[impl][code] = spawn(args, impl, "etl", products=[code],
                                     parquet=None if impl == "pandas" else parquet,
                                     features_out=tmp / f"stage-{impl}-{repeat}")
    parquet.unlink()
    runs: dict[str, dict[str, Any]] = {}
    for impl in impls:
        products = etls[impl]
        # The straightforward pandas pipeline has no ingest step; pandas (shared parquet) needs DuckDB's.
        has_ingest = impl != "pandas"
        etl_peaks = [run["peak_rss_kib"] for run in products.values()]
        etl_s = sum(run["etl_s"] for run in products.values())
        ingest_s = ingested["ingest_s"] if has_ingest else 0.0
        runs[impl] = {
            "rows": ingested["rows"] if has_ingest else products[args.products[0]]["rows"],
            "rows_each": [run["rows"] for run in products.values() if run["rows"] is not None],
            "ingest_s": ingest_s,
            "etl_s": etl_s,
            "read_s": None if impl == "duckdb" else sum(run["read_s"] for run in products.values()),
            "total_s": ingest_s + etl_s,
            "ingest_peak_kib": ingested["peak_rss_kib"] if has_ingest else None,
            "etl_peak_kib": max(etl_peaks),
            "peak_rss_kib": max([*etl_peaks, *([ingested["peak_rss_kib"]] if has_ingest else [])]),
            "reports": {code: run["report"] for code, run in products.items()},
        }
    return runs


def warm_file_cache(files: list[Path]) -> int:
    """Read every input file once so the implementation measured first does not pay for a cold disk."""
    size = 0
    for path in files:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                size += len(chunk)
    return size


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the whole machine has been busy, CPU seconds of this process and its waited-for children).

    The difference between two readings is the CPU time other processes took meanwhile: on a small machine
    they compete with the timed runs. None where /proc/stat is unreadable.
    """
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(value) for value in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user .. steal; guest time is inside user
    own = sum(getattr(resource.getrusage(who), name) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for name in ("ru_utime", "ru_stime"))
    return busy, own


def load_average() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def ordered_keys_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    keys = ["invoice_date", "invoice_no"]
    return len(a) == len(b) and bool((a[keys].to_numpy() == b[keys].to_numpy()).all())


def frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=FLOAT_RTOL)
    except AssertionError:
        return False
    return True


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the documented order, ties on (invoice_date, invoice_no) broken by every other column."""
    columns = ["invoice_date", "invoice_no"] + [c for c in frame.columns if c not in ("invoice_date", "invoice_no")]
    return frame.sort_values(columns, kind="stable", ignore_index=True)


def repeat_difference(first: pd.DataFrame, other: pd.DataFrame) -> dict[str, Any] | None:
    """How a repetition's features differ from the first repetition's: None when equal as returned.

    kind "order": the same rows in another order; "float bits": float columns differ within FLOAT_RTOL (a sum
    added in another order), given with the columns and the largest relative difference; "values": anything else.
    """
    if other.equals(first):
        return None
    if list(other.columns) != list(first.columns) or len(other) != len(first):
        return {"kind": "values"}
    a, b = canonical(first), canonical(other)
    if a.equals(b):
        return {"kind": "order"}
    columns, largest = [], 0.0
    for column in a.columns:
        if a[column].equals(b[column]):
            continue
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if a[column].dtype.kind != "f" or not np.allclose(x, y, rtol=FLOAT_RTOL, atol=0.0, equal_nan=True):
            return {"kind": "values"}
        columns.append(column)
        with np.errstate(divide="ignore", invalid="ignore"):
            largest = max(largest, float(np.nanmax(np.abs(x - y) / np.abs(x))))
    return {"kind": "float bits", "columns": columns, "largest": largest}


def compare_features(runs: dict[str, list[Path]], reference: str,
                     products: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Per product: rows, rows tied on the sort key, and how each other run's features compare with the reference's.

    ``runs`` maps a label ("stage: pandas", ...) to the feature folders of its repetitions; the first repetition of
    each label is compared with the first of ``reference``, and every label's repetitions with each other.
    """
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for code in products:
        frames = {label: [pd.read_pickle(folder / f"{code}.pkl") for folder in folders]
                  for label, folders in runs.items()}
        ref = frames[reference][0]
        row: dict[str, Any] = {"product": code, "rows": len(ref),
                               "tied": int(ref.duplicated(["invoice_date", "invoice_no"], keep=False).sum()),
                               "status": {}, "unstable": {}}
        for label, frames_of_label in frames.items():
            differences = [d for d in (repeat_difference(frames_of_label[0], frame) for frame in frames_of_label[1:])
                           if d is not None]
            if differences:
                # the worst kind: values over float bits over order
                worst = min(differences, key=lambda d: ["values", "float bits", "order"].index(d["kind"]))
                row["unstable"][label] = worst
                if worst["kind"] == "values":
                    problems.append(f"{code}, {label}: the repetitions returned different features")
            if label == reference:
                continue
            other = frames_of_label[0]
            status = "DIFFERENT"
            if list(ref.columns) != list(other.columns):
                only_ref = [c for c in ref.columns if c not in other.columns]
                only_other = [c for c in other.columns if c not in ref.columns]
                problems.append(f"{code}, {label}: columns differ from {reference}'s: missing {only_ref}, "
                                f"extra {only_other}" + ("" if only_ref or only_other else ", order differs"))
            elif len(ref) != len(other):
                problems.append(f"{code}, {label}: {len(other):,} rows, {reference} {len(ref):,}")
            elif not ordered_keys_equal(ref, other):
                problems.append(f"{code}, {label}: the (invoice_date, invoice_no) sequence differs from {reference}'s")
            else:
                try:
                    pd.testing.assert_frame_equal(canonical(ref), canonical(other), check_dtype=False,
                                                  rtol=FLOAT_RTOL)
                except AssertionError as error:
                    problems.append(f"{code}, {label}: features differ from {reference}'s: {error}")
                else:
                    status = "identical" if frames_equal(ref, other) else "tie order"
            row["status"][label] = status
        rows.append(row)
    return rows, problems


def format_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line))
             for line in [header, *body]]
    return "\n".join(lines)


def medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """The median of every timing and memory figure over the repetitions (None where the figure does not apply)."""
    keys = ["ingest_s", "etl_s", "read_s", "total_s", "peak_rss_kib", "ingest_peak_kib", "etl_peak_kib"]
    return {key: None if runs[0].get(key) is None else statistics.median(run[key] for run in runs)
            for key in keys}


def print_mode_table(mode: str, results: dict[str, list[dict[str, Any]]], baseline: int, products: int) -> None:
    impls = MODE_IMPLEMENTATIONS[mode]
    median = {impl: medians(results[impl]) for impl in impls}
    rows = {impl: results[impl][0]["rows"] for impl in impls}

    def cells(render: Callable[[str], str]) -> list[str]:
        return [render(impl) for impl in impls]

    def seconds(key: str, missing: str = "-") -> Callable[[str], str]:
        return lambda impl: missing if median[impl][key] is None else f"{median[impl][key]:.2f}"

    def mib(key: str, missing: str = "-") -> Callable[[str], str]:
        return lambda impl: missing if median[impl][key] is None else f"{median[impl][key] / MIB:.0f}"

    if mode == "stage":
        print(f"stage mode (the pipeline as DVC runs it): one ingest process, then a fresh process per product's "
              f"ETL reading its input from disk ({products} ETL processes per implementation)")
        body = [
            ["ingest (s)", *cells(lambda i: "none" if i == "pandas" else seconds("ingest_s")(i))],
            [f"{products} product ETLs, summed (s)", *cells(seconds("etl_s"))],
            ["  of which reading the input (s)", *cells(seconds("read_s"))],
            ["total (s)", *cells(seconds("total_s"))],
            ["total of each run (s)", *cells(lambda i: " / ".join(f"{r['total_s']:.2f}" for r in results[i]))],
            ["raw rows", *cells(lambda i: f"{rows[i]:,}")],
            ["rows/s (raw rows / total)", *cells(lambda i: f"{rows[i] / median[i]['total_s']:,.0f}")],
            ["peak RSS, ingest process (MiB)", *cells(mib("ingest_peak_kib", "none"))],
            ["peak RSS, largest ETL process (MiB)", *cells(mib("etl_peak_kib"))],
            ["peak RSS, max over processes (MiB)", *cells(mib("peak_rss_kib"))],
            ["  above imports (MiB)", *cells(lambda i: f"{(median[i]['peak_rss_kib'] - baseline) / MIB:.0f}")],
        ]
    else:
        print(f"memory mode (not how the pipeline runs): one process per implementation ingests once and runs the "
              f"{products} products from memory")
        body = [
            ["ingest (s)", *cells(seconds("ingest_s"))],
            [f"{products} product ETLs (s)", *cells(seconds("etl_s"))],
            ["total (s)", *cells(seconds("total_s"))],
            ["total of each run (s)", *cells(lambda i: " / ".join(f"{r['total_s']:.2f}" for r in results[i]))],
            ["raw rows ingested", *cells(lambda i: f"{rows[i]:,}")],
            ["rows/s (raw rows / total)", *cells(lambda i: f"{rows[i] / median[i]['total_s']:,.0f}")],
            ["peak RSS (MiB)", *cells(mib("peak_rss_kib"))],
            ["peak RSS above imports (MiB)", *cells(lambda i: f"{(median[i]['peak_rss_kib'] - baseline) / MIB:.0f}")],
        ]
    print(format_table(["", *(LABELS[impl] for impl in impls)], body))
    if mode == "stage":
        print("(duckdb reads its product's rows inside run_etl, so its reading is not timed apart; "
              "pandas (shared parquet) reads DuckDB's ingested Parquet, so its ingest time and memory are DuckDB's; "
              "the straightforward pandas ETL parses every raw CSV in each product's process)")
    else:
        print("(the DuckDB ingest also writes its Parquet to a temporary folder, the pandas port keeps the lines in "
              "memory)")


def benchmark(args: argparse.Namespace, files: list[Path]) -> int:
    began = time.perf_counter()
    modes = MODES if args.mode == "all" else [args.mode]
    size = warm_file_cache(files)
    print("ETL benchmark: pricetrail's DuckDB ingest + run_etl vs a plain-pandas port (bench/pandas_etl.py)")
    print(f"data: {args.data} ({len(files)} files, {size / 1e6:.1f} MB); products: {' '.join(args.products)}")
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, duckdb {duckdb.__version__}, "
          f"pandas {pd.__version__}")
    print(f"OS file cache warmed: read all {len(files)} input files once before timing")
    print(f"load average before timing (1/5/15 min): {load_average()} (other work on this {os.cpu_count()}-CPU "
          "machine slows the runs, DuckDB's multi-threaded ingest most)")
    print(f"modes: {' and '.join(modes)}; each ran {args.repeat}x, every process a fresh subprocess, implementations "
          "in alternating order; times are medians, measured inside the processes, without interpreter start-up "
          "and imports")

    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        mode: {impl: [] for impl in MODE_IMPLEMENTATIONS[mode]} for mode in modes}
    with tempfile.TemporaryDirectory(prefix="pricetrail-bench-") as tmp_name:
        tmp = Path(tmp_name)
        baseline = spawn(args, "imports")["peak_rss_kib"]
        cpu_before, timed_from = cpu_seconds(), time.perf_counter()
        for repeat in range(args.repeat):
            if "stage" in modes:
                for impl, run in stage_repeat(args, repeat, tmp).items():
                    results["stage"][impl].append(run)
            if "memory" in modes:
                impls = MODE_IMPLEMENTATIONS["memory"]
                for impl in impls if repeat % 2 == 0 else impls[::-1]:
                    results["memory"][impl].append(
                        spawn(args, impl, "memory", features_out=tmp / f"memory-{impl}-{repeat}"))
        cpu_after, timed_s = cpu_seconds(), time.perf_counter() - timed_from
        folders = {f"{mode}: {LABELS[impl]}": [tmp / f"{mode}-{impl}-{repeat}" for repeat in range(args.repeat)]
                   for mode in modes for impl in MODE_IMPLEMENTATIONS[mode]}
        reference = f"{modes[0]}: duckdb"
        comparison, problems = compare_features(folders, reference, args.products)

    # Raw rows and cleaning reports must agree with the reference's too.
    ref_run = results[modes[0]]["duckdb"][0]
    for mode in modes:
        for impl, runs in results[mode].items():
            label = f"{mode}: {LABELS[impl]}"
            counts = sorted({run["rows"] for run in runs} | {n for run in runs for n in run.get("rows_each", [])})
            if counts != [ref_run["rows"]]:
                problems.append(f"{label}: raw rows {counts}, {reference} {ref_run['rows']}")
            for code in args.products:
                if runs[0]["reports"][code] != ref_run["reports"][code]:
                    problems.append(f"{code}, {label}: cleaning report {runs[0]['reports'][code]}, "
                                    f"{reference} {ref_run['reports'][code]}")

    for mode in modes:
        print()
        print_mode_table(mode, results[mode], baseline, len(args.products))
    print(f"(imports-only baseline: {baseline / MIB:.0f} MiB peak RSS for a child that imports duckdb, pandas, "
          "pyarrow, pricetrail and the pandas port)")

    if cpu_before is not None and cpu_after is not None:
        others = max(0.0, (cpu_after[0] - cpu_before[0]) - (cpu_after[1] - cpu_before[1]))
        share = others / timed_s
        print(f"other processes on the machine used {others:.1f} CPU-seconds during the {timed_s:.0f} s of runs "
              f"({share:.0%} of one CPU)")
        if share > CONTENTION_WARNING:
            print(f"WARNING: that is more than {CONTENTION_WARNING:.0%} of a CPU on a {os.cpu_count()}-CPU machine: "
                  "the times are inflated (DuckDB's multi-threaded ingest most); run the benchmark again on a quiet "
                  "machine before trusting the figures")

    total = {mode: {impl: statistics.median(run["total_s"] for run in runs) for impl, runs in results[mode].items()}
             for mode in modes}
    print()
    passed = False
    if "stage" in modes:
        stage = total["stage"]
        speedup = stage["pandas"] / stage["duckdb"]
        shared = stage["pandas-parquet"] / stage["duckdb"]
        print(f"speed-up, stage mode (pandas total / duckdb total): {speedup:.2f}x; "
              f"pandas (shared parquet) / duckdb: {shared:.2f}x")
        print(f"  design vs engine: reading one product from the shared Parquet instead of every raw CSV takes the "
              f"pandas pipeline from {stage['pandas']:.2f} s to {stage['pandas-parquet']:.2f} s (design); "
              f"DuckDB instead of pandas on that same design: {stage['pandas-parquet']:.2f} s to "
              f"{stage['duckdb']:.2f} s (engine)")
    if "memory" in modes:
        memory_ratio = total["memory"]["pandas"] / total["memory"]["duckdb"]
        print(f"speed-up, memory mode (pandas total / duckdb total): {memory_ratio:.2f}x")
    print()
    if "stage" in modes:
        fast_enough = speedup >= TARGET_SPEEDUP
        under_budget = stage["duckdb"] < TARGET_DUCKDB_SECONDS
        print("targets, judged on stage mode (what the pipeline does):")
        print(f"target: DuckDB at least {TARGET_SPEEDUP:g}x faster than a straightforward pandas ETL: "
              f"{'PASS' if fast_enough else 'FAIL'} ({speedup:.2f}x)")
        print(f"target: DuckDB ingest + ETL of the {len(args.products)} products under {TARGET_DUCKDB_SECONDS:g} s: "
              f"{'PASS' if under_budget else 'FAIL'} ({stage['duckdb']:.2f} s)")
        passed = fast_enough and under_budget
    else:
        print("targets: not evaluated: they are judged on stage mode (run with --mode stage or --mode all)")
    if "memory" in modes:
        print(f"for information, memory mode: {memory_ratio:.2f}x: one process parses the raw data once and keeps it "
              "in memory for all products, which the pipeline's one-process-per-product stages cannot do; it "
              "compares the engines, not the pipeline")

    print()
    others = [label for label in folders if label != reference]
    print(f"correctness: every run's features against {reference}'s (first run of each; floats to a relative "
          f"{FLOAT_RTOL:g}); 'identical' = equal as returned, 'tie order' = equal once rows tied on "
          "(invoice_date, invoice_no) are put in a canonical order:")
    print(format_table(
        ["product", "rows", "tied rows", *others, "same every run"],
        [[r["product"], f"{r['rows']:,}", f"{r['tied']:,}", *(r["status"].get(label, "-") for label in others),
          "yes" if not r["unstable"] else "no: " + ", ".join(f"{label} ({d['kind']})"
                                                             for label, d in r["unstable"].items())]
         for r in comparison],
    ))
    if len(CHILD_SOURCES) > 1:
        problems.append(f"the measured code (pricetrail/etl.py, pricetrail/ingest.py, bench/pandas_etl.py) changed "
                        f"during the run: the processes ran {len(CHILD_SOURCES)} versions; run the benchmark again")
    yes_no = {True: "yes", False: "no"}
    print(f"raw rows and cleaning reports identical: "
          f"{yes_no[not any('raw rows' in p or 'cleaning report' in p for p in problems)]}")
    print(f"features identical: {yes_no[not any('during the run' not in p for p in problems)]}")
    for problem in problems:
        print(f"  - {problem}")
    if len(CHILD_SOURCES) == 1:
        print_repeat_notes(comparison)
    print()
    print(f"benchmark wall time: {time.perf_counter() - began:.0f} s; load average at the end: {load_average()}")
    return 0 if not problems and passed else 1


def print_repeat_notes(comparison: list[dict[str, Any]]) -> None:
    """Explain, per implementation, the repetitions that were not equal as returned (and not different in value)."""
    by_kind: dict[tuple[str, str], list[str]] = {}
    float_columns: dict[str, set[str]] = {}
    largest: dict[str, float] = {}
    for row in comparison:
        for label, difference in row["unstable"].items():
            by_kind.setdefault((label, difference["kind"]), []).append(row["product"])
            if difference["kind"] == "float bits":
                float_columns.setdefault(label, set()).update(difference["columns"])
                largest[label] = max(largest.get(label, 0.0), difference["largest"])
    for (label, kind), codes in by_kind.items():
        if kind == "order":
            print(f"note: {label} returned the rows in a different order from run to run for {' '.join(codes)}: "
                  "its ORDER BY does not fully order the rows")
        elif kind == "float bits":
            print(f"note: {label} returned different last bits of {', '.join(sorted(float_columns[label]))} from run "
                  f"to run for {' '.join(codes)} (at most {largest[label]:.1e} relative, within the {FLOAT_RTOL:g} "
                  "tolerance; not a correctness failure): a float sum added in a varying order, so the same input "
                  "does not always give byte-identical features")


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["all", *MODES], default="all",
                        help="stage: one process per pipeline stage, as DVC runs it (the targets are judged on it); "
                             "memory: one process per implementation, ingest once; all: both (default)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of daily UCI Online Retail CSVs (default: ../shared/data/online-retail/by-day "
                             "beside the project, or /work/shared/...)")
    parser.add_argument("--csv-glob", default="*.csv", help="which files of --data to read (default: *.csv)")
    parser.add_argument("--products", nargs="+", default=DEFAULT_PRODUCTS, help="stockcodes to run the ETL for")
    parser.add_argument("--repeat", type=int, default=3, help="runs per implementation; medians are reported")
    parser.add_argument("--impl", choices=[*LABELS, "imports"],
                        help="run one implementation once in this process (what the benchmark spawns)")
    parser.add_argument("--step", choices=["memory", "ingest", "etl"], default="memory",
                        help="with --impl: memory = ingest + every product in this process; ingest = the DuckDB "
                             "ingest to --parquet; etl = one product's ETL, reading from disk")
    parser.add_argument("--parquet", type=Path,
                        help="with --step ingest: where to write; with --step etl: the ingested Parquet to read")
    parser.add_argument("--json", action="store_true", help="with --impl: print the result as one JSON line")
    parser.add_argument("--features-out", type=Path, help="with --impl: pickle each product's features here")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat} must be at least 1")
    for code in args.products:
        try:
            validate_stockcode(code)
        except ConfigError as error:
            parser.error(str(error))
    if args.impl not in (None, "imports"):
        if args.step == "memory" and args.impl not in MODE_IMPLEMENTATIONS["memory"]:
            parser.error(f"--impl {args.impl} runs only with --step etl")
        if args.step == "ingest" and (args.impl != "duckdb" or args.parquet is None):
            parser.error("--step ingest needs --impl duckdb and --parquet PATH")
        if args.step == "etl":
            if len(args.products) != 1:
                parser.error("--step etl runs one product: give exactly one --products code")
            if args.impl != "pandas" and args.parquet is None:
                parser.error(f"--impl {args.impl} --step etl needs --parquet PATH (the ingested Parquet)")
    return parser, args


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
    if args.data is None:
        found = [path for path in DEFAULT_DATA if path.is_dir()]
        if not found:
            looked = " and ".join(map(str, DEFAULT_DATA))
            print(f"ETL benchmark skipped: the real data is absent (looked for {looked}); "
                  "pass --data DIR to point at a folder of daily UCI Online Retail CSVs")
            return 0
        args.data = found[0]
    elif not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder; give the folder of daily UCI Online Retail CSVs")
    args.data = args.data.resolve()
    files = sorted(args.data.glob(args.csv_glob))
    if not files:
        parser.error(f"--data {args.data} holds no files matching --csv-glob {args.csv_glob!r}")

    if args.impl is not None:
        result = run_child(args)
        if args.json:
            print(json.dumps(result))
        else:
            print(", ".join(f"{key}={value}" for key, value in result.items() if key not in ("reports", "report")))
        return 0
    try:
        return benchmark(args, files)
    except BenchmarkError as error:
        print(f"ETL benchmark failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
