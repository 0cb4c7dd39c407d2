"""A compute budget split across rows: each row's count of computed steps, minimising the summed error.

Every row (all branches of the model, or of one block, with ``per_block``) has a
:class:`~smoothcache.planning.frontier.RowFrontier`: its least error for each count n of computed steps.
:func:`split_budget` chooses the counts under ``sum(weight_i * n_i) <= budget``, exactly (Pareto fronts of the
rows' cost and error, merged) when that search stays under :data:`MAX_PAIRS` candidates, else by a Lagrange
multiplier with a greedy fill of the leftover budget (and says which in :attr:`Split.exact`).

>>> import numpy as np
>>> from smoothcache.planning.frontier import RowErrors, frontier
>>> fronts = {"a": frontier(RowErrors(np.full((2, 6), 0.1))), "b": frontier(RowErrors(np.full((2, 6), 0.3)))}
>>> result = split_budget(fronts, {"a": 1.0, "b": 1.0}, budget=8)
>>> result.counts, round(result.total_error, 3)
({'a': 3, 'b': 5}, 0.6)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import ScheduleError
from .frontier import RowFrontier

__all__ = ["MAX_PAIRS", "Split", "least_cost", "split_budget"]

logger = logging.getLogger(__name__)

#: Bound on the candidate pairs of the exact search (memory about 40 bytes each).
MAX_PAIRS = 2_000_000


@dataclass(frozen=True)
class Split:
    """A budget split across rows.

    Attributes:
        counts: name -> number of computed steps.
        errors: name -> that row's calibrated error.
        total_error: sum of ``errors``.
        cost: ``sum(weights[name] * counts[name])``.
        budget: the largest cost allowed.
        lower_bound: no split within the budget has less total error (Lagrangian bound; equals
            ``total_error`` when ``exact``).
        exact: True when the split is proven optimal, False for the Lagrange + greedy-fill heuristic.
    """

    counts: dict[str, int]
    errors: dict[str, float]
    total_error: float
    cost: float
    budget: float
    lower_bound: float
    exact: bool


def _hull_moves(errors: np.ndarray, row: int, weight: float) -> list[tuple[float, int, int]]:
    """Moves (error change per cost, row, new count) along the lower convex hull of n -> errors[n]."""
    hull: list[int] = []
    for n in np.flatnonzero(np.isfinite(errors)).tolist():
        while len(hull) >= 2:
            (a, b), ea, eb = hull[-2:], errors[hull[-2]], errors[hull[-1]]
            if (eb - ea) * (n - a) > (errors[n] - ea) * (b - a):  # hull[-1] lies above the chord
                hull.pop()
            else:
                break
        hull.append(n)
    hull = hull[: int(np.argmin(errors[hull])) + 1]
    ratios = [(errors[b] - errors[a]) / (weight * (b - a)) for a, b in zip(hull, hull[1:])]
    return [(r, row, b) for r, b in zip(np.maximum.accumulate(ratios).tolist() if ratios else [], hull[1:])]


def _lagrange(errs: list[np.ndarray], m: np.ndarray, budget: float) -> tuple[np.ndarray, float]:
    """Counts of the Lagrangian solution at the budget's critical multiplier, and that multiplier.

    Equivalent to bisecting lambda until each row's ``argmin_n errors[n] + lambda * macs * n`` just fits:
    the hull moves of all rows, taken steepest first until one does not fit.
    """
    counts = np.array([np.flatnonzero(np.isfinite(e))[0] for e in errs])
    moves = sorted((mv for i, e in enumerate(errs) for mv in _hull_moves(e, i, m[i])), key=lambda mv: mv[0])
    cost = float(m @ counts)
    for ratio, i, n in moves:
        step = m[i] * (n - counts[i])
        if cost + step > budget:
            return counts, -ratio
        counts[i], cost = n, cost + step
    return counts, 0.0


def _greedy_fill(errs: list[np.ndarray], m: np.ndarray, counts: np.ndarray, budget: float) -> np.ndarray:
    """Spend leftover budget on the fitting move with the largest error drop per cost, until none helps."""
    counts = counts.copy()
    while True:
        slack = budget - float(m @ counts)
        best = (0.0, -1, -1)
        for i, e in enumerate(errs):
            ns = np.arange(counts[i] + 1, min(len(e), counts[i] + 1 + int(slack // m[i]) + 1))
            ns = ns[m[i] * (ns - counts[i]) <= slack]
            if len(ns) == 0:
                continue
            ratio = (e[ns] - e[counts[i]]) / (m[i] * (ns - counts[i]))
            j = int(np.argmin(ratio))
            if ratio[j] < best[0]:
                best = (float(ratio[j]), i, int(ns[j]))
        if best[1] < 0:
            return counts
        counts[best[1]] = best[2]


def _exact(errs: list[np.ndarray], m: np.ndarray, budget: float, upper: float) -> np.ndarray | None:
    """Optimal counts, or None if the search would exceed :data:`MAX_PAIRS` candidate pairs.

    Rows of equal MACs are combined exactly by a min-plus convolution over their total count; the
    groups are then merged as Pareto fronts (cost ascending, error strictly falling), pruned by the
    budget and by the heuristic's error ``upper``; the last group is matched by binary search.
    """
    groups: dict[float, list[int]] = {}
    for i, w in enumerate(m.tolist()):
        groups.setdefault(w, []).append(i)
    convolved = []  # (weight, rows, least error per total count, per row: its count per running total)
    for w, rows in groups.items():
        acc, choices = np.zeros(1), []
        for i in rows:
            size = len(acc) + len(errs[i]) - 1
            new, pick = np.full(size, np.inf), np.zeros(size, int)
            for n in np.flatnonzero(np.isfinite(errs[i])).tolist():
                cand, part = acc + errs[i][n], new[n : n + len(acc)]
                better = cand < part
                part[better] = cand[better]
                pick[n : n + len(acc)][better] = n
            acc = new
            choices.append(pick)
        convolved.append((w, rows, acc, choices))
    least = [w * np.flatnonzero(np.isfinite(acc))[0] for w, _, acc, _ in convolved]
    upper += 1e-9 * (1.0 + upper)
    cost, err, trail = np.zeros(1), np.zeros(1), []  # trail: per group, (parent entry, group total) per entry
    for g, (w, _, acc, _) in enumerate(convolved):
        fits = w * np.arange(len(acc)) <= budget - sum(least) + least[g]
        totals = np.flatnonzero(np.isfinite(acc) & (acc <= upper) & fits)
        totals = totals[acc[totals] < np.minimum.accumulate(np.concatenate([[np.inf], acc[totals]]))[:-1]]
        pc, pe = w * totals, acc[totals]
        if g == len(convolved) - 1:  # the front's error falls with its cost: take the dearest entry that fits
            limit = np.searchsorted(cost, budget - pc, side="right") - 1
            tot = np.where(limit >= 0, err[np.maximum(limit, 0)] + pe, np.inf)
            j = int(np.argmin(tot))
            if not np.isfinite(tot[j]):  # only by rounding against the heuristic's own split
                return None
            trail.append((limit[j : j + 1], totals[j : j + 1]))
            break
        if len(cost) * len(totals) > MAX_PAIRS:
            return None
        c, e = (cost[:, None] + pc).ravel(), (err[:, None] + pe).ravel()
        keep = np.flatnonzero((c + sum(least[g + 1 :]) <= budget) & (e <= upper))
        keep = keep[np.lexsort((e[keep], c[keep]))]
        keep = keep[e[keep] < np.minimum.accumulate(np.concatenate([[np.inf], e[keep]]))[:-1]]
        cost, err = c[keep], e[keep]
        trail.append((keep // len(totals), totals[keep % len(totals)]))
    counts, entry = np.zeros(len(m), dtype=int), 0
    for (w, rows, acc, choices), (parent, totals) in zip(reversed(convolved), reversed(trail)):
        total, entry = int(totals[entry]), int(parent[entry])
        for i, pick in zip(reversed(rows), reversed(choices)):
            counts[i] = pick[total]
            total -= counts[i]
    return counts


def least_cost(frontiers: Mapping[str, RowFrontier], weights: Mapping[str, float]) -> float:
    """The cost of the cheapest allowed rows: ``sum(weight * fewest computed steps)``."""
    return float(sum(weights[n] * f.min_count for n, f in frontiers.items()))


def split_budget(frontiers: Mapping[str, RowFrontier], weights: Mapping[str, float], budget: float) -> Split:
    """Each row's count of computed steps, minimising the summed error with ``sum(weight * n) <= budget``.

    Args:
        frontiers: row name -> its frontier; all with the same T.
        weights: row name -> the cost of one computed step of that row (MACs, seconds...), > 0.
        budget: the largest ``sum(weights[name] * computed_steps[name])``, in the units of ``weights``.

    The budget is met up to a relative 1e-9 of the uncached cost (rounding of sums). Cost beyond the
    frontiers: O(R * T * log) for the Lagrange split and fill, and for the exact search a convolution per
    row plus one pairwise merge per distinct weight but the last.
    """
    if not frontiers or set(frontiers) != set(weights):
        raise ScheduleError(
            f"frontiers and weights must name the same rows, got {sorted(frontiers)} and {sorted(weights)}"
        )
    names = list(frontiers)
    m = np.array([float(weights[n]) for n in names])
    if not (np.isfinite(m) & (m > 0)).all():
        raise ScheduleError(f"row weights must be finite and > 0, got {dict(zip(names, m.tolist()))}")
    errs = [frontiers[n].errors for n in names]
    if len({len(e) for e in errs}) != 1:
        raise ScheduleError(
            f"all rows must have the same number of steps, got {sorted({len(e) - 1 for e in errs})}"
        )
    least = least_cost(frontiers, weights)
    if not (isinstance(budget, (int, float, np.floating)) and math.isfinite(budget)) or budget < least * (
        1 - 1e-12
    ):
        raise ScheduleError(
            f"budget {budget!r} is out of reach: the least cost of any allowed schedule is {least:g}"
        )
    budget_tol = float(budget) + 1e-9 * float(m.sum()) * (len(errs[0]) - 1)  # float slack on sums of weights
    counts, lam = _lagrange(errs, m, budget_tol)
    bound = sum(float(np.min(e + lam * w * np.arange(len(e)))) for e, w in zip(errs, m)) - lam * budget_tol
    counts = _greedy_fill(errs, m, counts, budget_tol)
    total = sum(float(e[n]) for e, n in zip(errs, counts))
    found = _exact(errs, m, budget_tol, total)
    if found is None:
        logger.info(
            "exact split too large for %d candidate pairs; kept the Lagrange + greedy split", MAX_PAIRS
        )
    elif sum(float(e[n]) for e, n in zip(errs, found)) <= total:  # the exact search keeps no worse candidates
        counts = found
    per_row = {n: float(e[c]) for n, e, c in zip(names, errs, counts)}
    total = float(sum(per_row.values()))
    return Split(
        counts={n: int(c) for n, c in zip(names, counts)},
        errors=per_row,
        total_error=total,
        cost=float(m @ counts),
        budget=float(budget),
        lower_bound=total if found is not None else min(max(bound, 0.0), total),
        exact=found is not None,
    )
