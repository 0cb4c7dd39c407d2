"""Counters of a cached run: calls computed and reused per branch, and the bytes the cache holds."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BranchCounter", "CacheStats"]


@dataclass
class BranchCounter:
    """Calls of one wrapped branch module."""

    path: str
    key: str
    block: int
    computed: int = 0
    reused: int = 0

    @property
    def calls(self) -> int:
        return self.computed + self.reused


class CacheStats:
    """Computed and reused calls per branch module since the cache was enabled, plus cache memory.

    ``reused`` counts the calls served by the schedule's predictor (the cached output, or a forecast).
    ``cache_bytes`` is what the cache holds now: ``order + 1`` outputs per branch and CFG call (one for
    ``reuse``, two for ``linear``).
    """

    def __init__(self, counters: list[BranchCounter], cache_bytes: int = 0, predictor: str = "reuse"):
        self.counters = {c.path: c for c in counters}
        self.cache_bytes = cache_bytes
        self.predictor = predictor

    @property
    def computed(self) -> int:
        return sum(c.computed for c in self.counters.values())

    @property
    def reused(self) -> int:
        return sum(c.reused for c in self.counters.values())

    def by_key(self) -> dict[str, dict[str, int]]:
        """Totals per branch key (``attn1``, ``ff``...): ``{"attn1": {"computed": 26, "reused": 24}}``."""
        out: dict[str, dict[str, int]] = {}
        for c in self.counters.values():
            row = out.setdefault(c.key, {"computed": 0, "reused": 0})
            row["computed"] += c.computed
            row["reused"] += c.reused
        return out

    def as_dict(self) -> dict:
        return {
            "computed": self.computed,
            "reused": self.reused,
            "cache_bytes": self.cache_bytes,
            "predictor": self.predictor,
            "by_key": self.by_key(),
            "branches": {p: {"computed": c.computed, "reused": c.reused} for p, c in self.counters.items()},
        }

    def __str__(self) -> str:
        lines = [f"{'branch':<16}{'computed':>10}{'reused':>10}{'reused %':>10}"]
        for key, row in self.by_key().items():
            total = row["computed"] + row["reused"]
            share = 100.0 * row["reused"] / total if total else 0.0
            lines.append(f"{key:<16}{row['computed']:>10}{row['reused']:>10}{share:>9.1f}%")
        lines.append(f"predictor: {self.predictor}; cache memory: {self.cache_bytes / 2**20:.2f} MiB")
        return "\n".join(lines)

    def __repr__(self) -> str:
        total = self.computed + self.reused
        share = self.reused / total if total else 0.0
        return (f"CacheStats({len(self.counters)} branch modules: {self.computed} computed, {self.reused} "
                f"{self.predictor} ({share:.1%}), {self.cache_bytes / 2**20:.2f} MiB cached)")
