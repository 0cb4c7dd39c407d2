"""MAC accounting: multiply-accumulates of one denoiser call per branch, and a schedule's theoretical speed-up.

Counting uses :class:`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention), with
one addition: CPU builds run attention through ``_scaled_dot_product_flash_attention_for_cpu``, which the
stock counter does not know, so its formula is supplied here. One MAC = two FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .patching import ForwardPatch, restore_all
from .schedule import Schedule
from .targets import Branch

__all__ = ["MacReport", "count_macs", "flop_counter"]

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
        branches: module path -> MACs of that branch in the call.
        keys: module path -> (branch key, block index), to look the branch up in a schedule.
    """

    total: float
    branches: dict[str, float] = field(default_factory=dict)
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)

    def by_key(self) -> dict[str, float]:
        """MACs per branch key, summed over blocks."""
        out: dict[str, float] = {}
        for path, macs in self.branches.items():
            key = self.keys[path][0]
            out[key] = out.get(key, 0.0) + macs
        return out

    def step_costs(self, schedule: Schedule) -> list[float]:
        """MACs of each step's denoiser call under ``schedule`` (branches without an entry always compute)."""
        costs = []
        for step in range(schedule.num_steps):
            saved = 0.0
            for path, macs in self.branches.items():
                key, block = self.keys[path]
                row = schedule.for_block(key, block)
                if row is not None and row[step] == 0:
                    saved += macs
            costs.append(self.total - saved)
        return costs

    def compute_fraction(self, schedule: Schedule) -> float:
        """Share of the uncached MACs that the schedule still computes."""
        return sum(self.step_costs(schedule)) / (self.total * schedule.num_steps)

    def speedup(self, schedule: Schedule) -> float:
        """Theoretical speed-up: uncached MACs over cached MACs for a whole generation."""
        return 1.0 / self.compute_fraction(schedule)

    @classmethod
    def from_profile(cls, profile) -> "MacReport":
        """The MACs a :class:`~smoothcache.profile.CalibrationProfile` recorded during calibration."""
        if "total" not in profile.macs:
            raise ValueError("this calibration profile has no MAC counts (calibrated with measure_macs=False)")
        branches = {p: profile.macs[p] for p in profile.branches if p in profile.macs}
        keys = {p: (b.key, b.block) for p, b in profile.branches.items()}
        return cls(profile.macs["total"], branches, keys)

    def as_dict(self) -> dict[str, float]:
        return {"total": self.total, **self.branches}


class BranchMacMeter:
    """Attributes the MACs counted by a running FlopCounterMode to the branches they ran in."""

    def __init__(self, counter: FlopCounterMode):
        self.counter = counter
        self.branches: dict[str, float] = {}

    def run(self, path: str, fn, *args, **kwargs):
        before = self.counter.get_total_flops()
        out = fn(*args, **kwargs)
        self.branches[path] = self.branches.get(path, 0.0) + (self.counter.get_total_flops() - before) / 2
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
    patches: list[ForwardPatch] = []
    with flop_counter() as counter, torch.no_grad():
        meter = BranchMacMeter(counter)
        try:
            for b in branches:
                patches.append(ForwardPatch(
                    b.module, lambda original, p=b.path: (lambda *a, **k: meter.run(p, original, *a, **k)), meter
                ))
            model(*args, **kwargs)
        finally:
            restore_all(patches)
    total = counter.get_total_flops() / 2
    return MacReport(total, {b.path: meter.branches.get(b.path, 0.0) for b in branches},
                     {b.path: (b.key, b.block) for b in branches})


def as_report(macs: Mapping[str, float] | MacReport, keys: Mapping[str, tuple[str, int]]) -> MacReport:
    """Coerce a ``{"total": ..., path: ...}`` mapping to a :class:`MacReport`."""
    if isinstance(macs, MacReport):
        return macs
    return MacReport(float(macs["total"]), {p: float(v) for p, v in macs.items() if p != "total"}, dict(keys))
