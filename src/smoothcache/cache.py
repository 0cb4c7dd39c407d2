"""The SmoothCache runtime: skip a branch on the steps its schedule marks 0 and return a prediction instead.

The prediction is built from the branch's own outputs (before the block's gate/scale), so the block still
applies the *current* step's modulation to it, as in the paper: the cached output itself for ``reuse``, an
extrapolation in timestep for ``linear`` (:mod:`smoothcache.predictors`). With block fusion (on by default for
forecasts), a block whose every branch skips a step is skipped whole (:mod:`smoothcache.fusion`).
"""

from __future__ import annotations

import logging
import warnings
from collections import deque
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from .calibration import ErrorRecorder
from .flops import MacMeter
from .fusion import BlockFusion
from .hooks import BranchHooks, BranchPolicy
from .outputs import check_cacheable, nbytes, versions
from .predictors import PREDICTORS, Kept, predict_kept, sources_needed
from .schedule import Schedule, ScheduleError
from .stats import BranchCounter, CacheStats
from .targets import Branch, TargetError, as_denoiser, find_branches, is_stateful_call
from .validate import check_choice, check_dtype, check_int, check_number

__all__ = ["ScheduledCache", "SmoothCache", "SmoothCacheWarning"]

logger = logging.getLogger(__name__)


class SmoothCacheWarning(UserWarning):
    """A run did not use its schedule as written (e.g. the generation ended early)."""


def _input_shape(args: tuple, kwargs: Mapping[str, Any]) -> Any:
    if args and isinstance(args[0], torch.Tensor):
        return args[0].shape
    for value in kwargs.values():
        if isinstance(value, torch.Tensor):
            return value.shape
    return None


class ScheduledCache(BranchPolicy):
    """A policy that follows a schedule: compute on 1 steps, predict on 0 steps.

    Args:
        rows: one schedule row per wrapped branch (None: always compute).
        predictor: ``"reuse"`` or ``"linear"``.
        cache_dtype: keep the outputs in this (lower) precision, cast back when predicting.
        num_steps: the schedule's length, for the end-of-schedule checks.
        fusable: paths of the blocks to skip whole on steps where all their branches skip (None: no fusion).
    """

    def __init__(self, rows: Sequence[tuple[int, ...] | None], predictor: str = "reuse",
                 cache_dtype: torch.dtype | None = None, num_steps: int | None = None,
                 fusable: set[str] | None = None):
        self.rows = list(rows)
        self.predictor = predictor
        self.cache_dtype = check_dtype(cache_dtype, "cache_dtype")
        self.num_steps = num_steps if num_steps is not None else max(len(r) for r in self.rows if r is not None)
        self._keep = sources_needed(predictor)
        # outputs are kept only while a 0 step is still ahead: none after a row's last 0 (none for all-ones rows)
        self._last_zero = [-1 if r is None or 0 not in r else len(r) - 1 - r[::-1].index(0) for r in self.rows]
        self._slots: list[dict[Any, tuple[Any, deque]]] = [{} for _ in self.rows]
        self.counters: list[BranchCounter] = []
        self._warned_shape = False
        self.fusion = None if fusable is None else BlockFusion(self.rows, predictor, self.cache_dtype, fusable)
        self.wants_blocks = self.fusion is not None

    def attach(self, hooks: BranchHooks) -> None:
        super().attach(hooks)
        self.counters = [BranchCounter(b.path, b.key, b.block) for b in hooks.branches]
        if self.fusion is not None:
            self.fusion.bind(hooks)

    def start(self) -> None:
        self._clear()
        for counter in self.counters:
            counter.computed = counter.reused = 0

    def _clear(self) -> None:
        for slots in self._slots:
            slots.clear()
        if self.fusion is not None:
            self.fusion.clear()

    def block(self, index: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        return self.fusion.block(index, slot, fn, args, kwargs, self.counters)

    def stop(self, interrupted: bool) -> None:
        self._clear()

    @property
    def cache_bytes(self) -> int:
        held = sum(nbytes(e.out) for slots in self._slots for _, kept in slots.values() for e in kept)
        return held + (0 if self.fusion is None else self.fusion.cache_bytes)

    def begin_call(self):
        step = self.hooks.step
        if step >= self.num_steps:
            raise ScheduleError(
                f"denoising step {step} is past the end of the {self.num_steps}-step schedule: the pipeline runs "
                "more steps than the schedule covers; use a schedule made for this step count"
            )
        return None

    def branch(self, index: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        hooks, row, counter = self.hooks, self.rows[index], self.counters[index]
        if row is None or (kwargs and is_stateful_call(kwargs)):  # no row, or a call that writes a KV cache
            counter.computed += 1
            return fn(*args, **kwargs)
        shape = _input_shape(args, kwargs)
        held = self._slots[index].get(slot)
        if row[hooks.step] == 0 and held is not None:
            held_shape, kept = held
            if held_shape == shape:
                for entry in kept:
                    if versions(entry.out) != entry.versions:
                        raise RuntimeError(
                            f"the cached output of {hooks.branches[index].path} was modified in place after it was "
                            "returned; this block cannot be cached safely"
                        )
                counter.reused += 1
                return predict_kept(self.predictor, kept, hooks.time)
            self._shape_changed(index)
        out = fn(*args, **kwargs)
        counter.computed += 1
        if hooks.step >= self._last_zero[index]:
            return out
        check_cacheable(out, hooks.branches[index].path)
        if held is None or held[0] != shape:
            held = (shape, deque(maxlen=self._keep))
            self._slots[index][slot] = held
        held[1].append(Kept(hooks.time, out, self.cache_dtype))
        return out

    def end_generation(self, steps: int, timesteps: list) -> None:
        self._clear()
        if steps < self.num_steps:
            warnings.warn(
                f"the generation ended after {steps} steps but the schedule has {self.num_steps}; "
                "a schedule made for this step count caches better",
                SmoothCacheWarning,
                stacklevel=_caller_level(),
            )

    def _shape_changed(self, index: int) -> None:
        if not self._warned_shape:
            self._warned_shape = True
            logger.warning(
                "the input shape of %s changed within a generation at step %d; computing instead of predicting",
                self.hooks.branches[index].path, self.hooks.step,
            )


def _caller_level() -> int:
    """``stacklevel`` that points a warning at the first frame outside smoothcache (and torch/diffusers)."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("smoothcache.", "torch", "diffusers", "contextlib")) and name != "smoothcache":
            return level
        frame, level = frame.f_back, level + 1
    return 1


def _fusable(model: nn.Module, branches: list[Branch], rows: list, block_classes) -> set[str]:
    """Paths of the blocks whose every discoverable branch is wrapped with a schedule row (with user
    ``block_classes``, the components given are all the branches there are)."""
    components = None if block_classes is None else sorted({b.path.rpartition(".")[2] for b in branches})
    try:
        everything = find_branches(model, components, block_classes)
    except TargetError:
        return set()
    scheduled = {b.path for b, row in zip(branches, rows) if row is not None}
    paths: dict[str, bool] = {}
    for b in everything:
        path = b.block_path or b.path.rpartition(".")[0]
        paths[path] = paths.get(path, True) and b.path in scheduled
    return {path for path, ok in paths.items() if ok}


def _bind(model: nn.Module, schedule: Schedule, components, block_classes) -> list[Branch]:
    """The branches a schedule applies to, checked against the model."""
    keys = schedule.branch_keys
    if components is not None:
        components = list(components)
        stray = [k for k in keys if k not in components]
        if stray:
            raise ScheduleError(f"schedule key(s) {stray} are not among the components to wrap {components}")
        keys = [k for k in keys if k in components]
    try:
        branches = find_branches(model, keys, block_classes)
    except TargetError as err:
        raise ScheduleError(f"schedule does not fit {type(model).__name__}: {err}") from None
    for key in schedule.branch_keys:
        blocks = sorted({b.block for b in branches if b.key == key})
        for index in schedule.block_indices(key):
            if index not in blocks:
                raise ScheduleError(
                    f"schedule key '{key}-{index}': {type(model).__name__} has '{key}' only in blocks "
                    f"{blocks[0]}..{blocks[-1]}"
                )
    return [b for b in branches if schedule.for_block(b.key, b.block) is not None]


class SmoothCache:
    """Cache DiT branch outputs following a static schedule.

    Args:
        model: the denoiser, e.g. ``pipe.transformer`` (a pipeline with one denoiser is accepted too).
        schedule: a :class:`Schedule`, a dict in the reference JSON format, or a path to such a file. Its
            ``predictor`` says what skipped steps return.
        alpha: instead of a schedule, the one-line mode: the first ``calibration_runs`` generations run
            uncached while a calibration is recorded, then the greedy schedule for this threshold is used.
        components: restrict wrapping to these branch keys (default: every key the schedule names).
        block_classes: user-given block classes (or names); their ``components`` attributes are wrapped.
        calls_per_step: denoiser calls per step, for samplers whose timesteps cannot tell steps apart.
        cache_dtype: keep cached outputs in this (lower) precision, cast back on use.
        lookahead: one-line mode: K of the calibration.
        calibration_runs: one-line mode: generations to calibrate on.
        speedup: instead of a schedule, the recommended one-line mode: calibrate as with ``alpha``, then the
            optimal plan for this theoretical speed-up (``Schedule.for_budget(..., planner="optimal")``).
        per_block: one-line mode: one schedule per block instead of per branch type.
        predictor: one-line mode: the predictor to calibrate and schedule for (``"reuse"`` or ``"linear"``;
            default ``"reuse"`` with ``alpha``, ``"linear"`` with ``speedup``).
        fuse_blocks: on a step where every branch of a block is skipped, skip the whole block (norms and
            modulation too) and predict its residual with the same predictor (:mod:`smoothcache.fusion`).
            Default: on for forecasts, off for ``reuse``, whose branch-level behaviour is the original's.

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
        {'computed': 6, 'reused': 2}
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: Schedule | Mapping[str, Sequence[int]] | str | None = None,
        *,
        alpha: float | None = None,
        speedup: float | None = None,
        components: Iterable[str] | None = None,
        block_classes: Sequence[type | str] | type | str | None = None,
        calls_per_step: int | None = None,
        cache_dtype: torch.dtype | None = None,
        lookahead: int = 3,
        calibration_runs: int = 1,
        per_block: bool = False,
        predictor: str | None = None,
        fuse_blocks: bool | None = None,
    ):
        if sum(x is not None for x in (schedule, alpha, speedup)) != 1:
            raise ValueError("give a schedule, or alpha= or speedup= to calibrate on the first generation(s): "
                             "exactly one of the three")
        self.model = as_denoiser(model)
        self.cache_dtype = check_dtype(cache_dtype, "cache_dtype")
        if fuse_blocks is not None and not isinstance(fuse_blocks, bool):
            raise TypeError(f"fuse_blocks must be True, False or None, got {fuse_blocks!r}")
        self.fuse_blocks, self._block_classes = fuse_blocks, block_classes
        self.schedule: Schedule | None = None
        self.recorder: ErrorRecorder | None = None
        if schedule is not None:
            self.schedule = Schedule.coerce(schedule)
            branches = _bind(self.model, self.schedule, components, block_classes)
            policies: list[BranchPolicy] = [self._policy(branches)]
        else:
            predictor = predictor or ("reuse" if speedup is None else "linear")
            self._auto = {"runs": check_int(calibration_runs, "calibration_runs"), "per_block": per_block,
                          "predictor": check_choice(predictor, "predictor", PREDICTORS, error=ScheduleError)}
            if alpha is not None:
                self._auto["alpha"] = check_number(alpha, "alpha", error=ScheduleError)
            else:
                self._auto["speedup"] = check_number(speedup, "speedup", minimum=1.0, error=ScheduleError)
            # one-line mode: the calibration policies (MacMeter, ErrorRecorder) now, a ScheduledCache later
            branches = find_branches(self.model, components, block_classes)
            self.recorder = ErrorRecorder(lookahead, [predictor], type(self.model).__name__, meter=MacMeter())
            policies = self.recorder.policies
        self.hooks = BranchHooks(self.model, branches, policies, calls_per_step=calls_per_step, owner=self,
                                 on_generation_end=self._generation_ended)

    def _policy(self, branches: list[Branch]) -> ScheduledCache:
        rows = [self.schedule.for_block(b.key, b.block) for b in branches]
        fuse = self.fuse_blocks if self.fuse_blocks is not None else self.schedule.predictor != "reuse"
        fusable = _fusable(self.model, branches, rows, self._block_classes) if fuse else None
        return ScheduledCache(rows, self.schedule.predictor, self.cache_dtype, self.schedule.num_steps, fusable)

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        what = repr(self.schedule) if self.schedule is not None else "one-line mode, " + (
            f"alpha={self._auto['alpha']:g}" if "alpha" in self._auto else f"speedup={self._auto['speedup']:g}x")
        return f"SmoothCache({type(self.model).__name__}, {len(self.branches)} branches, {what}, {state})"

    # ----------------------------------------------------------------- state
    @property
    def branches(self) -> list[Branch]:
        """The wrapped branches."""
        return self.hooks.branches

    @property
    def calibrating(self) -> bool:
        """True while the one-line mode (``alpha=``) is still recording its calibration generation(s)."""
        return self.schedule is None

    @property
    def profile(self):
        """The calibration the one-line mode recorded (None when a schedule was given or none finished yet)."""
        return None if self.recorder is None else self.recorder.profile

    @property
    def enabled(self) -> bool:
        return self.hooks.enabled

    @property
    def step(self) -> int:
        """Index of the current denoising step (-1 before the first call of a generation)."""
        return self.hooks.step

    @property
    def stats(self) -> CacheStats:
        """Calls computed and reused per branch since :meth:`enable`, and the bytes now cached."""
        policy = self.hooks.policies[-1]
        if not isinstance(policy, ScheduledCache):
            return CacheStats([], 0, predictor="reuse")
        return CacheStats(policy.counters, policy.cache_bytes, predictor=policy.predictor)

    # --------------------------------------------------------------- lifecycle
    def enable(self) -> "SmoothCache":
        """Wrap the model. Calling it again while enabled does nothing."""
        self.hooks.enable()
        return self

    def disable(self) -> None:
        """Restore the model exactly as it was (forward methods, hooks, state) and drop the cache."""
        self.hooks.disable()

    def reset(self) -> None:
        """Start a new generation at step 0 and drop cached outputs (counters are kept)."""
        self.hooks.reset()

    def __enter__(self) -> "SmoothCache":
        self.hooks.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.hooks.__exit__(exc_type, exc, tb)

    def _generation_ended(self, steps: int, timesteps: list) -> None:
        if not self.calibrating:
            return
        profile = self.recorder.profile
        if profile.runs < self._auto["runs"]:
            return
        auto = self._auto
        if "alpha" in auto:
            self.schedule = Schedule.from_profile(profile, auto["alpha"], per_block=auto["per_block"],
                                                  predictor=auto["predictor"])
        else:
            self.schedule = Schedule.for_budget(profile, speedup=auto["speedup"], predictor=auto["predictor"],
                                                planner="optimal", per_block=auto["per_block"])
        logger.info("one-line mode calibrated %d run(s): %s", profile.runs, self.schedule)
        self.hooks.set_policies([self._policy(self.hooks.branches)])
