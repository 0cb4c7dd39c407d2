"""The schedule of each ComfyUI sampler run, from a calibration profile or a schedule file.

A profile is planned for each run's own sigmas: when the run's steps are the calibrated ones it is planned as
it is, otherwise its error tables are first resampled onto the run's sigmas
(:meth:`~smoothcache.profile.CalibrationProfile.resample` with the sigmas as timesteps), which places another
step count, a ``denoise < 1`` tail, a KSamplerAdvanced segment or one expert of Wan 2.2 by noise level. Plans
are kept per sigma list. A schedule file fixes its steps: a run of another step count warns and computes every
step. A budget a run's tables cannot reach plans the best reachable one, with a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import BudgetError, ProfileError, warn
from ..profile import CalibrationProfile
from ..schedule import Schedule
from .families import ModelBlocks
from .runs import check_schedule

__all__ = ["PlanSource", "check_profile"]

logger = logging.getLogger(__name__)


def check_profile(profile: CalibrationProfile, blocks: ModelBlocks) -> None:
    """Raise a ProfileError if ``profile`` was not calibrated on blocks of this model."""
    paths = {path for _, _, path in blocks.blocks()}
    foreign = sorted(set(profile.errors) - paths)
    if foreign or not profile.errors:
        raise ProfileError(
            f"this profile was calibrated on {profile.model or 'another model'} (blocks such as "
            f"{foreign[:3]}), not on this {blocks.model} with {len(paths)} hooked blocks: calibrate this "
            "model with the SmoothCache Calibrate node"
        )


def _same_sigmas(profile: CalibrationProfile, sigmas: list[float]) -> bool:
    t = profile.timesteps
    return t is not None and len(t) == len(sigmas) and bool(np.allclose(t, sigmas, rtol=1e-4, atol=1e-6))


class PlanSource:
    """Where the schedules of a SmoothCache Apply node come from.

    Args:
        speedup: the speed-up each run is planned for (profiles only).
        path: a profile (``.safetensors``) or schedule (``.json``) file; None when the profile comes from a
            calibration run (:attr:`profile` is set then).
        blocks: the model's hooked blocks, to check the file against.
    """

    def __init__(self, speedup: float, path: Path | None, blocks: ModelBlocks):
        self.speedup = speedup
        self.path = path
        self.blocks = blocks
        self.profile: CalibrationProfile | None = None
        self.schedule: Schedule | None = None
        self._stamp: tuple | None = None
        self._plans: dict[tuple, Schedule | None] = {}

    @property
    def ready(self) -> bool:
        return self.profile is not None or self.schedule is not None

    def refresh(self) -> bool:
        """(Re)load the file if it appeared or changed since it was read; False if it does not exist yet."""
        if self.path is None:
            return self.ready
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self.use(*self._read())
            self._stamp = stamp
            logger.info("SmoothCache: read %s", self.path)
        return True

    def _read(self) -> tuple[CalibrationProfile | None, Schedule | None]:
        if self.path.suffix.lower() == ".json":
            schedule = Schedule.load(self.path)
            check_schedule(schedule, self.blocks)
            return None, schedule
        profile = CalibrationProfile.load(self.path)
        check_profile(profile, self.blocks)
        return profile, None

    def use(self, profile: CalibrationProfile | None, schedule: Schedule | None = None) -> None:
        """Plan from ``profile`` (or follow ``schedule``) from now on."""
        self.profile, self.schedule = profile, schedule
        self._plans.clear()

    def schedule_for(self, sigmas: list[float]) -> Schedule | None:
        """The schedule of a run over ``sigmas``, or None when it must compute every step (with a warning)."""
        steps = len(sigmas) - 1
        if self.schedule is not None:
            if self.schedule.num_steps == steps:
                return self.schedule
            warn(
                f"the schedule {self.path} has {self.schedule.num_steps} steps but this sampler run has "
                f"{steps}: SmoothCache computes every step of it; give a calibration profile instead, which "
                "is planned for any steps"
            )
            return None
        if self.profile is None or steps < 2:
            return None
        key = tuple(round(s, 6) for s in sigmas[:steps])
        if key not in self._plans:
            self._plans[key] = self._plan(list(key))
        return self._plans[key]

    def _plan(self, sigmas: list[float]) -> Schedule:
        profile = self.profile
        if not _same_sigmas(profile, sigmas):
            logger.info(
                "SmoothCache: the run's %d steps (sigma %.4g to %.4g) are not the calibrated %d: profile "
                "resampled by sigma",
                len(sigmas),
                sigmas[0],
                sigmas[-1],
                profile.num_steps,
            )
            profile = profile.resample(len(sigmas), timesteps=np.asarray(sigmas))
        try:
            schedule = Schedule.for_budget(profile, speedup=self.speedup)
        except BudgetError as err:
            warn(f"{err}; SmoothCache plans the best reachable speed-up, {1 / err.best:.3g}x, for this run")
            schedule = Schedule.for_budget(profile, compute_fraction=err.best)
        row = next(iter(schedule.entries.values()))
        logger.info(
            "SmoothCache plan for %d steps: computes steps %s (%s)",
            len(row),
            [i for i, v in enumerate(row) if v],
            schedule.predictor,
        )
        return schedule
