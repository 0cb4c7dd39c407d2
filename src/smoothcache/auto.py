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

from .calibration import CalibratorPolicy
from .costs import COSTS
from .errors import BudgetError, ScheduleError, warn
from .flops import MacPolicy
from .planning import budget_fraction
from .policy import BranchPolicy
from .predictors import PREDICTORS
from .samplers import NOISE_DRAWS, is_stochastic
from .schedule import Schedule
from .stats import CacheStats
from .validate import check_alpha, check_choice, check_int

__all__ = ["AutoPolicy"]

logger = logging.getLogger(__name__)


class AutoPolicy(BranchPolicy):
    """Calibrate, then plan, then cache: one policy for the whole life of a one-line-mode cache.

    Args:
        recorder: the calibration policy (with its MAC meter).
        runs: generations to calibrate on (None: decided after the first, from the pipeline's sampler).
        plan: ``plan(profile) -> Schedule``.
        make_cache: ``make_cache(schedule) -> policy`` applying the schedule (it has ``stats``).
        label: how the mode is shown (``"speedup=2.5x"``).
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
    ):
        self.recorder = recorder
        self.runs = runs
        self.plan = plan
        self.make_cache = make_cache
        self.label = label
        self.schedule = None
        self._current: BranchPolicy = recorder.chain
        self._cache: BranchPolicy | None = None

    @classmethod
    def planning(cls, model_name: str, options: dict, alpha: float | None, speedup: float | None,
                 make_cache: Callable[[Any], BranchPolicy]) -> "AutoPolicy":
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
            budget_fraction(speedup=speedup)
            check_choice(options["cost"] or "time", "cost", COSTS, error=ScheduleError)
            label = f"speedup={speedup:g}x"
            kwargs = dict(predictor=predictor, per_block=per_block, cost=options["cost"],
                          fuse_blocks=options["fuse_blocks"])

            def plan(profile):
                try:
                    return Schedule.for_budget(profile, speedup=speedup, **kwargs)
                except BudgetError as err:  # the calibrating generation is done: cache as well as it can
                    warn(f"{err}; the one-line mode plans the best reachable, {1 / err.best:.3g}x")
                    return Schedule.for_budget(profile, compute_fraction=err.best, **kwargs)

        recorded = PREDICTORS if predictor == "auto" else [predictor]
        recorder = CalibratorPolicy(options["lookahead"], recorded, model_name, meter=MacPolicy())
        return cls(recorder, runs, plan, make_cache, label)

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
        return self._cache.stats

    def attach(self, hooks) -> None:
        super().attach(hooks)
        self._current.attach(hooks)

    def start(self) -> None:
        self._current.start()

    def begin_call(self):
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
        if self.runs is None and self.recorder.profile is not None:
            self.runs = self._noise_draws()
        if self._cache is not None or self.recorder.profile is None or self.recorder.profile.runs < self.runs:
            return
        profile = self.recorder.profile
        self.schedule = self.plan(profile)
        logger.info(
            "one-line mode (%s) calibrated %d generation(s): %s", self.label, profile.runs, self.schedule
        )
        self._cache = self._current = self.make_cache(self.schedule)
        self._cache.attach(self.hooks)
        self._cache.start()
