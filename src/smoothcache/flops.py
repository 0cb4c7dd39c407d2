"""MAC counting: multiply-accumulates of one denoiser call, in total and per branch (a :class:`MacReport`).

Counting uses :class:`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention), with
one addition: CPU builds run attention through ``_scaled_dot_product_flash_attention_for_cpu``, which the
stock counter does not know, so its formula is supplied here. One MAC = two FLOPs.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .branches import Branch
from .costs import MacReport
from .deprecation import moved
from .hooks import BranchHooks
from .policy import BranchPolicy

__all__ = ["MacPolicy", "count_macs", "flop_counter"]

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


class MacPolicy(BranchPolicy):
    """Counts the MACs of the first denoiser call it sees, in total and per branch (then passes calls
    through).

    Chain it before another policy (``Chain([MacPolicy(), CalibratorPolicy(...)])``) to measure while that one
    runs.
    """

    def __init__(self):
        self.report: MacReport | None = None
        self._counter: FlopCounterMode | None = None
        self._per_branch: list[float] = []

    #: blocks are wrapped to count their MACs too (what block fusion saves)
    wants_blocks = True

    @property
    def counting(self) -> bool:
        """True during the denoiser call being counted (its timings are not representative)."""
        return self._counter is not None

    def begin_call(self):
        return self._measure() if self.report is None and self._counter is None else None

    @contextlib.contextmanager
    def _measure(self) -> Iterator[None]:
        branches = self.hooks.branches
        self._per_branch = [0.0] * len(branches)
        self._per_block: dict[str, float] = {}
        with flop_counter() as counter:
            self._counter = counter
            try:
                yield
            finally:
                self._counter = None
        self.report = MacReport(
            counter.get_total_flops() / 2,
            {b.path: m for b, m in zip(branches, self._per_branch)},
            {b.path: (b.key, b.block) for b in branches},
            block_of={b.path: b.block_path for b in branches},
            block_macs=dict(self._per_block),
        )

    def _counted(self, fn: Callable, args: tuple, kwargs: dict) -> tuple[Any, float | None]:
        """``fn(*args, **kwargs)`` and the MACs it ran (``None`` outside the counted call)."""
        counter = self._counter
        if counter is None:
            return fn(*args, **kwargs), None
        before = counter.get_total_flops()
        out = fn(*args, **kwargs)
        return out, (counter.get_total_flops() - before) / 2

    def on_branch(self, index: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        out, macs = self._counted(fn, args, kwargs)
        if macs is not None:
            self._per_branch[index] += macs
        return out

    def on_block(self, position: int, slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        out, macs = self._counted(fn, args, kwargs)
        if macs is not None:
            path = self.hooks.blocks[position].path
            self._per_block[path] = self._per_block.get(path, 0.0) + macs
        return out


def count_macs(model: nn.Module, branches: list[Branch], *args: Any, **kwargs: Any) -> MacReport:
    """Run ``model(*args, **kwargs)`` once under a FLOP counter and report MACs per branch.

    Example:
        >>> import torch
        >>> from diffusers import DiTTransformer2DModel
        >>> from smoothcache.flops import count_macs
        >>> from smoothcache.targets import find_branches
        >>> model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
        ...                               out_channels=4, num_layers=2, sample_size=8)
        >>> report = count_macs(model, find_branches(model), torch.randn(2, 4, 8, 8),
        ...                     timestep=torch.tensor([10, 10]), class_labels=torch.tensor([1, 2]))
        >>> sorted(report.by_key())
        ['attn1', 'ff']
    """
    meter = MacPolicy()
    with BranchHooks(model, branches, meter, owner=meter), torch.no_grad():
        model(*args, **kwargs)
    return meter.report


__getattr__ = moved(__name__, {"MacMeter": "smoothcache.flops:MacPolicy"})
