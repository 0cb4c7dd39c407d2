"""What a schedule saves: the compute of one denoiser call per branch, and a schedule's share of it.

:class:`MacReport` holds the multiply-accumulates of one denoiser call (recorded by calibration, see
:mod:`smoothcache.flops`), in total and per wrapped branch module. Its :meth:`~MacReport.compute_fraction` is
the one place that turns schedule rows into the share of the uncached compute they keep; planners and reports
use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .branches import row_for

if TYPE_CHECKING:  # pragma: no cover
    from .profile import CalibrationProfile

__all__ = ["MacReport"]

_Rows = Mapping[str, Sequence[int]]


def _entries(schedule: Any) -> _Rows:
    """The rows of a :class:`~smoothcache.Schedule` (its ``entries``) or of a mapping of rows."""
    return getattr(schedule, "entries", schedule)


@dataclass
class MacReport:
    """MACs of one denoiser call: the total and each wrapped branch module.

    Args:
        total: MACs of the whole denoiser call.
        branch_macs: module path -> MACs of that branch module in the call.
        keys: module path -> (branch key, block number), to look the branch up in a schedule.
        unit: what the numbers count (``"MACs"``, or ``"branch calls"`` for :meth:`per_branch_call`).
    """

    total: float
    branch_macs: dict[str, float] = field(default_factory=dict)
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)
    unit: str = "MACs"

    def __repr__(self) -> str:
        share = sum(self.branch_macs.values()) / self.total if self.total else 0.0
        per_key = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in self.by_key().items())
        return (
            f"MacReport({self.total / 1e6:.1f}M {self.unit} per call; {len(self.branch_macs)} branch "
            "modules, "
            f"{share:.1%} of the call: {per_key})"
        )

    def by_key(self) -> dict[str, float]:
        """MACs per branch key, summed over blocks."""
        out: dict[str, float] = {}
        for path, macs in self.branch_macs.items():
            key = self.keys[path][0]
            out[key] = out.get(key, 0.0) + macs
        return out

    def step_costs(self, schedule: Any) -> list[float]:
        """MACs of each step's denoiser call under ``schedule`` (a Schedule or a mapping of rows); branches
        without a row always compute."""
        rows = _entries(schedule)
        num_steps = len(next(iter(rows.values())))
        costs = []
        for step in range(num_steps):
            saved = 0.0
            for path, macs in self.branch_macs.items():
                row = row_for(rows, *self.keys[path])
                if row is not None and row[step] == 0:
                    saved += macs
            costs.append(self.total - saved)
        return costs

    def compute_fraction(self, schedule: Any) -> float:
        """Share of the uncached MACs that ``schedule`` (a Schedule or a mapping of rows) still computes."""
        costs = self.step_costs(schedule)
        return sum(costs) / (self.total * len(costs))

    def speedup(self, schedule: Any) -> float:
        """Theoretical speed-up: uncached MACs over cached MACs for a whole generation."""
        return 1.0 / self.compute_fraction(schedule)

    @classmethod
    def from_profile(cls, profile: "CalibrationProfile") -> "MacReport":
        """The MACs a :class:`~smoothcache.profile.CalibrationProfile` recorded during calibration."""
        if "total" not in profile.macs:
            raise ValueError(
                "this calibration profile has no MAC counts (calibrated with measure_macs=False)"
            )
        branch_macs = {p: profile.macs[p] for p in profile.errors if p in profile.macs}
        keys = {p: (b.key, b.block) for p, b in profile.errors.items()}
        return cls(profile.macs["total"], branch_macs, keys)

    @classmethod
    def per_branch_call(cls, profile: "CalibrationProfile") -> "MacReport":
        """A report where each branch call costs 1 and nothing else costs anything: for profiles without MACs,
        a schedule's compute fraction is then the share of branch calls it computes."""
        keys = {p: (b.key, b.block) for p, b in profile.errors.items()}
        return cls(float(len(keys)), {p: 1.0 for p in keys}, keys, unit="branch calls")

    @classmethod
    def for_budget(cls, profile: "CalibrationProfile") -> "MacReport":
        """What budgets are planned in: the profile's MACs if it recorded them, else
        :meth:`per_branch_call`."""
        return cls.from_profile(profile) if "total" in profile.macs else cls.per_branch_call(profile)

    def as_dict(self) -> dict[str, float]:
        """``{"total": ..., <module path>: ...}``, the form profiles store."""
        return {"total": self.total, **self.branch_macs}
