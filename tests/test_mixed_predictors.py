"""The planner picks the predictor of each skip run: plans never worse than one predictor alone by their own
measure, mixed schedules in JSON and at run time, refused by the original's helpers; calibration over several
noise draws for stochastic samplers, and a margin for their spread."""

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import make_tiny_pipe
from smoothcache import CalibrationProfile, Schedule, ScheduleError, SmoothCache
from smoothcache.compat import DiffuserCacheHelper
from smoothcache.profile import BranchErrors

T, K = 12, 3


def _profile(seed: int, runs: int = 1) -> CalibrationProfile:
    """Reuse cheap early on, the forecast cheap late: a plan that chooses per run mixes them."""
    rng = np.random.default_rng(seed)
    profile = CalibrationProfile(K, T, runs=runs, model="hand")
    for block in range(2):
        for key in ("attn", "mlp"):
            errors = BranchErrors.empty(key, block, K, T, ("reuse", "linear"))
            for _ in range(runs):
                for k in range(1, K + 1):
                    for s in range(T - k):
                        late = s / T
                        errors.add(k, s, float(k * (0.02 + 0.2 * late) * rng.uniform(0.8, 1.2)))
                        for d in range(1, K + 2):
                            if s - d >= 0:
                                errors.add(
                                    k, s, float(k * (0.2 - 0.18 * late) * rng.uniform(0.8, 1.2)), spacing=d
                                )
            profile.errors[f"blocks.{block}.{key}"] = errors
    return profile


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_plan_choosing_per_run_is_never_worse_than_one_predictor_alone(seed):
    profile = _profile(seed)
    for fraction in (0.7, 0.55, 0.45):
        errors = {}
        for predictor in ("auto", "reuse", "linear"):
            try:
                plan = Schedule.for_budget(profile, compute_fraction=fraction, predictor=predictor)
            except ScheduleError:
                errors[predictor] = np.inf
                continue
            errors[predictor] = plan.metadata["planned_error"]
            if predictor == "auto":
                mixed = plan
        assert errors["auto"] <= min(errors["reuse"], errors["linear"]) + 1e-12
    assert mixed.predictor == "mixed" and set(mixed.sources_needed) == {"reuse", "linear"}
    assert mixed.entries["attn"] == mixed.entries["mlp"]  # whole-step rows
    for key, row in mixed.entries.items():
        assert [c is None for c in mixed.choices[key]] == [bool(v) for v in row]


def test_a_mixed_schedule_round_trips_through_json_and_the_original_helpers_refuse_it(tmp_path, tiny_pipe):
    rows = {"attn1": [1, 0, 0, 1, 0, 1], "ff": [1, 0, 0, 1, 0, 1]}
    choices = {k: [None, "reuse", "reuse", None, "linear", None] for k in rows}
    schedule = Schedule(rows, predictor=choices)
    assert schedule.predictor == "mixed"
    path = schedule.save(tmp_path / "mixed.json")
    data = json.loads(path.read_text())
    assert data["predictor"]["ff"] == [None, "reuse", "reuse", None, "linear", None]
    assert Schedule.load(path) == schedule
    with pytest.raises(ScheduleError, match="only reuse cached outputs"):
        DiffuserCacheHelper(tiny_pipe.transformer, schedule=str(path))
    uniform = Schedule(rows, predictor={k: [None, "linear", "linear", None, "linear", None] for k in rows})
    assert uniform.predictor == "linear" and uniform.choices is None  # one predictor: the short form
    with pytest.raises(ScheduleError, match=r"predictor of 'ff' at step 3 is 'reuse'; it must be null"):
        Schedule(rows, predictor={**choices, "ff": [None, "reuse", "reuse", "reuse", "linear", None]})
    with pytest.raises(ScheduleError, match="names the keys"):
        Schedule(rows, predictor={"attn1": choices["attn1"]})


class Branch(nn.Module):
    """An output linear in the time ``t`` it last saw: a linear forecast is exact, reuse is not."""

    def __init__(self):
        super().__init__()
        self.t = 0.0

    def forward(self, x):
        return x * 0 + self.t


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Branch()

    def forward(self, x):
        return x + self.attn(x)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block()])

    def forward(self, x, timestep):
        self.blocks[0].attn.t = float(timestep)
        return self.blocks[0](x)


def test_each_skipped_step_uses_its_own_predictor():
    model, x = Model(), torch.zeros(1, 2)
    steps = [9.0, 8.0, 7.0, 6.0, 5.0, 4.0]
    schedule = Schedule(
        {"attn": [1, 1, 0, 1, 0, 1]}, predictor={"attn": [None, None, "linear", None, "reuse", None]}
    )
    with (
        SmoothCache(model, schedule, block_classes=[Block], keys=["attn"], fuse_blocks=False),
        torch.no_grad(),
    ):
        outs = [float(model(x, torch.tensor(t))[0, 0]) for t in steps]
    assert outs[2] == pytest.approx(7.0)  # forecast from steps 0 and 1: exact
    assert outs[4] == pytest.approx(6.0)  # reuse of step 3's output
    with (
        SmoothCache(model, schedule, block_classes=[Block], keys=["attn"], fuse_blocks=True),
        torch.no_grad(),
    ):
        fused = [float(model(x, torch.tensor(t))[0, 0]) for t in steps]
    assert fused == pytest.approx(outs)


def test_spread_between_noise_draws_and_a_margin():
    one, three = _profile(0, runs=1), _profile(0, runs=3)
    assert one.noise_spread() is None and 0 < three.noise_spread() < 0.3
    mean_plan = Schedule.for_budget(three, compute_fraction=0.6)
    careful = Schedule.for_budget(three, compute_fraction=0.6, margin=2.0)
    assert (
        careful.metadata["margin"] == 2.0
        and careful.metadata["planned_error"] > mean_plan.metadata["planned_error"]
    )
    with pytest.raises(ScheduleError, match="margin must be"):
        Schedule.for_budget(three, compute_fraction=0.6, margin=-1)


def test_the_one_line_mode_calibrates_a_stochastic_sampler_over_several_noise_draws(caplog):
    from diffusers import DPMSolverMultistepScheduler

    pipe = make_tiny_pipe(scheduler=DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++"))
    kwargs = dict(class_labels=[1], num_inference_steps=8, output_type="np")
    with (
        caplog.at_level(logging.INFO, logger="smoothcache"),
        SmoothCache(pipe.transformer, speedup=1.5, cost="macs") as cache,
    ):
        for seed in range(3):
            assert cache.calibrating
            pipe(generator=torch.manual_seed(seed), **kwargs)
        assert not cache.calibrating and cache.profile.runs == 3
    assert "covers 3 noise draws" in caplog.text
    deterministic = make_tiny_pipe()
    with SmoothCache(deterministic.transformer, speedup=1.5, cost="macs") as cache:
        deterministic(**kwargs)
        assert not cache.calibrating and cache.profile.runs == 1


def _sde_pipe():
    from diffusers import DPMSolverMultistepScheduler

    return make_tiny_pipe(scheduler=DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++"))


def test_a_stochastic_sampler_makes_the_recommended_mode_plan_reuse_runs_with_fusion(tmp_path, caplog):
    from smoothcache import Calibrator

    pipe = _sde_pipe()
    with Calibrator(pipe.transformer) as cal:
        pipe(class_labels=[1], num_inference_steps=10, generator=torch.manual_seed(0))
    profile = cal.profile
    assert profile.stochastic is True
    assert CalibrationProfile.load(profile.save(tmp_path / "p.safetensors")).stochastic is True
    with caplog.at_level(logging.INFO, logger="smoothcache"):
        schedule = Schedule.for_budget(profile, compute_fraction=0.6, cost="macs")
    assert "draws fresh noise at each step" in caplog.text
    assert schedule.predictor == "reuse" and schedule.fused is True  # planned for fusion, applied fused
    forced = Schedule.for_budget(profile, compute_fraction=0.6, cost="macs", predictor="linear")
    profile.stochastic = False
    assert forced == Schedule.for_budget(profile, compute_fraction=0.6, cost="macs")  # asked for: as before
    with SmoothCache(pipe.transformer, schedule) as cache:
        pipe(class_labels=[1], num_inference_steps=10, generator=torch.manual_seed(1))
    assert cache.stats.fused_blocks > 0


def test_a_deterministic_sampler_records_it_and_plans_forecasts():
    from smoothcache import Calibrator

    pipe = make_tiny_pipe()
    with Calibrator(pipe.transformer) as cal:
        pipe(class_labels=[1], num_inference_steps=10, generator=torch.manual_seed(0))
    assert cal.profile.stochastic is False
    plan = Schedule.for_budget(cal.profile, compute_fraction=0.6, cost="macs")
    assert plan.predictor == "linear"  # the default; "auto" (per-run choice) only when asked
    assert plan == Schedule.for_budget(cal.profile, compute_fraction=0.6, cost="macs", predictor="linear")


def test_fusion_as_planned_round_trips_and_a_schedule_without_it_runs_as_the_original(tmp_path):
    rows = {"attn1": [1, 0, 1, 0, 1, 1], "ff": [1, 0, 1, 0, 1, 1]}
    planned = Schedule(rows, fused=True)
    path = planned.save(tmp_path / "s.json")
    assert json.loads(path.read_text())["fuse_blocks"] is True
    assert Schedule.load(path).fused is True
    assert Schedule(rows).fused is None and "fuse_blocks" not in Schedule(rows).to_dict()
    pipe = make_tiny_pipe()
    for schedule, fused in ((Schedule.load(path), True), (Schedule(rows), False)):
        with SmoothCache(pipe.transformer, schedule) as cache:
            pipe(class_labels=[1], num_inference_steps=6)
        assert (cache.stats.fused_blocks > 0) is fused
    with pytest.raises(ScheduleError, match="fuse_blocks"):
        Schedule({**rows, "fuse_blocks": "yes"})


def test_the_one_line_mode_on_a_stochastic_sampler_caches_with_reuse_runs():
    pipe = _sde_pipe()
    with SmoothCache(pipe.transformer, speedup=1.5, cost="macs", calibration_runs=1) as cache:
        pipe(class_labels=[1], num_inference_steps=10, generator=torch.manual_seed(0))
        pipe(class_labels=[1], num_inference_steps=10, generator=torch.manual_seed(1))
    assert cache.schedule.predictor == "reuse" and cache.schedule.fused is True
    assert cache.stats.fused_blocks > 0 and cache.stats.predicted > 0
