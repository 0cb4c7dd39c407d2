"""The optimal planner's parts against brute force on small hand-made error tables: one row's frontier
(:mod:`smoothcache.planning.frontier`) and the budget split across rows
(:mod:`smoothcache.planning.split`)."""

import itertools
import math

import numpy as np
import pytest

from smoothcache import ScheduleError
from smoothcache.planning import split as split_module
from smoothcache.planning.frontier import RowErrors, frontier
from smoothcache.planning.split import split_budget as split


def run_error(table, predictor, b, d, k):
    """Error at step b+k predicted from computed b (and b-d for linear; d=0: b is the first computed step)."""
    if predictor == "reuse" or d == 0:
        e = table.reuse[k - 1, b]
    else:
        if table.linear is None or d > table.linear.shape[1]:
            return math.inf
        e = table.linear[k - 1, d - 1, b]
    return math.inf if math.isnan(e) else e


def oracle_error(row, table, predictors, power=1.0):
    """The definition, run by run: each skip run costs its summed error to ``power``, with the cheapest of
    ``predictors``."""
    computed = [i for i, on in enumerate(row) if on]
    total = 0.0
    for j, (b, nxt) in enumerate(zip(computed, computed[1:])):
        k_run = nxt - b - 1
        if k_run == 0:
            continue
        if k_run > table.lookahead:
            return math.inf
        d = 0 if j == 0 else b - computed[j - 1]
        total += min(
            sum(run_error(table, p, b, d, k) for k in range(1, k_run + 1)) ** power for p in predictors
        )
    return total


def all_rows(t):
    for middle in itertools.product((0, 1), repeat=max(t - 2, 0)):
        yield (1, *middle, 1) if t > 1 else (1,)


def brute_frontier(table, predictors, power=1.0):
    """Least error per count n, over all 2^(T-2) rows."""
    best = {}
    for row in all_rows(table.num_steps):
        e, n = oracle_error(row, table, predictors, power), sum(row)
        if e < best.get(n, math.inf):
            best[n] = e
    return best


def random_table(rng, t, k, d, nan_share=0.15):
    def draw(shape):
        a = rng.uniform(0.0, 1.0, shape) ** 2
        a[rng.random(shape) < nan_share] = np.nan
        return a

    return RowErrors(draw((k, t)), draw((k, d, t)))


CASES = [
    (seed, t, k, d)
    for seed, (t, k, d) in enumerate(
        [(6, 2, 3), (7, 2, 3), (8, 3, 4), (9, 3, 4), (9, 2, 2), (8, 3, 2), (9, 3, 4), (7, 3, 4)]
    )
]
PREDICTOR_SETS = [("reuse",), ("linear",), ("reuse", "linear")]


@pytest.mark.parametrize("predictors", PREDICTOR_SETS)
@pytest.mark.parametrize("seed,t,k,d", CASES)
def test_row_dp_matches_brute_force_for_every_count(seed, t, k, d, predictors):
    table = random_table(np.random.default_rng(seed), t, k, d)
    best = frontier(table, predictors)
    expected = brute_frontier(table, predictors)
    for n in range(t + 1):
        if n not in expected or math.isinf(expected[n]):
            assert math.isinf(best.errors[n]), (n, best.errors[n])
            with pytest.raises(ScheduleError, match="feasible counts"):
                best.row(n)
            continue
        assert best.errors[n] == pytest.approx(expected[n], rel=1e-12, abs=1e-12)
        row = best.row(n)
        assert row.sum() == n and row[0] == 1 and row[-1] == 1
        assert oracle_error(row.tolist(), table, predictors) == pytest.approx(
            expected[n], rel=1e-12, abs=1e-12
        )


@pytest.mark.parametrize("power", [2.0, 1.5])
@pytest.mark.parametrize("predictors", PREDICTOR_SETS)
@pytest.mark.parametrize("seed,t,k,d", CASES[:5])
def test_run_power_dp_matches_brute_force(seed, t, k, d, predictors, power):
    table = random_table(np.random.default_rng(50 + seed), t, k, d)
    best = frontier(table, predictors, power)
    expected = brute_frontier(table, predictors, power)
    assert best.power == power
    for n in range(t + 1):
        if math.isinf(expected.get(n, math.inf)):
            assert math.isinf(best.errors[n])
            continue
        assert best.errors[n] == pytest.approx(expected[n], rel=1e-12, abs=1e-12)
        row = best.row(n).tolist()
        assert oracle_error(row, table, predictors, power) == pytest.approx(expected[n], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed,t,k,d", CASES)
def test_each_run_takes_the_cheapest_predictor(seed, t, k, d):
    table = random_table(np.random.default_rng(200 + seed), t, k, d, nan_share=0.05)
    both = frontier(table, ("reuse", "linear"), 2.0)
    alone = [frontier(table, (p,), 2.0) for p in ("reuse", "linear")]
    for n in both.counts.tolist():
        assert all(
            both.errors[n] <= a.errors[n] + 1e-12 for a in alone
        )  # never worse than one predictor alone
        row, used = both.row(n).tolist(), both.run_predictors(n)
        assert [u is None for u in used] == [bool(on) for on in row]
        computed = [i for i, on in enumerate(row) if on]
        for j, (b, nxt) in enumerate(zip(computed, computed[1:])):
            if nxt - b == 1:
                continue
            d_prev = 0 if j == 0 else b - computed[j - 1]
            chosen = used[b + 1]
            assert set(used[b + 1 : nxt]) == {chosen}  # one predictor per run
            cost = {
                p: sum(run_error(table, p, b, d_prev, i) for i in range(1, nxt - b))
                for p in ("reuse", "linear")
            }
            assert cost[chosen] == pytest.approx(min(cost.values()), abs=1e-12)


def test_runs_mix_predictors_where_each_is_cheap_somewhere():
    # reuse is cheap right after step 4 (and nowhere else), linear one step ahead at spacing 2 (but after 6)
    t, k = 9, 2
    reuse = np.full((k, t), 0.5)
    reuse[:, 4] = 0.0
    linear = np.full((k, k + 1, t), 0.5)
    linear[0, 1, :6] = 0.0
    table = RowErrors(reuse, linear)
    both = frontier(table, ("reuse", "linear"))
    assert both.row(5).tolist() == [1, 0, 1, 0, 1, 0, 0, 1, 1] and both.errors[5] == pytest.approx(0.5)
    assert both.run_predictors(5) == [None, "reuse", None, "linear", None, "reuse", "reuse", None, None]
    assert all(frontier(table, (p,)).errors[5] > 0.5 + 1e-9 for p in ("reuse", "linear"))


def test_run_power_prefers_even_runs():
    # equal errors everywhere: with squared runs two runs of 1 beat one run of 2 at the same count
    table = RowErrors(np.full((2, 7), 0.1))
    even, uneven = [1, 0, 1, 0, 1, 1, 1], [1, 0, 0, 1, 1, 1, 1]
    assert oracle_error(even, table, ("reuse",), 2.0) < oracle_error(uneven, table, ("reuse",), 2.0)
    assert frontier(table, power=2.0).row(5).tolist().count(0) == 2
    assert oracle_error(frontier(table, power=2.0).row(5).tolist(), table, ("reuse",), 2.0) == pytest.approx(
        0.02
    )
    with pytest.raises(ScheduleError, match="power"):
        frontier(table, power=0.5)


def test_skip_runs_and_spacing_limits_are_respected():
    t, k = 30, 3
    rng = np.random.default_rng(3)
    # linear knows spacing 1 and 2 only: after a gap of 3 or 4 the next step must be computed
    table = RowErrors(rng.uniform(0.5, 1, (k, t)), rng.uniform(0, 0.01, (k, 2, t)))
    best = frontier(table, ("linear",))
    assert best.min_count > 1 + math.ceil((t - 1) / (k + 1))  # the spacing limit costs computed steps
    for n in best.counts.tolist():
        gaps = np.diff(np.flatnonzero(best.row(n)))
        assert gaps.max() <= k + 1
        assert all(g == 1 for prev, g in zip(gaps, gaps[1:]) if prev > 2)  # no skip after an unknown spacing
    assert frontier(table).min_count == 1 + math.ceil((t - 1) / (k + 1))


def test_linear_and_reuse_optima_differ():
    # reuse is cheap right after step 3; linear is cheap only at spacing 2 (every-other-step rows)
    t, k = 9, 2
    reuse = np.full((k, t), 0.5)
    reuse[:, 3] = 0.0
    linear = np.full((k, k + 1, t), 0.5)
    linear[0, 1, :] = 0.0
    table = RowErrors(reuse, linear)
    r, lin = frontier(table, ("reuse",)), frontier(table, ("linear",))
    assert r.row(5).tolist() != lin.row(5).tolist()
    assert oracle_error(lin.row(5).tolist(), table, ("linear",)) < oracle_error(
        r.row(5).tolist(), table, ("linear",)
    )
    assert oracle_error(r.row(5).tolist(), table, ("reuse",)) < oracle_error(
        lin.row(5).tolist(), table, ("reuse",)
    )
    assert lin.row(5).tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("predictors", PREDICTOR_SETS)
def test_full_row_is_free_and_tiny_rows_work(predictors):
    best = frontier(RowErrors(np.ones((2, 5)), np.ones((2, 3, 5))), predictors)
    assert best.errors[5] == 0 and best.row(5).tolist() == [1] * 5
    assert math.isinf(best.errors[1]) and best.min_count == 3
    for t in (1, 2):
        tiny = frontier(RowErrors(np.ones((2, t)), np.ones((2, 3, t))), predictors)
        assert tiny.counts.tolist() == [t] and tiny.row(t).tolist() == [1] * t


def test_long_rows_plan_the_cheapest_first_gap():
    table = RowErrors(np.full((3, 250), 0.1), np.full((3, 4, 250), 0.05))
    best = frontier(table, ("linear",))
    assert best.min_count == 1 + math.ceil(249 / 4)
    # the best row spends its one short gap first, so every skipped step is a cheap linear one
    assert best.errors[best.min_count] == pytest.approx(0.05 * (250 - best.min_count))
    assert best.row(best.min_count)[:2].tolist() == [1, 1]


# ---------------------------------------------------------------- across rows


def row_set(seed, rows, t=7, k=2, weights=None, predictors=("linear",)):
    rng = np.random.default_rng(100 + seed)
    tables = {f"r{i}": random_table(rng, t, k, k + 1, nan_share=0.1) for i in range(rows)}
    weights = weights or {f"r{i}": float(w) for i, w in enumerate(rng.integers(1, 6, rows))}
    return tables, {n: frontier(tab, predictors) for n, tab in tables.items()}, weights


def brute_split(fronts, weights, budget):
    names = list(fronts)
    counts = [fronts[n].counts.tolist() for n in names]
    best = math.inf
    for pick in itertools.product(*counts):
        if sum(weights[n] * c for n, c in zip(names, pick)) <= budget + 1e-9:
            best = min(best, sum(float(fronts[n].errors[c]) for n, c in zip(names, pick)))
    return best


def achievable_costs(fronts, weights):
    return sorted(
        {
            sum(weights[n] * c for n, c in zip(fronts, pick))
            for pick in itertools.product(*(f.counts.tolist() for f in fronts.values()))
        }
    )


@pytest.mark.parametrize("seed,rows,t", [(0, 2, 7), (1, 2, 9), (2, 3, 7), (3, 3, 9), (4, 3, 9), (5, 3, 8)])
def test_split_equals_brute_force_at_every_budget(seed, rows, t, monkeypatch):
    tables, fronts, weights = row_set(
        seed, rows, t=t, weights={"r0": 3.0, "r1": 3.0, "r2": 5.0} if seed == 4 else None
    )
    beats_heuristic = 0
    for budget in achievable_costs(fronts, weights) + [1e9]:
        got = split(fronts, weights, budget)
        best = brute_split(fronts, weights, budget)
        assert got.exact and got.cost <= budget + 1e-9
        assert got.total_error == pytest.approx(best, abs=1e-12)
        for name, n in got.counts.items():
            row = fronts[name].row(n).tolist()
            assert oracle_error(row, tables[name], ("linear",)) == pytest.approx(got.errors[name], abs=1e-12)
        with monkeypatch.context() as m:  # the Lagrange + greedy fallback of a search too large to be exact
            m.setattr(split_module, "MAX_PAIRS", 0)
            heuristic = split(fronts, weights, budget)
        assert not heuristic.exact and heuristic.cost <= budget + 1e-9
        assert heuristic.lower_bound <= best + 1e-12 <= heuristic.total_error + 2e-12
        beats_heuristic += got.total_error < heuristic.total_error - 1e-12
    if seed in (3, 5):  # cases where the Lagrange + greedy heuristic is not optimal somewhere
        assert beats_heuristic > 0


def test_equal_weight_rows_are_split_exactly_as_one_group():
    _, fronts, _ = row_set(8, 3, predictors=("reuse",))
    weights = {n: 2.0 for n in fronts}
    for budget in (2.0 * 12, 2.0 * 15, 2.0 * 17):
        got = split(fronts, weights, budget)
        assert got.exact and got.total_error == pytest.approx(brute_split(fronts, weights, budget), abs=1e-12)


def test_unreachable_budget_and_bad_rows():
    _, fronts, weights = row_set(10, 2, t=8)
    with pytest.raises(ScheduleError, match="out of reach"):
        split(fronts, weights, 1.0)
    with pytest.raises(ScheduleError, match="same rows"):
        split(fronts, {"x": 1.0}, 50.0)
    with pytest.raises(ScheduleError, match="weights must be finite and > 0"):
        split(fronts, {n: 0.0 for n in fronts}, 50.0)
    other = frontier(RowErrors(np.zeros((2, 6))))
    with pytest.raises(ScheduleError, match="same number of steps"):
        split({"a": fronts["r0"], "b": other}, {"a": 1.0, "b": 1.0}, 50.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(reuse=[[0.1, -0.2]]), "negative"),
        (dict(reuse=[[0.1, np.inf]]), "infinite"),
        (dict(reuse=[0.1, 0.2]), "2-d"),
        (dict(reuse=[["a", "b"]]), "numbers"),
        (dict(reuse=np.zeros((2, 5)), linear=np.zeros((3, 3, 5))), "linear errors must have shape"),
    ],
)
def test_table_validation(kwargs, match):
    with pytest.raises(ScheduleError, match=match):
        RowErrors(**kwargs)


def test_bad_predictors():
    table = RowErrors(np.zeros((2, 5)))
    with pytest.raises(ScheduleError, match="unknown predictor"):
        frontier(table, ("cubic",))
    with pytest.raises(ScheduleError, match="'linear' predictor were not recorded"):
        frontier(table, ("linear",))
    with pytest.raises(ScheduleError, match="no predictor"):
        frontier(table, ())
