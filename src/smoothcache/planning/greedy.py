"""The greedy scan of SmoothCache: error tables and one threshold alpha to a 0/1 row, and the bisection of
alpha that meets a budget.

``errors[k-1][i]`` is the mean relative L1 error of reusing step ``i``'s output at step ``i + k``. Walking
the steps from the first, at a computed step ``i`` the scan takes the largest ``k <= K`` whose error is
``<= alpha``, and skips the next ``k`` steps; if no ``k`` qualifies, step ``i + 1`` is computed too. The
first and last steps are always computed. This reproduces the schedules of the original implementation
(Roblox/SmoothCache ``CalibrationHelper``) on the same errors.

:func:`scan_linear` walks the same way with the linear forecast's errors, which depend on the spacing of
the last two computed steps as well.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..errors import BudgetError, ScheduleError
from ..validate import check_int, check_number

__all__ = ["budget_alpha", "scan", "scan_linear"]


def _finish(schedule: list[int]) -> list[int]:
    schedule[0] = schedule[-1] = 1
    return schedule


def scan(errors: Sequence[Sequence[float]], alpha: float, num_steps: int) -> list[int]:
    """The 0/1 row of length ``num_steps`` for reuse errors ``errors[k-1]`` (k = 1..K) and threshold alpha.

    ``errors[k-1]`` may be shorter than ``num_steps`` (it naturally has ``T - k`` entries); a step past its
    end cannot use that k. NaN errors never qualify.
    """
    alpha = check_number(alpha, "alpha", error=ScheduleError)
    check_int(num_steps, "num_steps", error=ScheduleError)
    schedule = [1] * num_steps
    i = 0
    while i < num_steps:
        for k in range(len(errors), 0, -1):
            row = errors[k - 1]
            if i < len(row) and row[i] <= alpha:
                for j in range(i + 1, min(i + k + 1, num_steps)):
                    schedule[j] = 0
                i += k + 1
                break
        else:
            i += 1
    return _finish(schedule)


def scan_linear(reuse: np.ndarray, linear: np.ndarray, alpha: float, num_steps: int) -> list[int]:
    """The greedy scan for the linear forecast.

    Args:
        reuse: ``[K, T]`` reuse errors (used while only one step has been computed).
        linear: ``[K, D, T]`` errors; ``linear[k-1, d-1, i]`` forecasts step ``i + k`` from steps ``i - d``,
            ``i``.
        alpha: threshold.
        num_steps: length of the schedule (the tables' T).
    """
    alpha = check_number(alpha, "alpha", error=ScheduleError)
    check_int(num_steps, "num_steps", error=ScheduleError)
    lookahead, spacings = linear.shape[0], linear.shape[1]
    schedule = [1] * num_steps
    i, previous = 0, None
    while i < num_steps - 1:
        skip = 0
        for k in range(lookahead, 0, -1):
            if i + k >= num_steps - 1:  # the last step always computes
                continue
            d = None if previous is None else i - previous
            error = reuse[k - 1, i] if d is None else (linear[k - 1, d - 1, i] if d <= spacings else np.nan)
            if error <= alpha:
                skip = k
                break
        for j in range(i + 1, i + skip + 1):
            schedule[j] = 0
        previous, i = i, i + skip + 1
    return _finish(schedule)


def budget_alpha(
    errors: Sequence[np.ndarray], build: Callable[[float], dict], cost: Callable[[dict], float], target: float
) -> tuple[float, dict]:
    """The smallest alpha whose rows ``build(alpha)`` keep at most ``target`` of the compute, and those rows.

    The scan only changes where alpha crosses a recorded error, so the search bisects the sorted recorded
    errors (``errors``: every table scanned). ScheduleError naming the best reachable fraction if none fits.
    """
    values = {0.0}
    for table in errors:
        values.update(float(v) for v in np.ravel(table) if math.isfinite(v))
    candidates = sorted(values)
    most = build(candidates[-1])
    if cost(most) > target + 1e-12:
        raise BudgetError(
            f"no alpha reaches a compute fraction of {target:.1%}; the most aggressive greedy schedule of "
            f"this calibration keeps {cost(most):.1%} (speed-up {1 / cost(most):.2f}x)", cost(most))
    lo, hi = 0, len(candidates) - 1  # invariant: candidates[hi] meets the budget
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(build(candidates[mid])) <= target + 1e-12:
            hi = mid
        else:
            lo = mid + 1
    return candidates[hi], build(candidates[hi])
