"""Skipping ComfyUI blocks on a schedule's 0 steps: runs of blocks, one kept residual per stream.

Consecutive blocks of one list that skip on the same steps with the same predictors form a *run*. On the
run's computed steps (those before its last skipped step) its first block copies its input streams before
running (Flux and HunyuanVideo blocks add into them in place) and its last block keeps ``out - in`` per
stream in a :class:`~smoothcache.store.KeptOutputs`; on its skipped steps the first block returns its input
plus the residual the schedule's predictor forecasts from the kept ones, and the other blocks return their
input unchanged. Memory is one residual per stream, run, slot and source (two for ``linear``), whatever the
depth. Every returned tensor is fresh or the block's own input, never a kept tensor: ControlNet and the next
blocks add into returned tensors in place.

A call whose model adds into the hidden state between blocks (ControlNet, block patches, Wan VACE) is run
with one block per run. A skipped step whose run has nothing kept for its slot and shape (first calls of a
slot, a new latent size) computes. A block whose output continues no input stream is never skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..branches import parse_key
from ..errors import ScheduleError
from ..predictors import predict_kept, sources_needed
from ..schedule import Schedule
from ..store import KeptOutputs
from .clock import Call
from .families import ModelBlocks
from .streams import Layout, learn_layout, snapshot

__all__ = ["BlockRun", "BlockSkipper", "check_schedule", "group_runs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockRun:
    """Blocks ``first..last`` of the list of ``kind``, skipped on the steps where ``skips`` is True, each with
    its predictor in ``predictors``."""

    kind: str
    first: int
    last: int
    skips: tuple[bool, ...]
    predictors: tuple[str | None, ...]

    @property
    def owner(self) -> tuple:
        return ("run", self.kind, self.first, self.last)

    @property
    def members(self) -> range:
        return range(self.first, self.last + 1)

    @property
    def last_skip(self) -> int:
        return max((s for s, k in enumerate(self.skips) if k), default=-1)


def check_schedule(schedule: Schedule, blocks: ModelBlocks) -> None:
    """Raise a ScheduleError if ``schedule`` names a kind or block the model does not have."""
    for key in schedule.entries:
        kind, block = parse_key(key)
        if kind not in blocks.kinds:
            raise ScheduleError(
                f"the schedule names {key!r}, but {blocks.model} has the block kinds {blocks.kinds}: use a "
                "schedule planned from a profile of this model"
            )
        if block is not None and block >= blocks.count(kind):
            raise ScheduleError(
                f"the schedule names {key!r}, but {blocks.model} has {blocks.count(kind)} {kind}s"
            )


def group_runs(
    blocks: ModelBlocks, schedule: Schedule, fuse: bool, refused: set = frozenset()
) -> dict[tuple[str, int], BlockRun]:
    """The run of each scheduled block (blocks without a row or refused are in none): consecutive blocks with
    the same row and predictors share one when ``fuse``, else each block is its own."""
    runs: dict[tuple[str, int], BlockRun] = {}
    for block_list in blocks.lists:
        current: BlockRun | None = None
        for index in range(block_list.count):
            row = schedule.for_block(block_list.kind, index)
            if row is None or (block_list.kind, index) in refused or all(row):
                current = None
                continue
            skips = tuple(v == 0 for v in row)
            predictors = schedule.predictors_for(block_list.kind, index)
            if fuse and current is not None and (current.skips, current.predictors) == (skips, predictors):
                current = BlockRun(block_list.kind, current.first, index, skips, predictors)
            else:
                current = BlockRun(block_list.kind, index, index, skips, predictors)
            for member in current.members:
                runs[(block_list.kind, member)] = current
    return runs


class BlockSkipper:
    """Runs the blocks of one sampler run on a schedule (see the module docstring).

    Args:
        blocks: the model's hooked blocks.
        schedule: the rows of this run's steps (keys ``double_block``, ``single_block-3``...).
        layouts: the layout of each block, learned at its first call (shared with the run).
    """

    def __init__(self, blocks: ModelBlocks, schedule: Schedule, layouts: dict[tuple[str, int], Layout]):
        self.blocks = blocks
        self.schedule = schedule
        self.layouts = layouts
        self.store = KeptOutputs(max(sources_needed(p) for p in schedule.sources_needed))
        self.refused: dict[tuple[str, int], str] = {}
        self.fuse = blocks.fuse_runs
        self._regroup()
        self._pending: dict[tuple, dict] = {}  # (run owner, slot) -> input streams of its first block
        self._skipping: dict[tuple, bool] = {}  # (run owner, slot) -> its first block was skipped this step
        self._last: dict[tuple, tuple[int, dict]] = {}  # (kind, slot) -> (index, streams it returned)
        #: blocks computed and skipped at each step
        self.counts: dict[int, list[int]] = {}

    def _regroup(self) -> None:
        refused = set(self.refused)
        self.runs = {
            True: group_runs(self.blocks, self.schedule, False, refused),
            False: group_runs(self.blocks, self.schedule, self.fuse, refused),
        }
        owners = {run.owner for grouping in self.runs.values() for run in grouping.values()}
        self.store.keep_only("run", owners)

    def _count(self, step: int, skipped: bool) -> None:
        self.counts.setdefault(step, [0, 0])[int(skipped)] += 1

    def call(self, kind: str, index: int, args: Mapping[str, Any], original: Callable, call: Call) -> Any:
        """Run block ``index`` of ``kind`` (``original(args)`` computes it) for ``call``."""
        run = self.runs[call.per_block].get((kind, index))
        if run is None or call.step >= len(run.skips):
            self._count(call.step, False)
            return original(args)
        where = (run.owner, call.slot)
        if run.skips[call.step] and all((kind, j) in self.layouts for j in run.members):
            layout = self.layouts[(kind, index)]
            if index == run.first:
                kept = self.store.sources(run.owner, call.slot, layout.shapes(args))
                self._skipping[where] = kept is not None
                if kept is not None:
                    residual = predict_kept(run.predictors[call.step], kept, call.time)
                    self._count(call.step, True)
                    return layout.build(
                        {s: args[s] + residual[s] if s in residual else args[s] for s in layout.streams}
                    )
            elif self._skipping.get(where):
                self._count(call.step, True)
                return layout.build(args)
        self._count(call.step, False)
        return self._compute(run, kind, index, args, original, call)

    def _compute(self, run: BlockRun, kind, index, args, original, call: Call) -> Any:
        where = (run.owner, call.slot)
        if index == run.first:
            self._skipping[where] = False
            self._pending.pop(where, None)
            if call.step < run.last_skip:
                self._pending[where] = snapshot(args, self.layouts.get((kind, index)))
        elif where in self._pending and not self._follows(kind, index, args, call):
            self._split(kind, index)
        out = original(args)
        layout = self.layouts.get((kind, index))
        if layout is None:
            layout = learn_layout(args, out)
            if isinstance(layout, str):
                self.refused[(kind, index)] = layout
                logger.warning("SmoothCache never skips %s block %d: %s", kind, index, layout)
                self._regroup()
                return out
            self.layouts[(kind, index)] = layout
        self._last[(kind, call.slot)] = (index, {s: out[s] for s in layout.streams})
        start = self._pending.pop(where, None) if index == run.last else None
        if start is not None:
            first = self.layouts[(kind, run.first)]
            residual = {s: out[s] - start[s] for s in layout.streams if s in start}
            self.store.add(run.owner, call.slot, first.shapes(start), call.time, residual)
        return out

    def _follows(self, kind: str, index: int, args: Mapping[str, Any], call: Call) -> bool:
        """True if block ``index`` receives the streams the previous block returned (nothing ran between)."""
        last = self._last.get((kind, call.slot))
        return last is not None and last[0] == index - 1 and all(args.get(s) is t for s, t in last[1].items())

    def _split(self, kind: str, index: int) -> None:
        """Something replaced the hidden state between two blocks of a run: skip block by block from now."""
        logger.warning(
            "SmoothCache: %s block %d does not receive what block %d returned (the model changes the hidden "
            "state between blocks); skipping each block on its own from here on",
            kind,
            index,
            index - 1,
        )
        self.fuse = False
        self._pending.clear()
        self._regroup()

    def release(self) -> None:
        """Drop every kept residual and copy."""
        self.store.clear()
        self._pending.clear()
        self._skipping.clear()
        self._last.clear()
