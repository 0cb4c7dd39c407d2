"""Calibration: run the pipeline as usual and record how much each branch's output changes between steps.

For every wrapped branch, every step ``t`` and lookahead ``k = 1..K`` the relative L1 error
``|y_t - y_{t-k}|_1 / |y_t|_1`` is computed in float32 on the model's device, kept there, and moved to
the host once per generation. Only the last K outputs of each branch are held.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .flops import BranchMacMeter, flop_counter
from .patching import ForwardPatch, owner_of, restore_all, restore_or_detach
from .profile import BranchErrors, CalibrationProfile
from .stepper import StepTracker, wrap_denoiser
from .targets import Branch, find_branches

__all__ = ["Calibrator", "CalibrationError"]

_TINY = 1e-12


class CalibrationError(ValueError):
    """Calibration could not produce valid error curves (non-finite outputs, mismatched runs...)."""


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def _l1(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(t.detach().float().abs().sum() for t in tensors)


def _l1_diff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x.float() - y.float()).abs().sum() for x, y in zip(a, b))


class Calibrator:
    """Record SmoothCache error curves while the pipeline runs; read :attr:`profile` afterwards.

    Args:
        model: the denoiser, e.g. ``pipe.transformer``.
        components: branch keys to record (default: every branch the block family knows).
        lookahead: K, the largest reuse distance (in steps) to measure.
        block_classes: user-given block classes (or class names); ``components`` are then attribute names.
        calls_per_step: denoiser calls per step, for samplers whose timesteps cannot tell steps apart.
        measure_macs: count the MACs of the first denoiser call, for theoretical speed-ups.

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
        >>> Schedule.from_profile(cal.profile, alpha=10.0).num_steps
        4
    """

    def __init__(
        self,
        model: nn.Module,
        components: Iterable[str] | None = None,
        lookahead: int = 3,
        *,
        block_classes: Sequence[type | str] | type | str | None = None,
        calls_per_step: int | None = None,
        measure_macs: bool = True,
    ):
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 1:
            raise ValueError(f"lookahead must be an integer >= 1, got {lookahead!r}")
        self.model = model
        self.lookahead = lookahead
        self.branches: list[Branch] = find_branches(model, components, block_classes)
        self.measure_macs = measure_macs
        self._tracker = StepTracker(calls_per_step, on_generation_end=self._run_ended)
        self._patches: list[ForwardPatch] = []
        self._profile: CalibrationProfile | None = None
        self._history: list[dict[tuple[int, int], deque]] = [{} for _ in self.branches]
        self._errors: list[tuple[int, int, int, torch.Tensor]] = []  # branch, k, start step, error
        self._norms: list[tuple[int, int, torch.Tensor]] = []  # branch, step, |y|_1 (finite check)
        self._occurrence = [(-1, 0)] * len(self.branches)
        self._macs: dict[str, float] = {}
        self._meter: BranchMacMeter | None = None

    # --------------------------------------------------------------- lifecycle
    def enable(self) -> "Calibrator":
        """Wrap the model; calling it again while enabled does nothing."""
        if self._patches:
            return self
        if self._tracker.detached:
            raise RuntimeError(
                f"this {type(self).__name__} could not be removed from the model earlier; make a new one"
            )
        for module in [self.model] + [b.module for b in self.branches]:
            owner = owner_of(module)
            if owner is not None:
                raise RuntimeError(
                    f"{type(module).__name__} is already wrapped by another {type(owner).__name__}; disable it first"
                )
        self._tracker.reset()
        try:
            self._patches.append(wrap_denoiser(self.model, self._tracker, self, around=self._around_call))
            for i, b in enumerate(self.branches):
                self._patches.append(ForwardPatch(b.module, self._make_branch_forward(i), self))
        except Exception:
            restore_all(self._patches)
            raise
        return self

    @property
    def enabled(self) -> bool:
        return bool(self._patches)

    def disable(self, *, _interrupted: bool = False) -> None:
        """Finish the running generation (if any), fold it into the profile and restore the model."""
        if not self._patches:
            return
        try:
            if _interrupted:
                self._tracker.reset()
            else:
                self._tracker.finish()
        finally:
            self._clear_run()
            restore_or_detach(self._patches, self._tracker)

    def __enter__(self) -> "Calibrator":
        return self.enable()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.disable(_interrupted=exc_type is not None)

    @property
    def profile(self) -> CalibrationProfile:
        """The error curves of every completed generation so far."""
        if self._profile is None:
            raise CalibrationError("no calibration run has completed: run the pipeline inside the Calibrator first")
        return self._profile

    # ------------------------------------------------------------------- runs
    def _around_call(self):
        if self.measure_macs and "total" not in self._macs and self._meter is None:
            return self._measure()
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _measure(self):
        with flop_counter() as counter:
            self._meter = BranchMacMeter(counter)
            try:
                yield
            finally:
                meter, self._meter = self._meter, None
        self._macs = {"total": counter.get_total_flops() / 2, **meter.branches}

    def _clear_run(self) -> None:
        for history in self._history:
            history.clear()
        self._errors.clear()
        self._norms.clear()
        self._occurrence = [(-1, 0)] * len(self.branches)

    def _run_ended(self, steps: int, timesteps: list) -> None:
        try:
            self._fold(steps, timesteps)
        finally:
            self._clear_run()

    def _fold(self, steps: int, timesteps: list) -> None:
        if steps < 2:
            raise CalibrationError(f"a calibration run had {steps} step(s); at least 2 are needed to measure errors")
        norms = torch.stack([n for *_, n in self._norms]).cpu().numpy() if self._norms else np.zeros(0)
        bad = np.flatnonzero(~np.isfinite(norms))
        if bad.size:
            i, step, _ = self._norms[bad[0]]
            raise CalibrationError(
                f"calibration output of {self.branches[i].path} at step {step} contains NaN or inf; "
                "check the model and its inputs (e.g. fp16 overflow)"
            )
        values = torch.stack([e for *_, e in self._errors]).cpu().numpy() if self._errors else np.zeros(0)
        profile = self._profile
        if profile is None:
            profile = CalibrationProfile(self.lookahead, steps, model=type(self.model).__name__)
            for b in self.branches:
                profile.branches[b.path] = BranchErrors.empty(b.key, b.block, self.lookahead, steps)
        elif profile.num_steps != steps:
            raise CalibrationError(
                f"calibration runs have different step counts ({profile.num_steps} and {steps}); "
                "calibrate each step count separately"
            )
        for (i, k, start, _), value in zip(self._errors, values):
            profile.branches[self.branches[i].path].add(k, start, float(value))
        ts = np.array([np.nan if t is None else t for t in timesteps], dtype=np.float64)
        profile.timesteps = ts if profile.timesteps is None or profile.runs == 0 else (
            (profile.timesteps * profile.runs + ts) / (profile.runs + 1))
        profile.runs += 1
        if self._macs:
            profile.macs = dict(self._macs)
        self._profile = profile

    # ---------------------------------------------------------------- wrapper
    def _make_branch_forward(self, index: int):
        tracker = self._tracker
        path = self.branches[index].path
        history = self._history[index]
        lookahead = self.lookahead

        def make(original):
            def forward(*args, **kwargs):
                meter = self._meter
                out = meter.run(path, original, *args, **kwargs) if meter is not None else original(*args, **kwargs)
                if tracker.depth == 0:
                    return out
                last_serial, occurrence = self._occurrence[index]
                occurrence = occurrence + 1 if last_serial == tracker.serial else 0
                self._occurrence[index] = (tracker.serial, occurrence)
                step = tracker.step
                with torch.no_grad():
                    current = [t.detach().clone() for t in _tensors(out)]
                    norm = _l1(current)
                    if not isinstance(norm, torch.Tensor):
                        raise CalibrationError(f"{path} returned no tensor; it cannot be calibrated or cached")
                    self._norms.append((index, step, norm))
                    past = history.setdefault((tracker.call, occurrence), deque(maxlen=lookahead))
                    for prev_step, prev in past:
                        k = step - prev_step
                        if 1 <= k <= lookahead:
                            self._errors.append((index, k, prev_step, _l1_diff(current, prev) / norm.clamp_min(_TINY)))
                    past.append((step, current))
                return out

            return forward

        return make

