"""The least calibrated error of one row for every count of computed steps: exact dynamic programming.

A *row* is a 0/1 compute list of length T (1 = compute); steps 0 and T-1 are always computed. A skipped step
is served by a predictor from the computed steps before it, with the calibrated error of :class:`RowErrors`
(NaN = unknown, never planned):

- ``"reuse"``: the last computed step b serves step b+k with error ``reuse[k-1, b]`` (k = 1..K);
- ``"linear"``: the extrapolation from the last two computed steps b-d and b, ``linear[k-1, d-1, b]``; while
  step 0 is the only computed step it falls back to ``reuse``.

A row's error is the sum over its skip runs of ``(the run's summed step errors) ** power``. With several
predictors allowed, each run takes the one with the least cost: the choice does not change which steps are
computed, so it never constrains later runs. :func:`frontier` returns, for every count n of computed steps,
the least error and a row (with its runs' predictors) reaching it.

>>> import numpy as np
>>> errors = RowErrors(reuse=np.array([[0.1, 0.3, 0.3, 0.1, 0.1, 0.1], [0.2, 0.9, 0.9, 0.2, 0.2, 0.2]]))
>>> best = frontier(errors)
>>> best.min_count, round(float(best.errors[4]), 3), best.row(4).tolist()
(3, 0.2, [1, 0, 1, 1, 0, 1])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ScheduleError
from ..predictors import PREDICTORS

__all__ = ["RowErrors", "RowFrontier", "frontier"]


def _array(name: str, value, ndim: int) -> np.ndarray:
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ScheduleError(f"{name} errors must be an array of numbers: {exc}") from None
    if a.ndim != ndim or 0 in a.shape:
        raise ScheduleError(f"{name} errors must be a non-empty {ndim}-d array, got shape {a.shape}")
    if np.isinf(a).any():
        raise ScheduleError(f"{name} errors have infinite entries; mark unknown errors with NaN")
    if (a < 0).any():
        raise ScheduleError(f"{name} errors are negative (min {np.nanmin(a):g})")
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class RowErrors:
    """The calibrated errors of one row, per predictor; NaN where unknown.

    Args:
        reuse: ``[K, T]``; ``reuse[k-1, b]`` = error at step b+k when b is the last computed step.
        linear: ``[K, D, T]`` or None; ``linear[k-1, d-1, b]`` = error at step b+k when the last two
            computed steps are b-d and b.
    """

    reuse: np.ndarray
    linear: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "reuse", _array("reuse", self.reuse, 2))
        k, t = self.reuse.shape
        if self.linear is not None:
            object.__setattr__(self, "linear", _array("linear", self.linear, 3))
            if self.linear.shape[0] != k or self.linear.shape[2] != t:
                raise ScheduleError(
                    f"linear errors must have shape [K={k}, D, T={t}], got {self.linear.shape}"
                )

    @property
    def lookahead(self) -> int:
        """K: the longest skip run the errors know."""
        return self.reuse.shape[0]

    @property
    def num_steps(self) -> int:
        """T: the number of steps of a row."""
        return self.reuse.shape[1]

    def check(self, predictors: Sequence[str]) -> tuple[str, ...]:
        """``predictors`` as a tuple; ScheduleError if one is unknown or has no errors here."""
        predictors = tuple(predictors)
        if not predictors:
            raise ScheduleError("no predictor to plan for")
        for p in predictors:
            if p not in PREDICTORS:
                raise ScheduleError(f"unknown predictor {p!r}; choose from {list(PREDICTORS)}")
            if getattr(self, p) is None:
                raise ScheduleError(f"the errors of the {p!r} predictor were not recorded for this row")
        return predictors


def _run_costs(errors: RowErrors, predictors: Sequence[str], power: float) -> tuple[np.ndarray, np.ndarray]:
    """``cost[d, g-1, b]``: least cost of skipping steps b+1..b+g-1 between computed b and b+g, when the
    computed step before b is b-d (d = 0: none), over ``predictors``; inf where no predictor may serve the
    run. ``choice`` holds the index into ``predictors`` of the one chosen."""
    k, t = errors.reuse.shape
    gap = k + 1
    spacings = 0 if errors.linear is None else errors.linear.shape[1]
    cost = np.full((len(predictors), gap + 1, gap, t), np.inf)
    for i, predictor in enumerate(predictors):
        for d in range(gap + 1):
            cost[i, d, 0] = 0.0  # no step skipped
            if predictor == "reuse" or d == 0:
                err = errors.reuse
            elif d <= spacings:
                err = errors.linear[:, d - 1]
            else:  # spacing beyond the table: unknown
                continue
            cost[i, d, 1:] = np.cumsum(np.where(np.isnan(err), np.inf, err), axis=0) ** power
    choice = cost.argmin(axis=0).astype(np.int8)
    return cost.min(axis=0), choice


@dataclass(frozen=True)
class RowFrontier:
    """One row's least error per count of computed steps, with the rows reaching it.

    Attributes:
        errors: ``[T+1]``; ``errors[n]`` = least error with n computed steps (inf where impossible).
        predictors: the predictors the runs could choose from.
        power: the exponent applied to each skip run's summed error.
    """

    errors: np.ndarray
    predictors: tuple[str, ...]
    power: float
    _back: np.ndarray  # [T, G+1, T+1] the state (gap to the previous computed step) of the predecessor
    _final: np.ndarray  # [T+1] the state at step T-1 of the best row per n
    _choice: np.ndarray  # [G+1, G, T] predictor index chosen per run

    @property
    def counts(self) -> np.ndarray:
        """The feasible counts n, ascending."""
        return np.flatnonzero(np.isfinite(self.errors))

    @property
    def min_count(self) -> int:
        """The fewest computed steps any allowed row has."""
        return int(self.counts[0])

    def _walk(self, n: int) -> list[tuple[int, int, int]]:
        """(computed step, gap to the previous computed step, that step's own gap) from the last step back."""
        if not (
            isinstance(n, (int, np.integer)) and 0 <= n < len(self.errors) and np.isfinite(self.errors[n])
        ):
            raise ScheduleError(
                f"no allowed row computes {n!r} steps; feasible counts are {self.counts.tolist()}"
            )
        b, d, n = len(self.errors) - 2, int(self._final[n]), int(n)
        out = []
        while b > 0:
            before = int(self._back[b, d, n])
            out.append((b, d, before))
            b, d, n = b - d, before, n - 1
        return out

    def row(self, n: int) -> np.ndarray:
        """A 0/1 row (int8, length T) with ``n`` computed steps and error ``errors[n]``."""
        row = np.zeros(len(self.errors) - 1, dtype=np.int8)
        row[0] = 1
        for b, _, _ in self._walk(n):
            row[b] = 1
        return row

    def run_predictors(self, n: int) -> list[str | None]:
        """The predictor serving each step of :meth:`row` ``(n)`` (None on computed steps)."""
        out: list[str | None] = [None] * (len(self.errors) - 1)
        for b, d, before in self._walk(n):
            name = self.predictors[int(self._choice[before, d - 1, b - d])]
            for s in range(b - d + 1, b):
                out[s] = name
        return out


def _check_power(power) -> float:
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not 1 <= power <= 4:
        raise ScheduleError(f"power must be a number in [1, 4], got {power!r}")
    return float(power)


def frontier(errors: RowErrors, predictors: Sequence[str] = ("reuse",), power: float = 1.0) -> RowFrontier:
    """Exact least error of one row for every count of computed steps.

    State: (last computed step b, gap d to the computed step before it), vectorised over the count n. A state
    at b+g is reached only from step b, so the pass is ``T * (K+1)`` small vector operations over (d, n).

    Args:
        errors: the row's calibrated errors.
        predictors: the predictors a skip run may use (each run takes the cheapest).
        power: exponent of each run's summed error, in [1, 4] (2: errors of one run add up coherently, those
            of different runs as independent).
    """
    predictors = errors.check(predictors)
    power = _check_power(power)
    k, t = errors.reuse.shape
    gap = k + 1
    cost, choice = _run_costs(errors, predictors, power)
    best = np.full((t, gap + 1, t + 1), np.inf)
    back = np.zeros((t, gap + 1, t + 1), dtype=np.int16)
    best[0, 0, 1] = 0.0
    for b in range(t - 1):
        here = best[b, :, :-1]  # [d, n]
        if not np.isfinite(here).any():
            continue
        for g in range(1, min(gap, t - 1 - b) + 1):
            cand = here + cost[:, g - 1, b, None]  # [d, n]
            d = cand.argmin(axis=0)
            best[b + g, g, 1:] = cand[d, np.arange(t)]
            back[b + g, g, 1:] = d
    last = best[t - 1]
    final = last.argmin(axis=0)
    return RowFrontier(last[final, np.arange(t + 1)], predictors, power, back, final, choice)
