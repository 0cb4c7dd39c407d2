import math
import random

import numpy as np
import pytest

from smoothcache import CalibrationProfile, Schedule, ScheduleError
from smoothcache.planning.greedy import scan
from smoothcache.profile import BranchErrors


def original_scan(row_lists, threshold, length):
    """Oracle: the original CalibrationHelper's n-row scan, restated step by step for these tests."""
    schedule = [None] * length
    i = 0
    while i < length:
        chosen = None
        for row_idx in reversed(range(len(row_lists))):
            if i < len(row_lists[row_idx]) and row_lists[row_idx][i] <= threshold:
                chosen = row_idx
                break
        schedule[i] = 1
        if chosen is None:
            i += 1
            continue
        for s in range(1, chosen + 2):
            if i + s < length:
                schedule[i + s] = 0
        i += chosen + 2
    schedule[0] = 1
    schedule[-1] = 1
    return [1 if v is None else v for v in schedule]


def test_uniform_low_k1_error_gives_fora_pattern():
    rows = [[0.05] * 7, [0.2] * 6, [0.3] * 5]
    assert scan(rows, 0.1, 8) == [1, 0, 1, 0, 1, 0, 1, 1]


def test_largest_qualifying_lookahead_wins_and_rows_end_early():
    rows = [[0.01] * 9, [0.02] * 8, [0.03] * 7]
    assert scan(rows, 0.05, 10) == [1, 0, 0, 0, 1, 0, 0, 0, 1, 1]


def test_error_falling_over_time_caches_late_steps_and_threshold_is_inclusive():
    k1 = [0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.05, 0.05, 0.05]
    k2 = [0.9, 0.8, 0.6, 0.4, 0.2, 0.08, 0.08, 0.08]
    assert scan([k1, k2], 0.1, 10) == [1, 1, 1, 1, 1, 0, 1, 0, 0, 1]
    assert scan([k1, k2], 0.0, 10) == [1] * 10
    assert scan([k1, k2], 10.0, 10) == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1]


def test_nan_never_qualifies_and_last_step_is_forced():
    rows = [[math.nan, 0.0, math.nan, 0.0]]
    assert scan(rows, 1.0, 5) == [1, 1, 0, 1, 1]


def test_schedule_longer_than_the_curves_computes_the_rest():
    assert scan([[0.0] * 3], 0.5, 8) == [1, 0, 1, 0, 1, 1, 1, 1]


def test_scan_matches_the_original_algorithm_on_random_curves():
    rng = random.Random(1234)
    for trial in range(300):
        steps = rng.randint(2, 40)
        k = rng.randint(1, 4)
        rows = [[rng.random() * 0.4 for _ in range(max(steps - j - 1, 0))] for j in range(k)]
        alpha = rng.choice([0.0, 0.05, 0.1, 0.2, 0.3, 0.5])
        length = steps if trial % 3 else rng.randint(1, 45)
        assert scan(rows, alpha, length) == original_scan(rows, alpha, length), (rows, alpha, length)


def test_alpha_must_be_non_negative_and_finite():
    for bad in (-0.01, math.nan, math.inf, "0.1", None):
        with pytest.raises(ScheduleError, match="alpha must be a finite number >= 0"):
            scan([[0.1]], bad, 3)


def _profile(blocks):
    """A profile from hand-written per-block curves: blocks = {block: [row_k1, row_k2, ...]}."""
    k = len(next(iter(blocks.values())))
    steps = len(next(iter(blocks.values()))[0]) + 1
    profile = CalibrationProfile(k, steps, runs=1)
    for block, rows in blocks.items():
        errors = BranchErrors.empty("attn", block, k, steps)
        for kk, row in enumerate(rows, start=1):
            for i, v in enumerate(row):
                errors.add(kk, i, v)
        profile.errors[f"blocks.{block}.attn"] = errors
    return profile


def test_from_profile_averages_blocks_before_scanning():
    block0 = [[0.0, 0.0, 0.0, 0.2, 0.2], [0.4, 0.4, 0.4, 0.4]]
    block1 = [[0.2, 0.2, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    profile = _profile({0: block0, 1: block1})
    mean, _ = profile.mean_errors("attn")
    assert np.allclose(mean[0, :5], 0.1) and np.allclose(mean[1, :4], 0.2)
    assert Schedule.from_profile(profile, 0.1).entries["attn"] == (1, 0, 1, 0, 1, 1)
    assert Schedule.from_profile(profile, 0.2).entries["attn"] == (1, 0, 0, 1, 0, 1)
    assert Schedule.from_profile(profile, 0.2, lookahead=1).entries["attn"] == (1, 0, 1, 0, 1, 1)


def test_from_profile_per_block_uses_each_blocks_own_curves():
    block0 = [[0.0] * 5, [0.4] * 4]
    block1 = [[0.5] * 5, [0.5] * 4]
    s = Schedule.from_profile(_profile({0: block0, 1: block1}), 0.1, per_block=True)
    assert s.entries == {"attn-0": (1, 0, 1, 0, 1, 1), "attn-1": (1, 1, 1, 1, 1, 1)}


def test_from_profile_rejects_bad_lookahead_and_alpha():
    profile = _profile({0: [[0.0] * 3, [0.0] * 2]})
    with pytest.raises(ScheduleError, match="lookahead must be an integer >= 1"):
        Schedule.from_profile(profile, 0.1, lookahead=0)
    with pytest.raises(ScheduleError, match="exceeds the profile's calibrated lookahead 2"):
        Schedule.from_profile(profile, 0.1, lookahead=3)
    with pytest.raises(ScheduleError, match="alpha must be a finite number >= 0"):
        Schedule.from_profile(profile, -1.0)


def test_pooled_spread_over_runs():
    profile = CalibrationProfile(1, 3)
    errors = BranchErrors.empty("ff", 0, 1, 3)
    for v in (0.1, 0.3):
        errors.add(1, 0, v)
    profile.errors["b.0.ff"] = errors
    mean, std = profile.mean_errors("ff")
    assert mean[0, 0] == pytest.approx(0.2) and std[0, 0] == pytest.approx(0.1)
    assert np.isnan(mean[0, 1]) and np.isnan(mean[0, 2])
