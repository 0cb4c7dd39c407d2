"""Samplers that draw fresh noise at every step (SDE solvers, ancestral samplers, DDPM): their calibration
should see several noise draws, since one draw's errors say little about the next one's."""

from __future__ import annotations

from typing import Any

__all__ = ["NOISE_DRAWS", "is_stochastic"]

#: Calibration generations the one-line mode and ``smoothcache calibrate`` use for a stochastic sampler.
NOISE_DRAWS = 3

_STOCHASTIC_CLASSES = ("Ancestral", "SDE", "DDPMScheduler", "DDPMWuerstchen", "LCMScheduler", "TCDScheduler",
                       "CosineDPMSolverMultistep")


def is_stochastic(scheduler: Any) -> bool:
    """True for a diffusers scheduler that adds fresh noise at each step: an SDE variant of DPM-Solver
    (``algorithm_type`` containing ``sde``), ancestral and DDPM-style samplers, or one whose ``eta`` is above
    0."""
    if scheduler is None:
        return False
    name = type(scheduler).__name__
    if any(part in name for part in _STOCHASTIC_CLASSES):
        return True
    config = getattr(scheduler, "config", {}) or {}
    get = config.get if hasattr(config, "get") else (lambda key, default=None: getattr(config, key, default))
    if "sde" in str(get("algorithm_type", "") or "").lower():
        return True
    eta = get("eta", 0.0)
    return isinstance(eta, (int, float)) and eta > 0
