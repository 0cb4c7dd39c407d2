"""Predictors: linear forecasts are exact on outputs linear in the timestep (any spacing), reuse returns the
cached output itself, nothing skipped means bit-identical outputs, and the cache holds order + 1 outputs."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import make_tiny_pipe, run_steps
from smoothcache import Calibrator, Schedule, ScheduleError, SmoothCache


class LinearInTime(nn.Module):
    """A branch whose output is ``base + slope * t`` for the timestep ``t`` its model is called with."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.base = nn.Parameter(torch.randn(3, 4, generator=g))
        self.slope = nn.Parameter(torch.randn(3, 4, generator=g))
        self.t = 0.0

    def forward(self, x):
        return (self.base + self.slope * self.t).expand_as(x)


class Block(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        self.attn = LinearInTime(seed)

    def forward(self, x):
        return x + 0.1 * self.attn(x)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(0), Block(1)])

    def forward(self, x, timestep):
        for b in self.blocks:
            b.attn.t = float(timestep)
        for b in self.blocks:
            x = b(x)
        return x


def _outputs(model, timesteps, schedule):
    """The attn outputs the blocks received under ``schedule``, per step (cache applied)."""
    got = []
    hooks = [b.attn.register_forward_hook(lambda m, a, out: got.append(out.detach().clone()))
             for b in model.blocks]
    # branch-level forecasts are what is tested here: fusion would skip the blocks and their attn calls
    with SmoothCache(model, schedule, block_classes=[Block], keys=["attn"], fuse_blocks=False) as cache:
        with torch.no_grad():
            for t in timesteps:
                model(torch.zeros(3, 4), torch.tensor(float(t)))
    for h in hooks:
        h.remove()
    return got, cache


@pytest.mark.parametrize("timesteps", [
    (999, 800, 600, 400, 200, 0),            # uniform
    (999, 950, 700, 690, 300, 12),           # non-uniform, as DPM-Solver++ or flow-matching shifts give
    (1.0, 0.93, 0.71, 0.52, 0.21, 0.05),     # sigmas in [0, 1] (Flux, SD3)
])
def test_linear_forecast_is_exact_on_outputs_linear_in_time(timesteps):
    model = Model()
    schedule = Schedule({"attn": [1, 1, 0, 0, 1, 1]}, predictor="linear")
    got, cache = _outputs(model, timesteps, schedule)
    expected = [b.attn.base.detach() + b.attn.slope.detach() * t for t in timesteps for b in model.blocks]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e.expand_as(g), rtol=1e-5, atol=1e-4)
    assert cache.stats.by_key()["attn"] == {"computed": 8, "predicted": 4}


def test_reuse_returns_the_cached_output_and_is_not_exact_here():
    model = Model()
    timesteps = (999, 800, 600, 400)
    got, _ = _outputs(model, timesteps, Schedule({"attn": [1, 0, 0, 1]}))
    assert torch.equal(got[2], got[0]) and torch.equal(got[4], got[0])  # block 0 at steps 1, 2: step 0
    assert not torch.allclose(got[2], model.blocks[0].attn.base + model.blocks[0].attn.slope * 800.0)


def test_with_one_computed_step_the_forecast_falls_back_to_reuse():
    model = Model()
    got, _ = _outputs(model, (999, 800, 600), Schedule({"attn": [1, 0, 1]}, predictor="linear"))
    assert torch.equal(got[2], got[0])


@pytest.mark.parametrize("predictor", ["reuse", "linear"])
def test_nothing_skipped_is_bit_identical(predictor):
    pipe = make_tiny_pipe()
    kwargs = dict(class_labels=[1, 2], num_inference_steps=8, guidance_scale=3.0, output_type="np")
    base = pipe(generator=torch.manual_seed(5), **kwargs).images
    with SmoothCache(pipe.transformer, Schedule.full(8, ["attn1", "ff"], predictor=predictor)):
        cached = pipe(generator=torch.manual_seed(5), **kwargs).images
    assert np.array_equal(base, cached)


def test_on_the_trained_digits_model_a_forecast_is_closer_to_no_cache_than_reuse():
    from smoothcache.zoo import digits_pipeline

    pipe = digits_pipeline()
    kwargs = dict(class_labels=list(range(10)), num_inference_steps=20, output_type="np")
    base = pipe(generator=torch.manual_seed(5), **kwargs).images
    errors = {}
    for predictor in ("reuse", "linear"):
        with SmoothCache(
            pipe.transformer, Schedule.fixed_interval(20, 2, ["attn1", "ff"], predictor=predictor)
        ):
            errors[predictor] = np.abs(pipe(generator=torch.manual_seed(5), **kwargs).images - base).mean()
    assert 0 < errors["linear"] < errors["reuse"]


@pytest.mark.parametrize("predictor, held", [("reuse", 1), ("linear", 2)])
@pytest.mark.parametrize("cache_dtype, size", [(None, 4), (torch.float16, 2)])
def test_memory_is_order_plus_one_outputs_per_branch_and_cfg_call(
    tiny_dit, predictor, held, cache_dtype, size
):
    schedule = Schedule({"attn1": [1, 1, 1, 0]}, predictor=predictor)
    with SmoothCache(tiny_dit, schedule, cache_dtype=cache_dtype) as cache:
        run_steps(tiny_dit, (999, 749, 499), batch=2, cfg_calls=2)  # two CFG calls per step: two slots
        per_output = 2 * 16 * 16 * size  # batch 2, 16 tokens, 16 channels
        assert cache.stats.cache_bytes == 3 * 2 * held * per_output  # 3 blocks x 2 slots x held outputs
        assert cache.stats.predictor == predictor


def test_low_precision_cache_returns_the_original_dtype():
    model = Model()
    schedule = Schedule({"attn": [1, 1, 0, 1]}, predictor="linear")
    got, _ = _outputs(model, (999, 800, 600, 400), schedule)
    assert all(g.dtype == torch.float32 for g in got)
    half = []
    hooks = [b.attn.register_forward_hook(lambda m, a, out: half.append(out)) for b in model.blocks]
    with SmoothCache(
        model, schedule, block_classes=[Block], keys=["attn"], cache_dtype=torch.float16, fuse_blocks=False
    ):
        with torch.no_grad():
            for t in (999, 800, 600, 400):
                model(torch.zeros(3, 4), torch.tensor(float(t)))
    for h in hooks:
        h.remove()
    assert half[4].dtype == torch.float32 and torch.allclose(half[4], got[4], rtol=1e-2, atol=0.5)


def test_unknown_predictor_and_forecast_without_its_calibration_are_clear_errors(tiny_dit):
    with pytest.raises(ScheduleError, match="unknown predictor 'cubic'; choose one of 'reuse', 'linear'"):
        Schedule({"attn1": [1, 0]}, predictor="cubic")
    with pytest.raises(ScheduleError, match="unknown predictor 'cubic'"):
        Schedule({"attn1": [1, 0], "predictor": "cubic"})
    with Calibrator(tiny_dit, predictors=["reuse"]) as cal:
        run_steps(tiny_dit, (999, 749, 499, 249))
    with pytest.raises(
        ScheduleError, match="needs its own calibrated errors, and this profile recorded only"
    ):
        Schedule.from_profile(cal.profile, 0.1, predictor="linear")
    with pytest.raises(ScheduleError, match="unknown planner 'magic'"):
        Schedule.for_budget(cal.profile, speedup=1.2, planner="magic")
