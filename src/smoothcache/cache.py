"""The SmoothCache runtime: skip a branch on the steps its schedule marks 0 and return its cached output.

The cached output is the branch's own output (before the block's gate/scale), so the block still applies
the *current* step's modulation to it, as in the paper.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from .calibration import Calibrator
from .compile import compiled_forward
from .patching import ForwardPatch, owner_of, restore_all, restore_or_detach
from .scan import check_alpha, schedule_from_profile
from .schedule import Schedule, ScheduleError
from .stats import BranchCounter, CacheStats
from .stepper import StepTracker, wrap_denoiser
from .targets import Branch, TargetError, find_branches

__all__ = ["SmoothCache", "SmoothCacheWarning"]

logger = logging.getLogger(__name__)


class SmoothCacheWarning(UserWarning):
    """A run did not use its schedule as written (e.g. the generation ended early)."""


def _versions(out: Any) -> Any:
    """Version counters of the tensors in a branch output, to detect in-place edits of a cached output."""
    if isinstance(out, torch.Tensor):
        return None if out.is_inference() else out._version
    if isinstance(out, (tuple, list)):
        return tuple(_versions(o) for o in out)
    return None


def _input_shape(args: tuple, kwargs: Mapping[str, Any]) -> Any:
    if args and isinstance(args[0], torch.Tensor):
        return args[0].shape
    for value in kwargs.values():
        if isinstance(value, torch.Tensor):
            return value.shape
    return None


def _dtypes(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.dtype
    if isinstance(out, (tuple, list)):
        return type(out)(_dtypes(o) for o in out)
    return None


def _cast(out: Any, dtype: torch.dtype | None, dtypes: Any) -> Any:
    """Floating tensors of ``out`` cast to ``dtype``, or back to the matching entries of ``dtypes``."""
    if isinstance(out, torch.Tensor):
        target = dtype if dtype is not None else dtypes
        return out.to(target) if out.is_floating_point() and target is not None else out
    if isinstance(out, (tuple, list)):
        parts = dtypes if dtypes is not None else [None] * len(out)
        return type(out)(_cast(o, dtype, d) for o, d in zip(out, parts))
    return out


def _nbytes(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, (tuple, list)):
        return sum(_nbytes(o) for o in out)
    return 0


class _BranchRun:
    """Schedule row, cache slots and counters of one wrapped branch."""

    __slots__ = ("branch", "row", "cache", "counter", "last_serial", "occurrence")

    def __init__(self, branch: Branch, row: tuple[int, ...]):
        self.branch = branch
        self.row = row
        self.cache: dict[tuple[int, int], tuple[Any, Any, Any]] = {}
        self.counter = BranchCounter(branch.path, branch.key, branch.block)
        self.last_serial = -1
        self.occurrence = 0


class SmoothCache:
    """Cache DiT branch outputs following a static schedule.

    Args:
        model: the denoiser, e.g. ``pipe.transformer`` or a facebookresearch/DiT model.
        schedule: a :class:`Schedule`, a dict in the reference JSON format, or a path to such a file.
        alpha: instead of a schedule, the one-line mode: the first ``calibration_runs`` generations run
            uncached while a calibration is recorded, then the schedule for this threshold is used.
        components: restrict wrapping to these branch keys (default: every key the schedule names).
        block_classes: user-given block classes (or names); their ``components`` attributes are wrapped.
        calls_per_step: denoiser calls per step, for samplers whose timesteps cannot tell steps apart.
        cache_dtype: keep cached outputs in this (lower) precision, cast back on reuse.
        lookahead: one-line mode: K of the calibration.
        calibration_runs: one-line mode: generations to calibrate on.
        per_block: one-line mode: one schedule per block instead of per branch type.

    Use it as a ``with`` block or with :meth:`enable` / :meth:`disable`. Every generation starts at step 0
    on its own (the timestep jumps back up); :meth:`reset` forces it.

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
        components: Iterable[str] | None = None,
        block_classes: Sequence[type | str] | type | str | None = None,
        calls_per_step: int | None = None,
        cache_dtype: torch.dtype | None = None,
        lookahead: int = 3,
        calibration_runs: int = 1,
        per_block: bool = False,
    ):
        if (schedule is None) == (alpha is None):
            raise ValueError("give a schedule, or alpha= to calibrate on the first generation(s), not both")
        if cache_dtype is not None and not (isinstance(cache_dtype, torch.dtype) and cache_dtype.is_floating_point):
            raise ValueError(f"cache_dtype must be a floating torch.dtype, got {cache_dtype!r}")
        if isinstance(calibration_runs, bool) or not isinstance(calibration_runs, int) or calibration_runs < 1:
            raise ValueError(f"calibration_runs must be an integer >= 1, got {calibration_runs!r}")
        self.model = model
        self.cache_dtype = cache_dtype
        self._tracker = StepTracker(calls_per_step, on_generation_end=self._generation_ended)
        self._components, self._block_classes = components, block_classes
        self._patches: list[ForwardPatch] = []
        self._warned_shape = False
        self._runs: list[_BranchRun] = []
        self.schedule: Schedule | None = None
        self._calibrator: Calibrator | None = None
        if schedule is not None:
            self._adopt(Schedule.coerce(schedule))
        else:
            check_alpha(alpha)
            self._auto = {"alpha": float(alpha), "runs": calibration_runs, "per_block": per_block}
            self._calibrator = Calibrator(model, components, lookahead, block_classes=block_classes,
                                          calls_per_step=calls_per_step)
            self._calibrator._tracker = self._tracker  # one step tracker for both phases

    # ----------------------------------------------------------------- binding
    def _adopt(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._runs = self._bind(self._components, self._block_classes)

    def _bind(self, components: Iterable[str] | None, block_classes: Any) -> list[_BranchRun]:
        keys = self.schedule.branches
        if components is not None:
            components = list(components)
            stray = [k for k in keys if k not in components]
            if stray:
                raise ScheduleError(f"schedule key(s) {stray} are not among the components to wrap {components}")
            keys = [k for k in keys if k in components]
        try:
            branches = find_branches(self.model, keys, block_classes)
        except TargetError as err:
            raise ScheduleError(f"schedule does not fit {type(self.model).__name__}: {err}") from None
        for key in self.schedule.branches:
            blocks = sorted({b.block for b in branches if b.key == key})
            for index in self.schedule.block_indices(key):
                if index not in blocks:
                    raise ScheduleError(
                        f"schedule key '{key}-{index}': {type(self.model).__name__} has '{key}' only in blocks "
                        f"{blocks[0]}..{blocks[-1]}"
                    )
        runs = []
        for branch in branches:
            row = self.schedule.for_block(branch.key, branch.block)
            if row is not None:
                runs.append(_BranchRun(branch, row))
        return runs

    @property
    def branches(self) -> list[Branch]:
        """The wrapped branches."""
        return [r.branch for r in self._runs]

    @property
    def calibrating(self) -> bool:
        """True while the one-line mode (``alpha=``) is still recording its calibration generation(s)."""
        return self.schedule is None

    @property
    def profile(self):
        """The calibration the one-line mode recorded (None when a schedule was given)."""
        return None if self._calibrator is None or self._calibrator._profile is None else self._calibrator.profile

    # --------------------------------------------------------------- lifecycle
    @property
    def enabled(self) -> bool:
        return bool(self._patches)

    def enable(self) -> "SmoothCache":
        """Wrap the model. Calling it again while enabled does nothing."""
        if self._patches:
            return self
        if self._tracker.detached:
            raise RuntimeError(
                f"this {type(self).__name__} could not be removed from the model earlier; make a new one"
            )
        if self.calibrating:
            modules = [b.module for b in self._calibrator.branches]
        else:
            modules = [r.branch.module for r in self._runs]
        for module in [self.model] + modules:
            owner = owner_of(module)
            if owner is not None:
                raise RuntimeError(
                    f"{type(module).__name__} is already wrapped by another {type(owner).__name__}; disable it first"
                )
        self._tracker.reset()
        for run in self._runs:
            run.cache.clear()
            run.counter.computed = run.counter.reused = 0
        try:
            self._patches.append(wrap_denoiser(self.model, self._tracker, self, self._check_step, self._around))
            self._patches.extend(self._branch_patches())
        except Exception:
            restore_all(self._patches)
            raise
        return self

    def disable(self, *, _interrupted: bool = False) -> None:
        """Restore the model exactly as it was (forward methods, hooks, state) and drop the cache."""
        if not self._patches:
            return
        try:
            if _interrupted:
                self._tracker.reset()
            else:
                self._tracker.finish()
        finally:
            for run in self._runs:
                run.cache.clear()
            if self._calibrator is not None:
                self._calibrator._clear_run()  # an interrupted calibration generation is dropped
            restore_or_detach(self._patches, self._tracker)

    def reset(self) -> None:
        """Start a new generation at step 0 and drop cached outputs (counters are kept)."""
        self._tracker.finish()

    def __enter__(self) -> "SmoothCache":
        return self.enable()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.disable(_interrupted=exc_type is not None)

    # ------------------------------------------------------------------- state
    @property
    def step(self) -> int:
        """Index of the current denoising step (-1 before the first call of a generation)."""
        return self._tracker.step

    @property
    def stats(self) -> CacheStats:
        """Calls computed and reused per branch since :meth:`enable`, and the bytes now cached."""
        held = sum(_nbytes(entry[0]) for run in self._runs for entry in run.cache.values())
        return CacheStats([r.counter for r in self._runs], held)

    def _branch_patches(self) -> list[ForwardPatch]:
        if self.calibrating:
            cal = self._calibrator
            return [ForwardPatch(b.module, cal._make_branch_forward(i), self) for i, b in enumerate(cal.branches)]
        return [ForwardPatch(run.branch.module, self._make_branch_forward(run), self) for run in self._runs]

    def _around(self):
        return self._calibrator._around_call() if self.calibrating else contextlib.nullcontext()

    def _check_step(self) -> None:
        step = self._tracker.step
        if self.schedule is not None and step >= self.schedule.num_steps:
            raise ScheduleError(
                f"denoising step {step} is past the end of the {self.schedule.num_steps}-step schedule: the "
                f"pipeline runs more steps than the schedule covers; use a schedule made for this step count"
            )

    def _generation_ended(self, steps: int, timesteps: list) -> None:
        if self.calibrating:
            self._calibration_ended(steps, timesteps)
            return
        for run in self._runs:
            run.cache.clear()
        if steps < self.schedule.num_steps:
            warnings.warn(
                f"the generation ended after {steps} steps but the schedule has {self.schedule.num_steps}; "
                "a schedule made for this step count caches better",
                SmoothCacheWarning,
                stacklevel=4,
            )

    def _calibration_ended(self, steps: int, timesteps: list) -> None:
        cal = self._calibrator
        cal._run_ended(steps, timesteps)
        if cal.profile.runs < self._auto["runs"]:
            return
        self._adopt(schedule_from_profile(cal.profile, self._auto["alpha"], per_block=self._auto["per_block"]))
        logger.info("one-line mode calibrated %d run(s): %s", cal.profile.runs, self.schedule)
        if self._patches:  # swap the calibration wrappers for cache wrappers; the denoiser wrapper stays
            restore_all(self._patches[1:])
            del self._patches[1:]
            self._patches.extend(self._branch_patches())

    # ----------------------------------------------------------------- wrapper
    def _make_branch_forward(self, run: _BranchRun) -> Callable[[Callable], Callable]:
        tracker = self._tracker
        counter = run.counter
        cache = run.cache
        cache_dtype = self.cache_dtype
        entry_dtypes: dict = {}
        module = run.branch.module

        def make(original: Callable) -> Callable:
            def forward(*args, **kwargs):
                if tracker.depth == 0:  # called outside a denoiser forward: nothing to follow
                    counter.computed += 1
                    return compiled_forward(module, original)(*args, **kwargs)
                serial = tracker.serial
                if serial == run.last_serial:
                    run.occurrence += 1
                else:
                    run.last_serial, run.occurrence = serial, 0
                slot = (tracker.call, run.occurrence)
                if run.row[tracker.step] == 0:
                    entry = cache.get(slot)
                    if entry is not None:
                        out, versions, shape = entry
                        if shape == _input_shape(args, kwargs):
                            if _versions(out) != versions:
                                raise RuntimeError(
                                    f"the cached output of {run.branch.path} was modified in place after it was "
                                    "returned; this block cannot be cached safely"
                                )
                            counter.reused += 1
                            return out if cache_dtype is None else _cast(out, None, entry_dtypes[slot])
                        self._shape_changed(run)
                out = compiled_forward(module, original)(*args, **kwargs)
                if cache_dtype is None:
                    cache[slot] = (out, _versions(out), _input_shape(args, kwargs))
                else:
                    stored = _cast(out, cache_dtype, None)
                    entry_dtypes[slot] = _dtypes(out)
                    cache[slot] = (stored, _versions(stored), _input_shape(args, kwargs))
                counter.computed += 1
                return out

            return forward

        return make

    def _shape_changed(self, run: _BranchRun) -> None:
        if not self._warned_shape:
            self._warned_shape = True
            logger.warning(
                "the input shape of %s changed within a generation at step %d; computing instead of reusing",
                run.branch.path,
                self._tracker.step,
            )
