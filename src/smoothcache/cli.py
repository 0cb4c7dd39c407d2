"""The ``smoothcache`` command line: calibrate a pipeline, turn profiles into schedules, plot, demo."""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence

__all__ = ["StepProgress", "main"]

logger = logging.getLogger("smoothcache")

SCHEDULERS = ("keep", "ddim", "dpm", "dpm-sde")
#: Short names of the models that ship with smoothcache (``smoothcache.zoo``).
ZOO_MODELS = ("digits", "audio", "video")  # shipped models, by name (classes 0-9 each)
#: ``calibrate``'s classes when none are given: a shipped model's ten, else three ImageNet classes (DiT-XL/2).
SHIPPED_CLASSES = list(range(10))
IMAGENET_CLASSES = [207, 360, 387]


def dtype_kwargs(dtype) -> dict:
    """``from_pretrained``'s dtype argument: ``dtype=`` since diffusers 0.36, ``torch_dtype=`` before."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401  (present with `dtype=`)
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.endswith("/") or model.count("/") > 1 or "\\" in model


def shipped_model(model: str) -> str | None:
    """The short name of a shipped model given by name (``digits``) or by its folder, else None."""
    if model in ZOO_MODELS:
        return model
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    from . import zoo

    shipped = {"digits": zoo.DIGITS_DIR, "audio": zoo.AUDIO_DIR, "video": zoo.VIDEO_DIR}
    return next((name for name, path in shipped.items() if folder.resolve() == path), None)


def load_pipeline(model: str, device: str = "cpu", dtype: str = "float32", scheduler: str = "keep"):
    """A class-conditional DiT pipeline: a shipped model by short name (``digits``), a local
    ``save_pretrained`` folder, or a hub id (``facebook/DiT-XL-2-256``)."""
    import torch

    try:
        from diffusers import DDIMScheduler, DiTPipeline, DPMSolverMultistepScheduler
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit("this command needs diffusers: pip install 'smoothcache-dit[diffusers]'") from err
    from . import zoo

    folder = Path(model).expanduser()
    name = shipped_model(model)
    if name is not None:
        pipe = getattr(zoo, f"{name}_pipeline")(torch_dtype=getattr(torch, dtype))
    elif folder.is_dir():
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{folder} is not a diffusers pipeline folder (it has no model_index.json)"
            )
        pipe = DiTPipeline.from_pretrained(
            str(folder), local_files_only=True, **dtype_kwargs(getattr(torch, dtype))
        )
    elif _looks_like_path(model) or folder.exists():
        raise FileNotFoundError(f"no pipeline folder at {model} (shipped models: {', '.join(ZOO_MODELS)})")
    else:
        pipe = DiTPipeline.from_pretrained(model, **dtype_kwargs(getattr(torch, dtype)))
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    elif scheduler in ("dpm", "dpm-sde"):
        algorithm = "sde-dpmsolver++" if scheduler == "dpm-sde" else "dpmsolver++"
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(
            pipe.scheduler.config, algorithm_type=algorithm
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _check_classes(pipe, classes: Sequence[int], model: str = "") -> None:
    """Class ids the pipeline knows: the shipped models' 0-9, its labels (``id2label``), else the
    transformer's class table."""
    labels = getattr(pipe, "labels", None)
    valid = SHIPPED_CLASSES if shipped_model(model) else sorted(set(labels.values())) if labels else None
    if valid is None:
        n = getattr(pipe.transformer.config, "num_embeds_ada_norm", None)
        valid = list(range(n)) if n else None
    bad = [c for c in classes if valid is not None and c not in valid]
    if bad:
        span = f"{valid[0]}..{valid[-1]}" if valid == list(range(valid[0], valid[-1] + 1)) else str(valid)
        raise ValueError(f"class id(s) {bad} are not classes of this model (valid: {span})")


class StepProgress:
    """Advance a progress bar once per denoising step of the pipeline calls made inside ``with``.

    Through the pipeline's ``callback_on_step_end`` where its ``__call__`` takes one (pass :attr:`call_kwargs`
    to each call), else by counting the steps its ``progress_bar`` iterates (diffusers pipelines, the shipped
    ones included, loop ``for t in self.progress_bar(timesteps)``); a call in which neither counted a step
    advances the bar by ``steps`` when :meth:`end_call` is called after it.

    Args:
        pipe: the pipeline.
        bar: the progress bar (anything with ``update(n)``, e.g. ``tqdm``).
        steps: denoising steps of one call.
    """

    def __init__(self, pipe, bar, steps: int):
        self.pipe, self.bar, self.steps = pipe, bar, int(steps)
        self._counted = 0
        self._patched = False
        try:
            takes_callback = "callback_on_step_end" in inspect.signature(pipe.__call__).parameters
        except (TypeError, ValueError):  # pragma: no cover - a callable without a signature
            takes_callback = False
        #: keyword arguments to pass to each pipeline call
        self.call_kwargs = {"callback_on_step_end": self._on_step_end} if takes_callback else {}

    def _advance(self) -> None:
        self._counted += 1
        self.bar.update(1)

    def _on_step_end(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        self._advance()
        return {}

    def _count(self, iterable: Iterable) -> Iterator:
        for item in iterable:
            yield item  # the step runs here
            self._advance()

    def __enter__(self) -> StepProgress:
        original = getattr(self.pipe, "progress_bar", None)
        if not self.call_kwargs and callable(original):
            def counting(iterable=None, total=None):
                return original(iterable, total) if iterable is None else self._count(iterable)

            self.pipe.progress_bar = counting  # an instance attribute, removed on exit
            self._patched = True
        return self

    def end_call(self) -> None:
        """After each pipeline call: a call whose steps were not seen counts as ``steps`` steps."""
        if self._counted == 0:
            self.bar.update(self.steps)
        self._counted = 0

    def __exit__(self, *exc) -> None:
        if self._patched:
            del self.pipe.progress_bar
            self._patched = False


def _calibrate(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from . import distributed
    from .calibration import Calibrator

    distributed.init()  # under torchrun: each rank calibrates its share of the runs
    device = (
        f"cuda:{torch.cuda.current_device()}"
        if distributed.is_distributed() and args.device == "cuda"
        else args.device
    )
    pipe = load_pipeline(args.model, device, args.dtype, args.scheduler)
    shipped = shipped_model(args.model)
    classes = args.classes if args.classes is not None else SHIPPED_CLASSES if shipped else IMAGENET_CLASSES
    _check_classes(pipe, classes, args.model)
    guidance = args.guidance if args.guidance is not None else _default_guidance(args.model)
    runs = distributed.shard(range(args.runs))
    bar = tqdm(total=len(runs) * args.steps, desc="calibrating", unit="step", disable=distributed.rank() != 0)
    with Calibrator(pipe.transformer, args.components, args.lookahead) as cal, bar, \
            StepProgress(pipe, bar, args.steps) as progress:
        for i, run in enumerate(runs):
            bar.set_postfix_str(f"run {i + 1}/{len(runs)}")
            pipe(class_labels=classes, num_inference_steps=args.steps, guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(args.seed + run), output_type="np",
                 **progress.call_kwargs)
            progress.end_call()
    profile = distributed.all_reduce_profile(cal.profile if runs else None)
    is_writer = distributed.rank() == 0
    distributed.finish()
    if not is_writer:
        return 0
    out = profile.save(args.out)
    print(f"profile: {out} ({profile.runs} runs x {len(classes)} classes, {profile.num_steps} steps, "
          f"branches {profile.keys}, K={profile.lookahead}, predictors {profile.predictors})")
    if args.plot:
        from .zoo.plot import plot_profile

        print(f"error curves: {plot_profile(profile, args.plot)}")
    return 0


def _default_guidance(model: str) -> float:
    name = shipped_model(model)
    if name is not None:
        from . import zoo

        return getattr(zoo, f"{name.upper()}_GUIDANCE_SCALE")
    return 4.0


def _schedule(args: argparse.Namespace) -> int:
    from .costs import MacReport
    from .profile import CalibrationProfile
    from .schedule import Schedule

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
            predictor=args.predictor or "linear",
            planner=args.planner or "optimal",
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
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .profile import CalibrationProfile
    from .zoo.plot import plot_profile

    profile = CalibrationProfile.load(args.profile)
    print(f"error curves: {plot_profile(profile, args.out, alpha=args.alpha)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .zoo.demo import DEMO_MODELS, format_table, run_demo

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


#: The most denoising steps a command accepts (samplers use tens; a typo such as 5000000 would hang planning).
MAX_STEPS = 10_000


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad numbers and output paths before anything slow starts; each message names the option.

    The threshold goes through :func:`smoothcache.validate.check_alpha`, the check ``Schedule.from_profile``
    makes, so the command line and the API refuse the same values with the same message.
    """
    from .validate import check_alpha, check_fraction, check_int, check_number

    def given(option: str):
        return getattr(args, option.lstrip("-").replace("-", "_"), None)

    for option in ("--steps", "--runs", "--lookahead", "--samples", "--seed"):
        value = given(option)
        if value is not None:
            check_int(value, option, minimum={"--steps": 2, "--seed": 0}.get(option, 1))
            if option == "--steps" and value > MAX_STEPS:
                raise ValueError(f"--steps must be at most {MAX_STEPS}, got {value}")
    if given("--seed") is not None and given("--seed") + given("--runs") > 2**64:
        raise ValueError("--seed + --runs must be at most 2**64 (the runs use seeds seed, seed+1, ...)")
    if args.command == "calibrate" and any(c < 0 for c in args.classes):
        raise ValueError(f"--classes must be class ids >= 0, got {args.classes}")
    if given("--alpha") is not None:
        check_alpha(given("--alpha"), "--alpha")
    if given("--speedup") is not None:
        check_number(given("--speedup"), "--speedup", minimum=1.0)
    if given("--compute-fraction") is not None:
        check_fraction(given("--compute-fraction"), "--compute-fraction")
    if given("--guidance") is not None:
        check_number(given("--guidance"), "--guidance", minimum=-math.inf)
    for option in ("--out", "--plot"):
        path = given(option)
        if path is None:
            continue
        if args.command != "demo" and Path(path).is_dir():
            raise ValueError(f"{option} {path} is a folder; give the file to write")
        if args.command == "demo" and Path(path).exists() and not Path(path).is_dir():
            raise ValueError(f"--out {path} is a file; the demo writes its outputs into a folder")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .planning import PLANNERS
    from .predictors import PREDICTORS

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
    cal.add_argument("--runs", type=int, default=1, help="pipeline runs (seeds seed, seed+1, ...)")
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
    cal.set_defaults(func=_calibrate)

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
        choices=PREDICTORS,
        default=None,
        help="what skipped steps return (default: linear for a budget, the recommended mode; reuse "
        "with --alpha, as the original)",
    )
    sch.add_argument(
        "--planner",
        choices=PLANNERS,
        default=None,
        help="how a budget is met (default optimal; --alpha always scans greedily)",
    )
    sch.add_argument("--steps", type=int, default=None, help="schedule length (default: the calibration's)")
    sch.add_argument(
        "--lookahead", type=int, default=None, help="largest prediction distance (default: profile's K)"
    )
    sch.add_argument("--per-block", action="store_true", help="one schedule per block ('attn1-3' keys)")
    sch.add_argument("--out", required=True, help="schedule JSON to write")
    sch.set_defaults(func=_schedule)

    plot = sub.add_parser("plot", help="profile -> error-curve PNG")
    plot.add_argument("profile")
    plot.add_argument("--out", required=True)
    plot.add_argument("--alpha", type=float, default=None, help="draw this threshold")
    plot.set_defaults(func=_plot)

    from .zoo.demo import DEMO_MODELS, DEMO_SPEEDUP

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
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        check_arguments(args)
        return args.func(args)
    except (ValueError, OSError, RuntimeError, TypeError) as err:
        print(f"smoothcache {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
