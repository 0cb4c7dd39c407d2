"""A cache says when it does nothing: the "nothing skipped" warning with its reason, and the last generation's
report (steps, calls computed and skipped, how it ended) in stats and summary."""

import warnings

import pytest
import torch

import smoothcache
from conftest import make_tiny_pipe, run_steps
from smoothcache import Schedule, SmoothCache, SmoothCacheWarning
from smoothcache.generation import GenerationReport, idle_reason

TIMESTEPS = [900, 700, 500, 300, 100, 50]


def late_skips(num_steps=6, first_zero=4):
    row = [1] * first_zero + [0] * (num_steps - first_zero - 1) + [1]
    return Schedule({"attn1": row, "ff": row})


def test_a_schedule_of_all_ones_warns_once_naming_it(tiny_dit):
    cache = SmoothCache(tiny_dit, Schedule.full(6, ["attn1", "ff"]))
    with pytest.warns(
        SmoothCacheWarning, match="no call skipped: the schedule computes every step"
    ) as caught:
        with cache:
            for _ in range(3):
                run_steps(tiny_dit, TIMESTEPS)
                cache.reset()
    assert sum("no call skipped" in str(w.message) for w in caught) == 1  # once per cache
    report = cache.stats.last_generation
    assert report.predicted == 0 and report.computed > 0 and "every step" in report.reason


def test_a_run_shorter_than_the_first_skip_warns_with_the_step_counts(tiny_dit):
    cache = SmoothCache(tiny_dit, late_skips())
    with pytest.warns(SmoothCacheWarning, match=r"ran 3 step\(s\).*first skip is at step 4.*num_steps=3"):
        with cache:
            run_steps(tiny_dit, TIMESTEPS[:3])
            cache.reset()
    report = cache.stats.last_generation
    assert report.stopped_early and report.steps == 3 and report.num_steps == 6
    assert "stopped early after 3 of 6 steps" in str(cache.stats)


def test_a_generation_that_skips_is_reported_without_a_warning(tiny_dit):
    cache = SmoothCache(tiny_dit, late_skips())
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmoothCacheWarning)
        with cache:
            run_steps(tiny_dit, TIMESTEPS)
            cache.reset()
    report = cache.stats.last_generation
    assert report.predicted > 0 and not report.reason and report.ended == "reset"
    assert report.counted and not report.stopped_early
    assert cache.stats.as_dict()["last_generation"]["predicted"] == report.predicted


def test_summary_shows_the_last_generation_of_each_denoiser():
    pipe = make_tiny_pipe()
    smoothcache.enable(pipe, Schedule.full(4, ["attn1", "ff"]))
    try:
        with pytest.warns(SmoothCacheWarning, match="nothing|no call skipped"):
            pipe(class_labels=[1], num_inference_steps=4)
        text = smoothcache.summary(pipe)
    finally:
        smoothcache.disable(pipe)
    assert "last generation: 4 steps" in text and "nothing skipped: the schedule computes every step" in text


def test_a_generation_that_does_not_return_through_its_pipeline_is_told_apart(caplog):
    pipe = make_tiny_pipe()
    schedule = Schedule.fixed_interval(num_steps=4, interval=2, branches=["attn1", "ff"])
    cache = SmoothCache(pipe.transformer, schedule)
    with cache:
        pipe(class_labels=[1], num_inference_steps=4)  # returns: a normal generation
        assert cache.stats.last_generation.ended == "returned"
        run_steps(pipe.transformer, [900, 600], batch=1)  # started on the model, never returned
        with caplog.at_level("WARNING", logger="smoothcache"):
            pipe(class_labels=[1], num_inference_steps=4)  # starts before the other ended
            dropped = [r for r in caplog.records if "did not return through its pipeline" in r.getMessage()]
    assert dropped
    assert cache.stats.last_generation.ended == "returned"


def test_an_interrupted_generation_is_reported_as_not_counted(tiny_dit):
    cache = SmoothCache(tiny_dit, late_skips())
    calls = {"n": 0}

    def boom(module, args, output):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    handle = tiny_dit.register_forward_hook(boom)
    try:
        with pytest.raises(KeyboardInterrupt), cache:
            run_steps(tiny_dit, TIMESTEPS)
    finally:
        handle.remove()
    report = cache.stats.last_generation
    assert report.ended == "interrupted" and not report.counted and report.steps == 3


def test_idle_reasons():
    rows = [(1, 0, 1, 0)]
    assert "no 0 entry" in idle_reason([(1, 1, 1)], 3, 3, [3, 2, 1], 6)
    assert "no 0 entry" in idle_reason([None], 3, 3, [3, 2, 1], 6)
    assert "first skip is at step 1" in idle_reason(rows, 1, 4, [3], 2)
    assert "never received a timestep" in idle_reason(rows, 4, 4, [None] * 4, 8)
    assert "no wrapped branch was called" in idle_reason(rows, 4, 4, [4, 3, 2, 1], 0)
    assert "had to compute" in idle_reason(rows, 4, 4, [4, 3, 2, 1], 8)


def test_a_report_prints_one_line():
    report = GenerationReport(10, 10, 30, 70, "returned")
    assert str(report) == "10 steps, 30 calls computed, 70 skipped (70%)"
    assert "\n" not in str(GenerationReport(3, 10, 6, 0, "not returned", "why"))


def test_the_summary_line_of_a_model_run_by_hand(tiny_dit):
    with torch.no_grad(), SmoothCache(tiny_dit, late_skips()) as cache:
        run_steps(tiny_dit, TIMESTEPS)
        cache.reset()
        text = smoothcache.summary(tiny_dit)
    assert "model (DiTTransformer2DModel)" in text and "last generation: 6 steps" in text


def test_the_one_line_mode_plans_again_for_a_step_count_it_had_not_seen(caplog):
    pipe = make_tiny_pipe()
    cache = SmoothCache(pipe.transformer, speedup=1.5, cost="macs")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmoothCacheWarning)
        with cache, caplog.at_level("INFO", logger="smoothcache"):
            pipe(class_labels=[1], num_inference_steps=8)  # calibrates
            assert cache.schedule.num_steps == 8
            pipe(class_labels=[1], num_inference_steps=12)  # runs past the plan: computes the rest, re-plans
            assert cache.schedule.num_steps == 12
            pipe(class_labels=[1], num_inference_steps=12)
            assert cache.stats.last_generation.predicted > 0 and cache.stats.last_generation.steps == 12
            pipe(class_labels=[1], num_inference_steps=5)  # fewer steps: re-planned for 5 as well
            assert cache.schedule.num_steps == 5
            pipe(class_labels=[1], num_inference_steps=8)  # back to the calibrated count: its own plan
            assert cache.schedule.num_steps == 8 and cache.stats.last_generation.predicted > 0
    assert any("planned for them from the 8-step calibration" in r.getMessage() for r in caplog.records)
