"""What every stage script shares: logging, the project root, and one clear line on failure."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from pricetrail.config import validate_stockcode

log = logging.getLogger("pricetrail.stage")


class GateFailed(Exception):
    """A gate decided the product's chain must stop here (not a bug: the outputs explain why)."""


def stockcode_argument(description: str) -> str:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--stockcode", required=True, help="the product's stockcode, as in stockcodes.yaml")
    return validate_stockcode(parser.parse_args().stockcode)


def run(stage: str, main: Callable[[Path], None]) -> None:
    """Run ``main(project_root)``; turn expected errors into one line naming the stage, and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        main(Path.cwd())
    except GateFailed as gate:
        sys.stderr.write(f"GATE FAILED {stage}: {gate}\n")
        sys.exit(1)
    except ValueError as error:  # our error classes are ValueErrors with one clear message each
        sys.stderr.write(f"ERROR {stage}: {error}\n")
        sys.exit(1)
