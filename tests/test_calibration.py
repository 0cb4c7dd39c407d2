import gc

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import run_steps
from smoothcache import CalibrationError, CalibrationProfile, Calibrator, MacReport, ProfileError, Schedule
from smoothcache.flops import count_macs
from smoothcache.patching import owner_of
from smoothcache.targets import find_branches


class Constant(nn.Module):
    """A branch whose output is a constant the test sets per step."""

    def __init__(self):
        super().__init__()
        self.value = 1.0
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.full_like(x, 1.0) * self.value * self.weight


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Constant()
        self.mlp = Constant()

    def forward(self, x):
        return x + self.attn(x) + self.mlp(x)


class Toy(nn.Module):
    def __init__(self, blocks=2):
        super().__init__()
        self.blocks = nn.ModuleList([Block() for _ in range(blocks)])
        self.values = {}

    def forward(self, x, t):
        for i, b in enumerate(self.blocks):
            b.attn.value, b.mlp.value = self.values[(i, float(t))]
        for b in self.blocks:
            x = b(x)
        return x


def _run(model, values_by_step, timesteps=(50, 40, 30, 20, 10)):
    for i in range(len(model.blocks)):
        for step, t in enumerate(timesteps):
            model.values[(i, float(t))] = values_by_step[i][step]
    with torch.no_grad():
        for t in timesteps:
            model(torch.zeros(1, 3), torch.tensor(float(t)))


def test_errors_are_relative_l1_for_each_lookahead():
    model = Toy(blocks=1)
    vals = [[(s + 1.0, 2.0 * (s + 1.0)) for s in range(5)]]  # attn: 1..5, mlp: 2..10
    with Calibrator(model, ["attn", "mlp"], lookahead=3, block_classes=[Block], measure_macs=False) as cal:
        _run(model, vals)
    profile = cal.profile
    assert profile.num_steps == 5 and profile.runs == 1 and profile.lookahead == 3
    for key in ("attn", "mlp"):
        mean, std = profile.mean_errors(key)
        for k in (1, 2, 3):
            expected = [k / (i + k + 1) for i in range(5 - k)]
            assert np.allclose(mean[k - 1, : 5 - k], expected)
            assert np.isnan(mean[k - 1, 5 - k:]).all()
        assert np.allclose(std[~np.isnan(std)], 0.0)
    assert profile.mean_errors("attn")[0][0, :4] == pytest.approx([1 / 2, 1 / 3, 1 / 4, 1 / 5])
    assert np.isfinite(profile.mean_errors("attn")[0][2]).sum() == 2


def test_runs_accumulate_mean_and_spread_and_blocks_are_pooled():
    model = Toy(blocks=2)
    with Calibrator(model, ["attn"], lookahead=1, block_classes=[Block], measure_macs=False) as cal:
        _run(model, [[(1.0, 1.0), (2.0, 1.0)] * 3, [(1.0, 1.0), (4.0, 1.0)] * 3], timesteps=(9, 8))
        _run(model, [[(1.0, 1.0), (1.0, 1.0)] * 3, [(1.0, 1.0), (1.0, 1.0)] * 3], timesteps=(9, 8))
    profile = cal.profile
    assert profile.runs == 2
    # block 0: run errors 1/2 and 0; block 1: 3/4 and 0
    assert profile.mean_errors("attn", 0)[0][0, 0] == pytest.approx(0.25)
    assert profile.mean_errors("attn", 1)[0][0, 0] == pytest.approx(0.375)
    mean, std = profile.mean_errors("attn")
    assert mean[0, 0] == pytest.approx((0.5 + 0 + 0.75 + 0) / 4)
    assert std[0, 0] == pytest.approx(np.std([0.5, 0, 0.75, 0]))
    assert np.allclose(profile.timesteps, [9.0, 8.0])


class CountSyncs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


def test_no_host_sync_per_branch_call(tiny_dit):
    timesteps = (999, 899, 799, 699, 599, 499)
    cal = Calibrator(tiny_dit, lookahead=3, measure_macs=False).enable()
    with CountSyncs() as counter:
        run_steps(tiny_dit, timesteps)
    # one read of the timestep per denoiser call; the 3 blocks x 2 branches x 6 steps never sync
    assert counter.syncs == len(timesteps)
    cal.disable()
    assert cal.profile.runs == 1


def _live_tensors(shape, dtype=torch.float32) -> int:
    gc.collect()
    return sum(
        1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.shape == shape and o.dtype == dtype
    )


@pytest.mark.parametrize("predictors, held", [(["reuse"], 2), (["reuse", "linear"], 5)])
def test_calibration_keeps_only_the_outputs_its_predictors_need(tiny_dit, predictors, held):
    shape = torch.Size(
        [2, 16, 16]
    )  # an attn1 output of run_steps' batch: 2 samples x 16 tokens x 16 features
    assert _live_tensors(shape) == 0
    with Calibrator(tiny_dit, ["attn1"], lookahead=2, measure_macs=False, predictors=predictors) as cal:
        run_steps(tiny_dit, (999, 899, 799, 699, 599, 499, 399))
        # per attn1 of the 3 blocks: K outputs for reuse; 2K + 1 for a linear forecast's widest window
        assert _live_tensors(shape) == 3 * held
    assert _live_tensors(shape) == 0
    assert cal.profile.errors["transformer_blocks.0.attn1"].tables["reuse"].count.sum() == 6 + 5


def test_nan_in_calibration_outputs_is_a_clear_error():
    model = Toy(blocks=1)
    vals = [[(1.0, 1.0), (2.0, 1.0), (float("nan"), 1.0), (2.0, 1.0)]]
    with pytest.raises(CalibrationError, match=r"blocks.0.attn at step 2 contains NaN or inf"):
        with Calibrator(model, ["attn", "mlp"], block_classes=[Block], measure_macs=False):
            _run(model, vals, timesteps=(4, 3, 2, 1))
    assert all(owner_of(m) is None for m in model.modules())
    cal = Calibrator(model, ["attn", "mlp"], block_classes=[Block], measure_macs=False).enable()
    vals = [[(1.0, 1.0), (1.0, float("inf")), (2.0, 1.0)]]
    _run(model, vals, timesteps=(4, 3, 2))
    with pytest.raises(CalibrationError, match=r"blocks.0.mlp at step 1 contains NaN or inf"):
        cal.disable()
    assert all(owner_of(m) is None for m in model.modules())


def test_runs_with_different_step_counts_are_refused(tiny_dit):
    with pytest.raises(CalibrationError, match=r"different step counts \(4 and 3\)"):
        with Calibrator(tiny_dit, measure_macs=False):
            run_steps(tiny_dit, (999, 749, 499, 249))
            run_steps(tiny_dit, (999, 666, 333))
    with pytest.raises(CalibrationError, match="no calibration run has completed"):
        Calibrator(tiny_dit).profile


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_lookahead_must_be_at_least_one(tiny_dit, bad):
    with pytest.raises(ValueError, match="lookahead must be an integer >= 1"):
        Calibrator(tiny_dit, lookahead=bad)


def test_profile_saves_loads_and_validates(tiny_dit, tmp_path):
    with Calibrator(tiny_dit) as cal:
        run_steps(tiny_dit, (999, 749, 499, 249, 99))
    path = cal.profile.save(tmp_path / "p.safetensors")
    loaded = CalibrationProfile.load(path)
    assert loaded.keys == ["attn1", "ff"] and loaded.runs == 1 and loaded.model == "DiTTransformer2DModel"
    for key in loaded.keys:
        assert np.allclose(loaded.mean_errors(key)[0], cal.profile.mean_errors(key)[0], equal_nan=True)
    assert Schedule.from_profile(loaded, 0.3) == Schedule.from_profile(cal.profile, 0.3)
    assert loaded.macs == cal.profile.macs

    merged = loaded.merge(cal.profile)
    assert merged.runs == 2
    assert np.allclose(merged.mean_errors("ff")[0], loaded.mean_errors("ff")[0], equal_nan=True)

    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(ProfileError, match="is not a calibration profile"):
        CalibrationProfile.load(tmp_path / "junk.safetensors")
    with pytest.raises(ProfileError, match="does not exist"):
        CalibrationProfile.load(tmp_path / "missing.safetensors")

    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ProfileError, match="no smoothcache profile header"):
        CalibrationProfile.load(tmp_path / "other.safetensors")
    import json

    header = {
        "format": "smoothcache-profile",
        "version": 1,
        "lookahead": 2,
        "num_steps": 5,
        "runs": 1,
        "branches": {"b.0.attn": {"key": "attn", "block": 0, "id": 0}},
    }
    arrays = {"b0.total": np.zeros((2, 4)), "b0.total_sq": np.zeros((2, 5)), "b0.count": np.zeros((2, 5))}
    save_file(arrays, str(tmp_path / "bad.safetensors"), metadata={"smoothcache": json.dumps(header)})
    with pytest.raises(ProfileError, match=r"shape \(2, 4\)"):
        CalibrationProfile.load(tmp_path / "bad.safetensors")


def test_profile_merge_refuses_mismatched_profiles():
    a, b = CalibrationProfile(3, 50), CalibrationProfile(3, 30)
    with pytest.raises(ProfileError, match="cannot merge"):
        a.merge(b)


def test_macs_of_a_linear_branch_are_exact():
    class LinBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.ff = nn.Linear(4, 8)
            self.out = nn.Linear(8, 4)

        def forward(self, x):
            return self.out(self.ff(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([LinBlock(), LinBlock()])

        def forward(self, x, t):
            for b in self.blocks:
                x = b(x)
            return x

    net = Net()
    branches = find_branches(net, ["ff"], [LinBlock])
    report = count_macs(net, branches, torch.ones(1, 3, 4), torch.tensor(1.0))
    assert report.branch_macs == {"blocks.0.ff": 96.0, "blocks.1.ff": 96.0}
    assert report.total == 4 * 96.0
    assert report.by_key() == {"ff": 192.0}
    assert report.speedup(Schedule({"ff": [1, 0]})) == pytest.approx(2 * 384 / (384 + 192))


def test_theoretical_speedup_from_step_costs():
    report = MacReport(100.0, {"a.0.x": 30.0, "a.0.y": 20.0}, {"a.0.x": ("x", 0), "a.0.y": ("y", 0)})
    schedule = Schedule({"x": [1, 0, 0, 1], "y": [1, 1, 0, 1]})
    assert report.step_costs(schedule) == [100.0, 70.0, 50.0, 100.0]
    assert report.compute_fraction(schedule) == pytest.approx(320 / 400)
    assert report.speedup(schedule) == pytest.approx(400 / 320)


def test_calibrator_measures_the_same_macs_as_count_macs(tiny_dit):
    with Calibrator(tiny_dit) as cal:
        run_steps(tiny_dit, (999, 499, 99), batch=2)
    x = torch.randn(2, 4, 8, 8)
    report = count_macs(
        tiny_dit, find_branches(tiny_dit), x, timestep=torch.tensor([5, 5]), class_labels=torch.tensor([1, 2])
    )
    assert MacReport.from_profile(cal.profile).as_dict() == pytest.approx(report.as_dict())
    by_key = report.by_key()
    assert by_key["attn1"] > 0 and by_key["ff"] > by_key["attn1"] * 0.5
    # attention scores are counted too (CPU flash attention has no stock formula)
    attn_linear = 4 * 2 * 16 * 16 * 16  # q, k, v, out projections on 2 x 16 tokens x 16 channels
    assert report.branch_macs["transformer_blocks.0.attn1"] > attn_linear


def test_plot_writes_a_png(tiny_dit, tmp_path):
    from smoothcache.zoo.plot import plot_profile

    with Calibrator(tiny_dit) as cal:
        run_steps(tiny_dit, (999, 749, 499, 249, 99))
    path = plot_profile(cal.profile, tmp_path / "curves.png", alpha=0.1)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
