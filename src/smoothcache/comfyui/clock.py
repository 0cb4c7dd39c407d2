"""Steps of one ComfyUI sampler run, from its sigmas.

ComfyUI passes no step counter to the model: each call carries its noise level (``sigmas``, the plain sigma,
the same for every family) and the run knows the sigmas it samples. A call at ``sigmas[i]`` is step ``i``.
Samplers that evaluate the model more than once per step either evaluate again at a sigma of the run (Heun's
correction at ``sigma[i+1]``, counted with step ``i+1``) or between two (DPM-2's midpoint, counted with the
step it starts from). Each evaluation of a step gets its own *slot*, and so does each conditioning batch
(``uuids``: cond and uncond batched or called apart, area conds) and context window: kept outputs are never
shared between slots.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Sequence

__all__ = ["Call", "SigmaClock", "call_sigma", "conditioning_of"]

_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Call:
    """One model call of a sampler run: its step, the sigma it runs at (the time forecasts extrapolate in),
    its cache slot, and whether each block must keep its own residual (ControlNet or patches add into the
    hidden state between blocks)."""

    step: int
    time: float
    slot: Hashable
    per_block: bool = False


def call_sigma(sigma: Any) -> float:
    """The sigma of a call: the largest entry of the per-sample sigmas (they are normally all equal)."""
    if hasattr(sigma, "detach"):
        sigma = sigma.detach().reshape(-1)
        return float(sigma.max()) if sigma.numel() else 0.0
    if isinstance(sigma, Sequence):
        return float(max(sigma)) if sigma else 0.0
    return float(sigma)


def conditioning_of(transformer_options: Mapping[str, Any]) -> Hashable:
    """What tells the conditioning batches of a step apart: the cond ``uuids`` of the call (or its
    ``cond_or_uncond`` list) and the context window, if any."""
    conds = transformer_options.get("uuids") or transformer_options.get("cond_or_uncond") or ()
    window = transformer_options.get("context_window")
    indices = getattr(window, "index_list", None)
    return (tuple(str(c) for c in conds), None if indices is None else tuple(indices))


class SigmaClock:
    """Step and evaluation of each model call of one sampler run.

    Args:
        sigmas: the run's sigmas (``len(sigmas) - 1`` steps; the last one, usually 0, is where it ends).
    """

    def __init__(self, sigmas: Sequence[float]):
        self.sigmas = [float(s) for s in sigmas]
        self.num_steps = max(len(self.sigmas) - 1, 0)
        self._evaluations: dict[tuple[int, Hashable], int] = {}
        self._falling = [-s for s in self.sigmas[: self.num_steps]]  # increasing, for bisect

    def step_of(self, sigma: float) -> int:
        """The step a call at ``sigma`` belongs to: the step of that sigma, else the one whose interval holds
        it (clamped to the run)."""
        if self.num_steps == 0:
            return 0
        for i in (bisect.bisect_left(self._falling, -sigma) - 1, bisect.bisect_left(self._falling, -sigma)):
            if 0 <= i < self.num_steps and abs(self.sigmas[i] - sigma) <= _TOLERANCE * max(1.0, abs(sigma)):
                return i
        return min(max(bisect.bisect_right(self._falling, -sigma) - 1, 0), self.num_steps - 1)

    def call(self, sigma: float, conditioning: Hashable, per_block: bool = False) -> Call:
        """Account for a model call at ``sigma`` for the ``conditioning`` batch: its step, and its slot
        (``(evaluation, conditioning)``: the n-th call of this batch at this step is evaluation n)."""
        step = self.step_of(sigma)
        seen = self._evaluations.get((step, conditioning), 0)
        self._evaluations[(step, conditioning)] = seen + 1
        return Call(step, sigma, (seen, conditioning), per_block)
