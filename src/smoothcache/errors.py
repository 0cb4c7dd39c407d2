"""The exceptions smoothcache raises for bad input; each is a ValueError with a message naming the problem."""

from __future__ import annotations

__all__ = ["CalibrationError", "ProfileError", "ScheduleError"]


class ScheduleError(ValueError):
    """A schedule is malformed, cannot be planned as asked, or does not fit the model or the generation."""


class ProfileError(ValueError):
    """A calibration profile is malformed, or profiles that cannot be combined were combined."""


class CalibrationError(ValueError):
    """Calibration could not produce valid error curves (non-finite outputs, mismatched runs...)."""
