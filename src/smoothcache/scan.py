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
) -> Schedule:
    """Scan a calibration profile's curves (averaged over blocks, or per block) into a :class:`Schedule`.

    Args:
        profile: the calibration.
        alpha: error threshold; larger means more reuse.
        lookahead: use reuse distances up to this K (default: the profile's K).
        per_block: one schedule per block (``"attn1-3"`` keys) instead of one per branch type.
        num_steps: schedule length (default: the calibration's step count). Steps past the calibrated ones
            are computed; to change the step count, use :func:`smoothcache.resample` instead.
    """
    alpha = check_alpha(alpha)
    k = profile.lookahead if lookahead is None else lookahead
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ScheduleError(f"lookahead must be an integer >= 1, got {lookahead!r}")
    if k > profile.lookahead:
        raise ScheduleError(f"lookahead {k} exceeds the profile's calibrated lookahead {profile.lookahead}")
    steps = profile.num_steps if num_steps is None else num_steps
    entries: dict[str, list[int]] = {}
    for key in profile.keys:
        if per_block:
            for block in profile.blocks(key):
                entries[f"{key}-{block}"] = scan(profile.rows(key, block)[:k], alpha, steps)
        else:
            entries[key] = scan(profile.rows(key)[:k], alpha, steps)
    return Schedule(entries, metadata={"alpha": alpha, "lookahead": k, "per_block": per_block})
