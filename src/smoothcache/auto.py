"""The one-line mode: calibrate on the first generation(s), then plan a schedule and cache with it.

``SmoothCache(model, speedup=2.5)`` (or ``alpha=``) runs an :class:`AutoPolicy`. While calibrating it records
the error tables (every call computed, so the first generation is uncached and slower: it also measures every
predictor's error); when the last calibration generation ends (the diffusers pipeline running it returns, a
new generation starts, or the cache is reset or disabled) it plans the schedule from the recorded profile and
from then on acts as the cache policy made for it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from .calibration import CalibratorPolicy
from .costs import COSTS
from .errors import BudgetError, ScheduleError, warn
from .flops import MacPolicy
from .planning import budget_fraction
from .policy import BranchPolicy
from .predictors import PREDICTORS
from .quality import QualityCheck, QualityReport, QualityTarget
from .samplers import NOISE_DRAWS, is_stochastic
from .schedule import Schedule
from .stats import CacheStats
from .validate import check_alpha, check_choice, check_int

__all__ = ["AutoPolicy"]

#: The fastest budget a quality target starts its check from when no ``speedup=`` is given.
TARGET_TOP = 4.0

logger = logging.getLogger(__name__)


class AutoPolicy(BranchPolicy):
    """Calibrate, then plan, then cache: one policy for the whole life of a one-line-mode cache.

    Args:
        recorder: the calibration policy (with its MAC meter).
        runs: generations to calibrate on (None: decided after the first, from the pipeline's sampler).
        plan: ``plan(profile) -> Schedule``.
        make_cache: ``make_cache(schedule) -> policy`` applying the schedule (it has ``stats``).
        label: how the mode is shown (``"speedup=2.5x"``).
        target: a quality target: when the calibration ends, budgets are checked on a replay of the
            calibration generation (:mod:`smoothcache.quality`) and the fastest meeting it is used.
        plan_at: ``plan_at(profile, speedup) -> Schedule``, for the quality check's budgets.
    """

    #: blocks are wrapped throughout: calibration times them, and the cache may fuse them
    wants_blocks = True

    def __init__(
        self,
        recorder: CalibratorPolicy,
        runs: int,
        plan: Callable[[Any], Any],
        make_cache: Callable[[Any], BranchPolicy],
        label: str,
        target: QualityTarget | None = None,
        plan_at: Callable[[Any, float], Any] | None = None,
    ):
        self.recorder = recorder
        self.target, self.plan_at = target, plan_at
        self.wants_inputs = target is not None
        #: what the quality check measured (None without a target, or before it ran)
        self.quality: QualityReport | None = None
        self._checking = False
        self._plans: dict[int, Any] = {}  # step count -> its schedule
        self.runs = runs
        self.plan = plan
        self.make_cache = make_cache
        self.label = label
        self.schedule = None
        self._current: BranchPolicy = recorder.chain
        self._cache: BranchPolicy | None = None

    @classmethod
    def planning(cls, model_name: str, options: dict, alpha: float | None, speedup: float | None,
                 make_cache: Callable[[Any], BranchPolicy],
                 target: QualityTarget | None = None) -> "AutoPolicy":
        """The policy of ``SmoothCache(model, alpha=...)`` or ``SmoothCache(model, speedup=...)``, its
        arguments checked now. ``options``: ``lookahead``, ``calibration_runs``, ``per_block``, ``predictor``,
        ``cost``, ``fuse_blocks``."""
        predictor, per_block = options["predictor"], options["per_block"]
        runs = options["calibration_runs"]
        runs = None if runs is None else check_int(runs, "calibration_runs")
        if alpha is not None:
            alpha = check_alpha(alpha, error=ScheduleError)
            label = f"alpha={alpha:g}"

            def plan(profile):
                return Schedule.from_profile(profile, alpha, per_block=per_block, predictor=predictor)
        else:
            if speedup is not None:
                budget_fraction(speedup=speedup)
            check_choice(options["cost"] or "time", "cost", COSTS, error=ScheduleError)
            label = f"speedup={speedup:g}x" if speedup is not None else str(target)
            kwargs = dict(predictor=predictor, per_block=per_block, cost=options["cost"],
                          fuse_blocks=options["fuse_blocks"])

            def plan_at(profile, speedup):
                try:
                    return Schedule.for_budget(profile, speedup=speedup, **kwargs)
                except BudgetError as err:  # the calibrating generation is done: cache as well as it can
                    if target is None:
                        warn(f"{err}; the one-line mode plans the best reachable, {1 / err.best:.3g}x")
                    return Schedule.for_budget(profile, compute_fraction=err.best, **kwargs)

            def plan(profile):
                return plan_at(profile, speedup if speedup is not None else TARGET_TOP)

        recorded = PREDICTORS if predictor in (None, "auto") else [predictor]
        recorder = CalibratorPolicy(options["lookahead"], recorded, model_name, meter=MacPolicy())
        return cls(recorder, runs, plan, make_cache, label, target, None if alpha is not None else plan_at)

    def _noise_draws(self) -> int:
        """Calibration generations for the sampler the pipeline ran (one for a deterministic sampler)."""
        scheduler = getattr(self.hooks.pipeline, "scheduler", None)
        if not is_stochastic(scheduler):
            return 1
        logger.info(
            "one-line mode: %s draws fresh noise at each step, so the calibration covers %d noise draws "
            "(%d uncached generations); calibration_runs= sets another number",
            type(scheduler).__name__,
            NOISE_DRAWS,
            NOISE_DRAWS,
        )
        return NOISE_DRAWS

    @property
    def profile(self):
        """The calibration recorded so far (None before the first calibration generation ended)."""
        return self.recorder.profile

    @property
    def stats(self) -> CacheStats:
        if self._cache is None:
            return CacheStats([], 0, predictor="none (calibrating)", released=not self.hooks.enabled)
        stats = self._cache.stats
        stats.quality = self.quality
        return stats

    def attach(self, hooks) -> None:
        super().attach(hooks)
        self._current.attach(hooks)

    def start(self) -> None:
        self._current.start()

    def begin_call(self):
        if self._cache is None and not self._checking and self.hooks.step == 0 and self.hooks.call == 0:
            logger.info(
                "one-line mode (%s): this generation calibrates: it runs uncached while it records every "
                "branch's errors, about 1.5x the time of an uncached one%s; the next generations are cached",
                self.label, " (then the quality target is checked on replays of it)" if self.target else "",
            )
        return self._current.begin_call()

    def on_branch(self, index: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        return self._current.on_branch(index, slot, fn, args, kwargs)

    def on_block(self, position: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        return self._current.on_block(position, slot, fn, args, kwargs)

    def drop_generation(self) -> None:
        self._current.drop_generation()

    def stop(self, interrupted: bool) -> None:
        self._current.stop(interrupted)

    def end_generation(self, steps: int, timesteps: list) -> None:
        self._current.end_generation(steps, timesteps)
        if self._checking:  # a replay of the quality check
            return
        if self._cache is not None:
            if steps != self.schedule.num_steps and steps >= 2:
                self._replan(steps, timesteps)
            return
        if self.runs is None and self.recorder.profile is not None:
            self.runs = self._noise_draws()
        if self.recorder.profile is None or self.recorder.profile.runs < self.runs:
            return
        profile = self.recorder.profile
        self.schedule = self._checked(profile) if self.target is not None else self.plan(profile)
        logger.info(
            "one-line mode (%s) calibrated %d generation(s): %s", self.label, profile.runs, self.schedule
        )
        self._plans[profile.num_steps] = self.schedule
        self._install(self.schedule)

    def _replan(self, steps: int, timesteps: list) -> None:
        """Plan (once per step count) for a generation of ``steps`` steps, from the calibration resampled to
        them, and cache the next generations with it."""
        if steps not in self._plans:
            profile = self.recorder.profile
            known = len(timesteps) == steps and all(t is not None for t in timesteps)
            resampled = profile.resample(steps, np.asarray(timesteps, dtype=np.float64) if known else None)
            chosen = self.quality.chosen if self.quality is not None else None
            if self.quality is not None and chosen is None:
                self._plans[steps] = Schedule.full(steps, profile.keys)
            else:
                self._plans[steps] = (
                    self.plan(resampled) if chosen is None else self.plan_at(resampled, chosen)
                )
            logger.info(
                "one-line mode: a generation ran %d steps; planned for them from the %d-step calibration: %s",
                steps, profile.num_steps, self._plans[steps],
            )
        self.schedule, previous = self._plans[steps], self._cache
        self._install(self.schedule)
        self._cache.carry_over(previous)

    def _checked(self, profile):
        """The schedule of the fastest budget meeting the quality target on a replay of the calibration
        generation (every step computed if none does)."""
        check = QualityCheck(self.target, self.hooks)
        self.wants_inputs, self._checking = True, True
        try:
            top = 1.0 / self.plan(profile).metadata["achieved"]
            schedule = check.choose(lambda s: self.plan_at(profile, s), top, self._install)
        finally:
            self.wants_inputs, self._checking = False, False
            self.quality = check.report
        if schedule is None:
            schedule = Schedule.full(profile.num_steps, profile.keys)
        return schedule

    def _install(self, schedule) -> None:
        """From now on, cache with ``schedule`` (None: compute every call, for the quality check)."""
        self._cache = None if schedule is None else self.make_cache(schedule)
        if self._cache is not None:
            self._cache.replans = True  # the one-line mode plans for each step count it meets
            if self.quality is not None and self.quality.chosen is None:
                self._cache.warned.add("idle")  # the quality check said why it computes every step
        self._current = self._cache if self._cache is not None else BranchPolicy()
        self._current.attach(self.hooks)
        self._current.start()
