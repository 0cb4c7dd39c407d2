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
    """Computed and reused calls per branch since the cache was enabled, plus cache memory."""

    def __init__(self, counters: list[BranchCounter], cache_bytes: int = 0):
        self.branches = {c.path: c for c in counters}
        self.cache_bytes = cache_bytes

    @property
    def computed(self) -> int:
        return sum(c.computed for c in self.branches.values())

    @property
    def reused(self) -> int:
        return sum(c.reused for c in self.branches.values())

    def by_key(self) -> dict[str, dict[str, int]]:
        """Totals per branch key (``attn1``, ``ff``...): ``{"attn1": {"computed": 26, "reused": 24}}``."""
        out: dict[str, dict[str, int]] = {}
        for c in self.branches.values():
            row = out.setdefault(c.key, {"computed": 0, "reused": 0})
            row["computed"] += c.computed
            row["reused"] += c.reused
        return out

    def as_dict(self) -> dict:
        return {
            "computed": self.computed,
            "reused": self.reused,
            "cache_bytes": self.cache_bytes,
            "by_key": self.by_key(),
            "branches": {p: {"computed": c.computed, "reused": c.reused} for p, c in self.branches.items()},
        }

    def __str__(self) -> str:
        lines = [f"{'branch':<16}{'computed':>10}{'reused':>10}{'reused %':>10}"]
        for key, row in self.by_key().items():
            total = row["computed"] + row["reused"]
            share = 100.0 * row["reused"] / total if total else 0.0
            lines.append(f"{key:<16}{row['computed']:>10}{row['reused']:>10}{share:>9.1f}%")
        lines.append(f"cache memory: {self.cache_bytes / 2**20:.2f} MiB")
        return "\n".join(lines)

    __repr__ = __str__
