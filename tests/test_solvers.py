"""Solvers and CFG styles: the step index SmoothCache follows is the sampler's step, whatever the sampler.

Each case runs a real diffusers pipeline (tiny random weights, see ``families.py``) with one scheduler and
checks: calibration records one timestep per scheduler step, in order; a schedule of exactly the step count
runs without "past the end" errors or warnings, the n-th denoiser call is step ``n // calls_per_step``, and
the stats count the schedule's ones and zeros once per CFG call; one step short raises at the last step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch

from conftest import make_tiny_pipe
from families import FAMILIES, Family, sde_dpmsolver_3m
from smoothcache import Calibrator, Schedule, ScheduleError, SmoothCache, SmoothCacheWarning

STEPS = 7


def _dit_family() -> Family:
    """facebookresearch/DiT-style class-conditional DiTPipeline (conftest's tiny one)."""

    def build(scheduler=None):
        torch.manual_seed(0)
        return make_tiny_pipe(num_layers=2, scheduler=scheduler)

    def run(pipe, steps, seed=0):
        return pipe(class_labels=[1, 2], num_inference_steps=steps, guidance_scale=4.0,
                    generator=torch.Generator().manual_seed(seed), output_type="np").images

    return Family("dit", build, run, ("attn1", "ff"), 1, {"attn1": 2, "ff": 2}, pipeline="DiTPipeline",
                  cfg="batched (one call)")


@dataclass
class Case:
    family: Family
    scheduler: Callable[[], object]
    timestep_scale: float = 1.0  # what the pipeline divides the scheduler's timesteps by before the call


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler()


def _dpmpp_2m(**kwargs):
    from diffusers import DPMSolverMultistepScheduler

    return lambda: DPMSolverMultistepScheduler(**kwargs)


def _cosine_dpm_sde():
    pytest.importorskip("torchsde", reason="CosineDPMSolverMultistepScheduler needs torchsde")
    from diffusers import CosineDPMSolverMultistepScheduler

    return CosineDPMSolverMultistepScheduler()  # StableAudioPipeline's scheduler (Stable Audio Open config)


def _flow_euler(**kwargs):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return lambda: FlowMatchEulerDiscreteScheduler(**kwargs)


def _flow_unipc():
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


CASES = {
    "ddim-dit": Case(_dit_family(), _ddim),
    "ddim-pixart": Case(FAMILIES["pixart_alpha"], _ddim),
    "dpmsolver++2m-pixart": Case(FAMILIES["pixart_alpha"], _dpmpp_2m()),
    "dpmsolver++2m-karras-pixart": Case(FAMILIES["pixart_alpha"], _dpmpp_2m(use_karras_sigmas=True)),
    "sde-dpmsolver++3m-pixart": Case(FAMILIES["pixart_alpha"], sde_dpmsolver_3m),
    "sde-dpmsolver++3m-stable_audio": Case(FAMILIES["stable_audio"], sde_dpmsolver_3m),
    "cosine-dpmsolver-sde-stable_audio": Case(FAMILIES["stable_audio"], _cosine_dpm_sde),
    "flow_euler-sd3": Case(FAMILIES["sd3"], _flow_euler(shift=3.0)),
    "flow_euler-flux": Case(FAMILIES["flux"], _flow_euler(), timestep_scale=1000.0),
    "flow_euler-flux_true_cfg": Case(FAMILIES["flux_true_cfg"], _flow_euler(), timestep_scale=1000.0),
    "flow_euler-wan": Case(FAMILIES["wan"], _flow_euler(shift=3.0)),
    "flow_unipc-wan": Case(FAMILIES["wan"], _flow_unipc),
    "flow_euler-wan_ti2v": Case(FAMILIES["wan_ti2v"], _flow_euler(shift=3.0)),
    "rectified_flow-stdit": Case(FAMILIES["stdit"], _flow_euler()),
    "cogvideox_ddim-cogvideox": Case(FAMILIES["cogvideox"], lambda: None),
    "ddim-latte": Case(FAMILIES["latte"], _ddim),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request) -> Case:
    return CASES[request.param]


def _record_steps(model, cache):
    """The step SmoothCache assigned to each denoiser call, read right after the call."""
    seen = []
    handle = model.register_forward_hook(lambda module, args, out: seen.append(cache.step))
    return seen, handle


def test_steps_follow_the_scheduler(case):
    fam = case.family
    pipe = fam.build(case.scheduler())
    kwargs = fam.cache_kwargs

    with Calibrator(pipe.transformer, lookahead=2, measure_macs=False, **kwargs) as cal:
        fam.run(pipe, STEPS, seed=0)
    assert cal.profile.num_steps == STEPS
    expected_t = pipe.scheduler.timesteps.double().numpy() / case.timestep_scale
    np.testing.assert_allclose(cal.profile.timesteps, expected_t, rtol=1e-6)

    base = fam.run(pipe, STEPS, seed=1)
    with SmoothCache(pipe.transformer, Schedule.full(STEPS, fam.keys), **kwargs):
        assert np.array_equal(fam.run(pipe, STEPS, seed=1), base)

    outs = {}
    for predictor in ("reuse", "linear"):  # the forecast extrapolates in this scheduler's own timesteps
        # 1010101: 4 computed, 3 not
        schedule = Schedule.fixed_interval(STEPS, 2, fam.keys, predictor=predictor)
        with SmoothCache(pipe.transformer, schedule, **kwargs) as cache:
            seen, handle = _record_steps(pipe.transformer, cache)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", SmoothCacheWarning)
                    outs[predictor] = out = fam.run(pipe, STEPS, seed=1)
            finally:
                handle.remove()
        c = fam.calls_per_step
        assert seen == [i // c for i in range(STEPS * c)]
        assert cache.stats.by_key() == {
            k: {"computed": 4 * c * n, "predicted": 3 * c * n} for k, n in fam.blocks.items()
        }
        assert np.isfinite(out).all() and not np.array_equal(out, base)
    assert not np.array_equal(outs["linear"], outs["reuse"])

    short = Schedule.fixed_interval(STEPS - 1, 2, fam.keys)
    with SmoothCache(pipe.transformer, short, **kwargs):
        with pytest.raises(
            ScheduleError, match=f"step {STEPS - 1} is past the end of the {STEPS - 1}-step schedule"
        ):
            fam.run(pipe, STEPS, seed=1)


# ---------------------------------------------------------------------------------------- CFG styles
@pytest.mark.parametrize("name", ["dit", "pixart_alpha", "sd3", "stable_audio", "cogvideox"])
def test_batched_cfg_is_one_call_per_step_with_one_cache(name):
    fam = _dit_family() if name == "dit" else FAMILIES[name]
    pipe = fam.build()
    batches, handle = (
        [],
        pipe.transformer.register_forward_pre_hook(
            lambda m, args, kwargs: batches.append((args[0] if args else kwargs["hidden_states"]).shape[0]),
            with_kwargs=True,
        ),
    )
    try:
        with SmoothCache(
            pipe.transformer, Schedule.fixed_interval(STEPS, 3, fam.keys), **fam.cache_kwargs
        ) as cache:
            fam.run(pipe, STEPS)
    finally:
        handle.remove()
    assert (
        len(batches) == STEPS and len(set(batches)) == 1 and batches[0] % 2 == 0
    )  # cond + uncond in one batch
    # 1001001: 3 computed, 4 reused, one cache slot per branch
    assert cache.stats.by_key() == {k: {"computed": 3 * n, "predicted": 4 * n} for k, n in fam.blocks.items()}


@pytest.mark.parametrize("name, key", [("flux_true_cfg", "attn"), ("wan", "attn2"), ("wan_ti2v", "attn2")])
def test_separate_cond_and_uncond_calls_get_their_own_cache(name, key):
    """Flux true CFG and Wan call the transformer twice per step inside cache_context("cond") / ("uncond"),
    with the same timestep: the second call is call 1 of the step and reuses its own cached outputs."""
    fam = FAMILIES[name]
    pipe = fam.build()  # key: a branch that sees the prompt, so cond and uncond outputs differ
    row = [1, 0, 1, 0, 0, 1, 1]
    seen = []
    with SmoothCache(pipe.transformer, {key: row}) as cache:
        branch = cache.branches[0].module
        handle = branch.register_forward_hook(lambda m, a, out: seen.append(out))
        try:
            fam.run(pipe, STEPS)
        finally:
            handle.remove()
    assert len(seen) == 2 * STEPS
    cond, uncond = seen[0::2], seen[1::2]
    first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731
    assert not torch.equal(first(cond[0]), first(uncond[0]))
    last = 0
    for step, compute in enumerate(row):
        if compute:
            last = step
            assert step == 0 or (cond[step] is not cond[step - 1] and uncond[step] is not uncond[step - 1])
        else:
            assert cond[step] is cond[last] and uncond[step] is uncond[last]
    n = fam.blocks[key]
    assert cache.stats.by_key() == {key: {"computed": 2 * 4 * n, "predicted": 2 * 3 * n}}


def test_guidance_distilled_flux_is_one_call_per_step():
    fam = FAMILIES["flux"]
    pipe = fam.build()
    with SmoothCache(pipe.transformer, Schedule.fixed_interval(STEPS, 2, ["single_attn"])) as cache:
        seen, handle = _record_steps(pipe.transformer, cache)
        try:
            fam.run(pipe, STEPS)
        finally:
            handle.remove()
    assert seen == list(range(STEPS))
    assert cache.stats.by_key() == {"single_attn": {"computed": 4 * 2, "predicted": 3 * 2}}


def test_sd3_skip_layer_guidance_third_call_gets_its_own_cache():
    """SD3.5 skip-layer guidance adds a third call (call 1 of the step, with layer 1 skipped) on steps 2..4
    only; that call caches and reuses on its own, and skips no schedule step."""
    from families import _embeds

    fam = FAMILIES["sd3"]
    pipe = fam.build()

    def run(steps):
        return pipe(
            prompt_embeds=_embeds(0, 1, 7, 32),
            pooled_prompt_embeds=_embeds(1, 1, 24),
            negative_prompt_embeds=_embeds(100, 1, 7, 32),
            negative_pooled_prompt_embeds=_embeds(101, 1, 24),
            height=16,
            width=16,
            num_inference_steps=steps,
            guidance_scale=5.0,
            skip_guidance_layers=[1],
            skip_layer_guidance_start=0.2,
            skip_layer_guidance_stop=0.8,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).images

    base = run(6)
    with SmoothCache(pipe.transformer, Schedule.full(6, fam.keys)):
        assert np.array_equal(run(6), base)
    with SmoothCache(pipe.transformer, Schedule.fixed_interval(6, 2, ["attn", "attn2"])) as cache:  # 101011
        seen, handle = _record_steps(pipe.transformer, cache)
        try:
            run(6)
        finally:
            handle.remove()
    assert seen == [0, 1, 2, 2, 3, 3, 4, 4, 5]
    # attn: 2 blocks x (4 computed, 2 reused) on call 0, + block 0 only on the SLG call: steps 2, 4 computed,
    # 3 reused
    assert cache.stats.by_key() == {
        "attn": {"computed": 8 + 2, "predicted": 4 + 1},
        "attn2": {"computed": 4 + 2, "predicted": 2 + 1},
    }
