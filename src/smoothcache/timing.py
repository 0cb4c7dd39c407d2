"""Timings recorded during calibration: how long each block, each branch and the rest of a step take.

A wall-time budget (``cost="time"``) needs what a skipped call saves in seconds, which MACs do not tell
(norms, modulation, memory traffic and the sampler's own work between denoiser calls are not MACs). While
calibrating, :class:`Timer` measures every branch call, every block call and every denoiser call, and the gaps
between denoiser calls; the calibration's own bookkeeping (error tables) is measured too and left out. On CUDA
the intervals are CUDA events, read once when the generation ends; on the CPU they are ``time.perf_counter``.
The first denoiser call of a generation is not timed (warm-up, and the MAC count runs during it); each figure
is the median over the other calls.
"""

from __future__ import annotations

import bisect
import statistics
import time
from typing import Any

import torch

__all__ = ["Timer"]


class _Clock:
    """Marks that are ``perf_counter`` floats on the CPU or recorded CUDA events; :meth:`seconds` turns a mark
    into seconds since the clock started (events are read after one synchronisation)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.origin = self.mark()

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, mark: Any) -> float:
        return self.origin.elapsed_time(mark) / 1000.0 if self.cuda else mark - self.origin


class Timer:
    """Per generation: the marks of every timed interval, turned into median seconds when it ends.

    :meth:`begin` / :meth:`end` bracket an interval of a branch, block or denoiser call; :meth:`overhead`
    brackets the calibration's own work, which is subtracted from the block and call intervals that contain
    it. Timing happens only while :attr:`active`.
    """

    def __init__(self):
        self.clock = _Clock(False)
        self._intervals: list[tuple[str, Any, Any, Any]] = []  # kind, where, start, end
        self._overhead: list[tuple[Any, Any]] = []
        self._last_call_end: Any = None
        self.active = False

    def reset(self, cuda: bool = False) -> None:
        """Forget the generation's marks (and use CUDA events if ``cuda``)."""
        self.clock = _Clock(cuda)
        self._intervals.clear()
        self._overhead.clear()
        self._last_call_end = None

    def begin(self) -> Any:
        return self.clock.mark()

    def end(self, kind: str, where: Any, start: Any) -> None:
        if self.active:
            self._intervals.append((kind, where, start, self.clock.mark()))

    def overhead(self, start: Any) -> None:
        if self.active:
            self._overhead.append((start, self.clock.mark()))

    def call_started(self) -> Any:
        """A denoiser call starts: the gap since the previous one is the sampler's work between calls."""
        start = self.clock.mark()
        if self.active and self._last_call_end is not None:
            self._intervals.append(("between", None, self._last_call_end, start))
        return start

    def call_ended(self, start: Any) -> None:
        self.end("call", None, start)
        self._last_call_end = self.clock.mark() if self.active else None

    @property
    def since_last_call(self) -> float | None:
        """Seconds since the last timed denoiser call ended (None if none was timed)."""
        if self._last_call_end is None:
            return None
        if self.clock.cuda:
            torch.cuda.synchronize()
        return self.clock.seconds(self.clock.mark()) - self.clock.seconds(self._last_call_end)

    def results(self) -> dict[str, Any]:
        """Median seconds: ``{"call", "between", "blocks": {path: s}, "branches": {path: s}}`` (empty if no
        denoiser call was timed)."""
        if self.clock.cuda:
            torch.cuda.synchronize()
        seconds = self.clock.seconds
        overheads = sorted((seconds(a), seconds(b)) for a, b in self._overhead)  # disjoint, in time order
        starts = [a for a, _ in overheads]
        ends = [b for _, b in overheads]
        total = [0.0]
        for a, b in overheads:
            total.append(total[-1] + (b - a))
        samples: dict[tuple[str, Any], list[float]] = {}
        for kind, where, a, b in self._intervals:
            a, b = seconds(a), seconds(b)
            span = b - a
            if kind in ("block", "call"):  # minus the bookkeeping inside it
                first, last = bisect.bisect_left(starts, a), bisect.bisect_right(ends, b)
                span -= total[last] - total[first] if last > first else 0.0
            samples.setdefault((kind, where), []).append(max(span, 0.0))
        out: dict[str, Any] = {"blocks": {}, "branches": {}}
        for (kind, where), values in samples.items():
            value = statistics.median(values)
            if kind in ("call", "between"):
                out[kind] = value
            else:
                out["branches" if kind == "branch" else "blocks"][where] = value
        return out if "call" in out else {}
