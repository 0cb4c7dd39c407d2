"""The first hour, as a new user meets it: a cache lost by running a notebook cell twice is released by
``disable``, ``summary`` reports what is really wrapped, and a schedule used under another guidance scale than
its calibration's warns."""

import warnings

import pytest
import torch

import smoothcache
from conftest import make_tiny_pipe, run_steps
from smoothcache import (
    CalibrationProfile,
    Calibrator,
    Schedule,
    ScheduleError,
    SmoothCache,
    SmoothCacheWarning,
)
from smoothcache.patching import owners_in


def notebook_cell(model, schedule):
    cache = SmoothCache(model, schedule)  # noqa: F841  (the name is rebound when the cell runs again)
    cache.enable()


def test_a_cache_nobody_holds_any_more_is_released_by_disable():
    pipe = make_tiny_pipe()
    schedule = Schedule.fixed_interval(num_steps=4, interval=2, branches=["attn1", "ff"])
    notebook_cell(pipe.transformer, schedule)
    with pytest.raises(RuntimeError, match=r"smoothcache.disable\(pipe\)"):  # the refusal says how to release
        notebook_cell(pipe.transformer, schedule)
    text = smoothcache.summary(pipe)
    assert "not enabled" not in text
    assert "modules wrapped by a SmoothCache that smoothcache.enable did not make" in text
    released = smoothcache.disable(pipe)
    assert isinstance(released["transformer"], SmoothCache) and not released["transformer"].enabled
    assert owners_in(pipe.transformer) == {}
    assert all("forward" not in m.__dict__ for m in pipe.transformer.modules())  # restored exactly
    assert "not enabled" in smoothcache.summary(pipe)
    notebook_cell(pipe.transformer, schedule)  # a new cache can wrap it now
    smoothcache.disable(pipe.transformer)  # a model works too
    assert owners_in(pipe.transformer) == {}


def test_disable_releases_a_calibrator_left_enabled_and_the_enable_caches():
    pipe = make_tiny_pipe()
    Calibrator(pipe.transformer).enable()
    text = smoothcache.summary(pipe)
    assert "Calibrator" in text
    smoothcache.disable(pipe)
    assert owners_in(pipe.transformer) == {}


def test_summary_counts_the_modules_really_wrapped():
    pipe = make_tiny_pipe()
    cache = SmoothCache(pipe.transformer, Schedule.fixed_interval(num_steps=4, interval=2, branches=["ff"]))
    cache.enable()
    try:
        wrapped = sum("forward" in m.__dict__ for m in pipe.transformer.modules())
        assert f"{wrapped} modules wrapped" in smoothcache.summary(pipe)
    finally:
        cache.disable()


def test_calibration_records_the_guidance_it_ran_at_and_schedules_carry_it(tmp_path):
    pipe = make_tiny_pipe()
    with Calibrator(pipe.transformer) as cal:
        pipe(class_labels=[1], num_inference_steps=6, guidance_scale=1.0, generator=torch.manual_seed(0))
    profile = cal.profile
    assert profile.conditions == {"guidance_scale": 1.0}
    assert CalibrationProfile.load(profile.save(tmp_path / "p.safetensors")).conditions == {
        "guidance_scale": 1.0
    }
    schedule = Schedule.for_budget(profile, speedup=1.5, cost="macs")
    assert schedule.conditions == {"guidance_scale": 1.0}
    assert Schedule.load(schedule.save(tmp_path / "s.json")).conditions == {"guidance_scale": 1.0}

    with pytest.warns(SmoothCacheWarning, match=r"guidance_scale=4 \(calibrated at 1\)"):
        with SmoothCache(pipe.transformer, schedule):
            pipe(class_labels=[1], num_inference_steps=6, guidance_scale=4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmoothCacheWarning)
        with SmoothCache(pipe.transformer, schedule):
            pipe(class_labels=[1], num_inference_steps=6, guidance_scale=1.0)


def test_calibrations_at_different_guidance_record_none(tmp_path):
    pipe = make_tiny_pipe()
    with Calibrator(pipe.transformer) as cal:
        pipe(class_labels=[1], num_inference_steps=4, guidance_scale=1.0)
        pipe(class_labels=[1], num_inference_steps=4, guidance_scale=3.0)
    assert cal.profile.conditions == {}


def test_a_model_run_by_hand_records_no_conditions(tiny_dit):
    with Calibrator(tiny_dit) as cal:
        run_steps(tiny_dit, [900, 600, 300])
        cal.reset()
    assert cal.profile.conditions == {}


@pytest.mark.parametrize(
    "conditions",
    [
        {"guidance": 1.0},
        {"guidance_scale": "high"},
        {"guidance_scale": -1},
        [1.0],
        {"guidance_scale": float("inf")},
    ],
)
def test_bad_conditions_in_a_schedule_file_are_refused(tmp_path, conditions):
    import json

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"attn1": [1, 0, 1], "conditions": conditions}), encoding="utf-8")
    with pytest.raises(ScheduleError, match="condition"):
        Schedule.load(path)
