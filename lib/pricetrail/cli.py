"""The ``pricetrail`` command: run the weekly job, apply profiles, promote, inspect, recommend."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

from pricetrail.project.config import load_params, load_stockcodes, project_root, section
from pricetrail.project.files import ConfigError, read_json
from pricetrail.project.paths import ProductPaths
from pricetrail.project.stage import log_to_stderr
from pricetrail.registry import decision_log, drift_reference, migration, operator_actions, promotion, records

log = logging.getLogger("pricetrail")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _number_in(kind: type, low: float, high: float, *, low_open: bool = False):  # noqa: ANN202 - an argparse type
    """An argparse type: a finite ``kind`` from ``low`` to ``high`` (above ``low`` when ``low_open``), or one
    usage error naming the value and the range."""
    bounds = f"{'above' if low_open else 'from'} {low:g}{'' if low_open else f' to {high:g}'}"
    if low_open:
        bounds += f" and at most {high:g}"

    what = "a whole number" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"{text!r} is not accepted: {what} {bounds}")
        return value

    parse.__name__ = "whole number" if kind is int else "number"
    return parse


def _dvc(*args: str, root: Path) -> int:
    from pricetrail.project.dvc import run_dvc_shown

    _out(f"$ dvc {' '.join(args)}")
    return run_dvc_shown(args, root)


def cmd_profile(args: argparse.Namespace, root: Path) -> int:
    from pricetrail.project.profiles import apply_profile

    changed = apply_profile(root, args.name)
    _out(f"applied profile {args.name!r} to {', '.join(changed)} (git checkout {' '.join(changed)} to undo)")
    return 0


def cmd_products(args: argparse.Namespace, root: Path) -> int:
    """Print, as stockcodes.yaml entries, every product of the ingested data the ETL would admit and the list does
    not hold yet (so `pricetrail products >> stockcodes.yaml` extends the catalogue); a summary goes to stderr."""
    import dataclasses

    from pricetrail.data.catalogue import admissible_products
    from pricetrail.data.etl import CleaningRules
    from pricetrail.data.preprocess import PreprocessSettings, check_thresholds_agree
    from pricetrail.project.paths import INTERIM_TRANSACTIONS

    params = load_params(root)
    rules = CleaningRules.from_params(section(params, "etl"))
    if args.min_rows is not None:
        rules = dataclasses.replace(rules, min_rows=args.min_rows)
    splitting = PreprocessSettings.from_params(section(params, "preprocess"))
    check_thresholds_agree(rules.min_rows, splitting)
    transactions = root / INTERIM_TRANSACTIONS
    if not transactions.is_file():
        raise ConfigError(f"{INTERIM_TRANSACTIONS} does not exist: run `dvc repro ingest` first (it reads "
                          f"params.yaml ingest.input)")
    catalogue = admissible_products(transactions, rules, splitting, skip=() if args.all else load_stockcodes(root))
    # One write: with `>> stockcodes.yaml`, an interrupted listing must not leave half a line in the file.
    sys.stdout.write("".join(entry.yaml_line() + "\n" for entry in catalogue.admitted))
    sys.stdout.flush()
    refused = "; ".join(f"{count} {reason}" for reason, count in sorted(catalogue.refused.items()))
    sys.stderr.write(f"{len(catalogue.admitted)} of {catalogue.stockcodes} stockcodes can be modelled with "
                     f"etl.min_rows={rules.min_rows}{'' if args.all else ' and are not listed yet'}"
                     f"{f'; left out: {refused}' if refused else ''}\n")
    return 0


def _product(root: Path, code: str) -> str:
    """A stockcode named on the command line: valid, and one of the products in stockcodes.yaml."""
    code = ProductPaths(code).code
    products = load_stockcodes(root)
    if code not in products:
        raise ConfigError(f"stockcode {code} is not in stockcodes.yaml; products: {', '.join(products)}")
    return code


def cmd_promote(args: argparse.Namespace, root: Path) -> int:
    from pricetrail.flow.lockmerge import recover

    codes = [_product(root, args.stockcode)] if args.stockcode else list(load_stockcodes(root))
    recover(root)  # a run's bring-back that a kill interrupted is completed first
    drift_reference.ensure_records(root, codes)
    decisions = promotion.promote_all(root, codes)
    _print_decisions(decisions)
    _publish(root, [d.stockcode for d in decisions if d.action == "promoted"])
    return 1 if any(d.action == "error" for d in decisions) else 0


def _publish(root: Path, codes: list[str]) -> None:
    """With a default DVC remote, send the products' new router records there (a deployed router follows them);
    a decision stands whether or not this succeeds, and a failure is said with its remedy."""
    from pricetrail.registry.remote import RemoteError, default_remote_name

    if not codes or default_remote_name(root) is None:
        return
    from pricetrail.registry.publish import publish_records

    try:
        published = publish_records(root, codes)
    except RemoteError as error:
        sys.stderr.write(f"warning: the decision is recorded here but not published to the routers: {error}\n")
        return
    if published.products:
        _out(f"published the router records of {', '.join(published.products)} to {published.remote.description}")
    for held in published.held_back:
        sys.stderr.write(f"warning: not published, its model's objects are not on the remote yet: {held}; "
                         "`pricetrail push` sends them and publishes\n")


def _print_decisions(decisions: list[decision_log.Decision]) -> None:
    width = max(len(d.stockcode) for d in decisions)
    for d in decisions:
        _out(f"  {d.stockcode:<{width}}  {d.action:<9}  serving {d.served_version or '-':<16}  {d.reason}")


def cmd_status(args: argparse.Namespace, root: Path) -> int:
    for code in load_stockcodes(root):
        served = records.served_model(root, code)
        verdict_path = root / ProductPaths(code).verdict
        latest = read_json(verdict_path) if verdict_path.is_file() else None
        line = f"  {code:<8} serving {served.version if served else '-':<16}"
        if latest:
            outcome = "passed" if latest["promoted"] else f"failed {', '.join(latest['failed_checks'])}"
            line += f"  latest model {latest['model_version']}: {outcome}"
        else:
            line += "  no verdict yet"
        _out(line)
    return 0


def cmd_history(args: argparse.Namespace, root: Path) -> int:
    code = _product(root, args.stockcode)
    entries = records.history(root, code)
    if args.json:
        _out(json.dumps(entries, indent=2))
        return 0
    if not entries:
        _out(f"{code}: no decisions recorded yet")
        return 0
    for entry in entries:
        metrics = entry.get("metrics") or {}
        rmsle = f"rmsle {metrics['test_rmsle']:.4f}" if metrics.get("test_rmsle") is not None else ""
        commit = (entry.get("git_commit") or "-")[:10] + ("+" if entry.get("git_dirty") else "")
        _out(f"  {entry['time']}  {entry['action']:<14} {entry.get('version') or '-':<16}  {commit:<11} "
             f"{rmsle:<12} {entry['reason']}")
    return 0


def cmd_rollback(args: argparse.Namespace, root: Path) -> int:
    code = _product(root, args.stockcode)
    decision = operator_actions.rollback(root, code, to=args.to, reason=args.reason or "")
    _print_decisions([decision])
    _publish(root, [code])
    _out(f"the next run re-checks drift against {decision.served_version}'s training data; "
         "commit registry/ to record it")
    return 0


def cmd_accept_drift(args: argparse.Namespace, root: Path) -> int:
    code = _product(root, args.stockcode)
    decision = operator_actions.accept_drift(root, code, reason=args.reason)
    _print_decisions([decision])
    _out(f"the next `pricetrail run` compares {code}'s data with the accepted window")
    return 0


def cmd_migrate_registry(args: argparse.Namespace, root: Path) -> int:
    changed = migration.migrate_layout(root, load_stockcodes(root))
    if not changed:
        _out("registry/ is already in the pointer layout; nothing to do")
        return 0
    _out(f"converted {', '.join(changed)}: binaries moved into the DVC cache, records point at them by md5.")
    _out("commit registry/ and run `dvc push` so the remote holds them too")
    return 0


def cmd_gc(args: argparse.Namespace, root: Path) -> int:
    """``dvc gc`` that keeps every committed revision and every object any registry record names."""
    from pricetrail.registry.gc import collect

    command = ["gc", "--workspace", "--all-commits", "--force"] + (["--cloud"] if args.cloud else [])
    report = collect(root, lambda: _dvc(*command, root=root), cloud=args.cloud)
    _out(f"kept {report.kept} registry objects ({report.unreferenced} of them not in the workspace's dvc.lock) "
         f"{'locally and on the remote' if args.cloud else 'in the DVC cache'}")
    return report.dvc_exit


def cmd_remote_add(args: argparse.Namespace, root: Path) -> int:
    from pricetrail.registry.remote import add_s3_remote

    remote = add_s3_remote(root, args.name, args.url, endpoint_url=args.endpoint_url, region=args.region,
                           default=not args.no_default, credentials_from_env=args.credentials_from_env)
    _out(f"configured {remote.description}{' as the default remote' if not args.no_default else ''}")
    if args.credentials_from_env:
        _out("credentials stored in .dvc/config.local (not committed); commit .dvc/config to share the remote")
    else:
        _out("credentials: from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE); "
             "commit .dvc/config to share the remote")
    return 0


def cmd_transfer(args: argparse.Namespace, root: Path) -> int:
    from pricetrail.registry.remote import transfer

    result = transfer(root, args.command, name=args.remote, run_cache=not args.no_run_cache)
    verb = "pushed to" if args.command == "push" else "pulled from"
    # DVC's count includes the run-cache's records, which it sends again on every push.
    _out(f"{result.files} files {verb} {result.remote.description} (run-cache records included)" if result.files else
         f"{result.remote.description}: everything was already there")
    if result.published:
        _out(f"published the router records of {result.published} products")
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    return 0


def cmd_recommend(args: argparse.Namespace, root: Path) -> int:
    from pricetrail.pricing import keep, recommend, request
    from pricetrail.pricing.decision import DecisionSettings
    from pricetrail.registry import product_record
    from pricetrail.registry.artifacts import local_sources
    from pricetrail.serving import loading

    code = _product(root, args.stockcode)
    sources = local_sources(root)
    product = product_record.read_product_record(root / "registry", code)
    try:
        served = loading.load_served(root / "registry", product, sources)
    except loading.NotServable:
        served = None
    params = load_params(root)
    decision = DecisionSettings.from_params(section(params, "decision"))
    grid = request.RecommendSettings.from_params(section(params, "recommend"))
    asked = request.PriceRequest(date=args.date, country=args.country,
                                 customer="guest" if args.guest else "registered", min_price=args.low,
                                 max_price=args.high, points=grid.grid_size, unit_cost=args.unit_cost,
                                 range_widening=grid.range_widening if args.widen is None else args.widen,
                                 current_price=args.current_price)
    if served is None:  # no model may set its price: keep today's, and why
        payload = keep.unmodelled_answer(product, asked, sources, decision)
    else:
        payload = recommend.recommend(served, asked, sources, decision)
    if not args.curve:
        payload.pop("curve")
    _out(json.dumps(payload, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace, root: Path) -> int:
    """The price router under waitress: the same app as the Lambda image, on this project's registry and cache."""
    from waitress import serve as waitress_serve

    from pricetrail.registry.artifacts import dvc_cache_dir
    from pricetrail.serving.config import from_project
    from serve.app import create_app

    config = from_project(root, dvc_cache_dir(root), max_models=args.max_models, max_memory_mb=args.max_memory_mb)
    _out(f"pricetrail serve: http://{args.host}:{args.port}/v1/products ({len(config.stockcodes)} products, "
         f"{args.threads} threads)")
    # Timeouts: a slow or stalled client is dropped after 30 s instead of holding a thread for waitress' default
    # 120 s; headers are capped at 16 KB (no request needs more), bodies at the app's max_request_bytes.
    waitress_serve(create_app(config), host=args.host, port=args.port, threads=args.threads,
                   channel_timeout=30, connection_limit=200, max_request_header_size=16384,
                   max_request_body_size=config.max_request_bytes, ident="pricetrail")
    return 0


def cmd_run(args: argparse.Namespace, root: Path) -> int:
    """The weekly job: the Prefect flow that runs every product's chain in parallel on Dask, then promotes."""
    from pricetrail.flow.settings import offline_environment

    offline_environment()  # before Prefect is imported: it reads its settings once
    from pricetrail.flow.preflight import RunOptions
    from pricetrail.flow.weekly import run as run_flow

    codes = tuple(ProductPaths(code).code for code in args.stockcodes)
    options = RunOptions(codes=codes, workers=args.workers, dask_address=args.dask_address, push=args.push,
                         timeout_seconds=args.timeout)
    _out(f"pricetrail: {len(codes) or len(load_stockcodes(root))} products on "
         f"{args.dask_address or f'{args.workers} local Dask workers'}; per-product logs in logs/<code>.log")
    ok, rows, message = run_flow(root, options, _out)
    _print_table(rows)
    _out(f"\n{message}")
    _out("reports: metrics/<code>/*.json (dvc metrics show), reports/<code>/drift.html, plots/<code>/, "
         "pricetrail history <code>")
    return 0 if ok else 1


def _print_table(rows: list[dict]) -> None:
    """A row per product for a few products; above TABLE_LIMIT only the fleet's summary (every row is in
    logs/last-run.json)."""
    from pricetrail.flow.summary import TABLE_LIMIT, fleet_report

    if not rows:
        return
    _out("")
    if len(rows) > TABLE_LIMIT:
        for line in fleet_report(rows):
            _out(line)
        _out("(a row per product: logs/last-run.json; each product's log: logs/<code>.log)")
        return
    columns = ["product", "stages run", "from run-cache", "skipped", "re-checked", "result", "failed stage",
               "served version", "seconds", "decision"]
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) if i < len(columns) - 1 else len(c)
              for i, c in enumerate(columns)]
    _out("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for line in cells:
        _out("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))
    for row in rows:
        if row["reason"]:
            _out(f"  {row['product']}: {row['failed stage']}: {row['reason']}")


def cmd_schedule(args: argparse.Namespace, root: Path) -> int:
    """Serve the weekly flow as a Prefect deployment on a cron schedule (needs a running `prefect server`)."""
    from pricetrail.flow.settings import offline_environment

    offline_environment()
    from pricetrail.flow.schedule import serve_weekly

    serve_weekly(root, cron=args.cron, workers=args.workers, dask_address=args.dask_address, push=not args.no_push)
    return 0


def cmd_lineage(args: argparse.Namespace, root: Path) -> int:
    """SQL over the pipeline's records (dvc.lock, params, metrics, registry), in the workspace or across commits."""
    from pricetrail.lineage.command import run_command

    return run_command(args, root, sys.stdin, sys.stdout, sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricetrail", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--wait", type=_number_in(float, 0, 86_400), default=60.0,
                        help="seconds to wait for another pricetrail command's lock on the project (default 60)")
    sub = parser.add_subparsers(dest="command", required=True)
    cores = os.cpu_count() or 1
    run = sub.add_parser("run", help="the weekly job: every product's chain in parallel (Prefect + Dask), promote")
    run.add_argument("stockcodes", nargs="*", help="only these products (default: all of stockcodes.yaml)")
    run.add_argument("--workers", type=_number_in(int, 1, 256), default=cores,
                     help=f"local Dask workers (default: {cores}, the cores)")
    run.add_argument("--dask-address", help="an existing Dask scheduler, e.g. tcp://host:8786 (needs a DVC remote)")
    run.add_argument("--push", action="store_true", help="dvc push outputs and run-cache to the default remote")
    run.add_argument("--timeout", type=_number_in(float, 0, 7 * 86_400, low_open=True), default=3600.0,
                     help="seconds one product's chain may take; its processes are ended when it passes")
    run.set_defaults(func=cmd_run)
    schedule = sub.add_parser("schedule", help="serve the weekly run as a Prefect deployment with a cron schedule")
    schedule.add_argument("--cron", default="0 6 * * 1", help="when (default: Mondays 06:00, the server's zone)")
    schedule.add_argument("--workers", type=_number_in(int, 1, 256), default=cores)
    schedule.add_argument("--dask-address")
    schedule.add_argument("--no-push", action="store_true", help="do not push to the DVC remote after a run")
    schedule.set_defaults(func=cmd_schedule)
    profile = sub.add_parser("profile", help="apply profiles/<name>.yaml to params.yaml and stockcodes.yaml")
    profile.add_argument("name")
    profile.set_defaults(func=cmd_profile)
    products = sub.add_parser("products", help="list every product of the ingested data the pipeline can model, as "
                              "stockcodes.yaml entries (pricetrail products >> stockcodes.yaml)")
    products.add_argument("--min-rows", type=_number_in(int, 1, 10_000_000),
                          help="clean lines a product needs (default: params.yaml etl.min_rows)")
    products.add_argument("--all", action="store_true", help="also the products stockcodes.yaml lists already")
    products.set_defaults(func=cmd_products)
    promote = sub.add_parser("promote", help="promote every product whose new model passed both gates")
    promote.add_argument("--stockcode")
    promote.set_defaults(func=cmd_promote)
    sub.add_parser("status", help="what each product serves and how its latest model did").set_defaults(
        func=cmd_status)
    history = sub.add_parser("history", help="every promotion, keep, rollback and accepted drift of a product")
    history.add_argument("stockcode")
    history.add_argument("--json", action="store_true", help="the raw records")
    history.set_defaults(func=cmd_history)
    rollback = sub.add_parser("rollback", help="serve an earlier promoted version of a product")
    rollback.add_argument("stockcode")
    rollback.add_argument("--to", help="the version to serve (default: the one promoted before the served one)")
    rollback.add_argument("--reason", help="why (recorded in the history)")
    rollback.set_defaults(func=cmd_rollback)
    accept = sub.add_parser("accept-drift", help="make a product's newest data its drift reference for the next run")
    accept.add_argument("stockcode")
    accept.add_argument("--reason", required=True, help="why the new data is right (recorded in the history)")
    accept.set_defaults(func=cmd_accept_drift)
    sub.add_parser("migrate-registry", help="convert a registry of copied binaries to pointers into the DVC cache"
                   ).set_defaults(func=cmd_migrate_registry)
    gc = sub.add_parser("gc", help="dvc gc that keeps every committed revision and every registry version")
    gc.add_argument("--cloud", action="store_true", help="also collect the DVC remote")
    gc.set_defaults(func=cmd_gc)
    recommend = sub.add_parser("recommend", help="recommend a price with the product's promoted model")
    recommend.add_argument("stockcode")
    recommend.add_argument("--date", required=True, help="YYYY-MM-DD")
    recommend.add_argument("--country", default="United Kingdom")
    recommend.add_argument("--guest", action="store_true", help="a customer without an account")
    recommend.add_argument("--low", type=_number_in(float, 0.01, 1_000_000), help="lowest price of the grid")
    recommend.add_argument("--high", type=_number_in(float, 0.01, 1_000_000), help="highest price of the grid")
    recommend.add_argument("--widen", type=_number_in(float, 0, 1),
                           help="fraction to widen the observed price range by")
    recommend.add_argument("--unit-cost", type=_number_in(float, 0, 1_000_000),
                           help="maximise profit instead of revenue")
    recommend.add_argument("--current-price", type=_number_in(float, 0.01, 1_000_000),
                           help="the price charged now, when it differs from what the history shows (the status quo)")
    recommend.add_argument("--curve", action="store_true", help="include the whole demand curve")
    recommend.set_defaults(func=cmd_recommend)
    serve = sub.add_parser("serve", help="serve price endpoints for every product's promoted model (waitress)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_number_in(int, 1, 65535), default=8080)
    serve.add_argument("--threads", type=_number_in(int, 1, 256), default=8,
                       help="worker threads (default 8; waitress' default is 4)")
    serve.add_argument("--max-models", type=_number_in(int, 1, 100_000), default=32,
                       help="models kept loaded at most (LRU)")
    serve.add_argument("--max-memory-mb", type=_number_in(float, 1, 1_000_000), default=1024.0,
                       help="memory bound of the loaded models")
    serve.set_defaults(func=cmd_serve)
    remote = sub.add_parser("remote", help="configure the DVC remote (S3 or an S3-compatible store)")
    remote_sub = remote.add_subparsers(dest="remote_command", required=True)
    remote_add = remote_sub.add_parser("add", help="add an S3 remote (the default one unless --no-default)")
    remote_add.add_argument("name", help="the remote's name, e.g. s3")
    remote_add.add_argument("url", help="s3://<bucket>/<prefix>")
    remote_add.add_argument("--endpoint-url", help="an S3-compatible server (MinIO, moto), e.g. http://host:9000")
    remote_add.add_argument("--region", help="the bucket's AWS region, e.g. eu-west-1")
    remote_add.add_argument("--no-default", action="store_true", help="add it without making it the default")
    remote_add.add_argument("--credentials-from-env", action="store_true",
                            help="store AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in .dvc/config.local (never committed)")
    remote_add.set_defaults(func=cmd_remote_add)
    for direction, what in (("push", "upload outputs and the run-cache to the DVC remote"),
                            ("pull", "download outputs and the run-cache from the DVC remote")):
        transfer = sub.add_parser(direction, help=f"{what} (dvc {direction}, with failures explained)")
        transfer.add_argument("--remote", help="a remote's name (default: the default remote)")
        transfer.add_argument("--no-run-cache", action="store_true", help="outputs only")
        transfer.set_defaults(func=cmd_transfer)
    from pricetrail.lineage.command import add_arguments as add_lineage_arguments

    lineage = sub.add_parser("lineage", help="SQL over stages, data hashes, params, metrics, gates and the registry, "
                             "across git revisions (see README: Lineage in SQL)")
    add_lineage_arguments(lineage)
    lineage.set_defaults(func=cmd_lineage)
    return parser


# The top-level modules of the `pipeline` extra (pyproject.toml).
PIPELINE_MODULES = {"dvc", "dvc_data", "dvc_s3", "optuna", "evidently", "shap", "prefect", "prefect_dask", "dask",
                    "distributed", "openpyxl", "torch", "sklearn", "skops", "pyarrow"}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse's usage error (its one line is on stderr already), or --help
        return stop.code if isinstance(stop.code, int) else 2
    log_to_stderr(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        # The flow's services talk a lot at INFO; what a person needs is the progress lines and the summary.
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING if args.command == "run" else logging.INFO)
    from pricetrail.project import locking

    locking.set_default_wait(args.wait)
    try:
        return int(args.func(args, project_root()))
    except ValueError as error:  # our errors: one clear line, no traceback
        sys.stderr.write(f"pricetrail {args.command}: {error}\n")
        return 2
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in PIPELINE_MODULES:
            raise
        # The base install is the serving stack (what the Lambda image holds); the pipeline is an extra.
        sys.stderr.write(f"pricetrail {args.command}: needs {error.name}, part of the pipeline's dependencies: "
                         "pip install 'pricetrail[pipeline]' (make install does)\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
