"""The ``smoothcache`` command line: calibrate a DiT pipeline, turn profiles into schedules, plot, demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main"]

logger = logging.getLogger("smoothcache")

SCHEDULERS = ("keep", "ddim", "dpm", "dpm-sde")


def dtype_kwargs(dtype) -> dict:
    """``from_pretrained``'s dtype argument: ``dtype=`` since diffusers 0.36, ``torch_dtype=`` before."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401  (present with `dtype=`)
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def load_dit_pipeline(model: str, device: str = "cpu", dtype: str = "float32", scheduler: str = "keep"):
    """``DiTPipeline.from_pretrained`` from a hub id or a local ``save_pretrained`` folder."""
    import torch

    try:
        from diffusers import DDIMScheduler, DiTPipeline, DPMSolverMultistepScheduler
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit("this command needs diffusers: pip install 'smoothcache-dit[diffusers]'") from err
    pipe = DiTPipeline.from_pretrained(model, **dtype_kwargs(getattr(torch, dtype)))
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    elif scheduler in ("dpm", "dpm-sde"):
        algorithm = "sde-dpmsolver++" if scheduler == "dpm-sde" else "dpmsolver++"
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type=algorithm)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _calibrate(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from .calibration import Calibrator
    from .zoo.plot import plot_profile

    from . import distributed

    distributed.init()  # under torchrun: each rank calibrates its share of the runs
    device = f"cuda:{torch.cuda.current_device()}" if distributed.is_distributed() and args.device == "cuda" \
        else args.device
    pipe = load_dit_pipeline(args.model, device, args.dtype, args.scheduler)
    labels = args.classes
    runs = distributed.shard(range(args.runs))
    with Calibrator(pipe.transformer, args.components, args.lookahead) as cal:
        for run in tqdm(runs, desc="calibrating", unit="run", disable=distributed.rank() != 0):
            pipe(class_labels=labels, num_inference_steps=args.steps, guidance_scale=args.guidance,
                 generator=torch.Generator("cpu").manual_seed(args.seed + run), output_type="np")
    profile = distributed.all_reduce_profile(cal.profile if runs else None)
    is_writer = distributed.rank() == 0
    distributed.finish()
    if not is_writer:
        return 0
    out = profile.save(args.out)
    print(f"profile: {out} ({profile.runs} runs x {len(labels)} classes, {profile.num_steps} steps, "
          f"branches {profile.keys}, K={profile.lookahead})")
    if args.plot:
        print(f"error curves: {plot_profile(profile, args.plot)}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from .flops import MacReport
    from .profile import CalibrationProfile
    from .scan import schedule_from_profile

    profile = CalibrationProfile.load(args.profile)
    schedule = schedule_from_profile(profile, args.alpha, lookahead=args.lookahead, per_block=args.per_block)
    path = schedule.save(args.out)
    fractions = schedule.compute_fraction()
    print(f"schedule: {path} ({schedule.num_steps} steps, alpha={args.alpha:g})")
    for key, fraction in fractions.items():
        if not args.per_block:
            print(f"  {key:<14} computes {fraction:6.1%} of steps")
    if args.per_block:
        mean = sum(fractions.values()) / len(fractions)
        print(f"  {len(fractions)} per-block keys, mean compute fraction {mean:.1%}")
    if "total" in profile.macs:
        report = MacReport.from_profile(profile)
        print(f"  compute fraction (MACs): {report.compute_fraction(schedule):.1%}; "
              f"theoretical speed-up {report.speedup(schedule):.2f}x")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .zoo.plot import plot_profile
    from .profile import CalibrationProfile

    profile = CalibrationProfile.load(args.profile)
    print(f"error curves: {plot_profile(profile, args.out, alpha=args.alpha)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .zoo.demo import format_table, run_demo

    result = run_demo(args, progress=None if args.json else (lambda line: print(line, flush=True)))
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smoothcache", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    cal = sub.add_parser("calibrate", help="record error curves of a diffusers DiT pipeline")
    cal.add_argument("model", help="hub id (facebook/DiT-XL-2-256) or a local save_pretrained folder")
    cal.add_argument("--steps", type=int, default=50, help="denoising steps (default 50)")
    cal.add_argument("--classes", type=int, nargs="+", default=[207, 360, 387], help="class ids of each run")
    cal.add_argument("--runs", type=int, default=1, help="pipeline runs (seeds seed, seed+1, ...)")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale")
    cal.add_argument("--scheduler", choices=SCHEDULERS, default="keep", help="sampler (default: the pipeline's)")
    cal.add_argument("--components", nargs="+", default=None, help="branches to record (default: all)")
    cal.add_argument("--lookahead", type=int, default=3, help="K, the largest reuse distance (default 3)")
    cal.add_argument("--device", default="cpu")
    cal.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    cal.add_argument("--out", required=True, help="profile file to write (.safetensors)")
    cal.add_argument("--plot", default=None, help="also write the error-curve PNG here")
    cal.set_defaults(func=_calibrate)

    sch = sub.add_parser("schedule", help="profile + alpha -> schedule JSON")
    sch.add_argument("profile", help="calibration profile (.safetensors)")
    sch.add_argument("--alpha", type=float, required=True, help="error threshold (larger = more reuse)")
    sch.add_argument("--lookahead", type=int, default=None, help="largest reuse distance (default: profile's K)")
    sch.add_argument("--per-block", action="store_true", help="one schedule per block ('attn1-3' keys)")
    sch.add_argument("--out", required=True, help="schedule JSON to write")
    sch.set_defaults(func=_schedule)

    plot = sub.add_parser("plot", help="profile -> error-curve PNG")
    plot.add_argument("profile")
    plot.add_argument("--out", required=True)
    plot.add_argument("--alpha", type=float, default=None, help="draw this threshold")
    plot.set_defaults(func=_plot)

    demo = sub.add_parser("demo", help="the embedded digits DiT with and without SmoothCache")
    demo.add_argument("--out", default="demo_output", help="folder for the PNGs (default demo_output)")
    demo.add_argument("--alpha", type=float, default=None, help="threshold (default: the demo's)")
    demo.add_argument("--samples", type=int, default=None, help="images per variant")
    demo.add_argument("--steps", type=int, default=50)
    demo.add_argument("--json", action="store_true", help="print machine-readable results")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"smoothcache {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
