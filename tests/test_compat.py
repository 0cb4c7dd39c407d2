import json

import numpy as np
import pytest
import torch

from conftest import make_tiny_pipe
from original_dit import DiT, sample_with_cfg
from smoothcache import (
    CalibrationHelper,
    DiffuserCacheHelper,
    DiffuserCalibrationHelper,
    DiTCacheHelper,
    Schedule,
    ScheduleError,
    SmoothCacheHelper,
    SmoothCacheWarning,
)
from smoothcache.patching import owner_of


def _readme_example(pipe, schedule):
    """The original README's diffusers example, with only the import line changed."""
    cache_helper = DiffuserCacheHelper(pipe.transformer, schedule=schedule)
    cache_helper.enable()
    class_ids = [207]
    generator = torch.manual_seed(33)
    image = pipe(class_labels=class_ids, num_inference_steps=50, generator=generator).images[0]
    cache_helper.disable()
    return np.asarray(image), cache_helper


def test_original_readme_example_runs_twice_with_identical_outputs(reference_dir):
    from diffusers import DPMSolverMultistepScheduler

    pipe = make_tiny_pipe()
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    with open(reference_dir / "diffuser_schedule.json", "r") as f:
        schedule = json.load(f)
    first, helper = _readme_example(pipe, schedule)
    assert helper.stats.by_key() == {"attn1": {"computed": 3 * 24, "predicted": 3 * 26}}
    second, _ = _readme_example(pipe, schedule)
    assert np.array_equal(first, second)
    # and a second pipeline call without re-enabling keeps caching from step 0
    helper = DiffuserCacheHelper(pipe.transformer, schedule=schedule)
    helper.enable()
    runs = [
        np.asarray(
            pipe(class_labels=[207], num_inference_steps=50, generator=torch.manual_seed(33)).images[0]
        )
        for _ in range(2)
    ]
    helper.disable()
    assert np.array_equal(runs[0], first) and np.array_equal(runs[1], first)
    assert helper.stats.by_key()["attn1"] == {"computed": 2 * 3 * 24, "predicted": 2 * 3 * 26}
    assert all(owner_of(m) is None for m in pipe.transformer.modules())


def test_short_run_with_a_long_schedule_is_reported(reference_dir, tiny_pipe):
    helper = DiffuserCacheHelper(
        tiny_pipe.transformer, schedule=Schedule.load(reference_dir / "diffuser_schedule.json")
    )
    helper.enable()
    with pytest.warns(SmoothCacheWarning, match="ended after 30 steps but the schedule has 50"):
        tiny_pipe(
            class_labels=[1], num_inference_steps=30, output_type="np"
        )  # told when the pipeline returns
    helper.disable()


def test_unknown_schedule_keys_are_errors_not_ignored(tiny_pipe):
    with pytest.raises(ScheduleError, match=r"\['mlp'\]"):
        DiffuserCacheHelper(tiny_pipe.transformer, schedule={"attn1": [1, 0], "mlp": [1, 0]})


def test_dit_cache_helper_on_the_original_dit_structure(reference_dir):
    torch.manual_seed(0)
    model = DiT(depth=4).eval()
    schedule = Schedule.load(reference_dir / "30-N-3-threshold-0.35.json")
    helper = DiTCacheHelper(model, schedule=schedule.to_dict())
    helper.enable()
    first = sample_with_cfg(model, steps=30)
    second = sample_with_cfg(model, steps=30)
    helper.disable()
    assert torch.equal(first, second)
    computed = sum(schedule.entries["attn"])
    assert helper.stats.by_key() == {
        "attn": {"computed": 2 * 4 * computed, "predicted": 2 * 4 * (30 - computed)},
        "mlp": {"computed": 2 * 4 * computed, "predicted": 2 * 4 * (30 - computed)},
    }


def test_dit_per_block_l2c_schedule(reference_dir):
    torch.manual_seed(0)
    model = DiT(depth=28, dim=16).eval()
    schedule = Schedule.load(reference_dir / "50-N-2-l2c.json")
    helper = DiTCacheHelper(model, schedule)
    helper.enable()
    sample_with_cfg(model, steps=50, size=4)
    helper.disable()
    per_block = {c.path: c.computed for c in helper.stats.counters.values()}
    assert per_block["blocks.3.attn"] == sum(schedule.entries["attn-3"])
    assert per_block["blocks.27.mlp"] == sum(schedule.entries["mlp-27"])


def test_smooth_cache_helper_with_user_block_classes(tiny_pipe):
    from diffusers.models.attention import BasicTransformerBlock

    helper = SmoothCacheHelper(
        tiny_pipe.transformer, BasicTransformerBlock, ["attn1", "ff"], {"ff": [1, 0, 1, 1]}
    )
    helper.enable()
    helper.enable()
    tiny_pipe(class_labels=[1], num_inference_steps=4, output_type="np")
    helper.disable()
    assert helper.stats.by_key() == {"ff": {"computed": 9, "predicted": 3}}


def test_diffuser_calibration_helper_writes_the_schedule(tmp_path, tiny_pipe):
    log_file = tmp_path / "schedules" / "diffuser_schedule.json"
    helper = DiffuserCalibrationHelper(
        model=tiny_pipe.transformer,
        calibration_lookahead=3,
        calibration_threshold=0.15,
        schedule_length=20,
        log_file=str(log_file),
    )
    helper.enable()
    tiny_pipe(
        class_labels=[207, 360, 387],
        num_inference_steps=20,
        generator=torch.manual_seed(33),
        output_type="np",
    )
    schedule = helper.disable()
    written = Schedule.load(log_file)
    assert written == schedule and written.branch_keys == ["attn1"] and written.num_steps == 20
    # every skip run is the longest one the threshold allows at its start (the n-row scan's rule)
    rows, row = helper.profile.mean_errors("attn1")[0], written.entries["attn1"]
    assert 0 in row[1:-1]
    i = 0
    while i < len(row) - 1:
        k = next((j for j in range(i + 1, len(row)) if row[j] == 1), len(row)) - i - 1
        if k:
            assert rows[k - 1][i] <= 0.15
        longer = [rows[m - 1][i] for m in range(k + 1, 4) if i < len(rows[m - 1]) and i + m < len(row) - 1]
        assert all(v > 0.15 for v in longer), (i, k)
        i += k + 1
    assert all(owner_of(m) is None for m in tiny_pipe.transformer.modules())


def test_calibration_helper_generic_and_length_mismatch(tmp_path):
    torch.manual_seed(0)
    model = DiT().eval()
    helper = CalibrationHelper(
        model,
        ["DiTBlock"],
        ["attn", "mlp"],
        calibration_lookahead=2,
        calibration_threshold=0.5,
        schedule_length=12,
        log_file=str(tmp_path / "s.json"),
    )
    helper.enable()
    sample_with_cfg(model, steps=10)
    with pytest.warns(SmoothCacheWarning, match="calibration ran 10 steps but schedule_length is 12"):
        schedule = helper.disable()
    assert schedule.num_steps == 12 and schedule.branch_keys == ["attn", "mlp"]
    assert schedule.entries["attn"][-2:] == (1, 1)
    with pytest.raises(ValueError, match="lookahead must be an integer >= 1"):
        CalibrationHelper(model, ["DiTBlock"], ["attn"], calibration_lookahead=0)
