"""``smoothcache.tune``: choose a budget from measurements instead of guessing one.

Calibrates the pipeline on some inputs, plans the recommended mode (:meth:`Schedule.for_budget`) at a sweep of
speed-ups, then generates **held-out** inputs (never the calibration ones) without and with each schedule,
interleaved, and measures per budget the planned and measured speed-up and the fidelity to the uncached output
(:mod:`smoothcache.fidelity`), the mean over the held-out samples and the worst sample.

>>> result = smoothcache.tune(pipe, [{"class_labels": [0, 1, 2]}])   # doctest: +SKIP
>>> result.best(min_psnr=40).schedule                                # doctest: +SKIP
>>> result.save("report/")                                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from typing import Any, Mapping, Sequence

import torch

from .cache import SmoothCache
from .calibration import Calibrator
from .costs import MacReport
from .errors import BudgetError
from .fidelity import FIGURES, MEASURES, as_output, measure
from .progress import StepProgress
from .schedule import Schedule
from .tuning_inputs import (
    DEFAULT_HELD_OUT,
    HELD_OUT_SEED_OFFSET,
    call_parameters,
    check_disjoint,
    denoiser_of,
    generations,
    held_out_generations,
    jsonable,
    record,
    step_count,
)
from .tuning_report import speedup_label
from .tuning_result import TuneResult, check_target_kind, check_targets
from .validate import check_int, check_number

__all__ = ["DEFAULT_HELD_OUT", "DEFAULT_POINTS", "HELD_OUT_SEED_OFFSET", "LOWEST_SPEEDUP",
           "reachable_speedup", "sweep", "tune"]

logger = logging.getLogger(__name__)

#: Budgets of the default sweep.
DEFAULT_POINTS = 6
#: The default sweep's slowest budget (where the largest reachable speed-up is above it).
LOWEST_SPEEDUP = 1.5
#: Samples of the first held-out input kept for the report's side-by-side files, per kind.
KEPT_SAMPLES = {"image": 8, "video": 4, "audio": 5}


# ------------------------------------------------------------------------------------------------- budgets
def reachable_speedup(profile, **plan_options: Any) -> float:
    """The largest speed-up :meth:`Schedule.for_budget` reaches with these calibration tables and options."""
    try:
        Schedule.for_budget(profile, compute_fraction=1e-9, **plan_options)
    except BudgetError as err:
        return 1.0 / err.best
    return 1e9  # pragma: no cover - a plan that computes nothing


def sweep(reachable: float, points: int = DEFAULT_POINTS, lowest: float = LOWEST_SPEEDUP) -> list[float]:
    """About ``points`` speed-ups, evenly spaced from ``lowest`` (or lower when less is reachable) to the
    largest reachable, rounded down to hundredths (budgets closer than 0.01 merged)."""
    check_int(points, "points")
    top = math.floor(reachable * 100 + 1e-6) / 100
    if top <= 1.0:
        raise ValueError(f"these calibration tables reach no speed-up (at most {reachable:.3f}x)")
    low = lowest if top > lowest else 1.0 + (top - 1.0) / points
    values = [top] if points == 1 else [low + (top - low) * i / (points - 1) for i in range(points)]
    return sorted({v for v in (math.floor(v * 100 + 1e-6) / 100 for v in values) if v > 1.0})


def _check_speedups(speedups: Sequence[float]) -> list[float]:
    if isinstance(speedups, (int, float)):
        speedups = [speedups]
    values = [check_number(s, "speedups", minimum=-math.inf) for s in speedups]
    if not values:
        raise ValueError("speedups is empty: give speed-ups above 1, or None for the default sweep")
    low = [s for s in values if s <= 1.0]
    if low:
        raise ValueError(f"speed-ups must be above 1 (1 is the uncached generation), got {low[0]:g}")
    return sorted(set(values))


# ------------------------------------------------------------------------------------------------- running
@contextlib.contextmanager
def _quiet(pipe: Any):
    """The pipeline's own progress bars off (tune shows one for the whole run), restored afterwards."""
    if not callable(getattr(pipe, "set_progress_bar_config", None)):
        yield
        return
    had = "_progress_bar_config" in vars(pipe)
    saved = dict(pipe._progress_bar_config) if had else None
    pipe.set_progress_bar_config(disable=True)
    try:
        yield
    finally:
        if had:
            pipe._progress_bar_config = saved
        else:
            vars(pipe).pop("_progress_bar_config", None)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _sample_rate(pipe: Any) -> int | None:
    vae = getattr(pipe, "vae", None)
    for value in (getattr(pipe, "sample_rate", None), getattr(vae, "sampling_rate", None),
                  getattr(getattr(vae, "config", None), "sampling_rate", None)):
        if isinstance(value, (int, float)) and value > 0:
            return int(value)
    return None


def tune(
    pipe: Any,
    inputs: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    held_out: Sequence[Mapping[str, Any]] | int | None = None,
    speedups: Sequence[float] | None = None,
    *,
    steps: int | None = None,
    seed: int = 0,
    points: int = DEFAULT_POINTS,
    target: Mapping[str, float] | None = None,
    lookahead: int = 3,
    progress: bool = True,
    name: str | None = None,
    **plan_options: Any,
) -> TuneResult:
    """Calibrate ``pipe`` on ``inputs``, plan the recommended mode at a sweep of speed-ups and measure each
    plan on held-out inputs against the uncached output.

    Args:
        pipe: a diffusers pipeline with one denoiser (``pipe.transformer``) whose output holds images, video
            frames or audio (``.images`` / ``.frames`` / ``.audios``); restored as it was when tune returns or
            raises.
        inputs: the calibration generations: one dict of call arguments each (``{"class_labels": [0, 1]}``,
            ``{"prompt": "a cat"}``), with an optional ``"seed"`` (default ``seed + i``). ``output_type``
            defaults to ``"np"`` where the pipeline takes it.
        held_out: the generations to measure on, as ``inputs``, which they must differ from; or their number
            (default :data:`DEFAULT_HELD_OUT`): the inputs' arguments again, with new seeds.
        speedups: the budgets, each above 1 and reachable; default: ``points`` speed-ups from 1.5x to the
            largest these calibration tables reach.
        steps: denoising steps of every generation (default: the inputs', else the pipeline's default).
        seed: the first calibration seed.
        points: budgets of the default sweep.
        target: a fidelity target, e.g. ``{"min_psnr": 40}`` (names in
            :data:`~smoothcache.tuning_result.FIDELITY_TARGETS`); checked against the kind of output after the
            first generation, and :attr:`TuneResult.chosen` is the fastest budget meeting it.
        lookahead: K of the calibration.
        progress: show one progress bar (denoising steps of every generation).
        name: what the report calls the pipeline (default: its class name).
        plan_options: forwarded to :meth:`Schedule.for_budget` (``cost``, ``predictor``, ``margin``...).

    Raises:
        TypeError: not a pipeline; inputs that are not dicts; an output that is not images, video or audio
            (after the first generation, before any other).
        ValueError: no inputs; held-out inputs equal to calibration ones; speed-ups not above 1 or beyond the
            largest reachable (the message names it); a target this kind of output is not measured by.
    """
    started = time.perf_counter()
    denoiser = denoiser_of(pipe)
    target = check_targets(target)
    check_int(seed, "seed", minimum=0)
    calibration = generations(inputs, "inputs", seed)
    held = held_out_generations(held_out, calibration, seed)
    check_disjoint(calibration, held)
    requested = None if speedups is None else _check_speedups(speedups)
    if requested is None:
        check_int(points, "points")
    steps = step_count(pipe, calibration + held, steps)
    parameters = call_parameters(pipe)
    extra: dict[str, Any] = {} if steps is None else {"num_inference_steps": steps}
    budgets_count = len(requested) if requested is not None else points
    calls = len(calibration) + len(held) * (1 + budgets_count)

    from tqdm.auto import tqdm

    bar = tqdm(total=None if steps is None else steps * calls, desc="smoothcache tune", unit="step",
               disable=not progress)
    with bar, _quiet(pipe), StepProgress(pipe, bar, steps or 0) as counter:

        def generate(kwargs: dict, generation_seed: int):
            call = {**extra, **kwargs}
            if "output_type" in parameters and "output_type" not in call:
                call["output_type"] = "np"
            if "callback_on_step_end" not in call:
                call.update(counter.call_kwargs)
            generator = torch.Generator("cpu").manual_seed(generation_seed)
            _sync()
            start = time.perf_counter()
            result = pipe(**call, generator=generator)
            _sync()
            seconds = time.perf_counter() - start
            counter.end_call()
            return result, seconds

        kind = None
        with Calibrator(denoiser, lookahead=lookahead) as cal:
            for i, (kwargs, generation_seed) in enumerate(calibration):
                bar.set_postfix_str(f"calibrating {i + 1}/{len(calibration)}")
                result, _ = generate(kwargs, generation_seed)
                if kind is None:
                    kind, _ = as_output(result)  # TypeError for anything but images, video or audio
                    check_target_kind(target, kind)
        profile = cal.profile
        reachable = reachable_speedup(profile, **plan_options)
        if requested is None:
            budgets = sweep(reachable, points)
        else:
            beyond = [s for s in requested if s > reachable + 1e-9]
            if beyond:
                raise ValueError(
                    f"a speed-up of {beyond[0]:g}x is out of reach: the largest these calibration tables "
                    f"allow is {reachable:.2f}x"
                )
            budgets = requested
        schedules = {s: Schedule.for_budget(profile, speedup=s, **plan_options) for s in budgets}
        if requested is None:  # a default sweep measures each schedule once, under its largest budget
            for low, high in zip(budgets, budgets[1:]):
                if schedules[low] == schedules[high]:
                    logger.info("%s plans the schedule of %s: measured once", speedup_label(low),
                                speedup_label(high))
                    del schedules[low]
            budgets = list(schedules)
        if len(budgets) != budgets_count and steps is not None:
            bar.total = steps * (len(calibration) + len(held) * (1 + len(budgets)))
            bar.refresh()
        logger.info("calibrated (%s); largest reachable speed-up %.2fx; budgets %s", profile, reachable,
                    ", ".join(map(speedup_label, budgets)))

        variants: list[float | None] = [None, *budgets]
        caches = {s: SmoothCache(denoiser, schedules[s]) for s in budgets}
        times: dict[float | None, list[float]] = {v: [] for v in variants}
        values: dict[float, dict[str, list[torch.Tensor]]] = {
            s: {f: [] for f in FIGURES[kind]} for s in budgets
        }
        samples: dict[str, torch.Tensor] = {}
        keep = KEPT_SAMPLES[kind]
        for j, (kwargs, generation_seed) in enumerate(held):
            turn = j % len(variants)  # rotate the order so that no variant always runs first
            results = {}
            for variant in variants[turn:] + variants[:turn]:
                label = "uncached" if variant is None else speedup_label(variant)
                bar.set_postfix_str(f"held-out {j + 1}/{len(held)}: {label}")
                with caches[variant] if variant is not None else contextlib.nullcontext():
                    results[variant], seconds = generate(kwargs, generation_seed)
                times[variant].append(seconds)
            reference = results.pop(None)
            for variant, result in results.items():
                for figure, per_sample in measure(reference, result, reduction="none").items():
                    values[variant][figure].append(per_sample.reshape(-1).double())
            if j == 0:
                samples["uncached"] = as_output(reference)[1][:keep].clone()
                samples.update({speedup_label(v): as_output(r)[1][:keep].clone() for v, r in results.items()})
            del results, reference

    costs = MacReport.for_budget(profile)
    table = []
    for s in budgets:
        schedule = schedules[s]
        ratios = [u / c for u, c in zip(times[None], times[s])]
        row: dict[str, Any] = {
            "speedup": s,
            "planned_speedup_time": costs.speedup(schedule, "time") if costs.has("time") else None,
            "planned_speedup_macs": costs.speedup(schedule),
            "measured_speedup": statistics.median(ratios),
            "seconds": statistics.median(times[s]),
        }
        for figure in FIGURES[kind]:
            per_sample = torch.cat(values[s][figure])
            higher_is_better = MEASURES[figure][2]
            row[figure] = float(per_sample.mean())
            row[f"{figure}_worst"] = float(per_sample.min() if higher_is_better else per_sample.max())
            row[f"{figure}_std"] = float(per_sample.std()) if per_sample.numel() > 1 else 0.0
        table.append(row)
    info = {
        "name": name or type(pipe).__name__,
        "steps": steps if steps is not None else profile.num_steps,
        "calibration": record(calibration),
        "held_out": record(held),
        "held_out_samples": int(torch.cat(values[budgets[0]][FIGURES[kind][0]]).numel()),
        "reachable_speedup": reachable,
        "cost": plan_options.get("cost") or ("time" if costs.has("time") else "macs"),
        "plan_options": {k: jsonable(v) for k, v in plan_options.items()},
        "uncached_seconds": statistics.median(times[None]),
        "seconds": time.perf_counter() - started,
        "device": str(getattr(pipe, "device", "cpu")),
        "sample_rate": _sample_rate(pipe) if kind == "audio" else None,
        "macs_unit": costs.unit,
    }
    return TuneResult(kind, table, schedules, profile, target, info, samples)
