"""What each ``smoothcache`` command does, given its parsed arguments."""

from __future__ import annotations

import argparse
import json

from ..samplers import NOISE_DRAWS, is_stochastic
from .pipelines import (
    IMAGENET_CLASSES,
    SHIPPED_CLASSES,
    check_classes,
    default_guidance,
    load_pipeline,
    shipped_model,
)
from .progress import StepProgress

__all__ = ["calibrate", "demo", "plot", "schedule"]


def calibrate(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from .. import distributed
    from ..calibration import Calibrator

    distributed.init()  # under torchrun: each rank calibrates its share of the runs
    device = (
        f"cuda:{torch.cuda.current_device()}"
        if distributed.is_distributed() and args.device == "cuda"
        else args.device
    )
    pipe = load_pipeline(args.model, device, args.dtype, args.scheduler)
    shipped = shipped_model(args.model)
    classes = args.classes if args.classes is not None else SHIPPED_CLASSES if shipped else IMAGENET_CLASSES
    check_classes(pipe, classes, args.model)
    guidance = args.guidance if args.guidance is not None else default_guidance(args.model)
    total = args.runs
    if total is None:  # one generation, or several noise draws for a sampler that draws noise each step
        total = NOISE_DRAWS if is_stochastic(pipe.scheduler) else 1
        if total > 1 and distributed.rank() == 0:
            print(
                f"{type(pipe.scheduler).__name__} draws fresh noise at each step: calibrating over {total} "
                "noise "
                "draws (--runs sets another number)"
            )
    runs = distributed.shard(range(total))
    bar = tqdm(total=len(runs) * args.steps, desc="calibrating", unit="step", disable=distributed.rank() != 0)
    with (
        Calibrator(pipe.transformer, args.components, args.lookahead) as cal,
        bar,
        StepProgress(pipe, bar, args.steps) as progress,
    ):
        for i, run in enumerate(runs):
            bar.set_postfix_str(f"run {i + 1}/{len(runs)}")
            pipe(
                class_labels=classes,
                num_inference_steps=args.steps,
                guidance_scale=guidance,
                generator=torch.Generator("cpu").manual_seed(args.seed + run),
                output_type="np",
                **progress.call_kwargs,
            )
            progress.end_call()
    profile = distributed.all_reduce_profile(cal.profile if runs else None)
    is_writer = distributed.rank() == 0
    distributed.finish()
    if not is_writer:
        return 0
    out = profile.save(args.out)
    spread = profile.noise_spread()
    if spread is not None:
        print(
            f"errors vary between the noise draws by {spread:.0%} of their mean (median over branches and "
            "steps); "
            "plan with Schedule.for_budget(..., margin=1) to plan for a draw one standard deviation worse"
        )
    print(
        f"profile: {out} ({profile.runs} runs x {len(classes)} classes, {profile.num_steps} steps, "
        f"branches {profile.keys}, K={profile.lookahead}, predictors {profile.predictors})"
    )
    if args.plot:
        from ..zoo.plot import plot_profile

        print(f"error curves: {plot_profile(profile, args.plot)}")
    return 0


def schedule(args: argparse.Namespace) -> int:
    from ..costs import MacReport
    from ..profile import CalibrationProfile
    from ..schedule import Schedule

    profile = CalibrationProfile.load(args.profile)
    given = [name for name in ("alpha", "speedup", "compute_fraction") if getattr(args, name) is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of --alpha, --speedup or --compute-fraction")
    if args.alpha is not None:
        if args.planner == "optimal":
            raise ValueError("--planner optimal plans for a budget: give --speedup or --compute-fraction")
        schedule = Schedule.from_profile(
            profile,
            args.alpha,
            lookahead=args.lookahead,
            per_block=args.per_block,
            num_steps=args.steps,
            predictor=args.predictor or "reuse",
        )
    else:
        schedule = Schedule.for_budget(
            profile,
            speedup=args.speedup,
            compute_fraction=args.compute_fraction,
            lookahead=args.lookahead,
            per_block=args.per_block,
            num_steps=args.steps,
            predictor=args.predictor,
            planner=args.planner or "optimal",
            cost=args.cost,
        )
    path = schedule.save(args.out)
    how = (
        f"alpha={args.alpha:g}"
        if args.alpha is not None
        else f"{schedule.metadata['planner']} plan for {given[0].replace('_', ' ')}"
    )
    print(f"schedule: {path} ({schedule.num_steps} steps, {how}, predictor {schedule.predictor})")
    fractions = schedule.compute_fraction()
    if args.per_block:
        mean = sum(fractions.values()) / len(fractions)
        print(f"  {len(fractions)} per-block keys, mean compute fraction {mean:.1%}")
    else:
        for key, fraction in fractions.items():
            print(f"  {key:<14} computes {fraction:6.1%} of steps")
    if "total" in profile.macs:
        report = MacReport.from_profile(profile)
        print(
            f"  compute fraction (MACs): {report.compute_fraction(schedule):.1%}; "
            f"theoretical speed-up {report.speedup(schedule):.2f}x"
        )
        if report.has("time"):
            print(
                f"  planned wall-time speed-up {report.speedup(schedule, 'time'):.2f}x (from the "
                "calibration's "
                "timings)"
            )
    return 0


def plot(args: argparse.Namespace) -> int:
    from ..profile import CalibrationProfile
    from ..zoo.plot import plot_profile

    profile = CalibrationProfile.load(args.profile)
    print(f"error curves: {plot_profile(profile, args.out, alpha=args.alpha)}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from ..zoo.demo import DEMO_MODELS, format_table, run_demo

    if args.alpha is not None and args.speedup is not None:
        raise ValueError(
            "give --alpha (the original's greedy scan) or --speedup (the recommended mode), not both"
        )
    spec = DEMO_MODELS[args.model]
    samples = (
        args.samples if args.samples is not None else (spec.quick_samples if args.quick else spec.samples)
    )
    say = None if args.json else (lambda line: print(line, flush=True))
    result = run_demo(
        model=args.model,
        out=args.out,
        steps=args.steps,
        samples=samples,
        alpha=args.alpha,
        speedup=args.speedup,
        progress=say,
    )
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
