"""Block fusion: on a step where every branch of a block is skipped, skip the whole block and predict its residual.

A skipped branch saves its own MACs, but the block around it still runs its norms, modulation, gates and residual
adds, which on a small DiT are a large share of the time (BENCHMARKS.md). When the schedule skips *every* wrapped
branch of a block at a step, nothing the block computes is needed except its output, so the block is not run:
its output is the input plus the predicted residual ``block(x) - x``, predicted from the residuals of the block's
computed steps with the schedule's predictor (the last one for ``reuse``, the timestep extrapolation for
``linear``). The block's modulation is then predicted with it instead of applied fresh, which the paper's
branch-level reuse avoids, so fusion is off for ``reuse`` by default (the original's behaviour stays exact).

A block is fused only if every branch :func:`~smoothcache.targets.find_branches` sees in it is wrapped with a
schedule row, it returns one tensor shaped like its ``hidden_states`` input, and the call carries no KV cache;
other blocks keep branch-level skipping.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable, Sequence

import torch

from .outputs import nbytes
from .predictors import Kept, predict_kept, sources_needed
from .targets import is_stateful_call

__all__ = ["BlockFusion"]

logger = logging.getLogger(__name__)


def _hidden(args: tuple, kwargs: dict) -> torch.Tensor | None:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    value = kwargs.get("hidden_states")
    return value if isinstance(value, torch.Tensor) else None


class BlockFusion:
    """The block side of a :class:`~smoothcache.cache.ScheduledCache`: skip whole blocks whose branches all skip.

    Args:
        rows: the schedule row of each wrapped branch (as the cache holds them).
        predictor: ``"reuse"`` or ``"linear"``.
        cache_dtype: keep the residuals in this precision.
        fusable: paths of the blocks whose every branch is wrapped with a row.
    """

    def __init__(self, rows: Sequence[tuple[int, ...] | None], predictor: str, cache_dtype: torch.dtype | None,
                 fusable: set[str]):
        self.rows = list(rows)
        self.predictor = predictor
        self.cache_dtype = cache_dtype
        self.fusable = set(fusable)
        self._keep = sources_needed(predictor)
        self._skip: list[tuple[bool, ...]] = []
        self._last_skip: list[int] = []
        self._slots: list[dict[Any, tuple[torch.Size, deque[Kept]]]] = []
        self._refused: set[int] = set()

    def bind(self, hooks) -> None:
        """Work out, per block of ``hooks.blocks``, the steps on which all its branches skip."""
        self.hooks = hooks
        self._skip, self._last_skip = [], []
        for group in hooks.blocks:
            rows = [self.rows[i] for i in group.branches]
            if group.path not in self.fusable or any(r is None for r in rows):
                skip = ()
            else:
                skip = tuple(all(r[s] == 0 for r in rows) for s in range(min(len(r) for r in rows)))
            self._skip.append(skip)
            self._last_skip.append(max((s for s, k in enumerate(skip) if k), default=-1))
        self._slots = [{} for _ in hooks.blocks]
        self._refused = set()

    def clear(self) -> None:
        for slots in self._slots:
            slots.clear()

    @property
    def cache_bytes(self) -> int:
        return sum(nbytes(e.out) for slots in self._slots for _, kept in slots.values() for e in kept)

    def block(self, index: int, slot, fn: Callable, args: tuple, kwargs: dict, counters) -> Any:
        """Call block ``index``: predicted on its all-skipped steps once residuals are held, else computed."""
        step, skip = self.hooks.step, self._skip[index]
        if step > self._last_skip[index] or index in self._refused or is_stateful_call(kwargs):
            return fn(*args, **kwargs)
        hidden = _hidden(args, kwargs)
        held = self._slots[index].get(slot)
        if hidden is not None and skip[step] and held is not None and held[0] == hidden.shape:
            residual = predict_kept(self.predictor, held[1], self.hooks.time)
            for i in self.hooks.blocks[index].branches:
                counters[i].reused += 1
            return hidden + residual
        out = fn(*args, **kwargs)
        if hidden is None or not isinstance(out, torch.Tensor) or out.shape != hidden.shape:
            self._refused.add(index)
            logger.debug("block %s is not fused: it does not return one tensor shaped like its input",
                         self.hooks.blocks[index].path)
            return out
        if held is None or held[0] != hidden.shape:
            held = (hidden.shape, deque(maxlen=self._keep))
            self._slots[index][slot] = held
        held[1].append(Kept(self.hooks.time, out - hidden, self.cache_dtype))
        return out
