"""The ``smoothcache`` command's arguments: the parser, and the checks made before anything slow starts."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..costs import COSTS
from . import commands
from .pipelines import IMAGENET_CLASSES, SCHEDULERS

__all__ = ["MAX_STEPS", "build_parser", "check_arguments"]


#: The most denoising steps a command accepts (samplers use tens; a typo such as 5000000 would hang planning).
MAX_STEPS = 10_000


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad numbers and output paths before anything slow starts; each message names the option.

    The threshold goes through :func:`smoothcache.validate.check_alpha`, the check ``Schedule.from_profile``
    makes, so the command line and the API refuse the same values with the same message.
    """
    from ..validate import check_alpha, check_fraction, check_int, check_number

    def given(option: str):
        return getattr(args, option.lstrip("-").replace("-", "_"), None)

    for option in ("--steps", "--runs", "--lookahead", "--samples", "--seed"):
        value = given(option)
        if value is not None:
            check_int(value, option, minimum={"--steps": 2, "--seed": 0}.get(option, 1))
            if option == "--steps" and value > MAX_STEPS:
                raise ValueError(f"--steps must be at most {MAX_STEPS}, got {value}")
    if given("--seed") is not None and given("--seed") + (given("--runs") or 1) > 2**64:
        raise ValueError("--seed + --runs must be at most 2**64 (the runs use seeds seed, seed+1, ...)")
    if args.command == "calibrate" and any(c < 0 for c in args.classes or ()):
        raise ValueError(f"--classes must be class ids >= 0, got {args.classes}")
    if given("--alpha") is not None:
        check_alpha(given("--alpha"), "--alpha")
    if given("--speedup") is not None:
        check_number(given("--speedup"), "--speedup", minimum=1.0)
    if given("--compute-fraction") is not None:
        check_fraction(given("--compute-fraction"), "--compute-fraction")
    if given("--guidance") is not None:
        check_number(given("--guidance"), "--guidance", minimum=-math.inf)
    if args.command == "tune":
        from .tune import check_tune_arguments

        check_tune_arguments(args)
        return
    for option in ("--out", "--plot"):
        path = given(option)
        if path is None:
            continue
        if args.command != "demo" and Path(path).is_dir():
            raise ValueError(f"{option} {path} is a folder; give the file to write")
        if args.command == "demo" and Path(path).exists() and not Path(path).is_dir():
            raise ValueError(f"--out {path} is a file; the demo writes its outputs into a folder")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from ..planning import PLANNERS
    from ..predictors import PREDICTORS

    parser = argparse.ArgumentParser(prog="smoothcache", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    cal = sub.add_parser("calibrate", help="record error tables of a class-conditional DiT pipeline")
    cal.add_argument(
        "model",
        help="a shipped model (digits, audio, video), a local save_pretrained folder, or a hub id "
        "(facebook/DiT-XL-2-256)",
    )
    cal.add_argument("--steps", type=int, default=50, help="denoising steps (default 50)")
    cal.add_argument(
        "--classes",
        type=int,
        nargs="+",
        default=None,
        help="class ids of each run (default: 0-9 for a shipped model, else the ImageNet classes "
        f"{' '.join(map(str, IMAGENET_CLASSES))})",
    )
    cal.add_argument(
        "--runs",
        type=int,
        default=None,
        help="pipeline runs (seeds seed, seed+1, ...; default 1, or 3 for a sampler that draws noise at each "
        "step)",
    )
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale (default: the shipped model's, else 4.0)",
    )
    cal.add_argument(
        "--scheduler", choices=SCHEDULERS, default="keep", help="sampler (default: the pipeline's)"
    )
    cal.add_argument("--components", nargs="+", default=None, help="branches to record (default: all)")
    cal.add_argument(
        "--lookahead", type=int, default=3, help="K, the largest prediction distance (default 3)"
    )
    cal.add_argument("--device", default="cpu")
    cal.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    cal.add_argument("--out", required=True, help="profile file to write (.safetensors)")
    cal.add_argument("--plot", default=None, help="also write the error-curve PNG here")
    cal.set_defaults(func=commands.calibrate)

    sch = sub.add_parser("schedule", help="profile -> schedule JSON, at a threshold or for a budget")
    sch.add_argument("profile", help="calibration profile (.safetensors)")
    budget = sch.add_argument_group("one of")
    budget.add_argument("--alpha", type=float, default=None, help="greedy scan at this error threshold")
    budget.add_argument(
        "--speedup", type=float, default=None, help="theoretical speed-up to reach (e.g. 2.0)"
    )
    budget.add_argument("--compute-fraction", type=float, default=None, help="share of the compute to keep")
    sch.add_argument(
        "--predictor",
        choices=PREDICTORS + ("auto",),
        default=None,
        help="what skipped steps return (default for a budget: linear, or reuse when the calibration's "
        "sampler draws fresh noise each step; reuse with --alpha, as the original; auto gives each skip run "
        "the predictor with the least calibrated error)",
    )
    sch.add_argument(
        "--planner",
        choices=PLANNERS,
        default=None,
        help="how a budget is met (default optimal; --alpha always scans greedily)",
    )
    sch.add_argument(
        "--cost",
        choices=COSTS,
        default=None,
        help="what --speedup / --compute-fraction measure: time (default where the calibration timed "
        "the model) or macs",
    )
    sch.add_argument("--steps", type=int, default=None, help="schedule length (default: the calibration's)")
    sch.add_argument(
        "--lookahead", type=int, default=None, help="largest prediction distance (default: profile's K)"
    )
    sch.add_argument("--per-block", action="store_true", help="one schedule per block ('attn1-3' keys)")
    sch.add_argument("--out", required=True, help="schedule JSON to write")
    sch.set_defaults(func=commands.schedule)

    plot = sub.add_parser("plot", help="profile -> error-curve PNG")
    plot.add_argument("profile")
    plot.add_argument("--out", required=True)
    plot.add_argument("--alpha", type=float, default=None, help="draw this threshold")
    plot.set_defaults(func=commands.plot)

    from ..zoo.demo import DEMO_MODELS, DEMO_SPEEDUP

    demo = sub.add_parser("demo", help="an embedded model with and without SmoothCache")
    demo.add_argument("--model", choices=list(DEMO_MODELS), default="digits", help="default: digits (images)")
    demo.add_argument(
        "--out",
        default="demo_output",
        help="parent folder; each model writes into its subfolder (default demo_output/MODEL)",
    )
    demo.add_argument(
        "--speedup",
        type=float,
        default=None,
        help=f"plan the recommended mode for this theoretical speed-up (default {DEMO_SPEEDUP})",
    )
    demo.add_argument(
        "--alpha", type=float, default=None, help="use the original's greedy scan at this threshold"
    )
    demo.add_argument(
        "--samples",
        type=int,
        default=None,
        help="samples per variant (default: digits 300, audio and video 100; with --quick 100 / 20)",
    )
    demo.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    demo.add_argument("--quick", action="store_true", help="fewer samples: about a minute on 2 idle cores")
    demo.add_argument("--json", action="store_true", help="print machine-readable results")
    demo.set_defaults(func=commands.demo)

    from .tune import add_parser

    add_parser(sub)
    return parser
