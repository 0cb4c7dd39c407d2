"""Costs in MACs and in seconds: what calibration times, what a schedule saves (whole blocks with fusion),
budgets planned in wall time, and budgets just out of reach."""

import time
import warnings

import pytest
import torch
import torch.nn as nn

from smoothcache import CalibrationProfile, Calibrator, MacReport, Schedule, ScheduleError, SmoothCache
from smoothcache.errors import BudgetError, SmoothCacheWarning
from smoothcache.profile import BranchErrors

MS = 1e-3


class SlowBranch(nn.Linear):
    def __init__(self, seconds: float):
        super().__init__(4, 4)
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return super().forward(x)


class SlowBlock(nn.Module):
    """A block whose branches and own work take known times (sleeps), so the recorded seconds can be
    checked."""

    def __init__(self):
        super().__init__()
        self.attn, self.mlp = SlowBranch(6 * MS), SlowBranch(3 * MS)

    def forward(self, x):
        time.sleep(2 * MS)  # the block's own work: norms, modulation...
        return x + self.mlp(x + self.attn(x))


class SlowModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([SlowBlock(), SlowBlock()])

    def forward(self, x, timestep):
        time.sleep(1 * MS)  # embeddings, final layer
        for block in self.blocks:
            x = block(x)
        return x


def test_calibration_times_branches_blocks_and_calls_without_its_own_bookkeeping():
    model = SlowModel()
    with torch.no_grad(), Calibrator(model, ["attn", "mlp"], block_classes=[SlowBlock]) as cal:
        x = torch.randn(2, 4)
        for t in range(8, 0, -1):
            x = model(x, torch.tensor(float(t)))
            time.sleep(4 * MS)  # the sampler's work between calls
    times = cal.profile.times
    assert times["branches"]["blocks.0.attn"] == pytest.approx(6 * MS, abs=2.5 * MS)
    assert times["branches"]["blocks.1.mlp"] == pytest.approx(3 * MS, abs=2.5 * MS)
    assert times["blocks"]["blocks.1"] == pytest.approx(11 * MS, abs=3 * MS)  # the error tables are left out
    assert times["call"] == pytest.approx(23 * MS, abs=5 * MS)
    assert times["between"] == pytest.approx(4 * MS, abs=2.5 * MS)
    assert "tail" not in times  # a bare loop: no pipeline return to time the end of the generation from


def _profile(times=None, steps=8):
    profile = CalibrationProfile(2, steps, runs=1, model="hand")
    for b in range(2):
        for key in ("attn", "mlp"):
            errors = BranchErrors.empty(key, b, 2, steps, ("reuse", "linear"))
            for k in (1, 2):
                for s in range(steps - k):
                    errors.add(k, s, 0.01 * k)
                    for d in (1, 2, 3):
                        if s - d >= 0:
                            errors.add(k, s, 0.005 * k, spacing=d)
            profile.errors[f"blocks.{b}.{key}"] = errors
    profile.macs = {"total": 100.0, **{f"blocks.{b}.attn": 30.0 for b in range(2)},
                    **{f"blocks.{b}.mlp": 15.0 for b in range(2)}}
    profile.block_of = {f"blocks.{b}.{k}": f"blocks.{b}" for b in range(2) for k in ("attn", "mlp")}
    profile.block_macs = {"blocks.0": 47.0, "blocks.1": 47.0}
    profile.times = (
        times
        if times is not None
        else {
            "call": 10.0,
            "between": 2.0,
            "tail": 4.0,
            "branches": {
                f"blocks.{b}.{k}": (2.0 if k == "attn" else 1.0) for b in range(2) for k in ("attn", "mlp")
            },
            "blocks": {"blocks.0": 4.0, "blocks.1": 4.0},
        }
    )
    return profile


def test_a_schedule_saves_whole_blocks_with_fusion_and_costs_its_sampler_time():
    report = MacReport.from_profile(_profile())
    rows = {"attn": [1, 0, 1, 0, 1, 0, 1, 1], "mlp": [1, 0, 1, 1, 1, 1, 1, 1]}
    # MACs: step 1 skips both branches (fused: whole blocks, 2 x 47), steps 3 and 5 only attn (2 x 30)
    assert report.step_costs(rows, "macs", fused=True) == [100, 6, 100, 40, 100, 40, 100, 100]
    assert report.step_costs(rows, "macs", fused=False)[1] == 100 - 90
    # seconds: a call (10) and the sampler's work after it (2), every step; the tail (4) once
    assert report.step_costs(rows, "time", fused=True) == [12, 4, 12, 8, 12, 8, 12, 12]
    assert report.compute_fraction(rows, "time", fused=True) == pytest.approx((80 + 4) / (8 * 12 + 4))
    assert report.speedup(Schedule(rows, predictor="linear"), "time") == pytest.approx(100 / 84)


def test_budgets_planned_in_time_meet_the_time_fraction():
    profile = _profile()
    report = MacReport.from_profile(profile)
    for fraction in (0.9, 0.8, 0.7):
        schedule = Schedule.for_budget(profile, compute_fraction=fraction)  # time: the profile has timings
        assert schedule.metadata["cost"] == "time" and schedule.metadata["cost_unit"] == "seconds"
        assert report.compute_fraction(schedule, "time") <= fraction + 1e-9
        assert schedule.metadata["achieved"] == pytest.approx(report.compute_fraction(schedule, "time"))
    in_macs = Schedule.for_budget(profile, compute_fraction=0.6, cost="macs")  # fused blocks save 94% in MACs
    assert in_macs.metadata["cost"] == "macs" and report.compute_fraction(in_macs, "macs") <= 0.6 + 1e-9
    untimed = _profile(times={})
    assert Schedule.for_budget(untimed, compute_fraction=0.6).metadata["cost"] == "macs"
    with pytest.raises(ScheduleError, match="recorded no timings"):
        Schedule.for_budget(untimed, compute_fraction=0.6, cost="time")
    with pytest.raises(ScheduleError, match="unknown cost 'flops'"):
        Schedule.for_budget(profile, compute_fraction=0.6, cost="flops")


def test_a_budget_just_out_of_reach_plans_the_nearest_with_a_warning():
    profile = _profile()
    try:
        Schedule.for_budget(profile, speedup=50.0)
    except BudgetError as err:
        best = err.best
    assert 1 / best < 50
    with pytest.warns(SmoothCacheWarning, match=r"just out of reach .* planned the nearest reachable one"):
        near = Schedule.for_budget(profile, compute_fraction=best * 0.99)
    assert near.metadata["budget"] == pytest.approx(best)
    with pytest.raises(BudgetError, match="out of reach") as info:
        Schedule.for_budget(profile, compute_fraction=best * 0.97)
    assert info.value.best == pytest.approx(best)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Schedule.for_budget(profile, compute_fraction=best)


def test_the_one_line_mode_plans_the_best_reachable_budget_instead_of_failing(tiny_pipe):
    kwargs = dict(class_labels=[1], num_inference_steps=10, output_type="np")
    with SmoothCache(tiny_pipe.transformer, speedup=40.0) as cache:
        with pytest.warns(SmoothCacheWarning, match="plans the best reachable"):
            tiny_pipe(**kwargs)
        assert cache.schedule is not None and cache.schedule.metadata["cost"] == "time"
        tiny_pipe(**kwargs)
    assert cache.stats.predicted > 0


def test_profiles_keep_their_timings_and_block_costs(tmp_path):
    profile = _profile()
    loaded = CalibrationProfile.load(profile.save(tmp_path / "p.safetensors"))
    assert loaded.times == profile.times and loaded.block_macs == profile.block_macs
    assert loaded.block_of == profile.block_of
    merged = profile.merge(loaded)
    assert merged.times["call"] == pytest.approx(10.0) and merged.block_of == profile.block_of
