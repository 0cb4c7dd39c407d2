"""The ``smoothcache`` command line: calibrate a pipeline, turn profiles into schedules, plot, demo, tune."""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from .arguments import build_parser, check_arguments
from .progress import StepProgress

__all__ = ["StepProgress", "main"]

logger = logging.getLogger("smoothcache")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        check_arguments(args)
        return args.func(args)
    except (ValueError, OSError, RuntimeError, TypeError, ImportError) as err:
        print(f"smoothcache {args.command}: error: {err}", file=sys.stderr)
        return 2
