"""Optimal compute schedules for a budget: exact DP per row, then a budget split across rows.

A *row* is the 0/1 compute list (length T, 1 = compute) of one branch type or of one block's branch;
steps 0 and T-1 are always computed. A skipped step is served by a *predictor* from the computed steps
before it, with the calibrated error of :class:`ErrorTable` (NaN = unknown, never planned):

- ``"reuse"``: last computed step b serves step b+k with error ``reuse[k-1, b]`` (k = 1..K).
- ``"linear"``: extrapolation from the last two computed steps b-d and b: ``linear[k-1, d-1, b]``;
  while step 0 is the only computed step it falls back to ``reuse``.
- ``"quadratic"``: from b-d1-d2, b-d1 and b: ``quadratic[k-1, d1-1, d2-1, b]``; falls back to linear,
  then reuse, at the start.

:func:`error_curve` gives one row's least total error for every count n of computed steps, and a row
reaching it. :func:`plan` splits a MAC budget ``sum(macs_i * n_i) <= budget`` across rows to minimise the
summed error; :func:`plan_for_budget` takes the budget as a compute fraction or a theoretical speed-up.

>>> import numpy as np
>>> table = ErrorTable(reuse=np.array([[0.1, 0.3, 0.3, 0.1, 0.1, 0.1], [0.2, 0.9, 0.9, 0.2, 0.2, 0.2]]))
>>> curve = error_curve(table, "reuse")
>>> curve.min_count, round(float(curve.errors[4]), 3), curve.row(4).tolist()
(3, 0.2, [1, 0, 1, 1, 0, 1])
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

__all__ = ["PREDICTORS", "ErrorTable", "ErrorCurve", "Plan", "PlanError", "error_curve", "row_error", "plan",
           "plan_for_budget"]

logger = logging.getLogger(__name__)

PREDICTORS = {"reuse": 1, "linear": 2, "quadratic": 3}  # predictor -> number of source steps
METHODS = ("auto", "exact", "lagrange")


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


def _segment_errors(table: ErrorTable, order: int, states: list[tuple[int, ...]]) -> np.ndarray:
    """``seg[s, g-1, b]``: error of skipping b+1..b+g-1 between computed b and b+g in history s; inf if not allowed."""
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
        seg[s, 1:] = np.cumsum(np.where(np.isnan(err), np.inf, err), axis=0)
    return seg


@dataclass(frozen=True)
class ErrorCurve:
    """One row's least total error per count of computed steps, with the rows reaching it.

    Attributes:
        errors: ``[T+1]``; ``errors[n]`` = least error with n computed steps (inf where impossible).
        predictor: the predictor the errors belong to.
    """

    errors: np.ndarray
    predictor: str
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


def error_curve(table: ErrorTable, predictor: str = "reuse") -> ErrorCurve:
    """Exact least error of one row for every count of computed steps (dynamic programming).

    State: (last computed step b, gaps to the ``order - 1`` computed steps before it, count n), vectorised
    over n. Each state at b+g has exactly one predecessor step b = (b+g) - gap, so the DP is a forward pass
    of ``T * (K+1) * S`` small vector operations (S = 1 + G + ... + G^(order-1) histories, G = K+1).

    Args:
        table: the row's calibrated errors.
        predictor: ``"reuse"``, ``"linear"`` or ``"quadratic"``.
    """
    order = table.check_predictor(predictor)
    k, t = table.reuse.shape
    gap = k + 1
    states = _states(order, gap)
    index = {h: i for i, h in enumerate(states)}
    seg = _segment_errors(table, order, states)
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
    return ErrorCurve(last[final, np.arange(t + 1)], predictor, back, final, gaps)


def row_error(row: Sequence[int], table: ErrorTable, predictor: str = "reuse") -> float:
    """The calibrated total error of a given 0/1 row (inf if it needs an unknown error or too long a skip).

    Args:
        row: 0/1 list of length T with the first and last step computed.
        table: the row's calibrated errors.
        predictor: ``"reuse"``, ``"linear"`` or ``"quadratic"``.
    """
    order = table.check_predictor(predictor)
    r = np.asarray(row)
    if r.shape != (table.num_steps,) or not np.isin(r, (0, 1)).all() or r[0] != 1 or r[-1] != 1:
        raise PlanError(f"row must be a 0/1 list of length {table.num_steps} starting and ending with 1")
    states = _states(order, table.lookahead + 1)
    seg = _segment_errors(table, order, states)
    index = {h: i for i, h in enumerate(states)}
    steps = np.flatnonzero(r).tolist()
    total, hist = 0.0, ()
    for b, nxt in zip(steps, steps[1:]):
        if nxt - b > table.lookahead + 1:
            return math.inf
        total += seg[index[hist], nxt - b - 1, b]
        hist = ((nxt - b,) + hist)[: max(order - 1, 1)]
    return float(total)


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


def _curves(tables: Mapping[str, "ErrorTable | ErrorCurve"], macs: Mapping[str, float], predictor: str):
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
            item = error_curve(item, predictor)
        elif not isinstance(item, ErrorCurve) or item.predictor != predictor:
            raise PlanError(f"row {n!r}: expected an ErrorTable or a {predictor!r} ErrorCurve, got {item!r:.60}")
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
         predictor: str = "reuse", *, method: str = "auto", max_pairs: int = 2_000_000) -> Plan:
    """Each row's computed steps, minimising the summed calibrated error with ``sum(macs * n) <= budget``.

    Args:
        tables: row name -> its :class:`ErrorTable`, or its :class:`ErrorCurve` for ``predictor`` (to
            plan many budgets from curves computed once); all with the same T.
        macs: row name -> MACs of one call of that row's branch (summed over its blocks), > 0.
        budget: the largest ``sum(macs[name] * computed_steps[name])``, in the units of ``macs``.
        predictor: ``"reuse"``, ``"linear"`` or ``"quadratic"``; every table must have its errors.
        method: ``"exact"`` (optimal; PlanError if larger than ``max_pairs``), ``"lagrange"`` (the
            Lagrangian solution at the budget's critical multiplier plus a greedy fill of the leftover),
            or ``"auto"`` (exact when it fits in ``max_pairs``, else lagrange).
        max_pairs: bound on the candidate pairs of the exact search (memory ~ 40 bytes each).

    The budget is met up to a relative 1e-9 of the uncached cost (rounding of MAC sums). Cost beyond the
    curves: O(R * T * log) for the Lagrange split and fill, and for the exact search a convolution per
    row plus one pairwise merge per distinct MAC value but the last.
    """
    _check_method(method)
    names, curves, m = _curves(tables, macs, predictor)
    least = float(sum(w * c.min_count for w, c in zip(m, curves)))
    if not (isinstance(budget, (int, float, np.floating)) and math.isfinite(budget)) \
            or budget < least * (1 - 1e-12):
        raise PlanError(f"budget {budget!r} is out of reach: the least cost of any allowed schedule is {least:g}")
    return _split(names, curves, m, float(budget), predictor, method, max_pairs)


def plan_for_budget(tables: Mapping[str, "ErrorTable | ErrorCurve"], macs: Mapping[str, float], total_macs: float,
                    *, compute_fraction: float | None = None, speedup: float | None = None,
                    predictor: str = "reuse", method: str = "auto", max_pairs: int = 2_000_000) -> Plan:
    """:func:`plan` for a compute fraction (or theoretical speed-up = 1 / fraction) of the uncached cost.

    The fraction of a schedule is ``(total_macs*T - sum_i macs_i*(T - n_i)) / (total_macs*T)``: the
    uncached cost minus what the skipped calls save.

    Args:
        tables, macs, predictor, method, max_pairs: as for :func:`plan`.
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
    names, curves, m = _curves(tables, macs, predictor)
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
