"""The inputs of a :func:`smoothcache.tune` run: the pipeline's one denoiser, the calibration and held-out
generations (call arguments and a seed each; held-out ones never equal to calibration ones), their step count,
and a JSON record of them for the report."""

from __future__ import annotations

import inspect
import json
from typing import Any, Mapping, Sequence

import torch.nn as nn

from .denoisers import denoisers
from .validate import check_int

__all__ = ["DEFAULT_HELD_OUT", "HELD_OUT_SEED_OFFSET", "Generation", "call_parameters", "check_disjoint",
           "denoiser_of", "generations", "held_out_generations", "jsonable", "record", "step_count"]

#: Held-out generations when none are given: the inputs' arguments again, with other seeds.
DEFAULT_HELD_OUT = 3
#: Default held-out seeds start this far above the first calibration seed.
HELD_OUT_SEED_OFFSET = 10_000

Generation = tuple[dict[str, Any], int]  # (call arguments, seed)


def generations(inputs: Any, what: str, first_seed: int) -> list[Generation]:
    """Call arguments and seed of each generation (``seed`` popped from the dict, else ``first_seed + i``)."""
    if isinstance(inputs, Mapping):
        inputs = [inputs]
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise TypeError(
            f"{what} must be a list of dicts of pipeline call arguments, one per generation (e.g. "
            f"[{{'class_labels': [0, 1]}}] or [{{'prompt': 'a cat'}}]), got {type(inputs).__name__}"
        )
    if len(inputs) == 0:
        raise ValueError(
            f"no {what}: give at least one dict of pipeline call arguments, e.g. {{'class_labels': [0, 1]}} "
            "or {'prompt': 'a cat'}"
        )
    out = []
    for i, kwargs in enumerate(inputs):
        if not isinstance(kwargs, Mapping):
            raise TypeError(
                f"{what}[{i}] must be a dict of pipeline call arguments, got {type(kwargs).__name__}"
            )
        kwargs = dict(kwargs)
        if "generator" in kwargs:
            raise ValueError(
                f"{what}[{i}] gives a generator: give a 'seed' instead (tune makes a fresh generator for "
                "each call, so that the cached and the uncached generation draw the same noise)"
            )
        seed = check_int(kwargs.pop("seed", first_seed + i), f"{what}[{i}]['seed']", minimum=0)
        out.append((kwargs, seed))
    return out


def held_out_generations(held_out: Any, calibration: list[Generation], seed: int) -> list[Generation]:
    """The held-out generations: given, or ``held_out`` (default :data:`DEFAULT_HELD_OUT`) generations cycling
    through the calibration arguments with seeds above every calibration seed."""
    if held_out is None or isinstance(held_out, int) and not isinstance(held_out, bool):
        count = DEFAULT_HELD_OUT if held_out is None else check_int(held_out, "held_out")
        first = max(seed + HELD_OUT_SEED_OFFSET, max(s for _, s in calibration) + 1)
        return [(dict(calibration[j % len(calibration)][0]), first + j) for j in range(count)]
    return generations(held_out, "held_out", seed + HELD_OUT_SEED_OFFSET)


def _identity(generation: Generation) -> str:
    kwargs, seed = generation
    return repr((sorted((k, repr(v)) for k, v in kwargs.items()), seed))


def check_disjoint(calibration: list[Generation], held: list[Generation]) -> None:
    seen = {_identity(g): i for i, g in enumerate(calibration)}
    for j, generation in enumerate(held):
        if _identity(generation) in seen:
            raise ValueError(
                f"held_out[{j}] is inputs[{seen[_identity(generation)]}] (the same arguments and seed): "
                "the held-out inputs must differ from the calibration ones, or the figures would not show "
                "how the schedules do on inputs they were not planned on"
            )


def call_parameters(pipe: Any) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError):  # pragma: no cover - a callable without a signature
        return {}


def step_count(pipe: Any, runs: list[Generation], steps: int | None) -> int | None:
    """The step count of every generation: ``steps``, else the one the inputs give, else the pipeline's
    default (None where the pipeline names none)."""
    given = {kw["num_inference_steps"] for kw, _ in runs if "num_inference_steps" in kw}
    if steps is not None:
        check_int(steps, "steps", minimum=2)
        given.discard(steps)
        if given:
            raise ValueError(f"steps={steps} but some inputs give num_inference_steps={sorted(given)}")
        return steps
    if len(given) > 1:
        raise ValueError(
            f"the inputs give different num_inference_steps {sorted(given)}: one schedule is planned for one "
            "step count, so every generation must use the same"
        )
    if given:
        return check_int(given.pop(), "num_inference_steps", minimum=2)
    default = getattr(call_parameters(pipe).get("num_inference_steps"), "default", None)
    return default if isinstance(default, int) and default >= 2 else None


def denoiser_of(pipe: Any) -> nn.Module:
    if isinstance(pipe, nn.Module):
        raise TypeError(
            f"tune needs the pipeline, got the model {type(pipe).__name__}: pass the pipeline whose call "
            "generates the outputs"
        )
    found = denoisers(pipe) if callable(pipe) else {}
    if not found:
        raise TypeError(
            f"{type(pipe).__name__} is not a pipeline tune can run: expected a callable diffusers pipeline "
            "with a transformer (or unet) component"
        )
    if len(found) > 1:
        raise ValueError(
            f"the pipeline has several denoisers ({', '.join(found)}): tune plans and measures one; "
            "calibrate each with Calibrator and plan with Schedule.for_budget instead"
        )
    return next(iter(found.values()))


def jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        text = repr(value)
        return text if len(text) <= 200 else text[:197] + "..."


def record(runs: list[Generation]) -> list[dict[str, Any]]:
    """Each generation's seed and arguments, JSON-safe (others as their ``repr``)."""
    return [{"seed": seed, "arguments": {k: jsonable(v) for k, v in kw.items()}} for kw, seed in runs]
