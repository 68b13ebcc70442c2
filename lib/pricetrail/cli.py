"""The ``pricetrail`` command: run the weekly job, apply profiles, promote, inspect, recommend."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from pricetrail import registry
from pricetrail.config import ConfigError, load_params, load_stockcodes, project_root, read_json, section
from pricetrail.paths import ProductPaths

log = logging.getLogger("pricetrail")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _dvc(*args: str, root: Path) -> int:
    command = [sys.executable, "-m", "dvc", *args]
    _out(f"$ dvc {' '.join(args)}")
    # Stage commands say `python`: make that this interpreter, whose environment has pricetrail installed,
    # whether or not the user activated the virtual environment.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(command, cwd=root, env=env, check=False).returncode


def cmd_profile(args: argparse.Namespace, root: Path) -> int:
    from pricetrail.profiles import apply_profile

    changed = apply_profile(root, args.name)
    _out(f"applied profile {args.name!r} to {', '.join(changed)} (git checkout {' '.join(changed)} to undo)")
    return 0


def cmd_promote(args: argparse.Namespace, root: Path) -> int:
    codes = [args.stockcode] if args.stockcode else list(load_stockcodes(root))
    decisions = [registry.promote(root, ProductPaths(code).code) for code in codes]
    _print_decisions(decisions)
    return 0


def _print_decisions(decisions: list[registry.Decision]) -> None:
    width = max(len(d.stockcode) for d in decisions)
    for d in decisions:
        _out(f"  {d.stockcode:<{width}}  {d.action:<9}  serving {d.served_version or '-':<16}  {d.reason}")


def cmd_status(args: argparse.Namespace, root: Path) -> int:
    for code in load_stockcodes(root):
        served = registry.served_model(root, code)
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


def cmd_recommend(args: argparse.Namespace, root: Path) -> int:
    from pricetrail.bundle import load_bundle
    from pricetrail.recommend import PriceContext, recommend_price

    code = ProductPaths(args.stockcode).code
    served = registry.served_model(root, code)
    if served is None:
        raise ConfigError(f"stockcode {code} serves no model: none has passed its gates (see pricetrail status)")
    bundle = load_bundle(served.file("model.pt"), served.file("preprocessor.skops"),
                         daily=served.file("daily.parquet"), reference=served.file("reference.parquet"))
    settings = section(load_params(root), "recommend")
    result = recommend_price(bundle, PriceContext(date=args.date, country=args.country,
                                                  is_registered=not args.guest),
                             low=args.low, high=args.high, grid_size=int(settings["grid_size"]),
                             range_widening=float(args.widen if args.widen is not None
                                                  else settings["range_widening"]),
                             unit_cost=args.unit_cost)
    payload = result.to_dict()
    if not args.curve:
        payload.pop("curve")
    _out(json.dumps(payload, indent=2))
    return 0


def cmd_run(args: argparse.Namespace, root: Path) -> int:
    """The weekly job: reproduce every product's chain, promote what passed, and let the drift gates settle."""
    products = list(load_stockcodes(root))
    _out(f"pricetrail: {len(products)} products: {', '.join(products)}")
    first = _dvc("repro", "--keep-going", root=root)
    decisions = [registry.promote(root, code) for code in products]
    if any(d.action == "promoted" for d in decisions):
        # Promotion changed the drift gates' reference (the served models' training data): re-check now, so
        # the reports describe the served models and the next `dvc repro` has nothing to do. The gate files
        # depend only on the data, so nothing after the drift gate reruns.
        _out("re-checking drift against the newly promoted models")
        settle = _dvc("repro", "--keep-going", root=root)
    else:
        settle = first
    _out("\npromotion:")
    _print_decisions(decisions)
    _out("\nreports: metrics/<code>/*.json (dvc metrics show), reports/<code>/drift.html, "
         "plots/<code>/ (dvc plots show), registry/<code>/served.json")
    return 0 if first == 0 and settle == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricetrail", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="dvc repro -k, promote what passed, settle the drift gates").set_defaults(
        func=cmd_run)
    profile = sub.add_parser("profile", help="apply profiles/<name>.yaml to params.yaml and stockcodes.yaml")
    profile.add_argument("name")
    profile.set_defaults(func=cmd_profile)
    promote = sub.add_parser("promote", help="promote every product whose new model passed both gates")
    promote.add_argument("--stockcode")
    promote.set_defaults(func=cmd_promote)
    sub.add_parser("status", help="what each product serves and how its latest model did").set_defaults(
        func=cmd_status)
    recommend = sub.add_parser("recommend", help="recommend a price with the product's promoted model")
    recommend.add_argument("stockcode")
    recommend.add_argument("--date", required=True, help="YYYY-MM-DD")
    recommend.add_argument("--country", default="United Kingdom")
    recommend.add_argument("--guest", action="store_true", help="a customer without an account")
    recommend.add_argument("--low", type=float)
    recommend.add_argument("--high", type=float)
    recommend.add_argument("--widen", type=float, help="fraction to widen the observed price range by")
    recommend.add_argument("--unit-cost", type=float, help="maximise profit instead of revenue")
    recommend.add_argument("--curve", action="store_true", help="include the whole demand curve")
    recommend.set_defaults(func=cmd_recommend)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args, project_root()))
    except ValueError as error:  # our errors: one clear line, no traceback
        sys.stderr.write(f"pricetrail {args.command}: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
