"""What a schedule saves: the cost of one denoiser call per branch and per block, in MACs and in seconds, and
a schedule's share of the uncached cost.

:class:`MacReport` holds what calibration recorded (:mod:`smoothcache.flops`, :mod:`smoothcache.timing`): the
multiply-accumulates of one denoiser call, in total, per wrapped branch and per block, and, where timings were
recorded, the seconds of a denoiser call, of each branch and block call, of the sampler's work between calls
and after the last one. Its :meth:`~MacReport.compute_fraction` is the one place that turns schedule rows into
the share of the uncached cost they keep, with ``cost="macs"`` or ``cost="time"``; planners and reports use
it. With block fusion, a step on which every branch of a block is skipped saves the whole block (norms and
modulation included), not only its branches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .branches import row_for
from .errors import ScheduleError

if TYPE_CHECKING:  # pragma: no cover
    from .profile import CalibrationProfile

__all__ = ["COSTS", "MacReport"]

#: What a budget is measured in.
COSTS = ("macs", "time")

_Rows = Mapping[str, Sequence[int]]


def _entries(schedule: Any) -> _Rows:
    """The rows of a :class:`~smoothcache.Schedule` (its ``entries``) or of a mapping of rows."""
    return getattr(schedule, "entries", schedule)


@dataclass
class MacReport:
    """The cost of one denoiser call: MACs in total, per wrapped branch module and per block, and seconds.

    Args:
        total: MACs of the whole denoiser call.
        branch_macs: module path -> MACs of that branch module in the call.
        keys: module path -> (branch key, block number), to look the branch up in a schedule.
        unit: what the MAC figures count (``"MACs"``, or ``"branch calls"`` for :meth:`per_branch_call`).
        block_of: branch module path -> the path of its block.
        block_macs: block path -> MACs of one call of the block (its branches included).
        times: seconds, or None where no timings were recorded: ``"call"`` (a denoiser call), ``"between"``
            (the sampler's work from one call to the next), ``"tail"`` (after the last call, e.g. decoding),
            ``"branches"`` and ``"blocks"`` (path -> seconds of one call).
    """

    total: float
    branch_macs: dict[str, float] = field(default_factory=dict)
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)
    unit: str = "MACs"
    block_of: dict[str, str] = field(default_factory=dict)
    block_macs: dict[str, float] = field(default_factory=dict)
    times: dict[str, Any] | None = None

    def __repr__(self) -> str:
        share = sum(self.branch_macs.values()) / self.total if self.total else 0.0
        per_key = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in self.by_key().items())
        timed = "" if not self.times else f"; {self.times['call'] * 1e3:.2f} ms per call"
        return (
            f"MacReport({self.total / 1e6:.1f}M {self.unit} per call{timed}; {len(self.branch_macs)} branch "
            f"modules, {share:.1%} of the call: {per_key})"
        )

    def by_key(self) -> dict[str, float]:
        """MACs per branch key, summed over blocks."""
        out: dict[str, float] = {}
        for path, macs in self.branch_macs.items():
            key = self.keys[path][0]
            out[key] = out.get(key, 0.0) + macs
        return out

    # -------------------------------------------------------------------------------------------- units
    def _table(self, cost: str) -> tuple[float, float, float, Mapping[str, float], Mapping[str, float]]:
        """(per call, per step outside the call, once per generation, branch costs, block costs) in
        ``cost``."""
        if cost == "macs":
            return self.total, 0.0, 0.0, self.branch_macs, self.block_macs
        if cost != "time":
            raise ScheduleError(f"unknown cost {cost!r}; choose one of {list(COSTS)}")
        if not self.times:
            raise ScheduleError(
                "this calibration recorded no timings (calibrate with this version of "
                "smoothcache), so a budget cannot be planned in time: use cost='macs'"
            )
        t = self.times
        return (
            t["call"],
            t.get("between", 0.0),
            t.get("tail", 0.0),
            t.get("branches", {}),
            t.get("blocks", {}),
        )

    def has(self, cost: str) -> bool:
        """True if the report can measure ``cost`` (``"time"`` needs recorded timings)."""
        return cost == "macs" or (cost == "time" and bool(self.times))

    def saving(self, skipped: Iterable[str], cost: str = "macs", fused: bool = False) -> float:
        """What one denoiser call saves when the branch modules ``skipped`` are not run: their costs, or, with
        ``fused``, a whole block's where every branch of it is skipped."""
        _, _, _, branches, blocks = self._table(cost)
        skipped = set(skipped)
        members: dict[str, list[str]] = {}
        for path in branches:
            members.setdefault(self.block_of.get(path, path), []).append(path)
        saved = 0.0
        for block, paths in members.items():
            gone = [p for p in paths if p in skipped]
            if fused and gone and len(gone) == len(paths) and block in blocks:
                saved += blocks[block]
            else:
                saved += sum(branches[p] for p in gone)
        return saved

    def step_costs(self, schedule: Any, cost: str = "macs", fused: bool | None = None) -> list[float]:
        """The cost of each step under ``schedule`` (a Schedule or a mapping of rows): its denoiser call and,
        in time, the sampler's work until the next call. Branches without a row always compute; ``fused``
        (default: the schedule forecasts) counts whole skipped blocks."""
        rows = _entries(schedule)
        if fused is None:  # as a SmoothCache applies it: as planned, else fused for forecasts
            planned = getattr(schedule, "fused", None)
            fused = planned if planned is not None else getattr(schedule, "predictor", "reuse") != "reuse"
        per_call, per_step, _, branches, _ = self._table(cost)
        num_steps = len(next(iter(rows.values())))
        found = {p: row_for(rows, *self.keys[p]) for p in branches if p in self.keys}
        return [
            per_call
            + per_step
            - self.saving([p for p, r in found.items() if r is not None and r[s] == 0], cost, fused)
            for s in range(num_steps)
        ]

    def compute_fraction(self, schedule: Any, cost: str = "macs", fused: bool | None = None) -> float:
        """Share of the uncached cost (``"macs"`` or ``"time"``) that ``schedule`` still computes."""
        costs = self.step_costs(schedule, cost, fused)
        per_call, per_step, tail, _, _ = self._table(cost)
        return (sum(costs) + tail) / ((per_call + per_step) * len(costs) + tail)

    def speedup(self, schedule: Any, cost: str = "macs", fused: bool | None = None) -> float:
        """Theoretical speed-up: the uncached cost over the cached one, for a whole generation."""
        return 1.0 / self.compute_fraction(schedule, cost, fused)

    def budget(self, cost: str, num_steps: int) -> tuple[float, float]:
        """(cost of one uncached step, cost once per generation) in ``cost``, for planners."""
        per_call, per_step, tail, _, _ = self._table(cost)
        return per_call + per_step, tail

    # --------------------------------------------------------------------------------------- building
    @classmethod
    def from_profile(cls, profile: "CalibrationProfile") -> "MacReport":
        """The costs a :class:`~smoothcache.profile.CalibrationProfile` recorded during calibration."""
        if "total" not in profile.macs:
            raise ValueError(
                "this calibration profile has no MAC counts (calibrated with measure_macs=False)"
            )
        branch_macs = {p: profile.macs[p] for p in profile.errors if p in profile.macs}
        keys = {p: (b.key, b.block) for p, b in profile.errors.items()}
        return cls(
            profile.macs["total"],
            branch_macs,
            keys,
            block_of=dict(profile.block_of),
            block_macs=dict(profile.block_macs),
            times=profile.times or None,
        )

    @classmethod
    def per_branch_call(cls, profile: "CalibrationProfile") -> "MacReport":
        """A report where each branch call costs 1 and nothing else costs anything: for profiles without MACs,
        a schedule's compute fraction is then the share of branch calls it computes."""
        keys = {p: (b.key, b.block) for p, b in profile.errors.items()}
        return cls(
            float(len(keys)),
            {p: 1.0 for p in keys},
            keys,
            unit="branch calls",
            block_of=dict(profile.block_of),
            times=profile.times or None,
        )

    @classmethod
    def for_budget(cls, profile: "CalibrationProfile") -> "MacReport":
        """What budgets are planned in: the profile's MACs if it recorded them, else
        :meth:`per_branch_call`."""
        return cls.from_profile(profile) if "total" in profile.macs else cls.per_branch_call(profile)

    def as_dict(self) -> dict[str, float]:
        """``{"total": ..., <module path>: ...}``, the form profiles store."""
        return {"total": self.total, **self.branch_macs}
