"""The public face: a short ``__all__``, one way to build each cache (keywords of another mode are refused),
old spellings that still work with a deprecation warning, and the one-line mode's results as soon as the
calibrating generation returns."""

import warnings

import pytest
import torch

import smoothcache
from conftest import run_steps
from smoothcache import Calibrator, Schedule, SmoothCache
from smoothcache.patching import owner_of

TS = (999, 799, 599, 399, 199)


def test_the_public_api_is_short_and_complete():
    assert len(smoothcache.__all__) <= 16
    assert {"SmoothCache", "Calibrator", "Schedule", "enable", "tune"} <= set(smoothcache.__all__)
    assert smoothcache.tune.__module__ == "smoothcache.tuning"
    for name in smoothcache.__all__:
        assert getattr(smoothcache, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        smoothcache.nothing_here  # noqa: B018


def test_the_original_helpers_import_from_the_top_level_without_warnings():
    from smoothcache import compat

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("SmoothCacheHelper", "DiffuserCacheHelper", "DiTCacheHelper", "CalibrationHelper",
                     "DiffuserCalibrationHelper"):
            assert getattr(smoothcache, name) is getattr(compat, name)
        assert smoothcache.distributed.world_size() == 1


@pytest.mark.parametrize("old, module, new", [
    ("find_branches", "smoothcache.targets", "find_branches"),
    ("count_macs", "smoothcache.flops", "count_macs"),
    ("ErrorRecorder", "smoothcache.calibration", "CalibratorPolicy"),
    ("ScheduledCache", "smoothcache.scheduled", "SmoothCachePolicy"),
    ("BranchHooks", "smoothcache.hooks", "BranchHooks"),
    ("TARGETS", "smoothcache.targets", "TARGETS"),
])
def test_old_top_level_names_still_work_with_a_deprecation_warning(old, module, new):
    import importlib

    with pytest.warns(DeprecationWarning, match=f"smoothcache.{old} is deprecated; use {module}.{new}"):
        value = getattr(smoothcache, old)
    assert value is getattr(importlib.import_module(module), new)


def test_moved_module_names_and_renamed_keywords_still_work(tiny_dit):
    from smoothcache import targets

    with pytest.warns(DeprecationWarning, match="smoothcache.targets.find_timestep is deprecated"):
        assert targets.find_timestep((None, 5), {}) == 5
    with pytest.warns(DeprecationWarning, match="components= is deprecated; call it keys="):
        branches = targets.find_branches(tiny_dit, components=["ff"])
    assert {b.key for b in branches} == {"ff"}
    with pytest.warns(DeprecationWarning, match="components="):
        cache = SmoothCache(tiny_dit, Schedule.full(len(TS), ["attn1", "ff"]), components=["attn1", "ff"])
    assert {b.key for b in cache.branches} == {"attn1", "ff"}
    with pytest.raises(TypeError, match="give keys= only"):
        targets.find_branches(tiny_dit, ["ff"], components=["ff"])


@pytest.mark.parametrize("keyword, value", [("lookahead", 5), ("calibration_runs", 2), ("per_block", True),
                                            ("predictor", "linear")])
def test_a_keyword_of_the_one_line_mode_is_refused_with_a_schedule(tiny_dit, keyword, value):
    schedule = Schedule.full(len(TS), ["attn1", "ff"])
    with pytest.raises(TypeError, match=f"{keyword}= belong to the one-line mode"):
        SmoothCache(tiny_dit, schedule, **{keyword: value})
    assert all(owner_of(m) is None for m in tiny_dit.modules())


def test_enable_refuses_a_keyword_of_another_mode_and_wraps_nothing(tiny_pipe):
    with pytest.raises(TypeError, match="calibration_runs= belong to the one-line mode"):
        smoothcache.enable(tiny_pipe, Schedule.full(10, ["attn1", "ff"]), calibration_runs=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'alhpa'"):
        smoothcache.enable(tiny_pipe, alhpa=0.1)
    assert all(owner_of(m) is None for m in tiny_pipe.transformer.modules())
    assert "not enabled" in smoothcache.summary(tiny_pipe)


def test_one_line_mode_has_its_plan_when_the_calibrating_generation_returns(tiny_pipe):
    kwargs = dict(class_labels=[1, 2], num_inference_steps=12, output_type="np")
    with SmoothCache(tiny_pipe.transformer, speedup=2.0, cost="macs") as cache:
        assert cache.profile is None and cache.schedule is None and cache.calibrating
        tiny_pipe(generator=torch.manual_seed(0), **kwargs)
        assert cache.profile is not None and cache.profile.runs == 1  # set when the pipeline returned
        assert cache.schedule is not None and cache.schedule.num_steps == 12 and not cache.calibrating
        assert cache.schedule.predictor in ("linear", "mixed")
        assert cache.schedule.metadata["planner"] == "optimal"
        tiny_pipe(generator=torch.manual_seed(1), **kwargs)
        assert cache.stats.predicted > 0
    assert cache.stats.released and cache.stats.cache_bytes == 0 and cache.stats.peak_bytes > 0
    assert "released (peak" in str(cache.stats)
    assert "calibrating" not in repr(cache)


def test_without_a_pipeline_the_plan_comes_at_reset(tiny_dit):
    cache = SmoothCache(tiny_dit, alpha=0.3).enable()
    run_steps(tiny_dit, TS)
    assert cache.schedule is None  # a bare loop gives no sign that the generation ended
    cache.reset()
    assert cache.schedule is not None and cache.profile.runs == 1
    cache.disable()


def test_the_pipeline_return_hook_is_removed_on_disable(tiny_pipe):
    kwargs = dict(class_labels=[1], num_inference_steps=6, output_type="np")
    cal = Calibrator(tiny_pipe.transformer).enable()
    tiny_pipe(**kwargs)
    assert "maybe_free_model_hooks" in tiny_pipe.__dict__ and cal.profile.runs == 1
    cal.disable()
    assert "maybe_free_model_hooks" not in tiny_pipe.__dict__
    tiny_pipe(**kwargs)  # the pipeline works as before
