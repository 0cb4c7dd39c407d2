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
from .policy import BranchPolicy
from .stats import CacheStats

__all__ = ["AutoPolicy"]

logger = logging.getLogger(__name__)


class AutoPolicy(BranchPolicy):
    """Calibrate, then plan, then cache: one policy for the whole life of a one-line-mode cache.

    Args:
        recorder: the calibration policy (with its MAC meter).
        runs: generations to calibrate on.
        plan: ``plan(profile) -> Schedule``.
        make_cache: ``make_cache(schedule) -> policy`` applying the schedule (it has ``stats``).
        label: how the mode is shown (``"speedup=2.5x"``).
        wants_blocks: whether the cache policy will act on block calls (block fusion).
    """

    def __init__(
        self,
        recorder: CalibratorPolicy,
        runs: int,
        plan: Callable[[Any], Any],
        make_cache: Callable[[Any], BranchPolicy],
        label: str,
        wants_blocks: bool = False,
    ):
        self.recorder = recorder
        self.runs = runs
        self.plan = plan
        self.make_cache = make_cache
        self.label = label
        self.wants_blocks = wants_blocks
        self.schedule = None
        self._current: BranchPolicy = recorder.chain
        self._cache: BranchPolicy | None = None

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

    def stop(self, interrupted: bool) -> None:
        self._current.stop(interrupted)

    def end_generation(self, steps: int, timesteps: list) -> None:
        self._current.end_generation(steps, timesteps)
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
