"""Counters of a cached run: calls computed and predicted per branch, and the memory the cache holds."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

__all__ = ["BranchCounter", "CacheStats"]


@dataclass
class BranchCounter:
    """Calls of one wrapped branch module: computed, and predicted (answered without computing)."""

    path: str
    key: str
    block: int
    computed: int = 0
    predicted: int = 0

    @property
    def calls(self) -> int:
        return self.computed + self.predicted


class CacheStats:
    """Computed and predicted calls per branch module since the cache was enabled, plus cache memory.

    ``predicted`` counts the calls served by the schedule's predictor (the cached output, or a forecast),
    whether the branch alone or its whole block was skipped. ``cache_bytes`` is what the cache holds now
    (0 once the cache is disabled: ``released``), ``peak_bytes`` the most it held at once;
    ``bytes_by_kind`` splits the bytes held now between branch outputs (``"branch"``) and the residuals of
    fused runs of blocks (``"run"``). ``fused_blocks`` counts the blocks skipped whole at least once,
    ``runs`` the runs of blocks fused as one, and ``refused`` names the blocks fusion left to branch-level
    skipping, with the reason. ``last_generation`` (a :class:`~smoothcache.generation.GenerationReport`)
    says what the last generation did: its steps, calls computed and predicted, how it ended, and why
    nothing was skipped when nothing was. ``quality`` is what a quality target's check measured (the
    one-line mode with ``min_psnr=`` ...): the budget chosen and each budget tried.
    """

    def __init__(self, counters: list[BranchCounter], cache_bytes: int = 0, predictor: str = "reuse", *,
                 peak_bytes: int = 0, released: bool = False, bytes_by_kind: dict[str, int] | None = None,
                 fused_blocks: int = 0, runs: int = 0, refused: dict[str, str] | None = None,
                 last_generation: Any = None):
        self.counters = {c.path: c for c in counters}
        self.cache_bytes = cache_bytes
        self.peak_bytes = max(peak_bytes, cache_bytes)
        self.predictor = predictor
        self.released = released
        self.bytes_by_kind = dict(bytes_by_kind or {})
        self.fused_blocks = fused_blocks
        self.runs = runs
        self.refused = dict(refused or {})
        self.last_generation = last_generation
        self.quality: Any = None

    @property
    def computed(self) -> int:
        return sum(c.computed for c in self.counters.values())

    @property
    def predicted(self) -> int:
        return sum(c.predicted for c in self.counters.values())

    @property
    def reused(self) -> int:
        """Deprecated name of :attr:`predicted`."""
        warnings.warn("CacheStats.reused is now CacheStats.predicted", DeprecationWarning, stacklevel=2)
        return self.predicted

    def by_key(self) -> dict[str, dict[str, int]]:
        """Totals per branch key (``attn1``, ``ff``...): ``{"attn1": {"computed": 26, "predicted": 24}}``."""
        out: dict[str, dict[str, int]] = {}
        for c in self.counters.values():
            row = out.setdefault(c.key, {"computed": 0, "predicted": 0})
            row["computed"] += c.computed
            row["predicted"] += c.predicted
        return out

    def as_dict(self) -> dict:
        return {
            "computed": self.computed,
            "predicted": self.predicted,
            "cache_bytes": self.cache_bytes,
            "peak_bytes": self.peak_bytes,
            "bytes_by_kind": dict(self.bytes_by_kind),
            "fused_blocks": self.fused_blocks,
            "runs": self.runs,
            "refused": dict(self.refused),
            "predictor": self.predictor,
            "last_generation": None if self.last_generation is None else self.last_generation.as_dict(),
            "quality": None if self.quality is None else self.quality.as_dict(),
            "by_key": self.by_key(),
            "branches": {
                p: {"computed": c.computed, "predicted": c.predicted} for p, c in self.counters.items()
            },
        }

    def _memory(self) -> str:
        now = "released" if self.released else f"{self.cache_bytes / 2**20:.2f} MiB"
        return f"{now} (peak {self.peak_bytes / 2**20:.2f} MiB)"

    def __str__(self) -> str:
        lines = [f"{'branch':<16}{'computed':>10}{'predicted':>11}{'predicted %':>13}"]
        for key, row in self.by_key().items():
            total = row["computed"] + row["predicted"]
            share = 100.0 * row["predicted"] / total if total else 0.0
            lines.append(f"{key:<16}{row['computed']:>10}{row['predicted']:>11}{share:>12.1f}%")
        lines.append(f"predictor: {self.predictor}; cache memory: {self._memory()}")
        if self.fused_blocks or self.refused:
            lines.append(f"fused: {self.fused_blocks} blocks skipped whole, in {self.runs} run(s)"
                         + "".join(f"\n  not fused: {path}: {why}" for path, why in self.refused.items()))
        if self.last_generation is not None:
            lines.append(f"last generation: {self.last_generation}")
        if self.quality is not None:
            lines.append(str(self.quality))
        return "\n".join(lines)

    def __repr__(self) -> str:
        total = self.computed + self.predicted
        share = self.predicted / total if total else 0.0
        return (
            f"CacheStats({len(self.counters)} branch modules: {self.computed} computed, {self.predicted} "
            f"predicted by {self.predictor} ({share:.1%}), cache {self._memory()})"
        )
