"""MAC accounting: multiply-accumulates of one denoiser call per branch, and a schedule's theoretical speed-up.

Counting uses :class:`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention), with
one addition: CPU builds run attention through ``_scaled_dot_product_flash_attention_for_cpu``, which the
stock counter does not know, so its formula is supplied here. One MAC = two FLOPs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .hooks import BranchHooks, BranchPolicy
from .targets import Branch

if TYPE_CHECKING:  # pragma: no cover
    from .profile import CalibrationProfile
    from .schedule import Schedule

__all__ = ["MacMeter", "MacReport", "count_macs", "flop_counter"]

aten = torch.ops.aten


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of softmax(Q K^T) V: two batched matmuls (the softmax is not counted, as in torch)."""
    *batch, s_q, d_q = query_shape
    s_k = key_shape[-2]
    d_v = value_shape[-1]
    heads = 1
    for n in batch:
        heads *= n
    return 2 * heads * s_q * s_k * d_q + 2 * heads * s_q * s_k * d_v


def _custom_mapping() -> dict:
    mapping = {}
    op = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = _attention_flops
    return mapping


def flop_counter() -> FlopCounterMode:
    """A silent FlopCounterMode that also counts CPU flash attention."""
    return FlopCounterMode(display=False, custom_mapping=_custom_mapping())


@dataclass
class MacReport:
    """MACs of one denoiser call: the total and each wrapped branch module.

    Args:
        total: MACs of the whole denoiser call.
        branch_macs: module path -> MACs of that branch module in the call.
        keys: module path -> (branch key, block index), to look the branch up in a schedule.
    """

    total: float
    branch_macs: dict[str, float] = field(default_factory=dict)
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)

    def __repr__(self) -> str:
        share = sum(self.branch_macs.values()) / self.total if self.total else 0.0
        per_key = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in self.by_key().items())
        return (f"MacReport({self.total / 1e6:.1f}M MACs per call; {len(self.branch_macs)} branch modules, "
                f"{share:.1%} of the call: {per_key})")

    def by_key(self) -> dict[str, float]:
        """MACs per branch key, summed over blocks."""
        out: dict[str, float] = {}
        for path, macs in self.branch_macs.items():
            key = self.keys[path][0]
            out[key] = out.get(key, 0.0) + macs
        return out

    def step_costs(self, schedule: "Schedule") -> list[float]:
        """MACs of each step's denoiser call under ``schedule`` (branches without an entry always compute)."""
        costs = []
        for step in range(schedule.num_steps):
            saved = 0.0
            for path, macs in self.branch_macs.items():
                key, block = self.keys[path]
                row = schedule.for_block(key, block)
                if row is not None and row[step] == 0:
                    saved += macs
            costs.append(self.total - saved)
        return costs

    def compute_fraction(self, schedule: "Schedule") -> float:
        """Share of the uncached MACs that the schedule still computes."""
        return sum(self.step_costs(schedule)) / (self.total * schedule.num_steps)

    def speedup(self, schedule: "Schedule") -> float:
        """Theoretical speed-up: uncached MACs over cached MACs for a whole generation."""
        return 1.0 / self.compute_fraction(schedule)

    @classmethod
    def from_profile(cls, profile: "CalibrationProfile") -> "MacReport":
        """The MACs a :class:`~smoothcache.profile.CalibrationProfile` recorded during calibration."""
        if "total" not in profile.macs:
            raise ValueError("this calibration profile has no MAC counts (calibrated with measure_macs=False)")
        branch_macs = {p: profile.macs[p] for p in profile.errors if p in profile.macs}
        keys = {p: (b.key, b.block) for p, b in profile.errors.items()}
        return cls(profile.macs["total"], branch_macs, keys)

    def as_dict(self) -> dict[str, float]:
        """``{"total": ..., <module path>: ...}``, the form profiles store."""
        return {"total": self.total, **self.branch_macs}


class MacMeter(BranchPolicy):
    """Counts the MACs of the first denoiser call it sees, in total and per branch (then passes calls through).

    Chain it before another policy (``[MacMeter(), ErrorRecorder(...)]``) to measure while that one runs.
    """

    def __init__(self):
        self.report: MacReport | None = None
        self._counter: FlopCounterMode | None = None
        self._per_branch: list[float] = []

    def begin_call(self):
        return self._measure() if self.report is None and self._counter is None else None

    @contextlib.contextmanager
    def _measure(self) -> Iterator[None]:
        branches = self.hooks.branches
        self._per_branch = [0.0] * len(branches)
        with flop_counter() as counter:
            self._counter = counter
            try:
                yield
            finally:
                self._counter = None
        self.report = MacReport(counter.get_total_flops() / 2,
                                {b.path: m for b, m in zip(branches, self._per_branch)},
                                {b.path: (b.key, b.block) for b in branches})

    def branch(self, index: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        counter = self._counter
        if counter is None:
            return fn(*args, **kwargs)
        before = counter.get_total_flops()
        out = fn(*args, **kwargs)
        self._per_branch[index] += (counter.get_total_flops() - before) / 2
        return out


def count_macs(model: nn.Module, branches: list[Branch], *args: Any, **kwargs: Any) -> MacReport:
    """Run ``model(*args, **kwargs)`` once under a FLOP counter and report MACs per branch.

    Example:
        >>> import torch
        >>> from diffusers import DiTTransformer2DModel
        >>> from smoothcache import count_macs, find_branches
        >>> model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
        ...                               out_channels=4, num_layers=2, sample_size=8)
        >>> report = count_macs(model, find_branches(model), torch.randn(2, 4, 8, 8),
        ...                     timestep=torch.tensor([10, 10]), class_labels=torch.tensor([1, 2]))
        >>> sorted(report.by_key())
        ['attn1', 'ff']
    """
    meter = MacMeter()
    with BranchHooks(model, branches, [meter], owner=meter), torch.no_grad():
        model(*args, **kwargs)
    return meter.report
