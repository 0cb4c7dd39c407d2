"""Optimal compute steps of one row: exact dynamic programming over calibrated error tables.

A *row* is the 0/1 compute list (length T, 1 = compute) of one branch type or of one block's branch;
steps 0 and T-1 are always computed. A skipped step is served by a *predictor* from the computed steps
before it, with the calibrated error of :class:`ErrorTable` (NaN = unknown, never planned):

- ``"reuse"``: last computed step b serves step b+k with error ``reuse[k-1, b]`` (k = 1..K).
- ``"linear"``: extrapolation from the last two computed steps b-d and b: ``linear[k-1, d-1, b]``;
  while step 0 is the only computed step it falls back to ``reuse``.
- ``"quadratic"``: from b-d1-d2, b-d1 and b: ``quadratic[k-1, d1-1, d2-1, b]``; falls back to linear,
  then reuse, at the start.

:func:`error_curve` gives one row's least total error for every count n of computed steps, and a row
reaching it; :func:`row_error` scores a given row. Splitting a budget across rows is
:mod:`smoothcache.allocation`.

>>> import numpy as np
>>> table = ErrorTable(reuse=np.array([[0.1, 0.3, 0.3, 0.1, 0.1, 0.1], [0.2, 0.9, 0.9, 0.2, 0.2, 0.2]]))
>>> curve = error_curve(table, "reuse")
>>> curve.min_count, round(float(curve.errors[4]), 3), curve.row(4).tolist()
(3, 0.2, [1, 0, 1, 1, 0, 1])
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["PREDICTORS", "ErrorTable", "ErrorCurve", "PlanError", "error_curve", "row_error"]

PREDICTORS = {"reuse": 1, "linear": 2, "quadratic": 3}  # predictor -> number of source steps


class PlanError(ValueError):
    """Bad planner input: a malformed table, an unknown predictor or method, an unreachable budget."""


def _array(name: str, value, ndim: int) -> np.ndarray:
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"{name} must be an array of numbers: {exc}") from None
    if a.ndim != ndim or 0 in a.shape:
        raise PlanError(f"{name} must be a non-empty {ndim}-d array, got shape {a.shape}")
    if np.isinf(a).any():
        raise PlanError(f"{name} has infinite entries; mark unknown errors with NaN")
    if (a < 0).any():
        raise PlanError(f"{name} has negative errors (min {np.nanmin(a):g})")
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class ErrorTable:
    """Calibrated errors of one row, per predictor; NaN where unknown.

    Args:
        reuse: ``[K, T]``; ``reuse[k-1, b]`` = error at step b+k when b is the last computed step.
        linear: ``[K, D, T]`` or None; ``linear[k-1, d-1, b]`` = error at step b+k when the last two
            computed steps are b-d and b.
        quadratic: ``[K, D, D, T]`` or None (needs ``linear``); ``quadratic[k-1, d1-1, d2-1, b]`` = error
            at step b+k from the computed steps b-d1-d2, b-d1 and b.
    """

    reuse: np.ndarray
    linear: np.ndarray | None = None
    quadratic: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "reuse", _array("reuse", self.reuse, 2))
        k, t = self.reuse.shape
        if self.linear is not None:
            object.__setattr__(self, "linear", _array("linear", self.linear, 3))
            if self.linear.shape[0] != k or self.linear.shape[2] != t:
                raise PlanError(f"linear must have shape [K={k}, D, T={t}], got {self.linear.shape}")
        if self.quadratic is not None:
            if self.linear is None:
                raise PlanError("quadratic needs a linear table (its fallback at the start)")
            object.__setattr__(self, "quadratic", _array("quadratic", self.quadratic, 4))
            d = self.linear.shape[1]
            if self.quadratic.shape != (k, d, d, t):
                raise PlanError(f"quadratic must have shape [K={k}, D={d}, D={d}, T={t}], got {self.quadratic.shape}")

    @property
    def lookahead(self) -> int:
        """K: the longest skip run the table knows."""
        return self.reuse.shape[0]

    @property
    def num_steps(self) -> int:
        """T: the number of steps of a row."""
        return self.reuse.shape[1]

    def limited(self, lookahead: int) -> "ErrorTable":
        """The same table with skip runs limited to ``lookahead`` steps."""
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or not 1 <= lookahead <= self.lookahead:
            raise PlanError(f"lookahead must be an integer in [1, {self.lookahead}], got {lookahead!r}")
        cut = slice(0, lookahead)
        return ErrorTable(self.reuse[cut], None if self.linear is None else self.linear[cut],
                          None if self.quadratic is None else self.quadratic[cut])

    def check_predictor(self, predictor: str, name: str = "table") -> int:
        """The number of source steps of ``predictor``; PlanError if unknown or not recorded in this table."""
        if predictor not in PREDICTORS:
            raise PlanError(f"unknown predictor {predictor!r}; choose one of {sorted(PREDICTORS)}")
        if getattr(self, predictor) is None:
            raise PlanError(f"{name} has no {predictor!r} errors (the calibration did not record them)")
        return PREDICTORS[predictor]


def _states(order: int, gap: int) -> list[tuple[int, ...]]:
    """Histories (gaps to the previous computed steps, newest first) a DP state remembers.

    At least one gap is kept even for reuse: it names the predecessor, which makes back-tracking trivial.
    """
    keep = max(order - 1, 1)
    return [h for n in range(keep + 1) for h in itertools.product(range(1, gap + 1), repeat=n)]


def _check_power(power) -> float:
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not 1 <= power <= 4:
        raise PlanError(f"power must be a number in [1, 4], got {power!r}")
    return float(power)


def _segment_errors(table: ErrorTable, order: int, states: list[tuple[int, ...]], power: float = 1.0) -> np.ndarray:
    """``seg[s, g-1, b]``: cost of skipping b+1..b+g-1 between computed b and b+g in history s (the run's summed
    error to ``power``); inf if not allowed."""
    k, t = table.reuse.shape
    seg = np.full((len(states), k + 1, t), np.inf)
    for s, hist in enumerate(states):
        sources = min(order, len(hist) + 1)
        spacing = table.linear.shape[1] if sources > 1 else 0
        if any(d > spacing for d in hist[: sources - 1]):
            err = np.full((k, t), np.nan)  # spacing beyond the table: unknown
        elif sources == 1:
            err = table.reuse
        elif sources == 2:
            err = table.linear[:, hist[0] - 1]
        else:
            err = table.quadratic[:, hist[0] - 1, hist[1] - 1]
        seg[s, 0] = 0.0
        seg[s, 1:] = np.cumsum(np.where(np.isnan(err), np.inf, err), axis=0) ** power
    return seg


@dataclass(frozen=True)
class ErrorCurve:
    """One row's least total error per count of computed steps, with the rows reaching it.

    Attributes:
        errors: ``[T+1]``; ``errors[n]`` = least error with n computed steps (inf where impossible).
        predictor: the predictor the errors belong to.
        power: the exponent applied to each skip run's summed error (see :func:`error_curve`).
    """

    errors: np.ndarray
    predictor: str
    power: float
    _back: np.ndarray  # [T, S, T+1] state index of the predecessor (uint8 for S <= 256 histories)
    _final: np.ndarray  # [T+1] state at step T-1 of the best row per n
    _gaps: np.ndarray  # [S] newest gap of each state

    @property
    def counts(self) -> np.ndarray:
        """The feasible counts n, ascending."""
        return np.flatnonzero(np.isfinite(self.errors))

    @property
    def min_count(self) -> int:
        """The fewest computed steps any allowed row has."""
        return int(self.counts[0])

    def row(self, n: int) -> np.ndarray:
        """A 0/1 row (int8, length T) with ``n`` computed steps and error ``errors[n]``."""
        if not (isinstance(n, (int, np.integer)) and 0 <= n < len(self.errors) and np.isfinite(self.errors[n])):
            raise PlanError(f"no allowed row computes {n!r} steps; feasible counts are {self.counts.tolist()}")
        t = len(self.errors) - 1
        row = np.zeros(t, dtype=np.int8)
        b, s, n = t - 1, int(self._final[n]), int(n)
        row[b] = 1
        while b > 0:
            s, b, n = int(self._back[b, s, n]), b - int(self._gaps[s]), n - 1
            row[b] = 1
        return row


def error_curve(table: ErrorTable, predictor: str = "reuse", power: float = 1.0) -> ErrorCurve:
    """Exact least error of one row for every count of computed steps (dynamic programming).

    A row's error is the sum over its skip runs of ``(sum of the run's step errors) ** power``: ``power=1``
    sums every skipped step's error; ``power=2`` adds the errors of one run coherently (they come from the
    same source steps) and different runs as independent (a sum of squares, like variances).

    State: (last computed step b, gaps to the ``order - 1`` computed steps before it, count n), vectorised
    over n. Each state at b+g has exactly one predecessor step b = (b+g) - gap, so the DP is a forward pass
    of ``T * (K+1) * S`` small vector operations (S = 1 + G + ... + G^(order-1) histories, G = K+1).

    Args:
        table: the row's calibrated errors.
        predictor: ``"reuse"``, ``"linear"`` or ``"quadratic"``.
        power: exponent of each run's summed error, in [1, 4].
    """
    order = table.check_predictor(predictor)
    power = _check_power(power)
    k, t = table.reuse.shape
    gap = k + 1
    states = _states(order, gap)
    index = {h: i for i, h in enumerate(states)}
    seg = _segment_errors(table, order, states, power)
    keep = max(order - 1, 1)
    preds: dict[int, list[tuple[int, np.ndarray]]] = {}  # gap -> [(state, predecessor states)]
    for g in range(1, gap + 1):
        groups: dict[int, list[int]] = {}
        for i, h in enumerate(states):
            groups.setdefault(index[((g,) + h)[:keep]], []).append(i)
        preds[g] = [(s, np.array(v)) for s, v in groups.items()]
    best = np.full((t, len(states), t + 1), np.inf)
    back = np.zeros((t, len(states), t + 1), dtype=np.uint8 if len(states) <= 256 else np.int32)
    best[0, 0, 1] = 0.0
    alive = np.zeros((t, len(states)), dtype=bool)
    alive[0, 0] = True
    for b in range(t - 1):
        here = best[b, :, :-1]
        for g in range(1, min(gap, t - 1 - b) + 1):
            cost = seg[:, g - 1, b]
            for s, hs in preds[g]:
                hs = hs[alive[b, hs] & np.isfinite(cost[hs])]
                if len(hs) == 0:
                    continue
                cand = here[hs] + cost[hs, None]
                j = cand.argmin(axis=0)
                best[b + g, s, 1:] = cand[j, np.arange(t)]
                back[b + g, s, 1:] = hs[j]
                alive[b + g, s] = True
    last = best[t - 1]
    final = last.argmin(axis=0)
    gaps = np.array([h[0] if h else 0 for h in states])
    return ErrorCurve(last[final, np.arange(t + 1)], predictor, power, back, final, gaps)


def row_error(row: Sequence[int], table: ErrorTable, predictor: str = "reuse", power: float = 1.0) -> float:
    """The calibrated total error of a given 0/1 row (inf if it needs an unknown error or too long a skip).

    Args:
        row: 0/1 list of length T with the first and last step computed.
        table: the row's calibrated errors.
        predictor: ``"reuse"``, ``"linear"`` or ``"quadratic"``.
        power: exponent of each run's summed error, as for :func:`error_curve`.
    """
    order = table.check_predictor(predictor)
    power = _check_power(power)
    r = np.asarray(row)
    if r.shape != (table.num_steps,) or not np.isin(r, (0, 1)).all() or r[0] != 1 or r[-1] != 1:
        raise PlanError(f"row must be a 0/1 list of length {table.num_steps} starting and ending with 1")
    states = _states(order, table.lookahead + 1)
    seg = _segment_errors(table, order, states, power)
    index = {h: i for i, h in enumerate(states)}
    steps = np.flatnonzero(r).tolist()
    total, hist = 0.0, ()
    for b, nxt in zip(steps, steps[1:]):
        if nxt - b > table.lookahead + 1:
            return math.inf
        total += seg[index[hist], nxt - b - 1, b]
        hist = ((nxt - b,) + hist)[: max(order - 1, 1)]
    return float(total)
