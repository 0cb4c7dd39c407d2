"""A compute budget split across rows: each row's count of computed steps, minimising the summed error.

Every row (a branch type, or one block's branch) has an :class:`~smoothcache.planner.ErrorCurve`: its least
error for each count n of computed steps. :func:`plan` chooses the counts under ``sum(macs_i * n_i) <=
budget``, exactly (Pareto fronts of the rows' cost and error, merged) or by a Lagrange multiplier with a
greedy fill of the leftover budget; :func:`plan_for_budget` takes the budget as a compute fraction or a
theoretical speed-up.

>>> import numpy as np
>>> from smoothcache.planner import ErrorTable
>>> tables = {"a": ErrorTable(np.full((2, 6), 0.1)), "b": ErrorTable(np.full((2, 6), 0.3))}
>>> result = plan(tables, {"a": 1.0, "b": 1.0}, budget=8)
>>> result.counts, round(result.total_error, 3)
({'a': 3, 'b': 5}, 0.6)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np

from .planner import ErrorCurve, ErrorTable, PlanError, error_curve

__all__ = ["METHODS", "Plan", "plan", "plan_for_budget"]

logger = logging.getLogger(__name__)

METHODS = ("auto", "exact", "lagrange")


@dataclass(frozen=True)
class Plan:
    """A budget split across rows.

    Attributes:
        rows: name -> 0/1 list (1 = compute).
        counts: name -> number of computed steps.
        errors: name -> that row's calibrated error.
        total_error: sum of ``errors``.
        cost: ``sum(macs[name] * counts[name])``.
        budget: the largest cost allowed.
        lower_bound: no split within the budget has less total error (Lagrangian bound; equals
            ``total_error`` when ``exact``).
        exact: True when the split is proven optimal, False for the Lagrange + greedy-fill heuristic.
        predictor: the predictor the errors belong to.
        compute_fraction, speedup: the schedule's share of the uncached compute and its inverse
            (set by :func:`plan_for_budget`, else None).
    """

    rows: dict[str, list[int]]
    counts: dict[str, int]
    errors: dict[str, float]
    total_error: float
    cost: float
    budget: float
    lower_bound: float
    exact: bool
    predictor: str
    compute_fraction: float | None = None
    speedup: float | None = None


def _curves(tables: Mapping[str, "ErrorTable | ErrorCurve"], macs: Mapping[str, float], predictor: str,
            power: float = 1.0):
    """Row names, their error curves (computed once) and their MACs, validated."""
    if not tables or set(tables) != set(macs):
        raise PlanError(f"tables and macs must name the same rows, got {sorted(tables)} and {sorted(macs)}")
    names = list(tables)
    m = np.array([float(macs[n]) for n in names])
    if not (np.isfinite(m) & (m > 0)).all():
        raise PlanError(f"macs must be finite and > 0, got {dict(zip(names, m.tolist()))}")
    curves = []
    for n in names:
        item = tables[n]
        if isinstance(item, ErrorTable):
            item.check_predictor(predictor, f"row {n!r}")
            item = error_curve(item, predictor, power)
        elif not isinstance(item, ErrorCurve) or item.predictor != predictor or item.power != power:
            raise PlanError(f"row {n!r}: expected an ErrorTable or a {predictor!r} ErrorCurve of power {power:g}, "
                            f"got {item!r:.60}")
        curves.append(item)
    if len({len(c.errors) for c in curves}) != 1:
        raise PlanError(f"all rows must have the same number of steps, got {sorted({len(c.errors) - 1 for c in curves})}")
    return names, curves, m


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


def _exact(errs: list[np.ndarray], m: np.ndarray, budget: float, upper: float, max_pairs: int) -> np.ndarray | None:
    """Optimal counts, or None if the search would exceed ``max_pairs`` candidate pairs.

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
            new, pick = np.full(len(acc) + len(errs[i]) - 1, np.inf), np.zeros(len(acc) + len(errs[i]) - 1, int)
            for n in np.flatnonzero(np.isfinite(errs[i])).tolist():
                cand, part = acc + errs[i][n], new[n: n + len(acc)]
                better = cand < part
                part[better] = cand[better]
                pick[n: n + len(acc)][better] = n
            acc = new
            choices.append(pick)
        convolved.append((w, rows, acc, choices))
    least = [w * np.flatnonzero(np.isfinite(acc))[0] for w, _, acc, _ in convolved]
    upper += 1e-9 * (1.0 + upper)
    cost, err, trail = np.zeros(1), np.zeros(1), []  # trail: per group, (parent entry, group total) per entry
    for g, (w, _, acc, _) in enumerate(convolved):
        totals = np.flatnonzero(np.isfinite(acc) & (acc <= upper) & (w * np.arange(len(acc)) <= budget - sum(least) + least[g]))
        totals = totals[acc[totals] < np.minimum.accumulate(np.concatenate([[np.inf], acc[totals]]))[:-1]]
        pc, pe = w * totals, acc[totals]
        if g == len(convolved) - 1:  # the front's error falls with its cost: take the dearest entry that fits
            limit = np.searchsorted(cost, budget - pc, side="right") - 1
            tot = np.where(limit >= 0, err[np.maximum(limit, 0)] + pe, np.inf)
            j = int(np.argmin(tot))
            if not np.isfinite(tot[j]):  # only by rounding against the heuristic's own split
                return None
            trail.append((limit[j:j + 1], totals[j:j + 1]))
            break
        if len(cost) * len(totals) > max_pairs:
            return None
        c, e = (cost[:, None] + pc).ravel(), (err[:, None] + pe).ravel()
        keep = np.flatnonzero((c + sum(least[g + 1:]) <= budget) & (e <= upper))
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


def _split(names, curves, m, budget: float, predictor: str, method: str, max_pairs: int) -> Plan:
    """:func:`plan` on validated rows; ``budget`` already checked reachable."""
    errs = [c.errors for c in curves]
    budget_tol = budget + 1e-9 * float(m.sum()) * (len(errs[0]) - 1)  # float slack on sums of MACs
    counts, lam = _lagrange(errs, m, budget_tol)
    bound = sum(float(np.min(e + lam * w * np.arange(len(e)))) for e, w in zip(errs, m)) - lam * budget_tol
    counts = _greedy_fill(errs, m, counts, budget_tol)
    total = sum(float(e[n]) for e, n in zip(errs, counts))
    exact = False
    if method != "lagrange":
        found = _exact(errs, m, budget_tol, total, max_pairs)
        if found is None and method == "exact":
            raise PlanError(f"the exact search needs more than max_pairs={max_pairs} candidates; use method='lagrange'")
        if found is None:
            logger.info("exact planner too large for max_pairs=%d; kept the Lagrange + greedy split", max_pairs)
        else:  # the exact search only keeps candidates no worse than the heuristic (up to rounding)
            exact = True
            if sum(float(e[n]) for e, n in zip(errs, found)) <= total:
                counts = found
    per_row = {n: float(e[c]) for n, e, c in zip(names, errs, counts)}
    total = float(sum(per_row.values()))
    return Plan(
        rows={n: cur.row(int(c)).tolist() for n, cur, c in zip(names, curves, counts)},
        counts={n: int(c) for n, c in zip(names, counts)},
        errors=per_row, total_error=total, cost=float(m @ counts), budget=budget,
        lower_bound=total if exact else min(max(bound, 0.0), total), exact=exact, predictor=predictor,
    )


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise PlanError(f"unknown planner method {method!r}; choose one of {list(METHODS)}")


def plan(tables: Mapping[str, "ErrorTable | ErrorCurve"], macs: Mapping[str, float], budget: float,
         predictor: str = "reuse", *, power: float = 1.0, method: str = "auto", max_pairs: int = 2_000_000) -> Plan:
    """Each row's computed steps, minimising the summed calibrated error with ``sum(macs * n) <= budget``.

    Args:
        tables: row name -> its :class:`ErrorTable`, or its :class:`ErrorCurve` for ``predictor`` (to
            plan many budgets from curves computed once); all with the same T.
        macs: row name -> MACs of one call of that row's branch (summed over its blocks), > 0.
        budget: the largest ``sum(macs[name] * computed_steps[name])``, in the units of ``macs``.
        predictor: ``"reuse"``, ``"linear"`` or ``"quadratic"``; every table must have its errors.
        power: each skip run costs its summed error to this power (:func:`~smoothcache.planner.error_curve`).
        method: ``"exact"`` (optimal; PlanError if larger than ``max_pairs``), ``"lagrange"`` (the
            Lagrangian solution at the budget's critical multiplier plus a greedy fill of the leftover),
            or ``"auto"`` (exact when it fits in ``max_pairs``, else lagrange).
        max_pairs: bound on the candidate pairs of the exact search (memory ~ 40 bytes each).

    The budget is met up to a relative 1e-9 of the uncached cost (rounding of MAC sums). Cost beyond the
    curves: O(R * T * log) for the Lagrange split and fill, and for the exact search a convolution per
    row plus one pairwise merge per distinct MAC value but the last.
    """
    _check_method(method)
    names, curves, m = _curves(tables, macs, predictor, power)
    least = float(sum(w * c.min_count for w, c in zip(m, curves)))
    if not (isinstance(budget, (int, float, np.floating)) and math.isfinite(budget)) \
            or budget < least * (1 - 1e-12):
        raise PlanError(f"budget {budget!r} is out of reach: the least cost of any allowed schedule is {least:g}")
    return _split(names, curves, m, float(budget), predictor, method, max_pairs)


def plan_for_budget(tables: Mapping[str, "ErrorTable | ErrorCurve"], macs: Mapping[str, float], total_macs: float,
                    *, compute_fraction: float | None = None, speedup: float | None = None,
                    predictor: str = "reuse", power: float = 1.0, method: str = "auto",
                    max_pairs: int = 2_000_000) -> Plan:
    """:func:`plan` for a compute fraction (or theoretical speed-up = 1 / fraction) of the uncached cost.

    The fraction of a schedule is ``(total_macs*T - sum_i macs_i*(T - n_i)) / (total_macs*T)``: the
    uncached cost minus what the skipped calls save.

    Args:
        tables, macs, predictor, power, method, max_pairs: as for :func:`plan`.
        total_macs: MACs of one whole denoiser call (cached rows and everything else), >= sum of ``macs``.
        compute_fraction: share of the uncached compute to keep, in (0, 1].
        speedup: theoretical speed-up >= 1 instead of ``compute_fraction``.
    """
    if (compute_fraction is None) == (speedup is None):
        raise PlanError("give exactly one of compute_fraction or speedup")
    value, name = (speedup, "speedup") if speedup is not None else (compute_fraction, "compute_fraction")
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (value >= 1 if name == "speedup" else 0 < value <= 1):
        raise PlanError(f"{name} must be {'a number >= 1' if name == 'speedup' else 'in (0, 1]'}, got {value!r}")
    fraction = 1.0 / value if name == "speedup" else float(value)
    _check_method(method)
    names, curves, m = _curves(tables, macs, predictor, power)
    t, rows = len(curves[0].errors) - 1, float(m.sum())
    if isinstance(total_macs, bool) or not isinstance(total_macs, (int, float)) or not total_macs >= rows * (1 - 1e-9):
        raise PlanError(f"total_macs must be >= the rows' summed MACs {rows:g}, got {total_macs!r}")
    full = float(total_macs) * t
    least = float(sum(w * c.min_count for w, c in zip(m, curves)))
    best = (full - rows * t + least) / full
    if fraction < best * (1 - 1e-9):
        raise PlanError(f"a compute fraction of {fraction:.4g} (speed-up {1 / fraction:.4g}x) is out of reach: "
                        f"the best these tables allow is {best:.4g} (speed-up {1 / best:.4g}x)")
    result = _split(names, curves, m, max(rows * t - (1.0 - fraction) * full, least), predictor, method, max_pairs)
    achieved = (full - rows * t + result.cost) / full
    return replace(result, compute_fraction=achieved, speedup=1.0 / achieved)
