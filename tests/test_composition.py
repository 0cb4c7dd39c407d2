"""SmoothCache next to diffusers' and accelerate's own hooks, and with LoRA weights."""

import numpy as np
import pytest
import torch

from conftest import make_tiny_dit, make_tiny_pipe, run_steps
from smoothcache import Schedule, SmoothCache
from smoothcache.patching import owner_of

TS = (999, 799, 599, 399, 199, 99)
SCHEDULE = Schedule.fixed_interval(len(TS), 2, ["attn1", "ff"])


def _no_smoothcache_left(model):
    return all(owner_of(m) is None for m in model.modules())


def _group_offload(model):
    from diffusers.hooks import apply_group_offloading

    cpu = torch.device("cpu")
    apply_group_offloading(model, onload_device=cpu, offload_device=cpu, offload_type="block_level",
                           num_blocks_per_group=1)


def _remove_group_offload(model):
    from diffusers.hooks import HookRegistry

    for module in model.modules():
        if hasattr(module, "_diffusers_hook"):
            HookRegistry.check_if_exists_or_initialize(module).remove_hook("group_offloading", recurse=False)


@pytest.mark.parametrize("order", ["offload first", "smoothcache first"])
def test_diffusers_group_offloading(order):
    reference_model = make_tiny_dit()
    with SmoothCache(reference_model, SCHEDULE):
        expected = run_steps(reference_model, TS)

    model = make_tiny_dit()
    original_forward = model.forward
    if order == "offload first":
        _group_offload(model)
        cache = SmoothCache(model, SCHEDULE).enable()
    else:
        cache = SmoothCache(model, SCHEDULE).enable()
        _group_offload(model)
    got = run_steps(model, TS)
    cache.disable()
    assert torch.equal(got, expected)
    assert cache.stats.by_key()["attn1"] == {"computed": 3 * 4, "predicted": 3 * 2}
    # the offloading hooks still work without smoothcache, and come off cleanly
    assert torch.equal(run_steps(model, TS), run_steps(make_tiny_dit(), TS))
    _remove_group_offload(model)
    assert _no_smoothcache_left(model)
    assert "forward" not in model.__dict__ or model.forward == original_forward


@pytest.mark.parametrize("order", ["offload first", "smoothcache first"])
def test_accelerate_offload_hook(order):
    """What ``enable_model_cpu_offload`` installs (it needs an accelerator, so the hook is used directly)."""
    from accelerate import cpu_offload_with_hook
    from accelerate.hooks import remove_hook_from_module

    expected_model = make_tiny_dit()
    with SmoothCache(expected_model, SCHEDULE):
        expected = run_steps(expected_model, TS)
    model = make_tiny_dit()
    if order == "offload first":
        cpu_offload_with_hook(model, execution_device="cpu")
        cache = SmoothCache(model, SCHEDULE).enable()
    else:
        cache = SmoothCache(model, SCHEDULE).enable()
        cpu_offload_with_hook(model, execution_device="cpu")
    got = run_steps(model, TS)
    cache.disable()
    assert torch.equal(got, expected)
    assert _no_smoothcache_left(model) and model._old_forward.__self__ is model  # spliced out of the chain
    remove_hook_from_module(model)
    assert torch.equal(run_steps(model, TS), run_steps(make_tiny_dit(), TS))


def test_model_cpu_offload_needs_an_accelerator_here():
    pipe = make_tiny_pipe()
    with pytest.raises(RuntimeError, match="requires accelerator"):
        pipe.enable_model_cpu_offload()


def test_unknown_wrapper_on_top_is_a_clear_error_and_becomes_a_pass_through():
    model = make_tiny_dit()
    cache = SmoothCache(model, SCHEDULE).enable()
    inner = model.forward
    model.forward = lambda *a, **k: inner(*a, **k)  # someone else's wrapper, added after smoothcache
    with pytest.raises(RuntimeError, match="replaced by something else after smoothcache wrapped it"):
        cache.disable()
    plain = run_steps(make_tiny_dit(), TS)
    assert torch.equal(run_steps(model, TS), plain)  # our wrappers now pass straight through
    with pytest.raises(RuntimeError, match="could not be removed from the model earlier"):
        cache.enable()


def _lora(model, seed=0):
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    return inject_adapter_in_model(config, model)


@pytest.mark.parametrize("order", ["lora first", "smoothcache first"])
def test_lora_weights(order):
    lora_model = _lora(make_tiny_dit())
    plain = run_steps(make_tiny_dit(), TS)
    with_lora = run_steps(lora_model, TS)
    assert not torch.equal(plain, with_lora)  # the adapter really changes the model
    with SmoothCache(lora_model, Schedule.full(len(TS), ["attn1", "ff"])):
        assert torch.equal(run_steps(lora_model, TS), with_lora)

    model = make_tiny_dit()
    if order == "lora first":
        model = _lora(model)
        cache = SmoothCache(model, SCHEDULE).enable()
    else:
        cache = SmoothCache(model, SCHEDULE).enable()
        model = _lora(model)
    got = run_steps(model, TS)
    cache.disable()
    with SmoothCache(lora_model, SCHEDULE):
        expected = run_steps(lora_model, TS)
    assert torch.equal(got, expected)
    assert cache.stats.predicted > 0 and _no_smoothcache_left(model)


def test_pipeline_output_with_group_offloading_and_cache():
    pipe = make_tiny_pipe()
    base = pipe(
        class_labels=[1], num_inference_steps=6, generator=torch.manual_seed(0), output_type="np"
    ).images
    _group_offload(pipe.transformer)
    with SmoothCache(pipe.transformer, Schedule.full(6, ["attn1", "ff"])):
        same = pipe(
            class_labels=[1], num_inference_steps=6, generator=torch.manual_seed(0), output_type="np"
        ).images
    assert np.array_equal(base, same)
