"""Every exception and warning smoothcache raises for bad input or a run that did not go as planned.

Each error is a ``ValueError`` (``NotADenoiserError`` is also a ``TypeError``) whose message names the problem
and, where there is one, the fix.
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "NotADenoiserError",
    "ProfileError",
    "ScheduleError",
    "SmoothCacheWarning",
    "TargetError",
    "TargetNotMetError",
    "warn",
]


class ScheduleError(ValueError):
    """A schedule is malformed, cannot be planned as asked, or does not fit the model or the generation."""


class BudgetError(ScheduleError):
    """A budget no schedule of these error tables reaches; :attr:`best` is the least compute fraction one
    reaches."""

    def __init__(self, message: str, best: float):
        super().__init__(message)
        self.best = best


class ProfileError(ValueError):
    """A calibration profile is malformed, or profiles that cannot be combined were combined."""


class CalibrationError(ValueError):
    """Calibration could not produce valid error tables (non-finite outputs, mismatched runs...)."""


class TargetError(ValueError):
    """The model has no blocks or branches SmoothCache can hook, or not the ones asked for."""


class NotADenoiserError(TargetError, TypeError):
    """A pipeline or another object was given where a denoiser module was expected."""


class TargetNotMetError(ValueError):
    """No budget of a :func:`smoothcache.tune` run meets a fidelity target; :attr:`best` maps each target
    (e.g. ``"min_psnr"``) to the best value reached and the speed-up reaching it."""

    def __init__(self, message: str, best: dict):
        super().__init__(message)
        self.best = best


class SmoothCacheWarning(UserWarning):
    """A run did not use its schedule as written (e.g. the generation ended early)."""


def warn(message: str) -> None:
    """Emit a :class:`SmoothCacheWarning` pointing at the first frame outside smoothcache, torch and
    diffusers."""
    import sys
    import warnings

    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if (
            not name.startswith(("smoothcache.", "torch", "diffusers", "contextlib"))
            and name != "smoothcache"
        ):
            break
        frame, level = frame.f_back, level + 1
    warnings.warn(message, SmoothCacheWarning, stacklevel=level + 1 if frame is not None else 2)
