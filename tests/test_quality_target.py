"""Quality targets of the one-line mode: ``SmoothCache(model, min_psnr=...)`` checks its plan on a replay of
the calibration generation and caches with the fastest budget meeting the target."""

import logging
import warnings

import pytest
import torch

import smoothcache
from smoothcache import ScheduleError, SmoothCache, SmoothCacheWarning
from smoothcache.fidelity import psnr
from smoothcache.quality import QualityTarget, ladder

STEPS = 20


@pytest.fixture(scope="module")
def digits():
    from smoothcache.zoo import digits_pipeline

    pipe = digits_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, seed, labels=(0, 3, 7, 9)):
    return pipe(class_labels=list(labels), num_inference_steps=STEPS, output_type="pt",
                generator=torch.Generator().manual_seed(seed)).images


def test_min_psnr_holds_on_the_generation_after_calibration(digits, caplog):
    uncached = generate(digits, seed=1)
    cache = SmoothCache(digits.transformer, min_psnr=38)
    with caplog.at_level(logging.INFO, logger="smoothcache"), cache:
        first = generate(digits, seed=0)  # calibrates, then checks budgets on a replay of itself
        cached = generate(digits, seed=1)
    report = cache.stats.quality
    assert report is not None and report.chosen is not None and report.chosen > 1.0
    assert report.tried and all(isinstance(v, float) for _, v in report.tried)
    assert any("quality check" in r.getMessage() for r in caplog.records)  # each check is logged
    assert cache.stats.predicted > 0  # the next generation was cached ...
    assert psnr(uncached, cached) >= 38  # ... and meets the target against its own uncached output
    assert torch.equal(first, generate(digits, seed=0))  # the calibration generation itself was uncached
    assert "quality target min_psnr=38" in str(cache.stats)


def test_a_stricter_target_chooses_a_slower_budget(digits):
    chosen = {}
    for target in (30, 60):
        with SmoothCache(digits.transformer, min_psnr=target) as cache:
            generate(digits, seed=0)
        chosen[target] = cache.stats.quality.chosen
    assert chosen[60] is None or chosen[60] < chosen[30]


def test_an_unreachable_target_computes_every_step_and_says_so(digits):
    with pytest.warns(SmoothCacheWarning, match="no budget .* met min_psnr=500"):
        with SmoothCache(digits.transformer, min_psnr=500) as cache:
            generate(digits, seed=0)
            with warnings.catch_warnings():
                warnings.simplefilter("error", SmoothCacheWarning)  # no second "nothing skipped" warning
                generate(digits, seed=1)
    assert cache.stats.quality.chosen is None
    assert cache.stats.predicted == 0


def test_without_a_seeded_generator_the_plan_is_used_unchecked_with_a_warning(digits):
    with pytest.warns(SmoothCacheWarning, match="cannot be checked: .*seeded generator"):
        with SmoothCache(digits.transformer, min_psnr=35, speedup=1.5) as cache:
            digits(class_labels=[1, 2], num_inference_steps=STEPS)
    assert cache.stats.quality.note.startswith("not checked")
    assert cache.schedule is not None


def test_without_a_pipeline_the_plan_is_used_unchecked_with_a_warning(tiny_dit):
    from conftest import run_steps

    with pytest.warns(SmoothCacheWarning, match="cannot be checked: no diffusers pipeline"):
        with SmoothCache(tiny_dit, min_psnr=35) as cache:
            run_steps(tiny_dit, [900, 700, 500, 300, 100])
            cache.reset()
    assert cache.schedule is not None


def test_enable_takes_a_target_too(digits):
    caches = smoothcache.enable(digits, max_lsd=100.0)
    try:
        assert caches["transformer"].policy.target == QualityTarget("max_lsd", 100.0)
    finally:
        smoothcache.disable(digits)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"min_psnr": 30, "min_ssim": 0.9}, TypeError, "one quality target"),
    ({"min_psnr": 30, "alpha": 0.1}, TypeError, "not alpha="),
    ({"min_ssim": 1.5}, ScheduleError, "at most 1"),
    ({"min_psnr": float("nan")}, ScheduleError, "min_psnr"),
    ({"min_psnr": "high"}, ScheduleError, "min_psnr"),
])
def test_bad_targets_are_refused(tiny_dit, kwargs, error, match):
    with pytest.raises(error, match=match):
        SmoothCache(tiny_dit, **kwargs)


def test_a_target_with_a_schedule_is_refused(tiny_dit):
    schedule = smoothcache.Schedule.fixed_interval(num_steps=4, interval=2, branches=["attn1"])
    with pytest.raises(TypeError, match="min_psnr= belong to the one-line mode"):
        SmoothCache(tiny_dit, schedule, min_psnr=30)


def test_the_ladder_steps_down_geometrically():
    values = ladder(3.0)
    assert values[0] == 3.0 and values[-1] >= 1.1 and values[-1] * 0.85 < 1.1
    assert all(b < a for a, b in zip(values, values[1:]))
