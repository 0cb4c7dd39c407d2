"""Block fusion: on a step where every branch of a block is skipped, skip the whole block and predict its
residual.

A skipped branch saves its own MACs, but the block around it still runs its norms, modulation, gates and
residual adds, which on a small DiT are a large share of the time (BENCHMARKS.md). When the schedule skips
*every* wrapped branch of a block at a step, nothing the block computes is needed except its output, so the
block is not run: its output is the input plus the predicted residual ``block(x) - x``, predicted from the
residuals of the block's computed steps with the schedule's predictor (the last one for ``reuse``, the
timestep extrapolation for ``linear``). The block's modulation is then predicted with it instead of applied
fresh, which the paper's branch-level reuse avoids, so fusion is off for ``reuse`` by default (the original's
behaviour stays exact).

A block is fused only if every branch :func:`~smoothcache.targets.find_branches` sees in it is wrapped with a
schedule row, it returns one tensor shaped like its ``hidden_states`` input, and the call carries no KV cache;
other blocks keep branch-level skipping.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch

from .calls import first_tensor, is_stateful_call
from .predictors import predict_kept
from .store import KeptOutputs

__all__ = ["BlockFusion"]

logger = logging.getLogger(__name__)


class BlockFusion:
    """The block side of a :class:`~smoothcache.cache.SmoothCachePolicy`: skip whole blocks whose branches all
    skip.

    Args:
        rows: the schedule row of each wrapped branch (as the cache holds them).
        predictor: ``"reuse"`` or ``"linear"``.
        store: where the residuals are kept (shared with the branch cache).
        fusable: paths of the blocks whose every branch is wrapped with a row.
    """

    def __init__(self, rows: Sequence[tuple[int, ...] | None], predictor: str, store: KeptOutputs,
                 fusable: set[str]):
        self.rows = list(rows)
        self.predictor = predictor
        self.store = store
        self.fusable = set(fusable)
        self._skip: list[tuple[bool, ...]] = []
        self._last_skip: list[int] = []
        self._refused: set[int] = set()

    def attach(self, hooks) -> None:
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
        self._refused = set()

    def call(self, position: int, slot, fn: Callable, args: tuple, kwargs: dict) -> tuple[Any, bool]:
        """Call the block at ``position``: predicted on its all-skipped steps once residuals are kept, else
        computed. Returns the output and whether it was predicted."""
        step, skip = self.hooks.step, self._skip[position]
        if step > self._last_skip[position] or position in self._refused or is_stateful_call(kwargs):
            return fn(*args, **kwargs), False
        hidden = first_tensor(args, kwargs)
        owner = ("block", position)
        kept = None if hidden is None else self.store.sources(owner, slot, hidden.shape)
        if kept is not None and skip[step]:
            return hidden + predict_kept(self.predictor, kept, self.hooks.time), True
        out = fn(*args, **kwargs)
        if hidden is None or not isinstance(out, torch.Tensor) or out.shape != hidden.shape:
            self._refused.add(position)
            logger.debug("block %s is not fused: it does not return one tensor shaped like its input",
                         self.hooks.blocks[position].path)
            return out, False
        self.store.add(owner, slot, hidden.shape, self.hooks.time, out - hidden)
        return out, False
