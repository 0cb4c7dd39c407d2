"""The SmoothCache runtime: skip a branch on the steps its schedule marks 0 and return a prediction instead.

The prediction is built from the branch's own outputs (before the block's gate/scale), so the block still
applies the *current* step's modulation to it, as in the paper: the cached output itself for ``reuse``, an
extrapolation in timestep for ``linear`` (:mod:`smoothcache.predictors`). With block fusion (on by default for
forecasts), a block whose every branch skips a step is skipped whole (:mod:`smoothcache.fusion`). Without a
schedule, :class:`SmoothCache` runs the one-line mode (:mod:`smoothcache.auto`).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from .auto import AutoPolicy
from .branches import Branch
from .denoisers import as_denoiser
from .deprecation import moved, renamed
from .errors import ScheduleError
from .fusion import FUSION_MODES
from .hooks import BranchHooks, Lifecycle, wrapper_repr
from .policy import BranchPolicy
from .predictors import PREDICTORS
from .quality import QualityTarget
from .schedule import Schedule
from .scheduled import SmoothCachePolicy
from .stats import CacheStats
from .targets import find_branches, fusable_blocks, schedule_branches
from .validate import check_choice, check_dtype

__all__ = ["SmoothCache"]

#: Keywords of the one-line mode only (alpha= / speedup=), with their defaults.
ONE_LINE_DEFAULTS = {"lookahead": 3, "calibration_runs": None, "per_block": False, "predictor": None,
                     "cost": None}


class SmoothCache(Lifecycle):
    """Cache DiT branch outputs following a static schedule, or plan one on the first generation.

    Three ways to build one, each with its own keywords (a keyword of another way raises a ``TypeError``):

    - ``SmoothCache(model, schedule)``: apply a schedule.
    - ``SmoothCache(model, speedup=2.5)``, the recommended one-line mode: the first ``calibration_runs``
      generations run uncached while a calibration is recorded; when the last of them returns, the optimal
      plan for this speed-up (in the wall time the calibration measured; linear forecasts, or reuse for a
      sampler that draws fresh noise at each step) is made and used from the next generation on.
    - ``SmoothCache(model, alpha=0.08)``: the same with the original's greedy reuse schedule at this
      threshold.

    A quality target (``min_psnr=35``, ``min_ssim=`` or ``max_lsd=``), alone or with ``speedup=`` (then the
    fastest budget tried), makes the one-line mode check its plan when the calibrating generation returns:
    it runs that generation again through its pipeline, uncached and then cached at a few budgets stepping
    down (each logged), and caches with the fastest whose output meets the target against the uncached one;
    ``stats`` and ``summary`` show the budget chosen and what each measured. The first generation then takes
    about 1.5x + 1x + 3 cached generations. It needs a diffusers pipeline called with a seeded generator.

    Args:
        model: the denoiser, e.g. ``pipe.transformer`` (a pipeline with one denoiser is accepted too).
        schedule: a :class:`Schedule`, a dict in the reference JSON format, or a path to such a file. Its
            ``predictor`` says what skipped steps return.
        alpha: the one-line mode with the greedy scan at this threshold.
        speedup: the one-line mode with the optimal plan for this speed-up (see ``cost``).
        min_psnr, min_ssim, max_lsd: one-line mode: a quality target (PSNR in dB or SSIM of images and video
            frames, log-spectral distance in dB of audio) against the uncached output, checked as above.
        keys: restrict wrapping to these branch keys (default: every key the schedule names, or every branch).
        block_classes: user-given block classes (or names); their ``keys`` attributes are wrapped.
        calls_per_step: denoiser calls per step, for samplers whose timesteps cannot tell steps apart.
        cache_dtype: keep cached outputs in this (lower) precision, cast back on use.
        fuse_blocks: on a step where every branch of a block is skipped, skip the whole block (norms and
            modulation too) and predict its residual with the same predictor (:mod:`smoothcache.fusion`):
            ``True`` or ``"runs"`` fuses runs of consecutive blocks as one (constant memory in depth),
            ``"blocks"`` each block on its own, ``False`` never. Default: as the schedule was planned
            (``Schedule.for_budget`` and the one-line mode's budgets plan with runs), else runs for forecasts
            and off for ``reuse``, whose branch-level behaviour is the original's.
        lookahead: one-line mode: K of the calibration (default 3).
        calibration_runs: one-line mode: generations to calibrate on (default: 1, or 3 noise draws when the
            pipeline's sampler draws fresh noise each step, as SDE and ancestral samplers do).
        per_block: one-line mode: one schedule per block instead of one per branch type (default False).
        predictor: one-line mode: ``"reuse"``, ``"linear"`` or ``"auto"`` (default ``"reuse"`` with
            ``alpha``; with a budget, ``"linear"``, or reuse runs for a sampler that draws fresh noise at each
            step; ``"auto"`` gives each skip run the predictor of least calibrated error).
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
        min_psnr: float | None = None,
        min_ssim: float | None = None,
        max_lsd: float | None = None,
        components: Iterable[str] | None = None,
    ):
        keys = renamed(keys, components, "components", "keys")
        target = QualityTarget.of(min_psnr=min_psnr, min_ssim=min_ssim, max_lsd=max_lsd)
        if target is not None and alpha is not None:
            raise TypeError(f"{target.keyword}= picks a budget: give it alone or with speedup=, not alpha=")
        one_line = {"lookahead": lookahead, "calibration_runs": calibration_runs, "per_block": per_block,
                    "predictor": predictor, "cost": cost,
                    **({} if target is None else {target.keyword: target.bound})}
        if schedule is not None:
            stray = [f"{name}=" for name, value in one_line.items() if value is not None]
            if stray:
                raise TypeError(
                    f"{', '.join(stray)} belong to the one-line mode (alpha= or speedup=); a given "
                    "schedule already fixes them"
                )
        if sum(x is not None for x in (schedule, alpha, speedup or target)) != 1:
            raise ValueError(
                "give a schedule, or alpha= or speedup= (or a quality target such as min_psnr=) to calibrate "
                "on the first generation(s): exactly one of the three"
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
            if alpha is not None:  # the original's greedy scan reuses; budgets choose (planning's default)
                options["predictor"] = options["predictor"] or "reuse"
            self.policy = self._auto_policy(alpha, speedup, options, target)
            branches = find_branches(self.model, keys, block_classes)
        self.hooks = BranchHooks(self.model, branches, self.policy, calls_per_step=calls_per_step, owner=self)

    def _auto_policy(self, alpha: float | None, speedup: float | None, options: dict,
                     target: QualityTarget | None) -> AutoPolicy:
        choices = PREDICTORS + ("auto",)
        predictor = options["predictor"]
        if predictor is not None:
            predictor = check_choice(predictor, "predictor", choices, error=ScheduleError)
        fuse = self.fuse_blocks if self.fuse_blocks is not None else predictor != "reuse"
        options = {**options, "predictor": predictor, "fuse_blocks": fuse is not False}
        return AutoPolicy.planning(
            type(self.model).__name__,
            options,
            alpha,
            speedup,
            lambda s: self._cache_policy(s, self.hooks.branches),
            target,
        )

    def _fusion(self, schedule: Schedule) -> str | None:
        """The fusion mode for ``schedule`` (None: no fusion): ``fuse_blocks`` if given, else as the schedule
        was planned, else for forecasts only (a reuse schedule from elsewhere runs as the original's)."""
        fuse = self.fuse_blocks
        if fuse is None:
            fuse = schedule.fused if schedule.fused is not None else schedule.predictor != "reuse"
        if fuse is False:
            return None
        return "runs" if fuse is True else fuse

    def _cache_policy(self, schedule: Schedule, branches: list[Branch]) -> SmoothCachePolicy:
        rows = [schedule.for_block(b.key, b.block) for b in branches]
        mode = self._fusion(schedule)
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
        what = repr(self.schedule) if self.schedule is not None else f"one-line mode, {self.policy.label}"
        return wrapper_repr(self, what)

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
        "ScheduledCache": "smoothcache.scheduled:SmoothCachePolicy",
        "SmoothCacheWarning": "smoothcache.errors:SmoothCacheWarning",
    },
)
