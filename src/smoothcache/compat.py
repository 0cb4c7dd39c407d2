"""Drop-in helpers with the constructor signatures of the original ``SmoothCache`` package (dit-smoothcache).

Migrating is a change of the import line: ``from SmoothCache import DiffuserCacheHelper`` becomes
``from smoothcache import DiffuserCacheHelper``. Behaviour follows the original where it was sound, and
fixes what was not: no printing, every pipeline call starts at step 0, ``enable()`` is idempotent,
``disable()`` restores the model, the cache is cleared between generations, and schedules that do not fit
the model or the run are reported instead of ignored.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Type, Union

import torch.nn as nn

from .cache import SmoothCache
from .calibration import Calibrator
from .errors import ScheduleError, SmoothCacheWarning
from .planning import threshold_rows
from .profile import CalibrationProfile
from .schedule import Schedule

__all__ = [
    "SmoothCacheHelper",
    "DiffuserCacheHelper",
    "DiTCacheHelper",
    "CalibrationHelper",
    "DiffuserCalibrationHelper",
]

logger = logging.getLogger(__name__)

BlockClasses = Union[Type[nn.Module], str, List[Union[Type[nn.Module], str]]]


def _as_list(block_classes: BlockClasses) -> list:
    return list(block_classes) if isinstance(block_classes, (list, tuple)) else [block_classes]


class SmoothCacheHelper:
    """Cache ``components_to_wrap`` of every ``block_classes`` block following ``schedule``.

    Args:
        model: the denoiser.
        block_classes: block class (or list of classes / class names) to look for.
        components_to_wrap: branch attribute names inside those blocks (e.g. ``["attn1", "ff"]``).
        schedule: dict in the reference JSON format, a :class:`Schedule`, or a path to a JSON file.
            Components without a schedule key always compute.
    """

    def __init__(
        self,
        model: nn.Module,
        block_classes: BlockClasses,
        components_to_wrap: List[str],
        schedule: Union[Mapping[str, Sequence[int]], Schedule, str, Path],
    ):
        self.model = model
        self.block_classes = _as_list(block_classes)
        self.components_to_wrap = list(components_to_wrap)
        self.schedule = Schedule.coerce(schedule)
        if self.schedule.predictor != "reuse":
            raise ScheduleError(
                f"this schedule forecasts skipped steps with the {self.schedule.predictor!r} predictor; the "
                "original "
                "implementation's helpers only reuse cached outputs: apply it with "
                "smoothcache.SmoothCache(model, schedule)"
            )
        self._cache = SmoothCache(
            model, self.schedule, keys=self.components_to_wrap, block_classes=self.block_classes
        )

    def enable(self) -> None:
        """Start caching (idempotent)."""
        self._cache.enable()

    def disable(self) -> None:
        """Stop caching and restore the model exactly."""
        self._cache.disable()

    def reset_state(self) -> None:
        """Start the next generation at step 0 (done automatically when a new generation starts)."""
        self._cache.reset()

    @property
    def stats(self):
        """Calls computed and reused per branch."""
        return self._cache.stats


class DiffuserCacheHelper(SmoothCacheHelper):
    """SmoothCache for diffusers models built from ``BasicTransformerBlock`` (DiT, PixArt)."""

    def __init__(self, model: nn.Module, schedule: Union[Mapping[str, Sequence[int]], Schedule, str, Path]):
        super().__init__(model, ["BasicTransformerBlock"], ["attn1", "attn2", "ff"], schedule)


class DiTCacheHelper(SmoothCacheHelper):
    """SmoothCache for facebookresearch/DiT models (``DiTBlock``: ``attn``, ``mlp``), without importing
    them."""

    def __init__(self, model: nn.Module, schedule: Union[Mapping[str, Sequence[int]], Schedule, str, Path]):
        super().__init__(model, ["DiTBlock"], ["norm1", "norm2", "attn", "mlp"], schedule)


class CalibrationHelper:
    """Record error curves while enabled; :meth:`disable` writes the schedule JSON to ``log_file``.

    Args:
        model: the denoiser.
        block_classes: block class (or list of classes / names) to look for.
        components_to_wrap: branch attribute names to calibrate.
        calibration_lookahead: K, the largest reuse distance.
        calibration_threshold: alpha, the error threshold of the schedule written on :meth:`disable`.
        schedule_length: number of steps of the written schedule (the pipeline's step count).
        log_file: where the schedule JSON is written.
    """

    def __init__(
        self,
        model: nn.Module,
        block_classes: BlockClasses,
        components_to_wrap: List[str],
        calibration_lookahead: int = 3,
        calibration_threshold: float = 0.0,
        schedule_length: int = 50,
        log_file: str = "calibration_schedule.json",
    ):
        self.model = model
        self.block_classes = _as_list(block_classes)
        self.components_to_wrap = list(components_to_wrap)
        self.calibration_lookahead = calibration_lookahead
        self.calibration_threshold = calibration_threshold
        self.schedule_length = schedule_length
        self.log_file = log_file
        self._calibrator = Calibrator(
            model,
            self.components_to_wrap,
            calibration_lookahead,
            block_classes=self.block_classes,
            predictors=["reuse"],
        )
        self.profile: Optional[CalibrationProfile] = None
        self.schedule: Optional[Schedule] = None

    def enable(self) -> None:
        """Start recording (idempotent)."""
        self._calibrator.enable()

    def disable(self) -> Optional[Schedule]:
        """Stop recording, restore the model, and write the schedule to ``log_file``."""
        if not self._calibrator.enabled:
            return self.schedule
        self._calibrator.disable()
        self.profile = self._calibrator.profile
        if self.profile.num_steps != self.schedule_length:
            warnings.warn(
                f"calibration ran {self.profile.num_steps} steps but schedule_length is "
                f"{self.schedule_length}; "
                "steps without calibration data are computed",
                SmoothCacheWarning,
                stacklevel=2,
            )
        rows = threshold_rows(self.profile, self.calibration_threshold, length=self.schedule_length)
        self.schedule = Schedule(rows, {"alpha": self.calibration_threshold, "planner": "greedy"})
        self.schedule.save(self.log_file)
        logger.info("wrote schedule to %s: %s", self.log_file, self.schedule)
        return self.schedule


class DiffuserCalibrationHelper(CalibrationHelper):
    """:class:`CalibrationHelper` for diffusers ``BasicTransformerBlock`` models; wraps ``attn1`` by
    default."""

    def __init__(
        self,
        model: nn.Module,
        calibration_lookahead: int = 3,
        calibration_threshold: float = 0.0,
        schedule_length: int = 50,
        log_file: str = "calibration_schedule.json",
        components_to_wrap: Optional[List[str]] = None,
    ):
        super().__init__(
            model,
            ["BasicTransformerBlock"],
            components_to_wrap or ["attn1"],
            calibration_lookahead,
            calibration_threshold,
            schedule_length,
            log_file,
        )
