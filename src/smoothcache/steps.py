"""Follow the denoiser's forward calls to know the denoising step, the CFG call and the generation.

Rules, from the timestep each call receives:

- the first call starts a generation at step 0, and the first *different* timestep after it sets the
  generation's direction: falling for most samplers (high noise to low), rising for pipelines that count
  time up from the noise (Z-Image, Lumina 2, Mochi, OmniGen);
- a move against that direction means the pipeline started over: a new generation at step 0;
- the same timestep as the previous call is another call of the same step (separate cond/uncond calls),
  numbered 0, 1, ... so each gets its own cache;
- a move along the direction is the next step.

Samplers that call the model several times per step with *different* timesteps (Heun) or models called
without a timestep need ``calls_per_step=n``: then every ``n`` calls form one step.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import torch

from .validate import check_int

__all__ = ["StepTracker", "find_timestep"]

logger = logging.getLogger(__name__)

_TIMESTEP_KWARGS = ("timestep", "timesteps", "t", "sigma")


def find_timestep(args: tuple, kwargs: Mapping[str, Any]) -> Any:
    """The timestep of a denoiser call: a known keyword, else the second positional argument.

    Covers diffusers transformers (``timestep=``) and facebookresearch/DiT's ``forward(x, t, y)``. A tensor
    of several timesteps (one per sample, or per token as Wan 2.2 TI2V's image-to-video pipeline passes,
    with 0 for the clean conditioning frame) is reduced to its largest entry: the current noise level.
    """
    for name in _TIMESTEP_KWARGS:
        value = kwargs.get(name)
        if value is not None:
            return _highest(value)
    return _highest(args[1]) if len(args) > 1 else None


def _highest(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() > 1 and value.dtype != torch.bool:
        return value.detach().amax()
    return value


def _scalar(timestep: Any) -> float | None:
    if timestep is None:
        return None
    if isinstance(timestep, torch.Tensor):
        if timestep.numel() == 0 or timestep.is_meta:  # (a meta tensor has a shape, no value)
            return None
        return float(timestep.reshape(-1)[0])
    if isinstance(timestep, (int, float)):
        return float(timestep)
    return None


class StepTracker:
    """Step and CFG-call indices derived from the denoiser's calls.

    Args:
        calls_per_step: fixed number of denoiser calls per step; None derives it from the timesteps.
        on_generation_end: called with the number of steps a generation ran and their timesteps when it
            ends (a new generation starts, or :meth:`finish` is called).
    """

    def __init__(
        self, calls_per_step: int | None = None, on_generation_end: Callable[[int, list], None] | None = None
    ):
        self.calls_per_step = None if calls_per_step is None else check_int(calls_per_step, "calls_per_step")
        self.on_generation_end = on_generation_end
        self.depth = 0  # nesting of denoiser calls: branches are followed inside the outermost one only
        self.detached = False  # set when wrappers could not be removed: they then pass calls through
        self._warned_no_timestep = False
        self.reset()

    def reset(self) -> None:
        """Forget the current generation: the next denoiser call is step 0 of a new one."""
        self.step = -1  # denoising step of the current generation
        self.call = 0  # CFG call within the step (separate cond/uncond calls)
        self.calls = 0  # denoiser calls of the generation after its first
        self.last_timestep: float | None = None
        self.timesteps: list[float | None] = []  # timestep of each step so far
        self.direction = 0  # +1 rising, -1 falling, 0 not known yet

    def finish(self) -> None:
        """End the current generation (if one is running) and reset."""
        steps, timesteps = self.step + 1, self.timesteps
        self.reset()
        if steps > 0 and self.on_generation_end is not None:
            self.on_generation_end(steps, timesteps)

    def advance(self, timestep: Any) -> None:
        """Account for one denoiser call with this timestep."""
        t = _scalar(timestep)
        if t is None and self.calls_per_step is None and not self._warned_no_timestep:
            self._warned_no_timestep = True
            logger.warning(
                "the denoiser was called without a recognisable timestep: every call counts as a new step "
                "and "
                "generations are only separated by reset(); pass calls_per_step= if the pipeline uses CFG "
                "calls"
            )
        against = False
        if t is not None and self.last_timestep is not None and t != self.last_timestep and self.step >= 0:
            move = 1 if t > self.last_timestep else -1
            if self.direction == 0:
                self.direction = move
            against = move != self.direction
        if self.step < 0 or against:
            if self.step >= 0:
                self.finish()
            self.step, self.call, self.calls, self.direction = 0, 0, 0, 0
            self.timesteps = [t]
        else:
            self.calls += 1
            if self.calls_per_step is not None:
                step, self.call = divmod(self.calls, self.calls_per_step)
            elif t is not None and t == self.last_timestep:
                step, self.call = self.step, self.call + 1
            else:
                step, self.call = self.step + 1, 0
            if step != self.step:
                self.step = step
                self.timesteps.append(t)
        self.last_timestep = t

    @property
    def time(self) -> float:
        """The current step's position in the time variable the denoiser receives (its timestep or sigma);
        the step index when the denoiser gets no timestep. Forecasts extrapolate in this variable."""
        t = self.timesteps[self.step] if 0 <= self.step < len(self.timesteps) else None
        return float(self.step) if t is None else t
