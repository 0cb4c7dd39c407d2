"""The optimal planner against brute force on small hand-made error tables."""

import itertools
import math

import numpy as np
import pytest

from smoothcache.allocation import _hull_moves, _lagrange, plan, plan_for_budget
from smoothcache.planner import (
    ErrorTable,
    PlanError,
    error_curve,
    row_error,
)


def oracle_error(row, table, predictor, power=1.0):
    """The definition, step by step: each skipped step's error from the computed steps before it; each
    skip run costs its summed error to ``power``."""
    k_max, d_max = table.lookahead, None if table.linear is None else table.linear.shape[1]
    total, run = 0.0, 0.0
    for s, on in enumerate(row):
        if on:
            total, run = total + run ** power, 0.0
            continue
        before = [b for b in range(s) if row[b]]
        b, k = before[-1], s - before[-1]
        if k > k_max:
            return math.inf
        sources = min(len(before), {"reuse": 1, "linear": 2, "quadratic": 3}[predictor])
        gaps = [before[-1 - i] - before[-2 - i] for i in range(sources - 1)]
        if any(d > d_max for d in gaps):
            return math.inf
        if sources == 1:
            e = table.reuse[k - 1, b]
        elif sources == 2:
            e = table.linear[k - 1, gaps[0] - 1, b]
        else:
            e = table.quadratic[k - 1, gaps[0] - 1, gaps[1] - 1, b]
        if math.isnan(e):
            return math.inf
        run += e
    return total + run ** power


def all_rows(t):
    for middle in itertools.product((0, 1), repeat=t - 2):
        yield (1, *middle, 1) if t > 1 else (1,)


def brute_curve(table, predictor, power=1.0):
    """Least error per count n, over all 2^(T-2) rows."""
    best = {}
    for row in all_rows(table.num_steps):
        e, n = oracle_error(row, table, predictor, power), sum(row)
        if e < best.get(n, math.inf):
            best[n] = e
    return best


def random_table(rng, t, k, d, nan_share=0.15, quadratic=False):
    def draw(shape):
        a = rng.uniform(0.0, 1.0, shape) ** 2
        a[rng.random(shape) < nan_share] = np.nan
        return a

    return ErrorTable(draw((k, t)), draw((k, d, t)), draw((k, d, d, t)) if quadratic else None)


CASES = [(seed, t, k, d) for seed, (t, k, d) in enumerate([(6, 2, 3), (7, 2, 3), (8, 3, 4), (9, 3, 4), (9, 2, 2),
                                                            (8, 3, 2), (9, 3, 4), (7, 3, 4)])]


@pytest.mark.parametrize("predictor", ["reuse", "linear", "quadratic"])
@pytest.mark.parametrize("seed,t,k,d", CASES)
def test_row_dp_matches_brute_force_for_every_count(seed, t, k, d, predictor):
    table = random_table(np.random.default_rng(seed), t, k, d, quadratic=True)
    curve = error_curve(table, predictor)
    expected = brute_curve(table, predictor)
    for n in range(t + 1):
        if n not in expected or math.isinf(expected[n]):
            assert math.isinf(curve.errors[n]), (n, curve.errors[n])
            with pytest.raises(PlanError, match="feasible counts"):
                curve.row(n)
            continue
        assert curve.errors[n] == pytest.approx(expected[n], rel=1e-12, abs=1e-12)
        row = curve.row(n)
        assert row.sum() == n and row[0] == 1 and row[-1] == 1
        assert oracle_error(row.tolist(), table, predictor) == pytest.approx(expected[n], rel=1e-12, abs=1e-12)
        assert row_error(row, table, predictor) == pytest.approx(expected[n], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("power", [2.0, 1.5])
@pytest.mark.parametrize("predictor", ["reuse", "linear", "quadratic"])
@pytest.mark.parametrize("seed,t,k,d", CASES[:5])
def test_run_power_dp_matches_brute_force(seed, t, k, d, predictor, power):
    table = random_table(np.random.default_rng(50 + seed), t, k, d, quadratic=True)
    curve = error_curve(table, predictor, power)
    expected = brute_curve(table, predictor, power)
    assert curve.power == power
    for n in range(t + 1):
        if math.isinf(expected.get(n, math.inf)):
            assert math.isinf(curve.errors[n])
            continue
        assert curve.errors[n] == pytest.approx(expected[n], rel=1e-12, abs=1e-12)
        row = curve.row(n).tolist()
        assert oracle_error(row, table, predictor, power) == pytest.approx(expected[n], rel=1e-12, abs=1e-12)
        assert row_error(row, table, predictor, power) == pytest.approx(expected[n], rel=1e-12, abs=1e-12)


def test_run_power_prefers_even_runs():
    # equal errors everywhere: with squared runs two runs of 1 beat one run of 2 at the same count
    table = ErrorTable(np.full((2, 7), 0.1))
    assert row_error([1, 0, 1, 0, 1, 1, 1], table, power=2.0) < row_error([1, 0, 0, 1, 1, 1, 1], table, power=2.0)
    assert row_error([1, 0, 1, 0, 1, 1, 1], table) == pytest.approx(row_error([1, 0, 0, 1, 1, 1, 1], table))
    with pytest.raises(PlanError, match="power"):
        error_curve(table, "reuse", power=0.5)


def test_row_error_agrees_with_the_definition_on_every_row():
    table = random_table(np.random.default_rng(42), 8, 3, 3, quadratic=True)
    for predictor in ("reuse", "linear", "quadratic"):
        for row in all_rows(8):
            expected = oracle_error(row, table, predictor)
            got = row_error(row, table, predictor)
            assert got == pytest.approx(expected, abs=1e-12) if math.isfinite(expected) else math.isinf(got)


def test_skip_runs_and_spacing_limits_are_respected():
    t, k = 30, 3
    rng = np.random.default_rng(3)
    # linear knows spacing 1 and 2 only: after a gap of 3 or 4 the next step must be computed
    table = ErrorTable(rng.uniform(0.5, 1, (k, t)), rng.uniform(0, 0.01, (k, 2, t)))
    curve = error_curve(table, "linear")
    assert curve.min_count > 1 + math.ceil((t - 1) / (k + 1))  # the spacing limit costs computed steps
    for n in curve.counts.tolist():
        steps = np.flatnonzero(curve.row(n))
        gaps = np.diff(steps)
        assert gaps.max() <= k + 1
        assert all(g == 1 for prev, g in zip(gaps, gaps[1:]) if prev > 2)  # no skip after an unknown spacing
    reuse = error_curve(table, "reuse")
    assert reuse.min_count == 1 + math.ceil((t - 1) / (k + 1))


def test_linear_and_reuse_optima_differ():
    # reuse is cheap right after step 3; linear is cheap only at spacing 2 (every-other-step rows)
    t, k = 9, 2
    reuse = np.full((k, t), 0.5)
    reuse[:, 3] = 0.0
    linear = np.full((k, k + 1, t), 0.5)
    linear[0, 1, :] = 0.0
    table = ErrorTable(reuse, linear)
    r, lin = error_curve(table, "reuse"), error_curve(table, "linear")
    assert r.row(5).tolist() != lin.row(5).tolist()
    assert row_error(lin.row(5), table, "linear") < row_error(r.row(5), table, "linear")
    assert row_error(r.row(5), table, "reuse") < row_error(lin.row(5), table, "reuse")
    assert lin.row(5).tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("predictor", ["reuse", "linear"])
def test_full_row_is_free_and_tiny_rows_work(predictor):
    curve = error_curve(ErrorTable(np.ones((2, 5)), np.ones((2, 3, 5))), predictor)
    assert curve.errors[5] == 0 and curve.row(5).tolist() == [1] * 5
    assert math.isinf(curve.errors[1]) and curve.min_count == 3
    for t in (1, 2):
        tiny = error_curve(ErrorTable(np.ones((2, t)), np.ones((2, 3, t))), predictor)
        assert tiny.counts.tolist() == [t] and tiny.row(t).tolist() == [1] * t


def test_state_count_is_linear_in_steps():
    # T*(K+1) histories of length 1 for linear: the DP cost grows with T, not 2^T (no timing asserted)
    table = ErrorTable(np.full((3, 250), 0.1), np.full((3, 4, 250), 0.05))
    curve = error_curve(table, "linear")
    assert curve._back.shape == (250, 1 + 4, 251)
    assert curve.min_count == 1 + math.ceil(249 / 4)
    # the best row spends its one short gap first, so every skipped step is a cheap linear one
    assert curve.errors[curve.min_count] == pytest.approx(0.05 * (250 - curve.min_count))
    assert curve.row(curve.min_count)[:2].tolist() == [1, 1]


# ---------------------------------------------------------------- across rows


def brute_plan(tables, macs, budget, predictor, curves=None):
    """Least total error over all combinations of the rows' counts (each with its brute-force optimum)."""
    curves = curves or {n: brute_curve(tables[n], predictor) for n in tables}
    names = list(tables)
    best = math.inf
    for counts in itertools.product(*(sorted(curves[n]) for n in names)):
        cost = sum(macs[n] * c for n, c in zip(names, counts))
        if cost <= budget + 1e-9:
            best = min(best, sum(curves[n][c] for n, c in zip(names, counts)))
    return best


def row_set(seed, rows, t=7, k=2, macs=None):
    rng = np.random.default_rng(100 + seed)
    tables = {f"r{i}": random_table(rng, t, k, k + 1, nan_share=0.1) for i in range(rows)}
    macs = macs or {f"r{i}": float(w) for i, w in enumerate(rng.integers(1, 6, rows))}
    return tables, macs


def achieved_costs(tables, macs, predictor="linear"):
    curves = {n: sorted(brute_curve(tables[n], predictor)) for n in tables}
    return sorted({sum(macs[n] * c for n, c in zip(tables, counts)) for counts in itertools.product(*curves.values())})


@pytest.mark.parametrize("seed,rows,t", [(0, 2, 7), (1, 2, 9), (2, 3, 7), (3, 3, 9), (4, 3, 9), (5, 3, 8)])
@pytest.mark.parametrize("predictor", ["reuse", "linear"])
def test_exact_plan_equals_brute_force_at_every_budget(seed, rows, t, predictor):
    tables, macs = row_set(seed, rows, t=t, macs={"r0": 3.0, "r1": 3.0, "r2": 5.0} if seed == 4 else None)
    curves = {n: brute_curve(tables[n], predictor) for n in tables}
    beats_heuristic = 0
    for budget in achieved_costs(tables, macs, predictor) + [1e9]:
        got = plan(tables, macs, budget, predictor, method="exact")
        best = brute_plan(tables, macs, budget, predictor, curves)
        assert got.exact and got.cost <= budget + 1e-9
        assert got.total_error == pytest.approx(best, abs=1e-12)
        for name, row in got.rows.items():
            assert row[0] == row[-1] == 1 and sum(row) == got.counts[name]
            assert oracle_error(row, tables[name], predictor) == pytest.approx(got.errors[name], abs=1e-12)
        assert got.total_error == pytest.approx(sum(got.errors.values()))
        beats_heuristic += got.total_error < plan(tables, macs, budget, predictor, method="lagrange").total_error - 1e-12
    if seed in (3, 5):  # cases where the Lagrange + greedy heuristic is not optimal somewhere
        assert beats_heuristic > 0


@pytest.mark.parametrize("seed", range(6))
def test_lagrange_point_is_optimal_for_its_own_cost_and_fill_is_bounded(seed):
    tables, macs = row_set(seed, 3)
    names = list(tables)
    errs = [error_curve(tables[n], "linear").errors for n in names]
    m = np.array([macs[n] for n in names])
    exact_hits = fill_helped = 0
    for budget in achieved_costs(tables, macs):
        counts, lam = _lagrange(errs, m, budget + 1e-9)
        own_cost = float(m @ counts)
        own_error = sum(float(e[c]) for e, c in zip(errs, counts))
        assert own_cost <= budget + 1e-9
        assert own_error == pytest.approx(brute_plan(tables, macs, own_cost, "linear"), abs=1e-12)
        got = plan(tables, macs, budget, "linear", method="lagrange")
        best = brute_plan(tables, macs, budget, "linear")
        assert not got.exact and got.cost <= budget + 1e-9
        assert best - 1e-12 <= got.total_error <= own_error + 1e-12
        assert got.lower_bound <= best + 1e-12
        for i, name in enumerate(names):  # the fill left no single fitting move that lowers the error
            n = got.counts[name]
            up = [c for c in range(n + 1, len(errs[i])) if got.cost + macs[name] * (c - n) <= budget + 1e-9]
            assert all(errs[i][c] >= errs[i][n] for c in up)
        fill_helped += got.total_error < own_error - 1e-12
        exact_hits += own_cost == budget
        if own_cost == budget:
            assert got.total_error == pytest.approx(best, abs=1e-12)
    assert exact_hits >= 3  # the Lagrangian hull points were actually exercised
    assert fill_helped >= 1


def test_auto_falls_back_to_lagrange_when_the_exact_search_is_too_large():
    tables, macs = row_set(7, 3)
    budget = achieved_costs(tables, macs)[10]
    small = plan(tables, macs, budget, "linear", max_pairs=1)
    assert not small.exact and small.cost <= budget
    with pytest.raises(PlanError, match="max_pairs"):
        plan(tables, macs, budget, "linear", method="exact", max_pairs=1)
    assert plan(tables, macs, budget, "linear").exact


def test_equal_macs_rows_are_planned_exactly_as_one_group():
    tables, _ = row_set(8, 3)
    macs = {n: 2.0 for n in tables}
    for budget in (2.0 * 12, 2.0 * 15, 2.0 * 17):
        got = plan(tables, macs, budget, "reuse")
        assert got.exact
        assert got.total_error == pytest.approx(brute_plan(tables, macs, budget, "reuse"), abs=1e-12)


def test_precomputed_curves_plan_like_their_tables():
    tables, macs = row_set(11, 3, t=8)
    curves = {n: error_curve(tab, "linear") for n, tab in tables.items()}
    for budget in (30.0, 40.0):
        assert plan(curves, macs, budget, "linear") == plan(tables, macs, budget, "linear")
    with pytest.raises(PlanError, match="'reuse' ErrorCurve"):
        plan(curves, macs, 40.0, "reuse")
    with pytest.raises(PlanError, match="power 2"):
        plan(curves, macs, 40.0, "linear", power=2.0)
    squared = {n: error_curve(tab, "linear", 2.0) for n, tab in tables.items()}
    assert plan(squared, macs, 40.0, "linear", power=2.0) == plan(tables, macs, 40.0, "linear", power=2.0)


def test_fraction_and_speedup_budgets():
    tables, macs = row_set(9, 3, t=8)
    total = sum(macs.values()) * 2.0  # half of a call is never cached
    got = plan_for_budget(tables, macs, total, compute_fraction=0.8, predictor="linear")
    t = 8
    share = (total * t - sum(macs[n] * (t - got.counts[n]) for n in tables)) / (total * t)
    assert got.compute_fraction == pytest.approx(share) and got.compute_fraction <= 0.8 + 1e-12
    assert got.speedup == pytest.approx(1 / share)
    faster = plan_for_budget(tables, macs, total, speedup=1.3, predictor="linear")
    assert faster.compute_fraction <= 1 / 1.3 + 1e-12 and faster.total_error >= got.total_error
    assert plan_for_budget(tables, macs, total, compute_fraction=1.0).total_error == 0.0


def test_unreachable_budget_names_the_best_fraction():
    tables, macs = row_set(10, 2, t=8)
    total = sum(macs.values()) * 2.0
    with pytest.raises(PlanError, match=r"best these tables allow is 0\.\d+ \(speed-up 1\.\d+x\)"):
        plan_for_budget(tables, macs, total, speedup=3.0)
    with pytest.raises(PlanError, match="out of reach"):
        plan(tables, macs, 1.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(reuse=[[0.1, -0.2]]), "negative"),
        (dict(reuse=[[0.1, np.inf]]), "infinite"),
        (dict(reuse=[0.1, 0.2]), "2-d"),
        (dict(reuse=[["a", "b"]]), "numbers"),
        (dict(reuse=np.zeros((2, 5)), linear=np.zeros((3, 3, 5))), "linear must have shape"),
        (dict(reuse=np.zeros((2, 5)), quadratic=np.zeros((2, 3, 3, 5))), "needs a linear"),
        (dict(reuse=np.zeros((2, 5)), linear=np.zeros((2, 3, 5)), quadratic=np.zeros((2, 2, 3, 5))), "quadratic"),
    ],
)
def test_table_validation(kwargs, match):
    with pytest.raises(PlanError, match=match):
        ErrorTable(**kwargs)


def test_bad_planner_arguments():
    table = ErrorTable(np.zeros((2, 5)))
    with pytest.raises(PlanError, match="unknown predictor"):
        error_curve(table, "cubic")
    with pytest.raises(PlanError, match="no 'linear' errors"):
        error_curve(table, "linear")
    tables, macs = {"a": table}, {"a": 1.0}
    with pytest.raises(PlanError, match="unknown planner method"):
        plan(tables, macs, 5.0, method="greedy")
    with pytest.raises(PlanError, match="same rows"):
        plan(tables, {"b": 1.0}, 5.0)
    with pytest.raises(PlanError, match="macs must be"):
        plan(tables, {"a": 0.0}, 5.0)
    with pytest.raises(PlanError, match="exactly one"):
        plan_for_budget(tables, macs, 2.0)
    with pytest.raises(PlanError, match="total_macs"):
        plan_for_budget(tables, macs, 0.5, compute_fraction=0.5)
    with pytest.raises(PlanError, match="same number of steps"):
        plan({"a": table, "b": ErrorTable(np.zeros((2, 6)))}, {"a": 1.0, "b": 1.0}, 20.0)
    with pytest.raises(PlanError, match="0/1 list"):
        row_error([0, 1, 1, 1, 1], table)


def test_limited_shortens_skip_runs():
    table = ErrorTable(np.full((2, 6), 0.1), np.full((2, 3, 6), 0.1))
    assert error_curve(table, "reuse").min_count == 3
    short = table.limited(1)
    assert short.linear.shape == (1, 3, 6) and error_curve(short, "linear").min_count == 4
    with pytest.raises(PlanError, match="lookahead"):
        table.limited(3)


def test_hull_moves_skip_points_above_the_lower_convex_hull():
    errors = np.array([np.inf, np.inf, 10.0, 9.0, 2.0, 1.5, 1.0, 0.0])
    moves = _hull_moves(errors, row=4, weight=2.0)
    assert [(n, r) for r, _, n in moves] == [(4, pytest.approx(-2.0)), (7, pytest.approx(-1 / 3))]
    assert all(i == 4 for _, i, _ in moves)
