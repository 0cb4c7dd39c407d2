"""From error curves to a schedule: the n-row scan of SmoothCache, with one threshold alpha.

``rows[k-1][i]`` is the mean relative L1 error of reusing step ``i``'s output at step ``i + k``. Walking
the steps from the first, at step ``i`` the scan takes the largest ``k <= K`` whose error is ``<= alpha``,
computes step ``i`` and reuses its output for the next ``k`` steps; if no ``k`` qualifies, step ``i`` is
computed alone. The first and last steps are always computed. This reproduces the schedules of the
original implementation (Roblox/SmoothCache ``CalibrationHelper``) on the same curves.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from .schedule import Schedule, ScheduleError

if TYPE_CHECKING:  # pragma: no cover
    from .profile import CalibrationProfile

__all__ = ["scan", "schedule_from_profile", "check_alpha"]


def check_alpha(alpha: float) -> float:
    """Validate a threshold: a finite number >= 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise ScheduleError(f"alpha must be a finite number >= 0, got {alpha!r}")
    return float(alpha)


def scan(rows: Sequence[Sequence[float]], alpha: float, num_steps: int) -> list[int]:
    """The 0/1 schedule of length ``num_steps`` for error rows ``rows[k-1]`` (k = 1..K) and threshold alpha.

    Rows may be shorter than ``num_steps`` (row k naturally has ``T - k`` entries); a step past the end of
    a row cannot use that row's k. NaN errors never qualify.
    """
    alpha = check_alpha(alpha)
    if num_steps < 1:
        raise ScheduleError(f"num_steps must be >= 1, got {num_steps}")
    schedule = [1] * num_steps
    i = 0
    while i < num_steps:
        for k in range(len(rows), 0, -1):
            row = rows[k - 1]
            if i < len(row) and row[i] <= alpha:
                for j in range(i + 1, min(i + k + 1, num_steps)):
                    schedule[j] = 0
                i += k + 1
                break
        else:
            i += 1
    schedule[0] = schedule[-1] = 1
    return schedule


def schedule_from_profile(
    profile: "CalibrationProfile",
    alpha: float,
    *,
    lookahead: int | None = None,
    per_block: bool = False,
    num_steps: int | None = None,
    pad_to: int | None = None,
) -> Schedule:
    """Scan a calibration profile's curves (averaged over blocks, or per block) into a :class:`Schedule`.

    Args:
        profile: the calibration.
        alpha: error threshold; larger means more reuse.
        lookahead: use reuse distances up to this K (default: the profile's K).
        per_block: one schedule per block (``"attn1-3"`` keys) instead of one per branch type.
        num_steps: step count of the schedule; if it differs from the calibration's, the curves are first
            resampled to it (:meth:`CalibrationProfile.resample`).
        pad_to: the original implementation's ``schedule_length``: scan the curves as they are into a list
            of this length, computing every step past the calibrated ones.
    """
    alpha = check_alpha(alpha)
    if num_steps is not None and num_steps != profile.num_steps:
        profile = profile.resample(num_steps)
    k = profile.lookahead if lookahead is None else lookahead
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ScheduleError(f"lookahead must be an integer >= 1, got {lookahead!r}")
    if k > profile.lookahead:
        raise ScheduleError(f"lookahead {k} exceeds the profile's calibrated lookahead {profile.lookahead}")
    steps = profile.num_steps if pad_to is None else pad_to
    entries: dict[str, list[int]] = {}
    for key in profile.keys:
        if per_block:
            for block in profile.blocks(key):
                entries[f"{key}-{block}"] = scan(profile.rows(key, block)[:k], alpha, steps)
        else:
            entries[key] = scan(profile.rows(key)[:k], alpha, steps)
    return Schedule(entries, metadata={"alpha": alpha, "lookahead": k, "per_block": per_block})


def _cost_fn(profile: "CalibrationProfile"):
    """Share of a generation's compute a schedule keeps: MAC-weighted when the profile has MACs."""
    if "total" in profile.macs:
        from .flops import MacReport

        report = MacReport.from_profile(profile)
        return report.compute_fraction, "MACs"
    return lambda s: sum(s.compute_fraction().values()) / len(s.entries), "schedule entries"


def schedule_for_budget(
    profile: "CalibrationProfile",
    *,
    compute_fraction: float | None = None,
    speedup: float | None = None,
    lookahead: int | None = None,
    per_block: bool = False,
) -> Schedule:
    """The least aggressive schedule whose cost meets a budget; alpha is found by bisection.

    Give either ``compute_fraction`` (share of the uncached compute to keep, e.g. 0.6) or a theoretical
    ``speedup`` (e.g. 1.7, i.e. a fraction of 1/1.7). The cost is MAC-weighted when the profile recorded
    MACs, else the mean share of computed schedule entries. The scan only changes where alpha crosses a
    recorded error, so the search bisects the sorted recorded errors: the result is the smallest alpha
    that meets the budget (the schedule's cost falls as alpha grows).
    """
    if (compute_fraction is None) == (speedup is None):
        raise ScheduleError("give exactly one of compute_fraction or speedup")
    if speedup is not None:
        if isinstance(speedup, bool) or not isinstance(speedup, (int, float)) or not speedup >= 1:
            raise ScheduleError(f"speedup must be a number >= 1, got {speedup!r}")
        target = 1.0 / speedup
    else:
        if isinstance(compute_fraction, bool) or not isinstance(compute_fraction, (int, float)) \
                or not 0 < compute_fraction <= 1:
            raise ScheduleError(f"compute_fraction must be in (0, 1], got {compute_fraction!r}")
        target = float(compute_fraction)
    cost, unit = _cost_fn(profile)
    k = profile.lookahead if lookahead is None else lookahead
    blocks = [(key, b) for key in profile.keys for b in (profile.blocks(key) if per_block else [None])]
    values = {0.0}
    for key, block in blocks:
        for row in profile.rows(key, block)[:k]:
            values.update(v for v in row if math.isfinite(v))
    candidates = sorted(values)

    def build(alpha: float) -> Schedule:
        return schedule_from_profile(profile, alpha, lookahead=k, per_block=per_block)

    most = build(candidates[-1])
    if cost(most) > target + 1e-12:
        raise ScheduleError(
            f"no alpha reaches a compute fraction of {target:.1%} ({unit}); the most aggressive schedule of this "
            f"calibration (lookahead {k}) keeps {cost(most):.1%}"
        )
    lo, hi = 0, len(candidates) - 1  # invariant: candidates[hi] meets the budget
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(build(candidates[mid])) <= target + 1e-12:
            hi = mid
        else:
            lo = mid + 1
    schedule = build(candidates[hi])
    schedule.metadata.update(budget=target, achieved=cost(schedule), cost_unit=unit)
    return schedule
