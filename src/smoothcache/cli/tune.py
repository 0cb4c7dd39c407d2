"""``smoothcache tune``: calibrate, plan a sweep of budgets, measure them on held-out inputs, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .pipelines import (
    IMAGENET_CLASSES,
    SCHEDULERS,
    SHIPPED_CLASSES,
    ZOO_MODELS,
    check_classes,
    default_guidance,
    load_pipeline,
    shipped_model,
)

__all__ = ["TUNE_DEFAULTS", "add_parser", "check_tune_arguments", "command", "parse_speedups"]

#: Per shipped model: held-out generations (10 samples each) and budgets of the default sweep. The mean figure
#: must be reproducible on new seeds within 1.5 dB: per-sample PSNR of the digits and video models spreads by
#: 4-6 dB, so they need about 100 held-out samples; log-spectral distances of the audio model spread little,
#: and its generations are the slowest (100 steps, 3 calibration noise draws).
TUNE_DEFAULTS = {"digits": (10, 6), "audio": (2, 4), "video": (10, 3)}
#: The same for any other pipeline.
GENERIC_DEFAULTS = (3, 6)
#: Steps for a pipeline that is not shipped (the shipped ones use their model card's).
GENERIC_STEPS = 50
#: Fidelity targets: option -> keyword of ``TuneResult.best``.
TARGET_OPTIONS = {"--min-psnr": "min_psnr", "--min-ssim": "min_ssim", "--max-lsd": "max_lsd",
                  "--min-snr": "min_snr", "--max-flicker": "max_flicker"}


def parse_speedups(text: str) -> list[float]:
    """``"1.5,2,3"`` -> ``[1.5, 2.0, 3.0]``; each must be a number above 1."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise ValueError(f"--speedups must be comma-separated speed-ups above 1, e.g. 1.5,2,3; got {text!r}")
    bad = [v for v in values if not v > 1.0 or v != v or v == float("inf")]
    if bad:
        raise ValueError(
            f"--speedups must be finite speed-ups above 1 (1 is the uncached generation), got {bad[0]:g}"
        )
    return sorted(set(values))


def check_tune_arguments(args: argparse.Namespace) -> None:
    """Refuse a bad output folder, sweep or target before the pipeline loads."""
    from ..validate import check_int, check_number

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out} is a file; tune writes its report into a folder")
    if out.exists() and not args.overwrite:
        raise FileExistsError(
            f"--out {args.out} exists: choose another folder, or pass --overwrite to replace it"
        )
    if args.speedups is not None:
        args.speedups = parse_speedups(args.speedups)
    for option in ("--held-out", "--calibration-inputs", "--points", "--threads"):
        value = getattr(args, option[2:].replace("-", "_"))
        if value is not None:
            check_int(value, option)
    for option, name in TARGET_OPTIONS.items():
        if getattr(args, name) is not None:
            check_number(getattr(args, name), option, minimum=float("-inf"))
    if args.classes is not None and any(c < 0 for c in args.classes):
        raise ValueError(f"--classes must be class ids >= 0, got {args.classes}")


def _check_model(model: str) -> None:
    if shipped_model(model) or Path(model).expanduser().exists() or "/" in model or "\\" in model:
        return  # a shipped model, a folder or a hub id: load_pipeline says what is wrong with it
    raise ValueError(
        f"unknown pipeline {model!r}: give a shipped model ({', '.join(ZOO_MODELS)}), a local "
        "save_pretrained folder, or a hub id (owner/name, e.g. facebook/DiT-XL-2-256)"
    )


def command(args: argparse.Namespace) -> int:
    """Run ``smoothcache tune``: 0 when done (and the target met), 1 when no budget meets the target."""
    import torch

    from ..errors import TargetNotMetError
    from ..samplers import NOISE_DRAWS, is_stochastic
    from ..tuning import HELD_OUT_SEED_OFFSET
    from ..tuning import tune as run_tune
    from ..tuning_report import pyplot, speedup_label

    _check_model(args.model)
    pyplot()  # the report needs matplotlib: say so before the run, not after it
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model, args.device, args.dtype, args.scheduler)
    shipped = shipped_model(args.model)
    classes = args.classes if args.classes is not None else SHIPPED_CLASSES if shipped else IMAGENET_CLASSES
    check_classes(pipe, classes, args.model)
    guidance = args.guidance if args.guidance is not None else default_guidance(args.model)
    if args.steps is not None:
        steps = args.steps
    elif shipped:
        from ..zoo.demo import DEMO_MODELS

        steps = DEMO_MODELS[shipped].steps
    else:
        steps = GENERIC_STEPS
    held_default, points_default = TUNE_DEFAULTS.get(shipped, GENERIC_DEFAULTS)
    runs = args.calibration_inputs or (NOISE_DRAWS if is_stochastic(pipe.scheduler) else 1)
    arguments = {"class_labels": list(classes), "guidance_scale": guidance}
    inputs = [dict(arguments, seed=args.seed + i) for i in range(runs)]
    first = args.seed + max(HELD_OUT_SEED_OFFSET, runs)
    held_out = [dict(arguments, seed=first + j) for j in range(args.held_out or held_default)]
    target = {name: getattr(args, name) for name in TARGET_OPTIONS.values()}
    target = {name: value for name, value in target.items() if value is not None}
    result = run_tune(pipe, inputs, held_out, speedups=args.speedups, steps=steps,
                      points=args.points or points_default, target=target, name=args.model)
    result.info["command"] = {"model": args.model, "scheduler": args.scheduler, "dtype": args.dtype,
                              "device": args.device, "threads": args.threads, "argv": sys.argv[1:]}
    folder = result.save(args.out, overwrite=args.overwrite)
    print(result.markdown())
    print(f"\nreport: {folder} ({result.info['seconds']:.0f} s)")
    if not target:
        return 0
    try:
        chosen = result.best()
    except TargetNotMetError as err:
        print(f"smoothcache tune: {err}; the report has no schedule.json", file=sys.stderr)
        return 1
    print(f"fastest budget meeting the target: {speedup_label(chosen.speedup)} (measured "
          f"{chosen.row['measured_speedup']:.2f}x): {folder / 'schedule.json'}")
    return 0


def add_parser(sub) -> None:
    """The ``tune`` subcommand's arguments."""
    tune_parser = sub.add_parser(
        "tune", help="measure a sweep of budgets on held-out inputs; write a report and pick a schedule"
    )
    tune_parser.add_argument(
        "model", help="a shipped model (digits, audio, video), a local folder or a hub id"
    )
    tune_parser.add_argument("--out", required=True, help="report folder to write (refused if it exists)")
    tune_parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    tune_parser.add_argument(
        "--speedups", default=None,
        help="budgets, comma-separated (e.g. 1.5,2,3; default: --points from 1.5x to the largest reachable)",
    )
    tune_parser.add_argument("--points", type=int, default=None,
                             help="budgets of the default sweep (default 6; audio 4, video 3)")
    targets = tune_parser.add_argument_group("fidelity target (the held-out mean; picks schedule.json)")
    targets.add_argument("--min-psnr", type=float, default=None, help="images and video: PSNR in dB")
    targets.add_argument("--min-ssim", type=float, default=None, help="images and video: SSIM")
    targets.add_argument("--max-lsd", type=float, default=None, help="audio: log-spectral distance in dB")
    targets.add_argument("--min-snr", type=float, default=None, help="audio: waveform SNR in dB")
    targets.add_argument("--max-flicker", type=float, default=None, help="video: flicker vs uncached")
    tune_parser.add_argument(
        "--calibration-inputs", type=int, default=None,
        help="calibration generations (seeds seed, seed+1...; default 1, or 3 for a sampler drawing noise)",
    )
    tune_parser.add_argument(
        "--held-out", type=int, default=None,
        help="held-out generations, other seeds (from seed+10000; default 10, audio 2, another pipeline 3)",
    )
    tune_parser.add_argument("--classes", type=int, nargs="+", default=None,
                             help="class ids of each generation (default: 0-9 for a shipped model)")
    tune_parser.add_argument("--steps", type=int, default=None,
                             help=f"denoising steps (default: the shipped model's, else {GENERIC_STEPS})")
    tune_parser.add_argument("--guidance", type=float, default=None,
                             help="classifier-free guidance scale (default: the shipped model's, else 4.0)")
    tune_parser.add_argument("--scheduler", choices=SCHEDULERS, default="keep", help="sampler (default: the "
                             "pipeline's)")
    tune_parser.add_argument("--seed", type=int, default=0, help="first calibration seed (default 0)")
    tune_parser.add_argument("--device", default="cpu")
    tune_parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    tune_parser.add_argument("--threads", type=int, default=None,
                             help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)")
    tune_parser.set_defaults(func=command)
