"""Pipeline-level verbs: enable / disable / summary over every denoiser of a real (tiny) diffusers
pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from families import FAMILIES, build_wan
from smoothcache import Schedule, ScheduleError, SmoothCacheWarning, TargetError
from smoothcache.patching import owner_of
from smoothcache.pipeline import denoisers, disable, enable, summary

STEPS = 6
KEYS = FAMILIES["wan"].keys


def _run(pipe, seed=2, steps=STEPS):
    return FAMILIES["wan"].run(pipe, steps, seed=seed)


def _two_experts():
    """Wan 2.2 A14B style: ``transformer`` above the boundary timestep, ``transformer_2`` below."""
    from diffusers import WanPipeline

    high = build_wan()
    torch.manual_seed(1)
    low = build_wan().transformer
    with torch.no_grad():
        for p in low.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=high.vae, scheduler=high.scheduler,
                       transformer=high.transformer, transformer_2=low, boundary_ratio=0.5)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _split(pipe, steps=STEPS) -> tuple[int, int]:
    pipe.scheduler.set_timesteps(steps)
    high = int((pipe.scheduler.timesteps >= 0.5 * pipe.scheduler.config.num_train_timesteps).sum())
    return high, steps - high


def _clean(model) -> bool:
    return all(owner_of(m) is None for m in model.modules()) and "forward" not in model.__dict__


@pytest.fixture(scope="module")
def pipe():
    return _two_experts()


def test_denoisers_lists_the_experts_in_order(pipe):
    assert list(denoisers(pipe)) == ["transformer", "transformer_2"]
    assert list(denoisers(build_wan())) == ["transformer"]  # transformer_2=None is left out
    with pytest.raises(TypeError, match="is a model, not a pipeline"):
        denoisers(pipe.transformer)


def test_enable_one_schedule_per_expert_then_disable_restores_everything(pipe):
    base = _run(pipe)
    n_high, n_low = _split(pipe)
    plan = {
        "transformer": Schedule.fixed_interval(n_high, 2, KEYS),
        "transformer_2": Schedule.full(n_low, KEYS),
    }
    caches = enable(pipe, plan)
    assert set(caches) == {"transformer", "transformer_2"}
    with pytest.warns(
        SmoothCacheWarning, match="no call skipped: the schedule computes every step"
    ) as caught:
        out = _run(pipe)
    assert len([w for w in caught if w.category is SmoothCacheWarning]) == 1  # transformer_2's, once
    text = summary(pipe)
    assert caches["transformer"].stats.predicted > 0 and caches["transformer_2"].stats.predicted == 0
    assert caches["transformer_2"].stats.computed == 2 * n_low * 6  # cond + uncond, 2 blocks x 3 keys
    assert not np.array_equal(out, base)

    assert (
        "transformer (WanTransformer3DModel): enabled" in text
        and "transformer_2 (WanTransformer3DModel)" in text
    )
    assert f"{n_high}-step schedule" in text and "predicted %" in text and "attn1" in text

    returned = disable(pipe)
    assert returned == caches and not caches["transformer"].enabled
    assert _clean(pipe.transformer) and _clean(pipe.transformer_2)
    assert np.array_equal(_run(pipe), base)
    assert disable(pipe) == {}  # safe twice
    assert "not enabled" in summary(pipe) and "transformer, transformer_2" in summary(pipe)


def test_one_line_mode_calibrates_each_expert_on_the_first_generation(pipe):
    caches = enable(pipe, alpha=0.5, lookahead=2)
    try:
        assert all(c.calibrating for c in caches.values())
        assert "calibrating" in summary(pipe)
        _run(pipe, seed=0)  # calibration generation (it ends when the next one starts)
        _run(pipe, seed=1)
        assert not any(c.calibrating for c in caches.values())
        n_high, n_low = _split(pipe)
        assert (caches["transformer"].schedule.num_steps, caches["transformer_2"].schedule.num_steps) == (
            n_high,
            n_low,
        )
        assert sum(c.stats.predicted for c in caches.values()) > 0
    finally:
        disable(pipe)
    assert _clean(pipe.transformer) and _clean(pipe.transformer_2)


def test_a_mapping_may_leave_an_expert_uncached_and_enable_again_replaces(pipe):
    n_high, _ = _split(pipe)
    first = enable(pipe, {"transformer": Schedule.full(n_high, KEYS)})
    assert list(first) == ["transformer"] and _clean(pipe.transformer_2)
    assert "transformer_2 (WanTransformer3DModel): not cached" in summary(pipe)
    second = enable(pipe, {"transformer": Schedule.full(n_high, ["attn1"]), "transformer_2": None})
    assert not first["transformer"].enabled and second["transformer"].enabled
    assert {b.key for b in second["transformer"].branches} == {"attn1"}
    disable(pipe)
    assert _clean(pipe.transformer)


def test_a_failing_expert_leaves_no_cache_behind(pipe):
    n_high, n_low = _split(pipe)
    with pytest.raises(ScheduleError, match="transformer|ff"):
        enable(
            pipe, {"transformer": Schedule.full(n_high, KEYS), "transformer_2": Schedule.full(n_low, ["ff"])}
        )
    assert _clean(pipe.transformer) and _clean(pipe.transformer_2)
    assert "not enabled" in summary(pipe)


def test_enable_errors_say_what_to_give(pipe):
    with pytest.raises(ValueError, match="give a schedule, or alpha= or speedup="):
        enable(pipe)
    with pytest.raises(ValueError, match="exactly one of the three"):
        enable(pipe, alpha=0.1, speedup=2.0)
    with pytest.raises(TargetError, match=r"no denoiser \['transformer_3'\]"):
        enable(pipe, {"transformer_3": Schedule.full(2, KEYS)})
    with pytest.raises(TargetError, match="has no denoiser"):
        enable(object(), Schedule.full(2, KEYS))
    assert _clean(pipe.transformer)


def test_any_object_with_a_transformer_attribute_works():
    """Own sampling loops (no diffusers pipeline, not weak-referenceable) get the same verbs."""
    from types import SimpleNamespace

    from conftest import make_tiny_dit, run_steps

    model = make_tiny_dit()
    sampler = SimpleNamespace(transformer=model)
    base = run_steps(model, (999, 666, 333))
    caches = enable(sampler, {"attn1": [1, 0, 1], "ff": [1, 1, 1]})
    out = run_steps(model, (999, 666, 333))
    assert caches["transformer"].stats.by_key()["attn1"] == {"computed": 6, "predicted": 3}
    assert "transformer (DiTTransformer2DModel): enabled" in summary(sampler)
    assert not torch.equal(out, base)
    disable(sampler)
    assert disable(sampler) == {} and _clean(model)
    assert torch.equal(run_steps(model, (999, 666, 333)), base)
