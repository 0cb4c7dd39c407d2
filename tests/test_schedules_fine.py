"""Finer schedules: per-block, budget mode, resampling to other step counts, one-line mode, cache dtype."""

import numpy as np
import pytest
import torch

from conftest import make_tiny_pipe, run_steps
from smoothcache import CalibrationProfile, Calibrator, MacReport, Schedule, ScheduleError, SmoothCache
from smoothcache.profile import BranchErrors, ProfileError

TS = tuple(range(999, 0, -50))  # 20 steps


@pytest.fixture(scope="module")
def calibrated():
    pipe = make_tiny_pipe()
    with Calibrator(pipe.transformer) as cal:
        for seed in range(2):
            pipe(
                class_labels=[1, 2],
                num_inference_steps=20,
                generator=torch.manual_seed(seed),
                output_type="np",
            )
    return pipe, cal.profile


def test_per_block_schedule_uses_block_keys_and_runs(calibrated):
    pipe, profile = calibrated
    schedule = Schedule.from_profile(profile, 0.3, per_block=True)
    assert sorted(schedule.entries) == sorted(f"{k}-{b}" for k in ("attn1", "ff") for b in range(3))
    with SmoothCache(pipe.transformer, schedule) as cache:
        pipe(class_labels=[1], num_inference_steps=20, output_type="np")
    for counter in cache.stats.counters.values():
        assert counter.computed == sum(schedule.for_block(counter.key, counter.block))


@pytest.mark.parametrize("fraction", [0.9, 0.75, 0.6])
def test_budget_mode_meets_the_compute_fraction(calibrated, fraction):
    _, profile = calibrated
    schedule = Schedule.for_budget(
        profile, compute_fraction=fraction, predictor="reuse", planner="greedy", cost="macs"
    )
    report = MacReport.from_profile(profile)
    achieved = report.compute_fraction(schedule)
    assert achieved <= fraction + 1e-9
    assert schedule.metadata["achieved"] == pytest.approx(achieved)
    # the least aggressive such schedule: a slightly smaller alpha misses the budget
    alpha = schedule.metadata["alpha"]
    if alpha > 0:
        looser = Schedule.from_profile(profile, np.nextafter(alpha, 0))
        assert report.compute_fraction(looser) > fraction


def test_budget_mode_by_speedup_and_per_block(calibrated):
    _, profile = calibrated
    report = MacReport.from_profile(profile)
    greedy = {"predictor": "reuse", "planner": "greedy", "cost": "macs"}
    assert report.speedup(Schedule.for_budget(profile, speedup=1.4, **greedy)) >= 1.4 - 1e-9
    assert report.speedup(Schedule.for_budget(profile, speedup=1.4, cost="macs")) >= 1.4 - 1e-9  # recommended
    per_block = Schedule.for_budget(profile, speedup=1.4, per_block=True, **greedy)
    assert report.speedup(per_block) >= 1.4 - 1e-9 and "attn1-0" in per_block.entries


def test_budget_mode_errors(calibrated):
    _, profile = calibrated
    with pytest.raises(ScheduleError, match="exactly one of"):
        Schedule.for_budget(profile)
    with pytest.raises(ScheduleError, match="compute_fraction must be in"):
        Schedule.for_budget(profile, compute_fraction=1.5)
    with pytest.raises(ScheduleError, match="speedup must be a finite number >= 1"):
        Schedule.for_budget(profile, speedup=0.5)
    with pytest.raises(ScheduleError, match="no alpha reaches a compute fraction of 10.0%"):
        Schedule.for_budget(profile, compute_fraction=0.1, predictor="reuse", planner="greedy")
    with pytest.raises(ScheduleError, match="out of reach"):
        Schedule.for_budget(profile, compute_fraction=0.1)


def test_budget_mode_without_macs_counts_branch_calls():
    profile = CalibrationProfile(1, 5)
    errors = BranchErrors.empty("attn", 0, 1, 5)
    for i, v in enumerate([0.1, 0.2, 0.3, 0.4]):
        errors.add(1, i, v)
    profile.errors["b.0.attn"] = errors
    schedule = Schedule.for_budget(profile, compute_fraction=0.8, predictor="reuse", planner="greedy")
    assert schedule.entries["attn"] == (1, 0, 1, 1, 1) and schedule.metadata["alpha"] == 0.1
    assert schedule.metadata["cost_unit"] == "branch calls"


def _linear_profile(steps, k=3, timesteps=None):
    """error(start s, distance d) = 0.01 * d * (1 + s / steps): linear, so resampling is exact."""
    profile = CalibrationProfile(k, steps, runs=1, timesteps=timesteps)
    errors = BranchErrors.empty("attn", 0, k, steps)
    for kk in range(1, k + 1):
        for i in range(steps - kk):
            errors.add(kk, i, 0.01 * kk * (1 + i / steps))
    profile.errors["b.0.attn"] = errors
    return profile


@pytest.mark.parametrize("target", [10, 30, 70])
def test_resampling_by_step_fraction_is_exact_on_linear_curves(target):
    resampled = _linear_profile(50).resample(target)
    mean, _ = resampled.mean_errors("attn")
    scale = 50 / target
    for k in range(1, 4):
        i = np.arange(target - k)
        expected = 0.01 * (k * scale) * (1 + i * scale / 50)
        assert np.allclose(mean[k - 1, : target - k], expected)
        assert np.isnan(mean[k - 1, target - k :]).all()


def test_resampling_by_timestep_places_steps_by_their_timesteps():
    old_ts = np.linspace(980, 0, 50)  # 20 timesteps per step
    profile = _linear_profile(50, timesteps=old_ts)
    new_ts = np.array([900.0, 700.0, 500.0, 300.0, 100.0])  # old steps 4, 14, 24, 34, 44
    mean, _ = profile.resample(5, new_ts).mean_errors("attn")
    positions = (980 - new_ts) / 20
    for k in (1, 2, 3):
        for i in range(5 - k):
            d = positions[i + k] - positions[i]
            assert mean[k - 1, i] == pytest.approx(0.01 * d * (1 + positions[i] / 50))
    assert np.allclose(profile.resample(5, new_ts).timesteps, new_ts)
    with pytest.raises(ProfileError, match="got 4 timesteps for a 5-step run"):
        profile.resample(5, new_ts[:4])


def test_resampled_calibration_tracks_a_direct_one():
    """On a random-weight model trajectories differ between step counts, so this is a loose check."""
    pipe = make_tiny_pipe()
    profiles = {}
    for steps in (10, 20):
        with Calibrator(pipe.transformer, lookahead=2) as cal:
            pipe(
                class_labels=[1, 2],
                num_inference_steps=steps,
                generator=torch.manual_seed(0),
                output_type="np",
            )
        profiles[steps] = cal.profile
    for source, target in ((20, 10), (10, 20)):
        got, _ = profiles[source].resample(target).mean_errors("ff")
        want, _ = profiles[target].mean_errors("ff")
        ok = np.isfinite(want)
        assert np.isfinite(got[ok]).all()
        assert np.corrcoef(got[ok], want[ok])[0, 1] > 0.8
    schedule = Schedule.from_profile(profiles[20], 0.3, num_steps=10)
    assert schedule.num_steps == 10
    assert schedule == Schedule.from_profile(profiles[20].resample(10), 0.3)


def test_resample_keeps_macs_and_validates(calibrated):
    _, profile = calibrated
    assert profile.resample(20) is profile
    assert profile.resample(30).macs == profile.macs
    with pytest.raises(ProfileError, match="num_steps must be an integer >= 2"):
        profile.resample(1)


def test_one_line_mode_calibrates_then_caches():
    pipe = make_tiny_pipe()
    base = pipe(
        class_labels=[3], num_inference_steps=20, generator=torch.manual_seed(4), output_type="np"
    ).images
    with SmoothCache(pipe.transformer, alpha=0.3) as cache:
        assert cache.calibrating
        first = pipe(
            class_labels=[3], num_inference_steps=20, generator=torch.manual_seed(4), output_type="np"
        ).images
        second = pipe(
            class_labels=[3], num_inference_steps=20, generator=torch.manual_seed(4), output_type="np"
        ).images
        assert not cache.calibrating
    assert np.array_equal(first, base)  # the calibration generation is computed in full
    assert cache.profile.runs == 1 and cache.schedule == Schedule.from_profile(cache.profile, 0.3)
    stats = cache.stats.by_key()
    assert (
        stats["attn1"]["predicted"] > 0 and stats["attn1"]["computed"] + stats["attn1"]["predicted"] == 3 * 20
    )
    with SmoothCache(pipe.transformer, cache.schedule):
        again = pipe(
            class_labels=[3], num_inference_steps=20, generator=torch.manual_seed(4), output_type="np"
        ).images
    assert np.array_equal(second, again)


def test_one_line_mode_with_several_calibration_runs_and_arguments(tiny_dit):
    with pytest.raises(ValueError, match="give a schedule, or alpha= or speedup="):
        SmoothCache(tiny_dit)
    with pytest.raises(ValueError, match="exactly one of the three"):
        SmoothCache(tiny_dit, {"attn1": [1]}, alpha=0.1)
    with pytest.raises(ValueError, match="exactly one of the three"):
        SmoothCache(tiny_dit, alpha=0.1, speedup=2.0)
    with pytest.raises(ScheduleError, match="speedup must be a finite number >= 1"):
        SmoothCache(tiny_dit, speedup=0.5)
    with pytest.raises(ScheduleError, match="alpha must be a finite number >= 0"):
        SmoothCache(tiny_dit, alpha=-1)
    cache = SmoothCache(tiny_dit, alpha=0.5, calibration_runs=2, per_block=True).enable()
    run_steps(tiny_dit, TS, seed=0)
    run_steps(tiny_dit, TS, seed=1)
    assert cache.calibrating
    run_steps(tiny_dit, TS, seed=2)  # starting this generation closes the 2nd calibration run
    assert not cache.calibrating and "attn1-0" in cache.schedule.entries
    cache.disable()
    assert cache.profile.runs == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cache_dtype_keeps_outputs_in_lower_precision(tiny_dit, dtype):
    schedule = Schedule.fixed_interval(len(TS), 2, ["attn1", "ff"])
    with SmoothCache(tiny_dit, schedule) as full:
        reference = run_steps(tiny_dit, TS)
        full_bytes = full.stats.cache_bytes
    with SmoothCache(tiny_dit, schedule, cache_dtype=dtype) as low:
        out = run_steps(tiny_dit, TS)
        assert low.stats.cache_bytes * 2 == full_bytes
    assert out.dtype == torch.float32
    assert torch.allclose(out, reference, rtol=0.05, atol=0.05) and not torch.equal(out, reference)
    assert low.stats.by_key() == full.stats.by_key()
    with pytest.raises(ValueError, match="cache_dtype must be a floating torch.dtype"):
        SmoothCache(tiny_dit, schedule, cache_dtype=torch.int8)


def test_one_line_mode_with_a_forecast():
    pipe = make_tiny_pipe()
    kwargs = dict(class_labels=[3], num_inference_steps=20, output_type="np")
    with SmoothCache(pipe.transformer, alpha=0.3, predictor="linear") as cache:
        pipe(generator=torch.manual_seed(4), **kwargs)
        pipe(generator=torch.manual_seed(4), **kwargs)
    assert cache.schedule.predictor == "linear" and cache.profile.predictors == ["reuse", "linear"]
    assert cache.schedule == Schedule.from_profile(cache.profile, 0.3, predictor="linear")
    assert cache.stats.predictor == "linear" and cache.stats.predicted > 0
    with pytest.raises(ScheduleError, match="unknown predictor 'quadratic'"):
        SmoothCache(pipe.transformer, alpha=0.3, predictor="quadratic")


def test_one_line_recommended_mode_plans_for_a_speedup():
    pipe = make_tiny_pipe()
    kwargs = dict(class_labels=[3], num_inference_steps=20, output_type="np")
    cache = SmoothCache(pipe.transformer, speedup=2.0, cost="macs")
    assert "one-line mode, speedup=2x" in repr(cache)
    with cache:
        pipe(generator=torch.manual_seed(4), **kwargs)
        pipe(generator=torch.manual_seed(4), **kwargs)
    expected = Schedule.for_budget(
        cache.profile, speedup=2.0, cost="macs"
    )  # each run takes its best predictor
    assert cache.schedule == expected and cache.schedule.predictor in ("linear", "mixed")
    assert MacReport.from_profile(cache.profile).speedup(cache.schedule, "macs") >= 2.0
    assert cache.stats.predicted > 0


def test_forecast_schedules_from_resampled_calibrations(calibrated):
    pipe, profile = calibrated
    for steps in (10, 30):
        schedule = Schedule.from_profile(profile, 0.3, num_steps=steps, predictor="linear")
        assert schedule.num_steps == steps and schedule.predictor == "linear"
        assert schedule == Schedule.from_profile(profile.resample(steps), 0.3, predictor="linear")
        resampled = profile.resample(steps).mean_errors("ff", predictor="linear")[0]
        assert resampled.shape == (3, 4, steps) and np.isfinite(resampled[0, 0, 1 : steps - 1]).all()
        with SmoothCache(pipe.transformer, schedule) as cache:
            pipe(class_labels=[1], num_inference_steps=steps, output_type="np")
        assert cache.stats.computed + cache.stats.predicted == 2 * 3 * steps
