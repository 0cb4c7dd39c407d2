"""Threads, several models and interrupts: a second thread gets a clear error at once (never mixed state),
caches of different models and successive caches of one model stay independent, and a KeyboardInterrupt inside
a branch, a fused block or a calibration leaves the model restored, the profile unchanged and the next run
correct."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from conftest import make_tiny_pipe
from smoothcache import Calibrator, Schedule, SmoothCache
from smoothcache.patching import owner_of

STEPS = 8
ROW = (1, 1, 0, 1, 0, 1, 0, 1)
KWARGS = dict(class_labels=[1, 2], num_inference_steps=STEPS, output_type="np")


def _run(pipe, seed=0):
    return pipe(generator=torch.manual_seed(seed), **KWARGS).images


def _schedule(predictor="linear", row=ROW):
    return Schedule({"attn1": row, "ff": row}, predictor=predictor)


def _restored(model) -> bool:
    return all(owner_of(m) is None and "forward" not in m.__dict__ for m in model.modules())


def test_a_second_thread_is_refused_at_once_and_the_first_is_not_disturbed():
    pipe, alone = make_tiny_pipe(), make_tiny_pipe()
    with SmoothCache(alone.transformer, _schedule()):
        expected = _run(alone)
    inside, release = threading.Event(), threading.Event()
    calls = iter(range(100))

    def hold(module, args):  # the first thread waits inside its 3rd denoiser call
        if next(calls) == 2:
            inside.set()
            release.wait(30)

    handle = pipe.transformer.transformer_blocks[0].attn1.register_forward_pre_hook(hold)
    results, errors = {}, []
    with SmoothCache(pipe.transformer, _schedule()) as cache:
        first = threading.Thread(target=lambda: results.setdefault("first", _run(pipe)))
        first.start()
        assert inside.wait(30)
        with pytest.raises(RuntimeError, match="in a denoiser call in another thread"):
            _run(pipe, seed=5)
        release.set()
        first.join(30)
        handle.remove()
        assert np.array_equal(results["first"], expected)  # the refused call changed nothing
        assert np.array_equal(_run(pipe), expected)  # after it returned, any thread may generate
        second = threading.Thread(target=lambda: results.setdefault("second", _run(pipe)))
        second.start()
        second.join(30)
        assert np.array_equal(results["second"], expected)
    assert cache.stats.predicted > 0 and not errors


def test_a_generation_running_in_another_thread_refuses_calls_between_its_steps():
    pipe = make_tiny_pipe()
    x = torch.randn(1, 4, 8, 8)
    with SmoothCache(pipe.transformer, _schedule()) as cache:
        step = lambda t: pipe.transformer(x, timestep=torch.tensor([t]), class_labels=torch.tensor([1]))  # noqa: E731
        worker = threading.Thread(target=step, args=(900,))
        worker.start()
        worker.join(30)  # its generation is open (a bare loop does not say when it ends)
        with pytest.raises(RuntimeError, match="has a generation running in another thread.*reset"):
            step(900)
        cache.reset()
        step(900)  # now this thread's generation


def test_two_models_cached_in_one_process_stay_independent():
    a, b = make_tiny_pipe(seed=0), make_tiny_pipe(seed=1)
    sa, sb = _schedule("linear"), _schedule("reuse", (1, 0, 1, 0, 1, 0, 1, 1))
    with SmoothCache(a.transformer, sa):
        alone_a = [_run(a, s) for s in (0, 1)]
    with SmoothCache(b.transformer, sb):
        alone_b = [_run(b, s) for s in (0, 1)]
    with SmoothCache(a.transformer, sa), SmoothCache(b.transformer, sb):
        mixed = [(_run(a, s), _run(b, s)) for s in (0, 1)]
    assert all(np.array_equal(x, y) for x, y in zip([m[0] for m in mixed], alone_a))
    assert all(np.array_equal(x, y) for x, y in zip([m[1] for m in mixed], alone_b))


def test_the_same_model_cached_disabled_and_cached_again_with_another_schedule():
    pipe, fresh = make_tiny_pipe(), make_tiny_pipe()
    other = _schedule("reuse", (1, 0, 0, 1, 1, 0, 1, 1))
    first = SmoothCache(pipe.transformer, _schedule()).enable()
    _run(pipe)
    first.disable()
    assert _restored(pipe.transformer)
    with SmoothCache(pipe.transformer, other) as second:
        got = _run(pipe, 3)
    with SmoothCache(fresh.transformer, other) as reference:
        want = _run(fresh, 3)
    assert np.array_equal(got, want) and second.stats.by_key() == reference.stats.by_key()


@pytest.mark.parametrize("where", ["branch", "fused block"])
def test_a_keyboard_interrupt_inside_the_model_leaves_it_restored_and_the_next_run_correct(where):
    pipe, fresh = make_tiny_pipe(), make_tiny_pipe()
    block = pipe.transformer.transformer_blocks[1]
    target = block.attn1 if where == "branch" else block.norm1  # norm1 runs only when the block is computed
    calls = iter(range(100))

    def interrupt(module, args):
        if next(calls) == 3:
            raise KeyboardInterrupt

    handle = target.register_forward_pre_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        with SmoothCache(pipe.transformer, _schedule(), fuse_blocks=where == "fused block"):
            _run(pipe)
    assert _restored(pipe.transformer)
    cache = SmoothCache(pipe.transformer, _schedule(), fuse_blocks=where == "fused block").enable()
    calls = iter(range(100))
    with pytest.raises(KeyboardInterrupt):  # with enable()/disable(): the cache stays on
        _run(pipe)
    handle.remove()
    assert cache.enabled and cache.stats.cache_bytes == 0
    got = _run(pipe, 4)
    cache.disable()
    with SmoothCache(fresh.transformer, _schedule(), fuse_blocks=where == "fused block"):
        assert np.array_equal(got, _run(fresh, 4))


def test_a_keyboard_interrupt_inside_calibration_leaves_the_profile_unchanged():
    pipe, clean = make_tiny_pipe(), make_tiny_pipe()
    cal = Calibrator(pipe.transformer).enable()
    _run(pipe, 0)
    before = {p: b.tables["reuse"].total.copy() for p, b in cal.profile.errors.items()}
    calls = iter(range(100))

    def interrupt(module, args):
        if next(calls) == 5:
            raise KeyboardInterrupt

    handle = pipe.transformer.transformer_blocks[0].ff.register_forward_pre_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(pipe, 1)
    handle.remove()
    assert cal.profile.runs == 1
    assert all(np.array_equal(b.tables["reuse"].total, before[p]) for p, b in cal.profile.errors.items())
    _run(pipe, 1)
    cal.disable()
    with Calibrator(clean.transformer) as reference:
        _run(clean, 0)
        _run(clean, 1)
    assert cal.profile.runs == reference.profile.runs == 2
    for path, branch in cal.profile.errors.items():
        expected = reference.profile.errors[path].tables["linear"].total
        assert np.allclose(branch.tables["linear"].total, expected)
    assert _restored(pipe.transformer)
