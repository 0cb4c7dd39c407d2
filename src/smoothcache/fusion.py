"""Block fusion: on a step where every branch of a block is skipped, skip the whole block and predict its
residual, for runs of consecutive blocks at once.

A skipped branch saves its own MACs, but the block around it still runs its norms, modulation, gates and
residual adds, which on a small DiT are a large share of the time (BENCHMARKS.md). When the schedule skips
*every* wrapped branch of a block at a step, nothing the block computes is needed except its outputs, so the
block is not run.

**Streams.** Each tensor a block returns that continues one of its tensor inputs (the only input of that
shape: ``hidden_states``, ``encoder_hidden_states``...) is a *stream*; its residual ``out - in`` is what is
    predicted.
Dual-stream blocks (Flux, SD3, HunyuanVideo, Qwen-Image...) and blocks that split and re-join their streams
inside (Flux single blocks) are fused alike. A block is left unfused, with the reason in the log and in
:attr:`BlockFusion.refused`, when an output continues no input (a new tensor, two inputs of one shape), when
it returns something else than tensors and None, or when a call carries a key/value cache.

**Runs.** Consecutive blocks of one block list that skip on the same steps form a *run*: on its computed steps
the run keeps one residual per stream, from the input of its first block to the output of its last; on its
skipped steps its first block returns its input plus the predicted run residual and the others pass their
input through. For ``reuse`` and ``linear`` that equals predicting each block's residual (sums of predictions
are predictions of sums), with memory per list and stream constant in depth; with whole-step rows each block
list is one run. A run is split where the next block does not receive the previous one's outputs as they were
returned (something runs between the two), or where a block is refused.

The predicted residual applies the block's modulation as it was on the computed steps, where the paper's
branch-level reuse applies the current step's: fusion is off for ``reuse`` by default (the original's
behaviour stays exact).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch.utils import _pytree as pytree

from .calls import is_stateful_call
from .predictors import predict_kept
from .store import KeptOutputs

__all__ = ["BlockFusion", "FUSION_MODES"]

logger = logging.getLogger(__name__)

#: ``fuse_blocks`` values: ``"runs"`` (``True``) fuses runs of blocks, ``"blocks"`` each block on its own.
FUSION_MODES = ("runs", "blocks")


def _streams(args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
    """The call's tensor arguments by name (keyword, or position as ``"0"``, ``"1"``...)."""
    named = {str(i): a for i, a in enumerate(args) if isinstance(a, torch.Tensor)}
    named.update({k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)})
    return named


@dataclass
class _Layout:
    """How a block's outputs continue its inputs: the stream each output leaf continues (None for None)."""

    leaves: list[str | None]
    spec: Any

    def build(self, values: dict[str, torch.Tensor]) -> Any:
        return pytree.tree_unflatten([None if n is None else values[n] for n in self.leaves], self.spec)

    @property
    def names(self) -> list[str]:
        return [n for n in self.leaves if n is not None]


def _layout(inputs: dict[str, torch.Tensor], out: Any) -> _Layout | str:
    """The layout of a block call, or why its outputs are not continuations of its inputs.

    An output continues the one input of its shape and dtype. Where several inputs have that shape (a
    positional embedding...), it continues the one it is nearest, if it is nearer to it than to zero (else it
    is a new tensor); two outputs never continue one input.
    """
    leaves, spec = pytree.tree_flatten(out)
    names: list[str | None] = [None] * len(leaves)
    choices: list[tuple[float, int, str]] = []
    for i, leaf in enumerate(leaves):
        if leaf is None:
            continue
        if not isinstance(leaf, torch.Tensor):
            return f"it returns {type(leaf).__name__}, not only tensors"
        same = [n for n, t in inputs.items() if t.shape == leaf.shape and t.dtype == leaf.dtype]
        if not same:
            return f"an output of shape {tuple(leaf.shape)} matches no input of that shape"
        if len(same) == 1:
            choices.append((-1.0, i, same[0]))
            continue
        with torch.no_grad():
            size = float(leaf.abs().mean()) or 1.0
            near = [(float((leaf - inputs[n]).abs().mean()) / size, i, n) for n in same]
        near = [c for c in near if c[0] < 1.0]
        if not near:
            return f"an output of shape {tuple(leaf.shape)} continues none of the inputs {same} of that shape"
        choices.extend(near)
    taken: set[str] = set()
    for _, i, name in sorted(choices):
        if names[i] is None and name not in taken:
            names[i] = name
            taken.add(name)
    if any(leaf is not None and name is None for leaf, name in zip(leaves, names)):
        return "two outputs continue the same input"
    if not taken:
        return "it returns no tensor"
    return _Layout(names, spec)


@dataclass
class _Run:
    """Consecutive fusable blocks of one list that skip on the same steps."""

    members: list[int]
    pattern: tuple[bool, ...]
    choices: tuple[str | None, ...]  # the predictor of each step (None where the run computes)
    last_skip: int = field(init=False)

    def __post_init__(self):
        self.last_skip = max((s for s, k in enumerate(self.pattern) if k), default=-1)


class BlockFusion:
    """The block side of a :class:`~smoothcache.cache.SmoothCachePolicy`: skip whole blocks whose branches all
    skip.

    Args:
        rows: the schedule row of each wrapped branch (as the cache holds them).
        choices: the predictor of each step of each wrapped branch (None where it computes); a block uses its
            first branch's.
        store: where the run residuals are kept (shared with the branch cache).
        fusable: paths of the blocks whose every branch is wrapped with a row.
        mode: ``"runs"`` or ``"blocks"`` (one run per block).
    """

    def __init__(
        self,
        rows: Sequence[tuple[int, ...] | None],
        choices: Sequence[tuple[str | None, ...] | None],
        store: KeptOutputs,
        fusable: set[str],
        mode: str = "runs",
    ):
        self.rows = list(rows)
        self.choices = list(choices)
        self.store = store
        self.fusable = set(fusable)
        self.mode = mode
        self.refused: dict[str, str] = {}
        self.runs: dict[tuple[int, int], _Run] = {}  # by (first, last) block position: stable across splits
        self._run_of: dict[int, tuple[int, int]] = {}
        self._layouts: dict[int, _Layout] = {}
        self._mutates: dict[int, bool] = {}
        self._pending: dict[Any, dict[str, torch.Tensor]] = {}
        self._skipping: dict[Any, bool] = {}
        self._last: dict[Any, tuple[int, dict[str, torch.Tensor]]] = {}  # (list, slot) -> last outputs there
        self._breaks: set[tuple[int, int]] = set()
        # id -> (output, its block, stream, slot) of the outputs of runs' inner blocks
        self._inner: dict[int, tuple[weakref.ref, int, str, Any]] = {}
        self.skipped_blocks: set[int] = set()
        #: changes whenever the runs change (a block refused, two blocks fused apart)
        self.version = 0

    # ------------------------------------------------------------------ structure
    def attach(self, hooks) -> None:
        """Work out, per block of ``hooks.blocks``, the steps on which all its branches skip, and the runs."""
        self.hooks = hooks
        patterns: list[tuple[tuple[bool, ...], tuple[str | None, ...]] | None] = []
        for group in hooks.blocks:
            rows = [self.rows[i] for i in group.branches]
            if group.path not in self.fusable or any(r is None for r in rows):
                patterns.append(None)
                continue
            skip = tuple(all(r[s] == 0 for r in rows) for s in range(min(len(r) for r in rows)))
            first = self.choices[group.branches[0]]
            used = tuple(p if k else None for k, p in zip(skip, first))
            patterns.append((skip, used) if any(skip) else None)
        self._patterns = patterns
        self._list_of = []  # the block list of each block: its path without the index
        for group in hooks.blocks:
            head, _, tail = group.path.rpartition(".")
            self._list_of.append(head if tail.isdigit() else group.path)
        self._regroup()

    def _regroup(self) -> None:
        runs: list[_Run] = []
        previous = None
        for position, (group, pattern) in enumerate(zip(self.hooks.blocks, self._patterns)):
            key = (self._list_of[position], pattern)
            if pattern is None or group.path in self.refused:
                previous = None
                continue
            if (
                self.mode == "runs"
                and previous == key
                and runs[-1].members[-1] == position - 1
                and (position - 1, position) not in self._breaks
            ):
                runs[-1].members.append(position)
            else:
                runs.append(_Run([position], *pattern))
            previous = key
        self.runs = {(run.members[0], run.members[-1]): run for run in runs}
        self.version += 1
        self._run_of = {p: r for r, run in self.runs.items() for p in run.members}
        for state in (self._pending, self._skipping):  # forget the runs that changed
            for key in [k for k in state if k[0] not in self.runs]:
                del state[key]
        self.store.keep_only("run", {("run", r) for r in self.runs})

    def covers(self, position: int, step: int) -> bool:
        """True if the block at ``position`` is skipped whole at ``step`` (as far as its structure is
        known)."""
        run = self.runs.get(self._run_of.get(position))
        return run is not None and step < len(run.pattern) and run.pattern[step]

    def _refuse(self, position: int, reason: str) -> None:
        path = self.hooks.blocks[position].path
        self.refused[path] = reason
        logger.warning("block %s is not fused: %s; its branches are skipped one by one", path, reason)
        self._regroup()

    def _split(self, position: int, slot, change: Callable[[], None]) -> None:
        """Apply ``change`` (a refusal or a break before ``position``), keeping this step's residual of the
        run that now ends just before ``position`` (its start was held for the run it was part of)."""
        old = self._run_of.get(position)
        start = None if old is None else self._pending.pop((old, slot), None)
        previous = self._last.get((self._list_of[position], slot))
        change()
        ended = self._run_of.get(position - 1)
        if (
            start is not None
            and previous is not None
            and previous[0] == position - 1
            and ended is not None
            and ended[0] == old[0]
        ):
            self._keep((ended, slot), start, previous[1])

    def _break(self, before: int, after: int) -> None:
        self._breaks.add((before, after))
        logger.info(
            "blocks %s and %s are fused apart: the second does not receive the first's outputs",
            self.hooks.blocks[before].path,
            self.hooks.blocks[after].path,
        )
        self._regroup()

    def clear(self) -> None:
        """Drop the per-generation state (kept residuals are in the store)."""
        self._pending.clear()
        self._skipping.clear()
        self._last.clear()
        self._inner.clear()

    def _check_consumer(self, position: int, args: tuple, kwargs: dict) -> None:
        """A run's inner output (not its last block's) read by another block than the next one, as a
        U-Net-like skip connection does: the run must end at that output's block."""
        for value in list(args) + list(kwargs.values()):
            entry = self._inner.get(id(value)) if isinstance(value, torch.Tensor) else None
            if entry is None or entry[0]() is not value or entry[1] == position - 1:
                continue
            _, producer, name, slot = entry
            self._inner = {k: v for k, v in self._inner.items() if v[1] != producer}
            start = self._pending.pop((self._run_of[producer], slot), None)
            self._break(producer, producer + 1)
            if start is not None:  # the run now ends at the producer, and the next one starts after it
                self._keep((self._run_of[producer], slot), start, {name: value})
                following = self._run_of.get(producer + 1)
                if following is not None and following[0] == producer + 1:
                    self._pending[(following, slot)] = {name: value}

    # ----------------------------------------------------------------------- calls
    def call(self, position: int, slot, fn: Callable, args: tuple, kwargs: dict) -> tuple[Any, bool]:
        """Call the block at ``position``: skipped (predicted) on its run's skipped steps once residuals are
        kept, else computed. Returns the output and whether the block was skipped."""
        if self._inner:
            self._check_consumer(position, args, kwargs)
        r = self._run_of.get(position)
        if r is None or is_stateful_call(kwargs):
            return fn(*args, **kwargs), False
        run, step = self.runs[r], self.hooks.step
        first, last = position == run.members[0], position == run.members[-1]
        inputs = _streams(args, kwargs)
        layout = self._layouts.get(position)
        if layout is not None and step < len(run.pattern) and run.pattern[step]:
            if first:
                shapes = tuple(sorted((n, inputs[n].shape) for n in layout.names if n in inputs))
                kept = self.store.sources(("run", r), slot, shapes)
                self._skipping[(r, slot)] = kept is not None
                if kept is not None:
                    residual = predict_kept(run.choices[step], kept, self.hooks.time)
                    values = {
                        n: inputs[n] + residual[n] if n in residual else inputs[n] for n in layout.names
                    }
                    self.skipped_blocks.add(position)
                    return layout.build(values), True
            elif self._skipping.get((r, slot)):
                self.skipped_blocks.add(position)
                return layout.build(inputs), True
        return self._compute(position, r, run, first, last, slot, fn, args, kwargs, inputs)

    def _compute(self, position, r, run, first, last, slot, fn, args, kwargs, inputs) -> tuple[Any, bool]:
        line = self._list_of[position]
        previous = None if first else self._last.get((line, slot))
        if not first and (
            previous is None
            or previous[0] != position - 1
            or any(inputs.get(n) is not t for n, t in previous[1].items())
        ):
            self._split(position, slot, lambda: self._break(position - 1, position))  # it starts a new run
            r = self._run_of[position]
            run, first = self.runs[r], True
            last = position == run.members[-1]
        step = self.hooks.step
        keep = step < run.last_skip
        if first and keep:
            mutates = self._mutates.get(position, True)
            self._pending[(r, slot)] = {n: t.clone() if mutates else t for n, t in inputs.items()}
        versions = {n: t._version for n, t in inputs.items() if not t.is_inference()}
        out = fn(*args, **kwargs)
        layout = self._layouts.get(position)
        if layout is None:
            layout = _layout(inputs, out)
            if isinstance(layout, str):
                self._split(position, slot, lambda: self._refuse(position, layout))
                return out, False
            self._layouts[position] = layout
            self.version += 1
        # inference tensors have no version counter: a block receiving them is copied for every run it starts
        self._mutates[position] = len(versions) < len(inputs) or any(
            inputs[n]._version != v for n, v in versions.items()
        )
        outputs = {n: t for n, t in zip(layout.leaves, pytree.tree_leaves(out)) if n is not None}
        self._last[(line, slot)] = (position, outputs)
        if not last:
            for name, t in outputs.items():
                self._inner[id(t)] = (weakref.ref(t), position, name, slot)
        if last and keep and (r, slot) in self._pending:
            self._keep((r, slot), self._pending.pop((r, slot)), outputs)
        return out, False

    def _keep(self, where: tuple, start: dict[str, torch.Tensor], end: dict[str, torch.Tensor]) -> None:
        """Keep the residual of run ``where[0]`` (in slot ``where[1]``): its last outputs minus its first
        inputs."""
        r, slot = where
        run = self.runs[r]
        if self.hooks.step >= run.last_skip or run.members[0] not in self._layouts:
            return
        names = self._layouts[run.members[0]].names
        if not set(self._layouts[run.members[-1]].names) <= set(end):  # a stream's end is unknown this step
            return
        residual = {n: t - start[n] for n, t in end.items() if n in start}
        shapes = tuple(sorted((n, start[n].shape) for n in names if n in start))
        self.store.add(("run", r), slot, shapes, self.hooks.time, residual)
