"""The optimal planner behind ``Schedule.for_budget(..., planner="optimal", cost="macs")``: budgets,
whole-step rows, optimality against brute force on a hand-made profile, and clear errors."""

import itertools
import math

import numpy as np
import pytest
import torch

from conftest import make_tiny_pipe
from smoothcache import CalibrationProfile, Calibrator, MacReport, Schedule, ScheduleError, SmoothCache
from smoothcache.planning import RUN_POWER
from smoothcache.profile import BranchErrors

STEPS = 16


@pytest.fixture(scope="module")
def calibrated():
    pipe = make_tiny_pipe()
    with Calibrator(pipe.transformer) as cal:
        pipe(class_labels=[1, 2], num_inference_steps=STEPS, generator=torch.manual_seed(0), output_type="np")
    return pipe, cal.profile


def _runs(row):
    """(first skipped step, length) of every skip run of a 0/1 row."""
    out, start = [], None
    for i, on in enumerate(list(row) + [1]):
        if not on and start is None:
            start = i
        elif on and start is not None:
            out.append((start, i - start))
            start = None
    return out


@pytest.mark.parametrize("predictor", ["reuse", "linear"])
@pytest.mark.parametrize("fraction", [0.8, 0.6, 0.45])
def test_optimal_meets_the_budget_with_whole_step_rows(calibrated, predictor, fraction):
    _, profile = calibrated
    schedule = Schedule.for_budget(profile, compute_fraction=fraction, predictor=predictor, planner="optimal",
                                   cost="macs")
    achieved = MacReport.from_profile(profile).compute_fraction(schedule)
    assert schedule.metadata["cost_unit"] == "MACs" and achieved <= fraction + 1e-9
    assert schedule.metadata["achieved"] == pytest.approx(achieved, rel=1e-12)
    assert schedule.predictor == predictor and schedule.metadata["planner"] == "optimal"
    assert sorted(schedule.entries) == ["attn1", "ff"]
    assert schedule.entries["attn1"] == schedule.entries["ff"]  # every branch skips the same steps
    row = schedule.entries["ff"]
    assert row[0] == row[-1] == 1 and 0 < schedule.metadata["planned_error"] < math.inf


def test_linear_skip_runs_never_grow(calibrated):
    _, profile = calibrated
    for fraction in (0.7, 0.55, 0.45):
        row = Schedule.for_budget(profile, compute_fraction=fraction, predictor="linear", planner="optimal",
                                  cost="macs").entries["ff"]
        lengths = [n for _, n in _runs(row)]
        assert lengths and max(lengths) <= profile.lookahead
        assert all(b <= a for a, b in zip(lengths, lengths[1:])), row


def test_optimal_never_loses_to_fixed_interval_on_its_own_objective(calibrated):
    _, profile = calibrated
    report = MacReport.from_profile(profile)
    for n in (2, 3):
        for predictor in ("reuse", "linear"):
            fixed = Schedule.fixed_interval(STEPS, n, ["attn1", "ff"], predictor=predictor)
            best = Schedule.for_budget(
                profile,
                compute_fraction=report.compute_fraction(fixed),
                predictor=predictor,
                cost="macs",
                planner="optimal",
            )
            assert (
                best.metadata["planned_error"] <= _objective(profile, fixed.entries["ff"], predictor) + 1e-12
            )


def test_speedup_per_block_and_resampled_budgets(calibrated):
    _, profile = calibrated
    report = MacReport.from_profile(profile)
    fast = Schedule.for_budget(profile, speedup=2.0, predictor="linear", planner="optimal", cost="macs")
    assert report.speedup(fast) >= 2.0 - 1e-9
    blocks = Schedule.for_budget(
        profile, compute_fraction=0.6, per_block=True, planner="optimal", cost="macs"
    )
    assert sorted(blocks.entries) == sorted(f"{k}-{b}" for k in ("attn1", "ff") for b in range(3))
    assert all(blocks.entries[f"attn1-{b}"] == blocks.entries[f"ff-{b}"] for b in range(3))
    assert report.compute_fraction(blocks) <= 0.6 + 1e-9
    longer = Schedule.for_budget(profile, compute_fraction=0.5, num_steps=24, planner="optimal", cost="macs")
    assert longer.num_steps == 24 and longer.compute_fraction("ff") <= 0.5 + 0.01


def test_optimal_schedule_runs_as_planned(calibrated):
    pipe, profile = calibrated
    schedule = Schedule.for_budget(
        profile, compute_fraction=0.5, predictor="linear", planner="optimal", cost="macs"
    )
    with SmoothCache(pipe.transformer, schedule) as cache:
        pipe(class_labels=[3], num_inference_steps=STEPS, output_type="np")
    for counter in cache.stats.counters.values():
        assert counter.computed == sum(schedule.for_block(counter.key, counter.block))


def test_clear_errors(calibrated):
    _, profile = calibrated
    with pytest.raises(ScheduleError, match="unknown planner 'best'"):
        Schedule.for_budget(profile, compute_fraction=0.5, planner="best")
    with pytest.raises(ScheduleError, match="unknown predictor 'cubic'"):
        Schedule.for_budget(profile, compute_fraction=0.5, predictor="cubic", planner="optimal", cost="macs")
    with pytest.raises(ScheduleError, match=r"out of reach.*best these tables allow is 0\.\d+"):
        Schedule.for_budget(profile, compute_fraction=0.1, planner="optimal", cost="macs")
    with pytest.raises(ScheduleError, match="lookahead 5 exceeds"):
        Schedule.for_budget(profile, compute_fraction=0.5, lookahead=5, planner="optimal", cost="macs")


def test_forecast_needs_a_profile_that_recorded_it():
    pipe = make_tiny_pipe(num_layers=2)
    with Calibrator(pipe.transformer, predictors=["reuse"]) as cal:
        pipe(class_labels=[1], num_inference_steps=8, generator=torch.manual_seed(0), output_type="np")
    assert (
        Schedule.for_budget(cal.profile, compute_fraction=0.6, planner="optimal", cost="macs").predictor
        == "reuse"
    )
    with pytest.raises(ScheduleError, match="'linear' predictor needs its own calibrated errors"):
        Schedule.for_budget(
            cal.profile, compute_fraction=0.6, predictor="linear", planner="optimal", cost="macs"
        )


# ------------------------------------------------ optimality on a hand-made profile, against brute force

T, K = 9, 2


def _objective(profile, row, predictor):
    """The planner's objective, from its definition: mean error of the branches, squared summed skip runs."""
    keys = profile.keys
    reuse = np.mean([profile.mean_errors(k, None, "reuse")[0] for k in keys], axis=0)
    linear = (
        np.mean([profile.mean_errors(k, None, "linear")[0] for k in keys], axis=0)
        if predictor == "linear"
        else None
    )
    computed = [i for i, on in enumerate(row) if on]
    total = 0.0
    for j, (b, nxt) in enumerate(zip(computed, computed[1:])):
        k = nxt - b - 1
        if k == 0:
            continue
        if k > profile.lookahead:
            return math.inf
        if predictor == "reuse" or j == 0:
            errors = [reuse[i - 1, b] for i in range(1, k + 1)]
        else:
            d = b - computed[j - 1]
            if k >= d:  # a forecast may not reach as far as its sources are apart
                return math.inf
            errors = [linear[i - 1, d - 1, b] for i in range(1, k + 1)]
        total += sum(errors) ** RUN_POWER
    return total


def _hand_profile(seed, with_macs=True):
    rng = np.random.default_rng(seed)
    profile = CalibrationProfile(K, T, runs=1, model="hand")
    for block in range(2):
        for key in ("attn", "mlp"):
            errors = BranchErrors.empty(key, block, K, T, ("reuse", "linear"))
            for k in range(1, K + 1):
                for b in range(T - k):
                    errors.add(k, b, float(rng.uniform(0.05, 1.0) * k))
                    for d in range(1, K + 2):
                        if b - d >= 0:
                            errors.add(k, b, float(rng.uniform(0.01, 0.8)), spacing=d)
            profile.errors[f"blocks.{block}.{key}"] = errors
    if with_macs:
        profile.macs = {
            "total": 12.0,
            **{f"blocks.{b}.attn": 2.0 for b in range(2)},
            **{f"blocks.{b}.mlp": 3.0 for b in range(2)},
        }
    return profile


@pytest.mark.parametrize("predictor", ["reuse", "linear"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimal_equals_brute_force_over_whole_step_rows(seed, predictor):
    profile = _hand_profile(seed, with_macs=seed != 2)
    cost = MacReport.for_budget(profile).compute_fraction
    rows = [(1, *mid, 1) for mid in itertools.product((0, 1), repeat=T - 2)]
    fractions = sorted({cost({"attn": r, "mlp": r}) for r in rows})
    for target in fractions[::3]:
        best = min(
            _objective(profile, r, predictor) for r in rows if cost({"attn": r, "mlp": r}) <= target + 1e-12
        )
        if math.isinf(best):
            with pytest.raises(ScheduleError, match="out of reach"):
                Schedule.for_budget(
                    profile, compute_fraction=target, predictor=predictor, planner="optimal", cost="macs"
                )
            continue
        got = Schedule.for_budget(
            profile, compute_fraction=target, predictor=predictor, planner="optimal", cost="macs"
        )
        assert got.metadata["achieved"] <= target + 1e-12
        assert got.metadata["planned_error"] == pytest.approx(best, rel=1e-9, abs=1e-12)
        assert _objective(profile, got.entries["mlp"], predictor) == pytest.approx(best, rel=1e-9, abs=1e-12)
        assert got.metadata["cost_unit"] == ("branch calls" if seed == 2 else "MACs")
