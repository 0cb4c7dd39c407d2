"""What a user meets first: nested ``with`` blocks, pipelines where a model is expected, readable objects,
warnings that point at the user's own line, and forecast schedules in the original's helpers."""

import warnings

import numpy as np
import pytest
import torch

from conftest import make_tiny_pipe, run_steps
from smoothcache import (
    CalibrationProfile,
    Calibrator,
    DiffuserCacheHelper,
    MacReport,
    ProfileError,
    Schedule,
    ScheduleError,
    SmoothCache,
    SmoothCacheWarning,
)
from smoothcache.patching import owner_of

TS4 = (999, 749, 499, 249)


def test_nested_with_blocks_are_counted(tiny_dit):
    cache = SmoothCache(tiny_dit, {"attn1": [1, 0, 1, 0]})
    with cache:
        with cache:
            run_steps(tiny_dit, TS4)
        assert cache.enabled  # the inner exit leaves the outer block caching
        run_steps(tiny_dit, TS4)
    assert not cache.enabled and owner_of(tiny_dit) is None
    assert cache.stats.by_key()["attn1"] == {"computed": 2 * 6, "predicted": 2 * 6}


def test_an_exception_in_an_inner_block_keeps_the_outer_one_working(tiny_dit):
    cache = SmoothCache(tiny_dit, {"attn1": [1, 0, 1, 0]})
    with cache:
        with pytest.raises(RuntimeError, match="inner"):
            with cache:
                run_steps(tiny_dit, TS4[:2])
                raise RuntimeError("inner")
        assert cache.step == -1  # the interrupted generation was dropped
        run_steps(tiny_dit, TS4)
        assert cache.step == 3
    assert owner_of(tiny_dit.transformer_blocks[0].attn1) is None


def test_a_pipeline_is_accepted_where_its_denoiser_is_expected():
    pipe = make_tiny_pipe()
    kwargs = dict(class_labels=[1], num_inference_steps=4, output_type="np")
    with SmoothCache(pipe, {"attn1": [1, 0, 1, 1]}) as cache:
        pipe(generator=torch.manual_seed(0), **kwargs)
    assert cache.model is pipe.transformer and cache.stats.by_key()["attn1"]["predicted"] == 3
    with Calibrator(pipe) as cal:
        pipe(generator=torch.manual_seed(0), **kwargs)
    assert cal.profile.runs == 1


def test_anything_else_is_a_type_error_with_a_hint():
    from types import SimpleNamespace

    two = SimpleNamespace(transformer=torch.nn.Linear(2, 2), transformer_2=torch.nn.Linear(2, 2))

    with pytest.raises(TypeError, match="expected a torch.nn.Module \\(the denoiser\\), got object"):
        SmoothCache(object(), {"attn1": [1, 0]})
    with pytest.raises(TypeError, match=r"pass pipe.transformer and pipe.transformer_2 \(one cache each\)"):
        Calibrator(two)


def test_warnings_point_at_the_callers_line(tiny_dit):
    cache = SmoothCache(tiny_dit, {"attn1": [1, 0, 1, 0, 1]}).enable()
    run_steps(tiny_dit, TS4[:3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.disable()
    (warning,) = [w for w in caught if issubclass(w.category, SmoothCacheWarning)]
    assert warning.filename == __file__


def test_printed_objects_are_one_line_summaries(tiny_dit):
    with Calibrator(tiny_dit) as cal:
        run_steps(tiny_dit, TS4)
    schedule = Schedule.from_profile(cal.profile, 0.5)
    with SmoothCache(tiny_dit, schedule) as cache:
        run_steps(tiny_dit, TS4)
    for obj in (cal, cal.profile, MacReport.from_profile(cal.profile), schedule, cache, cache.stats):
        text = repr(obj)
        assert "\n" not in text and len(text) < 300, text
    assert "4 steps" in repr(cal.profile) and "1 run(s)" in repr(cal.profile)
    assert "attn1" in str(cache.stats) and "\n" in str(cache.stats)  # str() is the table


def test_schedules_accept_a_saved_profile_path(tiny_dit, tmp_path):
    with Calibrator(tiny_dit) as cal:
        run_steps(tiny_dit, TS4)
    path = cal.profile.save(tmp_path / "p.safetensors")
    assert Schedule.from_profile(str(path), 0.5) == Schedule.from_profile(cal.profile, 0.5)
    assert Schedule.for_budget(path, compute_fraction=0.9) == Schedule.for_budget(
        cal.profile, compute_fraction=0.9
    )
    with pytest.raises(TypeError, match="expected a CalibrationProfile or the path"):
        Schedule.from_profile(42, 0.5)


def test_profiles_with_partly_unknown_timesteps_are_refused(tiny_dit, tmp_path):
    with Calibrator(tiny_dit) as cal:
        run_steps(tiny_dit, TS4)
    cal.profile.timesteps = np.array([999.0, np.nan, 499.0, 249.0])
    path = cal.profile.save(tmp_path / "p.safetensors")
    with pytest.raises(ProfileError, match="some timesteps are NaN or inf"):
        CalibrationProfile.load(path)
    cal.profile.timesteps = np.full(4, np.nan)  # all unknown (a denoiser without timesteps) is fine
    assert np.isnan(CalibrationProfile.load(cal.profile.save(path)).timesteps).all()


def test_forecast_schedules_are_refused_by_the_original_helpers(tiny_dit, tmp_path):
    schedule = Schedule({"attn1": [1, 1, 0, 1]}, predictor="linear")
    path = schedule.save(tmp_path / "linear.json")
    assert '"predictor": "linear"' in path.read_text()
    with pytest.raises(
        ScheduleError, match="only reuse cached outputs: apply it with smoothcache.SmoothCache"
    ):
        DiffuserCacheHelper(tiny_dit, schedule=str(path))
    reuse_path = Schedule({"attn1": [1, 1, 0, 1]}).save(tmp_path / "reuse.json")
    assert "predictor" not in reuse_path.read_text()  # the original implementation loads what we write
