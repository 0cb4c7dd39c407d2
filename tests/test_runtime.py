import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import run_steps
from original_dit import DiT, sample_with_cfg
from smoothcache import Schedule, ScheduleError, SmoothCache, SmoothCacheWarning
from smoothcache.patching import owner_of

TS4 = (999, 749, 499, 249)


def _snapshot(model):
    return {
        "forwards": {n: m.__dict__.get("forward") for n, m in model.named_modules()},
        "hooks": {n: (dict(m._forward_hooks), dict(m._forward_pre_hooks)) for n, m in model.named_modules()},
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def _assert_restored(model, before):
    after = _snapshot(model)
    assert after["forwards"] == before["forwards"]
    assert after["hooks"] == before["hooks"]
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], before["state"][k]) for k in before["state"])
    assert all(owner_of(m) is None for m in model.modules())


def test_all_ones_schedule_is_bit_identical_to_no_cache(tiny_pipe):
    kwargs = dict(class_labels=[1, 2], num_inference_steps=12, output_type="np")
    base = tiny_pipe(generator=torch.manual_seed(7), **kwargs).images
    with SmoothCache(tiny_pipe.transformer, Schedule.full(12, ["attn1", "ff"])) as cache:
        cached = tiny_pipe(generator=torch.manual_seed(7), **kwargs).images
    assert np.array_equal(base, cached)
    assert cache.stats.by_key() == {
        "attn1": {"computed": 36, "predicted": 0},
        "ff": {"computed": 36, "predicted": 0},
    }


def test_steps_follow_the_denoiser_not_each_branch(tiny_dit):
    schedule = Schedule({"attn1": [1, 0, 1, 0], "ff": [1, 1, 0, 1]})
    with SmoothCache(tiny_dit, schedule) as cache:
        run_steps(tiny_dit, TS4)
        assert cache.step == 3
    stats = cache.stats
    assert stats.by_key() == {"attn1": {"computed": 6, "predicted": 6}, "ff": {"computed": 9, "predicted": 3}}
    for counter in stats.counters.values():
        assert counter.calls == 4
    assert stats.computed == 15 and stats.predicted == 9


def test_skipped_step_returns_the_output_of_the_last_computed_step(tiny_dit):
    outputs = []
    attn = tiny_dit.transformer_blocks[1].attn1
    handle = attn.register_forward_hook(lambda m, a, out: outputs.append(out))
    with SmoothCache(tiny_dit, {"attn1": [1, 0, 0, 1]}):
        run_steps(tiny_dit, TS4)
    handle.remove()
    assert outputs[1] is outputs[0] and outputs[2] is outputs[0]
    assert not torch.equal(outputs[3], outputs[0])


def test_every_generation_restarts_at_step_zero(tiny_dit):
    schedule = Schedule.fixed_interval(4, 2, ["attn1", "ff"])
    with SmoothCache(tiny_dit, schedule) as cache:
        first = run_steps(tiny_dit, TS4, seed=1)
        second = run_steps(tiny_dit, TS4, seed=1)
        third = run_steps(tiny_dit, TS4, seed=1)
    assert torch.equal(first, second) and torch.equal(first, third)
    assert cache.stats.by_key()["attn1"] == {"computed": 3 * 3 * 3, "predicted": 3 * 3 * 1}


def test_explicit_reset_starts_a_new_generation(tiny_dit):
    with SmoothCache(tiny_dit, {"attn1": [1, 0, 1, 1]}) as cache:
        run_steps(tiny_dit, (999, 749))
        with pytest.warns(SmoothCacheWarning, match="ended after 2 steps but the schedule has 4"):
            cache.reset()
        assert cache.step == -1
        run_steps(tiny_dit, (500, 400, 300, 200))  # lower than 749: without reset this would be step 2..5
        assert cache.step == 3


def _cfg_loop(model, timesteps, seed=0):
    """A pipeline that calls the model twice per step (cond, then uncond) with the same timestep."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        for t in timesteps:
            tt = torch.tensor([t])
            cond = model(x, timestep=tt, class_labels=torch.tensor([3])).sample
            uncond = model(x, timestep=tt, class_labels=torch.tensor([1000])).sample
            x = x - 0.05 * (uncond + 2.0 * (cond - uncond))
    return x


def test_separate_cond_and_uncond_calls_get_separate_caches(tiny_dit):
    seen = []
    attn = tiny_dit.transformer_blocks[0].attn1
    handle = attn.register_forward_hook(lambda m, a, out: seen.append(out))
    with SmoothCache(tiny_dit, {"attn1": [1, 0, 1, 0]}) as cache:
        _cfg_loop(tiny_dit, TS4)
        assert cache.step == 3
    handle.remove()
    cond, uncond = seen[0::2], seen[1::2]
    assert cond[1] is cond[0] and uncond[1] is uncond[0]
    assert not torch.equal(cond[0], uncond[0])
    assert cache.stats.by_key()["attn1"] == {"computed": 3 * 2 * 2, "predicted": 3 * 2 * 2}


def test_batch_size_and_resolution_can_change_between_generations(tiny_dit):
    schedule = Schedule.fixed_interval(4, 2, ["attn1", "ff"])
    with SmoothCache(tiny_dit, schedule):
        run_steps(tiny_dit, TS4, batch=2)
        small = run_steps(tiny_dit, TS4, batch=1, seed=3)
        large = run_steps(tiny_dit, TS4, batch=1, seed=3, size=16)
    with SmoothCache(tiny_dit, schedule):
        fresh_small = run_steps(tiny_dit, TS4, batch=1, seed=3)
    assert torch.equal(small, fresh_small)
    assert large.shape == (1, 4, 16, 16)


def test_enable_twice_wraps_once_and_disable_restores(tiny_dit):
    before = _snapshot(tiny_dit)
    cache = SmoothCache(tiny_dit, {"attn1": [1, 0, 1, 0]})
    cache.enable()
    wrapper = tiny_dit.transformer_blocks[0].attn1.forward
    cache.enable()
    assert tiny_dit.transformer_blocks[0].attn1.forward is wrapper
    run_steps(tiny_dit, TS4)
    assert cache.stats.by_key()["attn1"] == {"computed": 6, "predicted": 6}
    cache.disable()
    _assert_restored(tiny_dit, before)
    cache.disable()  # a second disable is harmless
    _assert_restored(tiny_dit, before)


def test_a_second_cache_on_the_same_model_is_refused(tiny_dit):
    with SmoothCache(tiny_dit, {"attn1": [1, 0]}):
        with pytest.raises(RuntimeError, match="already wrapped by another SmoothCache"):
            SmoothCache(tiny_dit, {"ff": [1, 0]}).enable()


def test_disable_restores_after_an_exception_mid_run(tiny_dit):
    calls = []

    def explode(module, args, output):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("boom in block")

    handle = tiny_dit.transformer_blocks[2].register_forward_hook(explode)
    before = _snapshot(tiny_dit)  # the user's own hook is part of what must survive
    with pytest.raises(RuntimeError, match="boom in block"):
        with SmoothCache(tiny_dit, Schedule.fixed_interval(8, 2, ["attn1", "ff"])):
            run_steps(tiny_dit, range(999, 0, -100)[:8])
    _assert_restored(tiny_dit, before)
    handle.remove()
    before = _snapshot(tiny_dit)

    cache = SmoothCache(tiny_dit, Schedule.fixed_interval(8, 2, ["attn1", "ff"])).enable()
    with pytest.raises(ScheduleError):
        run_steps(tiny_dit, range(999, 0, -100))  # 10 steps: past the end at step 8
    cache.disable()
    _assert_restored(tiny_dit, before)


def test_an_existing_instance_forward_is_put_back(tiny_dit):
    attn = tiny_dit.transformer_blocks[0].attn1
    original = attn.forward
    calls = []

    def offload_like(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    attn.forward = offload_like
    with SmoothCache(tiny_dit, {"attn1": [1, 0, 1, 0]}):
        run_steps(tiny_dit, TS4)
    assert attn.__dict__["forward"] is offload_like
    assert len(calls) == 2  # the wrapped hook ran on computed steps only


def test_running_past_the_schedule_raises_at_that_step(tiny_dit):
    with SmoothCache(tiny_dit, {"attn1": [1, 0, 1]}) as cache:
        with pytest.raises(ScheduleError, match="step 3 is past the end of the 3-step schedule"):
            run_steps(tiny_dit, TS4)
        # the next generation (timestep jumps back up) works again, and ran its full schedule: no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            run_steps(tiny_dit, TS4[:3])
    assert cache.stats.by_key()["attn1"]["predicted"] == 3 * 2


def test_ending_before_the_schedule_warns(tiny_dit):
    cache = SmoothCache(tiny_dit, {"attn1": [1, 0, 1, 0, 1]}).enable()
    run_steps(tiny_dit, TS4[:3])
    with pytest.warns(SmoothCacheWarning, match="ended after 3 steps but the schedule has 5"):
        cache.disable()
    with SmoothCache(tiny_dit, {"attn1": [1, 0, 1, 0, 1]}):
        run_steps(tiny_dit, TS4[:3])
        with pytest.warns(SmoothCacheWarning, match="ended after 3 steps"):
            run_steps(tiny_dit, TS4[:1])  # the new generation reveals that the previous one ended early


def test_schedule_keys_must_match_branches_of_the_model(tiny_dit):
    with pytest.raises(
        ScheduleError,
        match=r"\['mlp'\] match no branch of DiTTransformer2DModel; its blocks have: \['attn1', 'ff'\]",
    ):
        SmoothCache(tiny_dit, {"attn1": [1, 0], "mlp": [1, 0]})
    with pytest.raises(
        ScheduleError, match=r"'attn1-7': DiTTransformer2DModel has 'attn1' only in blocks 0..2"
    ):
        SmoothCache(tiny_dit, {"attn1": [1, 0], "attn1-7": [1, 1]})
    with pytest.raises(ScheduleError, match="not among the keys to wrap"):
        SmoothCache(tiny_dit, {"attn1": [1, 0], "ff": [1, 0]}, keys=["attn1"])


def test_model_without_known_blocks_is_a_clear_error():
    with pytest.raises(ScheduleError, match="no transformer blocks found in Sequential"):
        SmoothCache(nn.Sequential(nn.Linear(2, 2)), {"attn": [1, 0]})


def test_per_block_keys_override_the_bare_key(tiny_dit):
    schedule = {"attn1": [1, 0, 1, 0], "attn1-2": [1, 1, 1, 1]}
    with SmoothCache(tiny_dit, schedule) as cache:
        run_steps(tiny_dit, TS4)
    per_branch = {c.block: (c.computed, c.predicted) for c in cache.stats.counters.values()}
    assert per_branch == {0: (2, 2), 1: (2, 2), 2: (4, 0)}


class InPlaceBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.Linear(4, 4)

    def forward(self, x):
        out = self.attn(x)
        out.mul_(0.5)  # edits the branch output in place: caching it would be wrong
        return x + out


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([InPlaceBlock(), InPlaceBlock()])

    def forward(self, x, t):
        for b in self.blocks:
            x = b(x)
        return x


def test_in_place_edits_of_a_cached_output_are_detected():
    model = Stack()
    with SmoothCache(model, {"attn": [1, 0]}, block_classes=[InPlaceBlock]):
        with torch.no_grad():
            model(torch.ones(1, 4), torch.tensor([10.0]))
            with pytest.raises(RuntimeError, match="modified in place"):
                model(torch.ones(1, 4), torch.tensor([5.0]))


def test_calls_per_step_for_samplers_that_repeat_timesteps():
    model = Stack()
    for b in model.blocks:  # no in-place edit here
        b.forward = lambda x, b=b: x + b.attn(x)
    with SmoothCache(model, {"attn": [1, 0, 1]}, block_classes=["InPlaceBlock"], calls_per_step=1) as cache:
        with torch.no_grad():
            for t in (10.0, 5.0, 5.0):  # Heun-like: two calls at t=5 are two steps
                model(torch.ones(1, 4), torch.tensor([t]))
    assert cache.stats.by_key()["attn"] == {"computed": 4, "predicted": 2}


def test_original_dit_structure_through_forward_with_cfg():
    torch.manual_seed(0)
    model = DiT().eval()
    base = sample_with_cfg(model, steps=6)
    with SmoothCache(model, Schedule.full(6, ["attn", "mlp"])):
        same = sample_with_cfg(model, steps=6)
    assert torch.equal(base, same)
    with SmoothCache(model, Schedule.fixed_interval(6, 2, ["attn", "mlp"])) as cache:
        cached = sample_with_cfg(model, steps=6)
    assert cache.stats.by_key() == {
        "attn": {"computed": 12, "predicted": 6},
        "mlp": {"computed": 12, "predicted": 6},
    }
    assert not torch.equal(base, cached)


def test_a_class_named_ditblock_without_the_dit_structure_is_not_matched():
    class DiTBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.Linear(2, 2)

    with pytest.raises(ScheduleError, match="no transformer blocks found"):
        SmoothCache(nn.Sequential(DiTBlock()), {"attn": [1, 0]})


def test_stats_report_cache_bytes(tiny_dit):
    with SmoothCache(tiny_dit, {"attn1": [1, 0]}) as cache:
        run_steps(tiny_dit, TS4[:2])
        # 3 blocks x one (2, 16 tokens, 16 channels) float32 output
        assert cache.stats.cache_bytes == 3 * 2 * 16 * 16 * 4
        text = str(cache.stats)
        assert "attn1" in text and "50.0%" in text
    assert cache.stats.cache_bytes == 0


def test_rising_timesteps_are_steps_of_one_generation(tiny_dit):
    """Z-Image, Lumina 2, Mochi and OmniGen count time up from the noise (0 -> 1): a rise is the next step,
    and a fall back to the start begins the next generation."""
    rising = (0.0, 0.25, 0.5, 0.75)
    with SmoothCache(tiny_dit, {"attn1": [1, 0, 1, 0]}) as cache:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SmoothCacheWarning)
            first = run_steps(tiny_dit, rising)
            assert cache.step == 3
            second = run_steps(tiny_dit, rising)  # 0.75 -> 0.0 is against the direction: a new generation
    assert cache.step == -1 and torch.equal(first, second)
    assert cache.stats.by_key()["attn1"] == {"computed": 2 * 3 * 2, "predicted": 2 * 3 * 2}
