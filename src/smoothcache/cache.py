"""The SmoothCache runtime: skip a branch on the steps its schedule marks 0 and return a prediction instead.

The prediction is built from the branch's own outputs (before the block's gate/scale), so the block still
applies the *current* step's modulation to it, as in the paper: the cached output itself for ``reuse``, an
extrapolation in timestep for ``linear`` (:mod:`smoothcache.predictors`). With block fusion (on by default for
forecasts), a block whose every branch skips a step is skipped whole (:mod:`smoothcache.fusion`). Without a
schedule, :class:`SmoothCache` runs the one-line mode (:mod:`smoothcache.auto`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from .auto import AutoPolicy
from .branches import Branch
from .calls import input_shape, is_stateful_call
from .denoisers import as_denoiser
from .deprecation import moved, renamed
from .errors import ScheduleError, warn
from .fusion import FUSION_MODES, BlockFusion
from .hooks import BranchHooks, Lifecycle
from .outputs import check_cacheable
from .policy import BranchPolicy
from .predictors import PREDICTORS, predict_kept, sources_needed
from .schedule import Schedule
from .stats import BranchCounter, CacheStats
from .store import KeptOutputs, unmodified
from .targets import find_branches, fusable_blocks, schedule_branches
from .validate import check_choice, check_dtype

__all__ = ["SmoothCache", "SmoothCachePolicy"]

logger = logging.getLogger(__name__)

#: Keywords of the one-line mode only (alpha= / speedup=), with their defaults.
ONE_LINE_DEFAULTS = {"lookahead": 3, "calibration_runs": None, "per_block": False, "predictor": None,
                     "cost": None}


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

    def start(self) -> None:
        self.store.clear()
        for counter in self.counters:
            counter.computed = counter.predicted = 0

    def drop_generation(self) -> None:
        self._clear()

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
        )

    def begin_call(self):
        step = self.hooks.step
        if step >= self.num_steps:
            raise ScheduleError(
                f"denoising step {step} is past the end of the {self.num_steps}-step schedule: the pipeline "
                "runs more steps than the schedule covers; use a schedule made for this step count"
            )
        return None

    def on_block(self, position: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        if self.fusion is None:  # blocks are wrapped for the one-line mode's calibration only
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
        if row is None or (kwargs and is_stateful_call(kwargs)):  # no row, or a call that writes a KV cache
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
        if steps < self.num_steps:
            warn(
                f"the generation ended after {steps} steps but the schedule has {self.num_steps}; "
                "a schedule made for this step count caches better"
            )

    def _shape_changed(self, index: int) -> None:
        if not self._warned_shape:
            self._warned_shape = True
            logger.warning(
                "the input shape of %s changed within a generation at step %d; computing instead of "
                "predicting",
                self.hooks.branches[index].path,
                self.hooks.step,
            )


class SmoothCache(Lifecycle):
    """Cache DiT branch outputs following a static schedule, or plan one on the first generation.

    Three ways to build one, each with its own keywords (a keyword of another way raises a ``TypeError``):

    - ``SmoothCache(model, schedule)``: apply a schedule.
    - ``SmoothCache(model, speedup=2.5)``, the recommended one-line mode: the first ``calibration_runs``
      generations run uncached while a calibration is recorded; when the last of them returns, the optimal
      linear-forecast plan for this theoretical speed-up is made and used from the next generation on.
    - ``SmoothCache(model, alpha=0.08)``: the same with the original's greedy reuse schedule at this
      threshold.

    Args:
        model: the denoiser, e.g. ``pipe.transformer`` (a pipeline with one denoiser is accepted too).
        schedule: a :class:`Schedule`, a dict in the reference JSON format, or a path to such a file. Its
            ``predictor`` says what skipped steps return.
        alpha: the one-line mode with the greedy scan at this threshold.
        speedup: the one-line mode with the optimal plan for this theoretical speed-up.
        keys: restrict wrapping to these branch keys (default: every key the schedule names, or every branch).
        block_classes: user-given block classes (or names); their ``keys`` attributes are wrapped.
        calls_per_step: denoiser calls per step, for samplers whose timesteps cannot tell steps apart.
        cache_dtype: keep cached outputs in this (lower) precision, cast back on use.
        fuse_blocks: on a step where every branch of a block is skipped, skip the whole block (norms and
            modulation too) and predict its residual with the same predictor (:mod:`smoothcache.fusion`):
            ``True`` or ``"runs"`` fuses runs of consecutive blocks as one (constant memory in depth),
            ``"blocks"`` each block on its own, ``False`` never. Default: runs for forecasts, off for
            ``reuse``, whose branch-level behaviour is the original's.
        lookahead: one-line mode: K of the calibration (default 3).
        calibration_runs: one-line mode: generations to calibrate on (default: 1, or 3 noise draws when the
            pipeline's sampler draws fresh noise each step, as SDE and ancestral samplers do).
        per_block: one-line mode: one schedule per block instead of one per branch type (default False).
        predictor: one-line mode: ``"reuse"`` or ``"linear"`` (default ``"reuse"`` with ``alpha``,
            ``"linear"`` with ``speedup``).
        cost: one-line mode with ``speedup``: ``"time"`` (default: the speed-up is planned in the wall time
            the calibration measured) or ``"macs"``. A speed-up out of reach plans the best reachable, with a
            warning.
        components: the former name of ``keys`` (deprecated).

    Use it as a ``with`` block (nested blocks are counted) or with :meth:`enable` / :meth:`disable`.
    Every generation starts at step 0 on its own (the timestep jumps back up); :meth:`reset` forces it.

    Example:
        >>> import torch
        >>> from diffusers import DiTTransformer2DModel
        >>> from smoothcache import Schedule, SmoothCache
        >>> model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
        ...                               out_channels=4, num_layers=2, sample_size=8)
        >>> schedule = Schedule.fixed_interval(num_steps=4, interval=2, branches=["attn1", "ff"])
        >>> x, y = torch.randn(1, 4, 8, 8), torch.tensor([3])
        >>> with SmoothCache(model, schedule) as cache:
        ...     for t in (999, 749, 499, 249):
        ...         x = model(x, timestep=torch.tensor([t]), class_labels=y).sample
        >>> cache.stats.by_key()["attn1"]
        {'computed': 6, 'predicted': 2}
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: Schedule | Mapping[str, Sequence[int]] | str | None = None,
        *,
        alpha: float | None = None,
        speedup: float | None = None,
        keys: Iterable[str] | None = None,
        block_classes: Sequence[type | str] | type | str | None = None,
        calls_per_step: int | None = None,
        cache_dtype: torch.dtype | None = None,
        fuse_blocks: bool | None = None,
        lookahead: int | None = None,
        calibration_runs: int | None = None,
        per_block: bool | None = None,
        predictor: str | None = None,
        cost: str | None = None,
        components: Iterable[str] | None = None,
    ):
        keys = renamed(keys, components, "components", "keys")
        if sum(x is not None for x in (schedule, alpha, speedup)) != 1:
            raise ValueError(
                "give a schedule, or alpha= or speedup= to calibrate on the first generation(s): "
                "exactly one of the three"
            )
        one_line = {"lookahead": lookahead, "calibration_runs": calibration_runs, "per_block": per_block,
                    "predictor": predictor, "cost": cost}
        if schedule is not None:
            stray = [f"{name}=" for name, value in one_line.items() if value is not None]
            if stray:
                raise TypeError(
                    f"{', '.join(stray)} belong to the one-line mode (alpha= or speedup=); a given "
                    "schedule already fixes them"
                )
        if fuse_blocks is not None and not isinstance(fuse_blocks, bool) and fuse_blocks not in FUSION_MODES:
            raise TypeError(f"fuse_blocks must be True, False, None, 'runs' or 'blocks', got {fuse_blocks!r}")
        self.model = as_denoiser(model)
        self.cache_dtype = check_dtype(cache_dtype, "cache_dtype")
        self.fuse_blocks, self._block_classes = fuse_blocks, block_classes
        if schedule is not None:
            schedule = Schedule.coerce(schedule)
            branches = schedule_branches(self.model, schedule, keys, block_classes)
            self.policy: BranchPolicy = self._cache_policy(schedule, branches)
        else:
            options = {
                name: ONE_LINE_DEFAULTS[name] if value is None else value for name, value in one_line.items()
            }
            options["predictor"] = options["predictor"] or ("reuse" if speedup is None else "auto")
            self.policy = self._auto_policy(alpha, speedup, options)
            branches = find_branches(self.model, keys, block_classes)
        self.hooks = BranchHooks(self.model, branches, self.policy, calls_per_step=calls_per_step, owner=self)

    def _auto_policy(self, alpha: float | None, speedup: float | None, options: dict) -> AutoPolicy:
        choices = PREDICTORS + ("auto",)
        predictor = check_choice(options["predictor"], "predictor", choices, error=ScheduleError)
        options = {**options, "predictor": predictor, "fuse_blocks": self._fusion(predictor) is not None}
        return AutoPolicy.planning(
            type(self.model).__name__,
            options,
            alpha,
            speedup,
            lambda s: self._cache_policy(s, self.hooks.branches),
        )

    def _fusion(self, predictor: str) -> str | None:
        """The fusion mode for a schedule of ``predictor`` (None: no fusion)."""
        fuse = self.fuse_blocks if self.fuse_blocks is not None else predictor != "reuse"
        if fuse is False:
            return None
        return "runs" if fuse is True else fuse

    def _cache_policy(self, schedule: Schedule, branches: list[Branch]) -> SmoothCachePolicy:
        rows = [schedule.for_block(b.key, b.block) for b in branches]
        mode = self._fusion(schedule.predictor)
        fusable = None if mode is None else fusable_blocks(self.model, branches, rows, self._block_classes)
        choices = [schedule.predictors_for(b.key, b.block) for b in branches]
        return SmoothCachePolicy(
            rows,
            schedule.predictor,
            self.cache_dtype,
            schedule.num_steps,
            fusable,
            schedule=schedule,
            fusion=mode or "runs",
            choices=choices,
        )

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        what = repr(self.schedule) if self.schedule is not None else f"one-line mode, {self.policy.label}"
        return f"SmoothCache({type(self.model).__name__}, {len(self.branches)} branches, {what}, {state})"

    @property
    def schedule(self) -> Schedule | None:
        """The schedule applied (None while the one-line mode is still calibrating)."""
        return self.policy.schedule

    @property
    def calibrating(self) -> bool:
        """True while the one-line mode is still recording its calibration generation(s)."""
        return self.schedule is None

    @property
    def profile(self):
        """The calibration the one-line mode recorded (None when a schedule was given or none finished
        yet)."""
        return self.policy.profile

    @property
    def stats(self) -> CacheStats:
        """Calls computed and predicted per branch since :meth:`enable`, and the bytes cached now and at
        most."""
        return self.policy.stats


__getattr__ = moved(
    __name__,
    {
        "ScheduledCache": "smoothcache.cache:SmoothCachePolicy",
        "SmoothCacheWarning": "smoothcache.errors:SmoothCacheWarning",
    },
)
