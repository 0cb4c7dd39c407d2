"""The SmoothCache nodes on ComfyUI's own tiny models (random weights, CPU), sampled by ComfyUI's KSampler.

Skipped unless ``COMFYUI_PATH`` names a ComfyUI checkout whose dependencies are installed in this Python:

    COMFYUI_PATH=/path/to/ComfyUI PYTHONPATH=src:. python -m pytest tests/test_comfyui_integration.py
"""

from __future__ import annotations

import copy

import pytest
import torch
from scripts.comfyui_headless import ComfyUnavailable, bootstrap, build, conditioning, empty_latent, ksample

from smoothcache import CalibrationProfile, Schedule
from smoothcache.errors import TargetError

try:
    bootstrap()
except ComfyUnavailable as err:
    pytest.skip(f"ComfyUI integration tests skipped: {err}", allow_module_level=True)

from smoothcache.comfyui.nodes import SmoothCacheApply, SmoothCacheCalibrate  # noqa: E402
from smoothcache.comfyui.patch import KEY  # noqa: E402

STEPS = 6
#: hooked blocks of each tiny model
BLOCKS = {"flux": 4, "wan21": 3, "hunyuan_video": 4, "qwen_image": 2, "sd3": 2}
KINDS = {"flux": ("double_block", "single_block"), "hunyuan_video": ("double_block", "single_block")}


def fingerprint(patcher) -> dict:
    """What a run must leave as it was: the patcher's options, wrappers and patches, every module's forward,
    the loaded patcher, and every weight (values and storage)."""
    model = patcher.model
    return {
        "model": id(model),
        "options": copy.deepcopy(patcher.model_options),
        "wrappers": copy.deepcopy(patcher.wrappers),
        "patches": {k: list(v) for k, v in patcher.patches.items()},
        "object_patches": dict(patcher.object_patches),
        "instance_forwards": [n for n, m in model.named_modules() if "forward" in m.__dict__],
        "current_patcher": model.current_patcher,
        "weights": {k: (v.clone(), v.data_ptr()) for k, v in model.state_dict().items()},
    }


def assert_untouched(before: dict, after: dict) -> None:
    weights_a, weights_b = before.pop("weights"), after.pop("weights")
    assert before == after
    assert weights_a.keys() == weights_b.keys()
    for k, (value, ptr) in weights_a.items():
        assert torch.equal(value, weights_b[k][0]) and ptr == weights_b[k][1], k


def schedule_file(tmp_path, family, row, predictor="linear"):
    kinds = KINDS.get(family, ("double_block",))
    return str(Schedule({k: list(row) for k in kinds}, predictor=predictor).save(tmp_path / f"{family}.json"))


def last_run(patcher) -> dict:
    return patcher.model_options["transformer_options"][KEY].last_run


def relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("family", list(BLOCKS))
def test_an_all_ones_schedule_is_bit_identical_and_a_skipping_one_is_counted(tmp_path, family):
    base = build(family)
    positive, negative = conditioning(family)
    latent = empty_latent(family)
    before = fingerprint(base)
    reference = ksample(base, positive, negative, latent, steps=STEPS)
    ones = SmoothCacheApply().apply(base, 2.0, schedule_file(tmp_path, family, [1] * STEPS))["result"][0]
    assert torch.equal(ksample(ones, positive, negative, latent, steps=STEPS), reference)
    assert last_run(ones)["block_calls"] == STEPS * BLOCKS[family] and last_run(ones)["skipped"] == 0
    row = [1, 1, 0, 1, 0, 1]
    skipping = SmoothCacheApply().apply(base, 2.0, schedule_file(tmp_path, family, row))["result"][0]
    out = ksample(skipping, positive, negative, latent, steps=STEPS)
    assert last_run(skipping)["skipped"] == 2 * BLOCKS[family]
    assert last_run(skipping)["by_step"][2] == (0, BLOCKS[family])
    assert torch.isfinite(out).all() and not torch.equal(out, reference)
    assert relative(out, reference) < 0.2
    assert torch.equal(
        ksample(skipping, positive, negative, latent, steps=STEPS), out
    )  # runs are independent
    assert_untouched(before, fingerprint(base))
    assert torch.equal(ksample(base, positive, negative, latent, steps=STEPS), reference)


@pytest.mark.parametrize("family", ["flux", "wan21"])
def test_calibrate_then_apply(tmp_path, family):
    base = build(family)
    positive, negative = conditioning(family)
    latent = empty_latent(family)
    reference = ksample(base, positive, negative, latent, steps=8)
    path = tmp_path / "profile.safetensors"
    calibrating = SmoothCacheCalibrate().calibrate(base, str(path), 3)["result"][0]
    assert torch.equal(ksample(calibrating, positive, negative, latent, steps=8), reference)
    profile = CalibrationProfile.load(path)
    assert profile.num_steps == 8 and len(profile.errors) == BLOCKS[family] and profile.times["call"] > 0
    applied = SmoothCacheApply().apply(base, 1.3, str(path))["result"][0]
    out = ksample(applied, positive, negative, latent, steps=8)
    assert last_run(applied)["skipped"] > 0 and relative(out, reference) < 0.1
    longer = ksample(applied, positive, negative, latent, steps=12)  # planned from the profile by sigma
    assert (
        last_run(applied)["steps"] == 12 and last_run(applied)["skipped"] > 0 and torch.isfinite(longer).all()
    )


def test_two_expert_segments_are_each_planned_by_sigma(tmp_path):
    """KSamplerAdvanced 0-6 on one model, 6-12 on another (as Wan 2.2's two experts): each segment's own
    sigmas are matched to the calibration, and the second segment's cache starts empty."""
    high, low = build("wan21", seed=0), build("wan21", seed=1)
    positive, negative = conditioning("wan21")
    latent = empty_latent("wan21")
    path = tmp_path / "wan.safetensors"
    calibrating = SmoothCacheCalibrate().calibrate(high, str(path), 3)["result"][0]
    ksample(calibrating, positive, negative, latent, steps=12)
    fast_high = SmoothCacheApply().apply(high, 1.5, str(path))["result"][0]
    fast_low = SmoothCacheApply().apply(low, 1.5, str(path))["result"][0]
    first = ksample(
        fast_high, positive, negative, latent, steps=12, start_step=0, last_step=6, force_full_denoise=False
    )
    assert last_run(fast_high)["steps"] == 6 and last_run(fast_high)["skipped"] > 0
    second = ksample(
        fast_low,
        positive,
        negative,
        {"samples": first},
        steps=12,
        start_step=6,
        last_step=12,
        disable_noise=True,
    )
    assert last_run(fast_low)["steps"] == 6 and last_run(fast_low)["by_step"][0][1] == 0
    assert torch.isfinite(second).all()


def test_separate_cond_calls_and_heun_double_evaluations(tmp_path):
    base = build("flux")
    positive, _ = conditioning("flux", text=8)
    _, negative = conditioning("flux", text=12)  # another text length: cond and uncond are called apart
    latent = empty_latent("flux")
    ones = SmoothCacheApply().apply(base, 2.0, schedule_file(tmp_path, "flux", [1] * STEPS))["result"][0]
    for sampler in ("euler", "heun"):
        reference = ksample(base, positive, negative, latent, steps=STEPS, sampler=sampler)
        assert torch.equal(ksample(ones, positive, negative, latent, steps=STEPS, sampler=sampler), reference)
    assert last_run(ones)["model_calls"] == 2 * (2 * STEPS - 1)  # heun: 2 evaluations a step but the last
    skipping = SmoothCacheApply().apply(base, 2.0, schedule_file(tmp_path, "flux", [1, 1, 0, 1, 0, 1]))[
        "result"
    ][0]
    out = ksample(skipping, positive, negative, latent, steps=STEPS, sampler="heun")
    assert last_run(skipping)["by_step"][2] == (0, 4 * 4)  # 2 evaluations x (cond, uncond) x 4 blocks
    assert torch.isfinite(out).all()


def test_an_interrupt_releases_the_run_and_leaves_the_model_as_it_was(tmp_path):
    import comfy.model_management as mm
    import comfy.utils

    base = build("flux")
    positive, negative = conditioning("flux")
    latent = empty_latent("flux")
    before = fingerprint(base)
    skipping = SmoothCacheApply().apply(base, 2.0, schedule_file(tmp_path, "flux", [1, 1, 0, 1, 0, 1]))[
        "result"
    ][0]
    expected = ksample(skipping, positive, negative, latent, steps=STEPS)

    def interrupt(value, total, preview, prompt_id=None, node_id=None):
        if value >= 3:
            raise mm.InterruptProcessingException()

    comfy.utils.set_progress_bar_global_hook(interrupt)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            ksample(skipping, positive, negative, latent, steps=STEPS)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert last_run(skipping)["model_calls"] == 3
    assert_untouched(before, fingerprint(base))
    assert torch.equal(ksample(skipping, positive, negative, latent, steps=STEPS), expected)


def test_lumina2_is_refused_with_the_reason():
    with pytest.raises(TargetError, match="not supported"):
        SmoothCacheApply().apply(build("lumina2"), 2.0, "")
