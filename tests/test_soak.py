"""Soak: 200 generations on the embedded digits pipeline through long-lived caches, varying batch size, step
count (resampled schedules), guidance, predictor and fusion, every tenth generation interrupted by an
exception (from the sampler between steps, or inside the model). After each generation the cache holds
nothing, the number of live tensors does not grow, and the next generation equals a fresh cache's, bit for
bit; at the end the model and its uncached output are the original ones."""

from __future__ import annotations

import gc
import itertools

import pytest
import torch

from smoothcache import Calibrator, Schedule, SmoothCache

pytestmark = pytest.mark.slow

GENERATIONS = 200
STEPS = (8, 12, 16)
PREDICTORS = ("reuse", "linear", "auto")
FUSION = (None, False, "runs")


class Stop(Exception):
    """The interruption."""


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


@pytest.fixture(scope="module")
def pipes():
    from smoothcache.zoo import digits_pipeline

    pipe, twin = digits_pipeline(scheduler="ddim"), digits_pipeline(scheduler="ddim")  # (a deepcopy's weights
    for p in (pipe, twin):  # sit elsewhere in memory, and the CPU kernels may round differently there)
        p.set_progress_bar_config(disable=True)
    return pipe, twin


def _generate(pipe, seed: int, batch: int, steps: int, guidance: float):
    labels = [(seed + i) % 10 for i in range(batch)]
    return pipe(class_labels=labels, num_inference_steps=steps, guidance_scale=guidance,
                generator=torch.Generator().manual_seed(seed), output_type="pt").images


def _interrupting(pipe, generation: int):
    """Make the generation raise Stop: from the sampler after step 3, or inside the model at its 5th call."""
    if generation % 20 == 9:
        original, calls = pipe.scheduler.step, itertools.count()

        def step(*args, **kwargs):
            if next(calls) == 3:
                raise Stop("stopped by the sampler")
            return original(*args, **kwargs)

        pipe.scheduler.step = step
        return lambda: delattr(pipe.scheduler, "step")
    calls = itertools.count()

    def hook(module, args):
        if next(calls) == 4:
            raise Stop("stopped inside the model")

    handle = pipe.transformer.pos_embed.register_forward_pre_hook(hook)
    return handle.remove


def test_two_hundred_generations_leave_nothing_behind(pipes):
    pipe, twin = pipes
    state = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    reference = _generate(pipe, 123, 2, 12, 1.0)
    with Calibrator(pipe.transformer) as cal:
        _generate(pipe, 7, 2, 16, 1.0)
    schedules = {(steps, predictor): Schedule.for_budget(cal.profile, speedup=1.6, num_steps=steps,
                                                         predictor=predictor, cost="macs")
                 for steps in STEPS for predictor in PREDICTORS}
    configs = list(itertools.product(STEPS, PREDICTORS, FUSION))
    caches: dict = {}
    baseline = None
    for block in range(GENERATIONS // 10):
        steps, predictor, fusion = configs[block % len(configs)]
        schedule = schedules[(steps, predictor)]
        cache = caches.setdefault((steps, predictor, fusion),
                                  SmoothCache(pipe.transformer, schedule, fuse_blocks=fusion))
        with cache:
            for i in range(10):
                generation = block * 10 + i
                seed, batch, guidance = generation, 1 + generation % 3, (1.0, 2.0)[generation % 2]
                if i == 9:
                    undo = _interrupting(pipe, generation)
                    with pytest.raises(Stop):
                        _generate(pipe, seed, batch, steps, guidance)
                    undo()
                    continue
                got = _generate(pipe, seed, batch, steps, guidance)
                assert cache.stats.cache_bytes == 0, generation  # the generation ended: nothing kept
                with SmoothCache(twin.transformer, schedule, fuse_blocks=fusion):
                    fresh = _generate(twin, seed, batch, steps, guidance)
                assert torch.equal(got, fresh), (generation, steps, predictor, fusion, batch, guidance)
        live = _live_tensors()
        baseline = live if baseline is None else baseline
        assert live <= baseline + 16, (block, live, baseline)  # no growth from block to block
    assert all(torch.equal(v, state[k]) for k, v in pipe.transformer.state_dict().items())
    assert all("forward" not in m.__dict__ for m in pipe.transformer.modules())
    assert torch.equal(_generate(pipe, 123, 2, 12, 1.0), reference)
