"""Calibration: run the pipeline as usual and record how well each predictor would serve each branch call.

For every wrapped branch, step ``s``, lookahead ``k = 1..K`` and (for forecasts) spacing ``d`` of the two
source steps, the relative L1 error ``|y_s - prediction|_1 / |y_s|_1`` is computed in float32 on the
model's device, kept there, and moved to the host once per generation. Only the last ``2K + 1`` outputs
of each branch and CFG call are held (what a linear forecast over the widest window needs).
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .denoisers import as_denoiser
from .deprecation import moved, renamed
from .errors import CalibrationError
from .flops import MacPolicy
from .hooks import BranchHooks, Lifecycle, wrapper_repr
from .outputs import check_cacheable, tensors
from .policy import BranchPolicy, Chain
from .predictors import ORDER, PREDICTORS, predict
from .profile import BranchErrors, CalibrationProfile, mean_times, same_conditions
from .profile_file import CONDITIONS
from .samplers import is_stochastic
from .targets import find_branches
from .timing import Timer
from .validate import check_choice, check_int

__all__ = ["Calibrator", "CalibratorPolicy"]

_TINY = 1e-12


def _l1(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(p.abs().sum() for p in parts)


def _on_cuda(model: nn.Module) -> bool:
    first = next(model.parameters(), None)
    return first is not None and first.is_cuda


class CalibratorPolicy(BranchPolicy):
    """The :class:`Calibrator`'s policy: compute every branch call and record the predictors' errors into
    :attr:`profile`.

    Args:
        lookahead: K, the largest number of steps a prediction spans.
        predictors: the predictors whose errors to record (``reuse`` is always recorded).
        model_name: stored in the profile.
        meter: a :class:`~smoothcache.flops.MacPolicy` chained before this policy (see :attr:`chain`); its MAC
            counts are stored in the profile (for theoretical speed-ups and MAC-weighted budgets).
    """

    def __init__(
        self,
        lookahead: int = 3,
        predictors: Iterable[str] = PREDICTORS,
        model_name: str = "",
        meter: MacPolicy | None = None,
    ):
        self.lookahead = check_int(lookahead, "lookahead")
        self.predictors = ["reuse"] + [
            check_choice(p, "predictor", PREDICTORS) for p in predictors if p != "reuse"
        ]
        self.model_name = model_name
        self.profile: CalibrationProfile | None = None
        self.meter = meter
        order = max(ORDER[p] for p in self.predictors)
        self._keep = self.lookahead * (order + 1) + order  # the oldest source: s - K - order * (K + 1)
        self._history: dict[tuple[int, Any], deque] = {}
        self._pending: list[
            tuple[int, str, tuple[int, ...], torch.Tensor]
        ] = []  # branch, predictor, index, error
        self._norms: list[tuple[int, int, torch.Tensor]] = []  # branch, step, |y|_1 (finite check)
        self.timer = Timer()

    #: blocks are wrapped to time them
    wants_blocks = True

    def start(self) -> None:
        self._clear_run()

    def begin_call(self):
        return self._timed_call()

    @contextlib.contextmanager
    def _timed_call(self):
        # the first step (warm-up) and the MAC-counted call are not timed
        measuring = self.meter is not None and self.meter.counting
        self.timer.active = self.hooks.step > 0 and not measuring
        start = self.timer.call_started()
        try:
            yield
        finally:
            self.timer.call_ended(start)

    def on_block(self, position: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        start = self.timer.begin()
        out = fn(*args, **kwargs)
        self.timer.end("block", self.hooks.blocks[position].path, start)
        return out

    def drop_generation(self) -> None:
        self._clear_run()  # the profile keeps only whole generations

    def stop(self, interrupted: bool) -> None:
        self._clear_run()  # an interrupted generation is dropped; a finished one was folded in already

    def _clear_run(self) -> None:
        self._history.clear()
        self._pending.clear()
        self._norms.clear()
        model = getattr(self, "hooks", None)
        self.timer.reset(cuda=model is not None and _on_cuda(model.model))

    def on_branch(self, index: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        start = self.timer.begin()
        out = fn(*args, **kwargs)
        self.timer.end("branch", self.hooks.branches[index].path, start)
        bookkeeping = self.timer.begin()
        try:
            return self._record(index, slot, out)
        finally:
            self.timer.overhead(bookkeeping)

    def _record(self, index: int, slot, out: Any) -> Any:
        hooks = self.hooks
        check_cacheable(out, hooks.branches[index].path)
        step, time = hooks.step, hooks.time
        with torch.no_grad():
            current = [t.detach().to(torch.float32, copy=True) for t in tensors(out)]
            norm = _l1(current)
            self._norms.append((index, step, norm))
            scale = 1.0 / norm.clamp_min(_TINY)
            past = self._history.setdefault((index, slot), deque(maxlen=self._keep))
            by_step = {s: (t, y) for s, t, y in past}
            for k in range(1, self.lookahead + 1):
                b = step - k
                if b not in by_step:
                    continue
                t_b, y_b = by_step[b]
                self._pending.append(
                    (index, "reuse", (k - 1, b), _l1([c - y for c, y in zip(current, y_b)]) * scale)
                )
                if "linear" not in self.predictors:
                    continue
                for d in range(1, self.lookahead + 2):
                    if b - d in by_step:
                        guess = predict("linear", [by_step[b - d], (t_b, y_b)], time)
                        error = _l1([c - g for c, g in zip(current, guess)]) * scale
                        self._pending.append((index, "linear", (k - 1, d - 1, b), error))
            past.append((step, time, current))
        return out

    def end_generation(self, steps: int, timesteps: list) -> None:
        try:
            self._fold(steps, timesteps)
        finally:
            self._clear_run()

    def _fold(self, steps: int, timesteps: list) -> None:
        branches = self.hooks.branches
        if steps < 2:
            raise CalibrationError(
                f"a calibration run had {steps} step(s); at least 2 are needed to measure errors"
            )
        norms = torch.stack([n for *_, n in self._norms]).cpu().numpy() if self._norms else np.zeros(0)
        bad = np.flatnonzero(~np.isfinite(norms))
        if bad.size:
            i, step, _ = self._norms[bad[0]]
            raise CalibrationError(
                f"calibration output of {branches[i].path} at step {step} contains NaN or inf; "
                "check the model and its inputs (e.g. fp16 overflow)"
            )
        values = torch.stack([e for *_, e in self._pending]).cpu().numpy() if self._pending else np.zeros(0)
        profile = self.profile
        if profile is None:
            profile = CalibrationProfile(self.lookahead, steps, model=self.model_name)
            for b in branches:
                profile.errors[b.path] = BranchErrors.empty(
                    b.key, b.block, self.lookahead, steps, self.predictors
                )
        elif profile.num_steps != steps:
            raise CalibrationError(
                f"calibration runs have different step counts ({profile.num_steps} and {steps}); "
                "calibrate each step count separately"
            )
        for (i, predictor, where, _), value in zip(self._pending, values):
            profile.errors[branches[i].path].tables[predictor].add(where, float(value))
        ts = np.array([np.nan if t is None else t for t in timesteps], dtype=np.float64)
        profile.timesteps = (
            ts
            if profile.timesteps is None or profile.runs == 0
            else ((profile.timesteps * profile.runs + ts) / (profile.runs + 1))
        )
        profile.runs += 1
        if self.meter is not None and self.meter.report is not None:
            report = self.meter.report
            profile.macs = {"total": report.total, **report.branch_macs}
            profile.block_macs = dict(report.block_macs)
        profile.block_of = {b.path: b.block_path for b in branches}
        scheduler = getattr(getattr(self.hooks, "pipeline", None), "scheduler", None)
        if scheduler is not None:  # a diffusers pipeline ran it: its sampler is known
            profile.stochastic = bool(profile.stochastic) or is_stochastic(scheduler)
        seen = {k: float(v) for k, v in self.hooks.arguments.items() if k in CONDITIONS}
        profile.conditions = seen if profile.runs == 1 else same_conditions(profile.conditions, seen)
        times = self.timer.results()
        if times and self.hooks.end_reason == "returned" and self.timer.since_last_call is not None:
            times["tail"] = self.timer.since_last_call
        profile.times = mean_times(profile.times, profile.runs - 1, times, 1) if times else profile.times
        self.profile = profile

    @property
    def chain(self) -> BranchPolicy:
        """The policy to hand to :class:`~smoothcache.hooks.BranchHooks`: the meter (if any), then this."""
        return self if self.meter is None else Chain([self.meter, self])


class Calibrator(Lifecycle):
    """Record SmoothCache error tables while the pipeline runs; read :attr:`profile` afterwards.

    Args:
        model: the denoiser, e.g. ``pipe.transformer`` (a pipeline with one denoiser is accepted too).
        keys: branch keys to record (default: every branch found).
        lookahead: K, the largest number of steps a prediction spans.
        block_classes: user-given block classes (or class names); ``keys`` are then attribute names.
        calls_per_step: denoiser calls per step, for samplers whose timesteps cannot tell steps apart.
        measure_macs: count the MACs of the first denoiser call, for theoretical speed-ups.
        predictors: whose errors to record; by default every predictor (``reuse`` and ``linear``).
        components: the former name of ``keys`` (deprecated).

    Example:
        >>> import torch
        >>> from diffusers import DiTTransformer2DModel
        >>> from smoothcache import Calibrator, Schedule
        >>> model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
        ...                               out_channels=4, num_layers=2, sample_size=8)
        >>> x, y = torch.randn(1, 4, 8, 8), torch.tensor([3])
        >>> with Calibrator(model, lookahead=2) as cal:
        ...     for t in (999, 749, 499, 249):
        ...         x = model(x, timestep=torch.tensor([t]), class_labels=y).sample
        >>> Schedule.from_profile(cal.profile, alpha=1.0).num_steps
        4
    """

    def __init__(
        self,
        model: nn.Module,
        keys: Iterable[str] | None = None,
        lookahead: int = 3,
        *,
        block_classes: Sequence[type | str] | type | str | None = None,
        calls_per_step: int | None = None,
        measure_macs: bool = True,
        predictors: Iterable[str] = PREDICTORS,
        components: Iterable[str] | None = None,
    ):
        keys = renamed(keys, components, "components", "keys")
        self.model = as_denoiser(model)
        self.policy = CalibratorPolicy(
            lookahead,
            predictors,
            model_name=type(self.model).__name__,
            meter=MacPolicy() if measure_macs else None,
        )
        self.lookahead = self.policy.lookahead
        self.hooks = BranchHooks(
            self.model,
            find_branches(self.model, keys, block_classes),
            self.policy.chain,
            calls_per_step=calls_per_step,
            owner=self,
        )

    def __repr__(self) -> str:
        runs = 0 if self.policy.profile is None else self.policy.profile.runs
        return wrapper_repr(self, f"K={self.lookahead}", f"{runs} run(s) recorded")

    @property
    def profile(self) -> CalibrationProfile:
        """The error tables of every completed generation so far."""
        if self.policy.profile is None:
            raise CalibrationError(
                "no calibration run has completed: run the pipeline inside the Calibrator first"
            )
        return self.policy.profile


__getattr__ = moved(
    __name__,
    {
        "ErrorRecorder": "smoothcache.calibration:CalibratorPolicy",
        "CalibrationError": "smoothcache.errors:CalibrationError",
    },
)
