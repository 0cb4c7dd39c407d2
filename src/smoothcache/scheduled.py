"""Following a schedule: on a 0 step, a prediction from the branch's kept outputs stands in for running it.

:class:`SmoothCachePolicy` is the policy of a :class:`~smoothcache.SmoothCache` with a schedule (and of the
one-line mode once it planned one). It keeps each branch's outputs only as long as a later 0 step needs them,
hands whole blocks to :mod:`smoothcache.fusion` where every branch of a block skips, counts what it computed
and predicted, and reports each generation (:mod:`smoothcache.generation`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch

from .calls import input_shape, is_stateful_call
from .errors import ScheduleError, warn
from .fusion import BlockFusion
from .generation import GenerationReport, conditions_mismatch, idle_reason
from .hooks import BranchHooks
from .outputs import check_cacheable
from .policy import BranchPolicy
from .predictors import predict_kept, sources_needed
from .schedule import Schedule
from .stats import BranchCounter, CacheStats
from .store import KeptOutputs, unmodified
from .validate import check_dtype

__all__ = ["SmoothCachePolicy"]

logger = logging.getLogger(__name__)


class SmoothCachePolicy(BranchPolicy):
    """The :class:`SmoothCache`'s policy: follow a schedule, computing on 1 steps and predicting on 0 steps.

    Args:
        rows: one schedule row per wrapped branch (None: always compute).
        predictor: ``"reuse"``, ``"linear"`` or ``"mixed"`` (then ``choices`` says which, per step).
        cache_dtype: keep the outputs in this (lower) precision, cast back when predicting.
        num_steps: the schedule's length, for the end-of-schedule checks.
        fusable: paths of the blocks to skip whole on steps where all their branches skip (None: no fusion).
        schedule: the schedule the rows come from (kept for reports).
        fusion: ``"runs"`` (runs of blocks skipped as one) or ``"blocks"`` (each block on its own).
    """

    #: A schedule-following cache records no calibration.
    profile = None

    def __init__(
        self,
        rows: Sequence[tuple[int, ...] | None],
        predictor: str = "reuse",
        cache_dtype: torch.dtype | None = None,
        num_steps: int | None = None,
        fusable: set[str] | None = None,
        schedule: Schedule | None = None,
        fusion: str = "runs",
        choices: Sequence[tuple[str | None, ...] | None] | None = None,
    ):
        self.rows = list(rows)
        self.schedule = schedule
        self.predictor = predictor
        self.num_steps = (
            num_steps if num_steps is not None else max(len(r) for r in self.rows if r is not None)
        )
        #: per branch, the predictor of each step (None where it computes)
        self.choices = (
            list(choices)
            if choices is not None
            else [None if r is None else tuple(None if v else predictor for v in r) for r in self.rows]
        )
        used = {p for c in self.choices if c is not None for p in c if p is not None} or {"reuse"}
        self.store = KeptOutputs(
            max(sources_needed(p) for p in used), check_dtype(cache_dtype, "cache_dtype")
        )
        self._zeros = [() if r is None else tuple(s for s, v in enumerate(r) if v == 0) for r in self.rows]
        self._keep_until: list[int] = []
        self.counters: list[BranchCounter] = []
        self._block_calls: dict[int, list[int]] = {}  # block position -> calls of each of its branches
        self._warned_shape = False
        self.warned: set[str] = set()  # what this cache warned about already (once each)
        #: the one-line mode plans for each step count it meets: a generation shorter than the schedule is
        #: not warned about, and one longer computes its extra steps instead of raising
        self.replans = False
        self._before = (0, 0)  # computed and predicted calls before the current generation
        #: what the last generation did (None before one ended)
        self.last_generation: GenerationReport | None = None
        self.fusion = (
            None if fusable is None else BlockFusion(self.rows, self.choices, self.store, fusable, fusion)
        )
        self.wants_blocks = self.fusion is not None

    def attach(self, hooks: BranchHooks) -> None:
        super().attach(hooks)
        self.counters = [BranchCounter(b.path, b.key, b.block) for b in hooks.branches]
        if self.fusion is not None:
            self.fusion.attach(hooks)
        self._plan_keeping()

    def _plan_keeping(self) -> None:
        """Per branch, the last 0 step that fusion does not serve: outputs are kept only until then."""
        position = {i: j for j, g in enumerate(self.hooks.blocks) for i in g.branches}
        fusion = self.fusion
        self._keep_until = [
            max((z for z in zeros if fusion is None or not fusion.covers(position.get(i, -1), z)), default=-1)
            for i, zeros in enumerate(self._zeros)
        ]
        self._fusion_layout = None if fusion is None else fusion.version
        for i, until in enumerate(self._keep_until):
            if until <= self.hooks.step:  # fusion serves every 0 step left: the kept outputs are not needed
                self.store.drop(("branch", i))

    def carry_over(self, previous: "SmoothCachePolicy") -> None:
        """Go on counting where ``previous`` (on the same branches) left off: the counters and the last
        generation's report."""
        self.counters, self._before = previous.counters, previous._before
        self.last_generation, self.warned = previous.last_generation, previous.warned

    def start(self) -> None:
        self.store.clear()
        for counter in self.counters:
            counter.computed = counter.predicted = 0
        self._before = (0, 0)

    def drop_generation(self) -> None:
        self._clear()
        if self.hooks.last_steps > 0:  # (an error outside any generation drops nothing)
            self._report(self.hooks.last_steps, self.hooks.end_reason)

    def stop(self, interrupted: bool) -> None:
        self._clear()

    def _clear(self) -> None:
        self.store.clear()
        if self.fusion is not None:
            self.fusion.clear()

    @property
    def stats(self) -> CacheStats:
        fusion = self.fusion
        return CacheStats(
            self.counters,
            self.store.nbytes,
            self.predictor,
            peak_bytes=self.store.peak_bytes,
            released=not self.hooks.enabled,
            bytes_by_kind=dict(self.store.bytes_by_kind),
            fused_blocks=0 if fusion is None else len(fusion.skipped_blocks),
            runs=0 if fusion is None else len(fusion.runs),
            refused={} if fusion is None else dict(fusion.refused),
            last_generation=self.last_generation,
        )

    def begin_call(self):
        step = self.hooks.step
        if step == 0 and self.hooks.call == 0 and self.schedule is not None:
            self._warn_once("conditions", conditions_mismatch(self.schedule.conditions, self.hooks.arguments))
        if step >= self.num_steps:
            if self.replans:  # the one-line mode computes the rest, and plans for this step count next
                if step == self.num_steps and self.hooks.call == 0:
                    self._clear()
                    logger.info(
                        "one-line mode: this generation runs past the %d steps planned; its other steps "
                        "compute, and the next generation is planned for its step count", self.num_steps,
                    )
                return None
            raise ScheduleError(
                f"denoising step {step} is past the end of the {self.num_steps}-step schedule: the pipeline "
                "runs more steps than the schedule covers; use a schedule made for this step count"
            )
        return None

    def on_block(self, position: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        if self.fusion is None or self.hooks.step >= self.num_steps:  # (past the end: see begin_call)
            return fn(*args, **kwargs)
        members = self.hooks.blocks[position].branches
        before = [self.hooks.calls_of(i) for i in members]
        out, predicted = self.fusion.call(position, slot, fn, args, kwargs)
        if predicted:  # each branch counts the calls the block makes of it (CogView4 runs ff twice)
            for i, calls in zip(members, self._block_calls.get(position, [1] * len(members))):
                self.counters[i].predicted += calls
        else:
            self._block_calls[position] = [self.hooks.calls_of(i) - b for i, b in zip(members, before)]
        if self._fusion_layout != self.fusion.version:  # blocks were refused or fused apart
            self._plan_keeping()
        return out

    def on_branch(self, index: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        hooks, row, counter = self.hooks, self.rows[index], self.counters[index]
        # no row, past the end of the schedule (see begin_call), or a call that writes a KV cache
        if row is None or hooks.step >= self.num_steps or (kwargs and is_stateful_call(kwargs)):
            counter.computed += 1
            return fn(*args, **kwargs)
        shape = input_shape(args, kwargs)
        owner = ("branch", index)
        kept = self.store.sources(owner, slot, shape)
        if row[hooks.step] == 0:
            if kept is not None:
                if not unmodified(kept):
                    raise RuntimeError(
                        f"the cached output of {hooks.branches[index].path} was modified in place after it "
                        "was returned; this block cannot be cached safely"
                    )
                counter.predicted += 1
                return predict_kept(self.choices[index][hooks.step], kept, hooks.time)
            if self.store.holds(owner, slot):
                self._shape_changed(index)
        out = fn(*args, **kwargs)
        counter.computed += 1
        if hooks.step < self._keep_until[index]:
            check_cacheable(out, hooks.branches[index].path)
            self.store.add(owner, slot, shape, hooks.time, out)
        return out

    def end_generation(self, steps: int, timesteps: list) -> None:
        self._clear()
        report = self._report(steps, self.hooks.end_reason, timesteps)
        if report.reason:
            self._warn_once("idle", f"a generation ended with no call skipped: {report.reason}")
        elif steps < self.num_steps and not self.replans:
            warn(
                f"the generation ended after {steps} steps but the schedule has {self.num_steps}; "
                "a schedule made for this step count caches better"
            )

    def _report(self, steps: int, ended: str, timesteps: list | None = None) -> GenerationReport:
        """Record what the generation that just ended did (since the previous one)."""
        computed = sum(c.computed for c in self.counters)
        predicted = sum(c.predicted for c in self.counters)
        ran = (computed - self._before[0], predicted - self._before[1])
        self._before = (computed, predicted)
        reason = ""
        if ran[1] == 0 and timesteps is not None:
            reason = idle_reason(self.rows, steps, self.num_steps, timesteps, ran[0])
        self.last_generation = GenerationReport(steps, self.num_steps, ran[0], ran[1], ended, reason)
        return self.last_generation

    def _warn_once(self, what: str, message: str) -> None:
        if message and what not in self.warned:
            self.warned.add(what)
            warn(f"{type(self.hooks.model).__name__}: {message}")

    def _shape_changed(self, index: int) -> None:
        if not self._warned_shape:
            self._warned_shape = True
            logger.warning(
                "the input shape of %s changed within a generation at step %d; computing instead of "
                "predicting",
                self.hooks.branches[index].path,
                self.hooks.step,
            )
