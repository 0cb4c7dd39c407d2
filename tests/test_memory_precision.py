"""Bounded memory (cache and calibration hold only what they need) and mixed precision."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import make_tiny_dit, run_steps
from smoothcache import Calibrator, Schedule, SmoothCache

SCRIPT = Path(__file__).parent / "scripts" / "peak_memory.py"
OUTPUT_MIB = 64 * 128 * 256 * 4 / 2**20  # one branch output of the script's model: 8 MiB
BRANCHES = 4


def _peak(mode):
    # a fixed mmap threshold makes glibc return freed tensor memory at once, so the peak RSS tracks live
    # tensors
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(
        [sys.executable, str(SCRIPT), mode], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def peaks():
    return {mode: _peak(mode) for mode in ("baseline", "calibrate", "cache")}


def test_calibration_memory_is_bounded_by_lookahead(peaks):
    # K = 2 previous outputs per branch (+ the float32 working copy of one output); 20 steps kept would be 640
    # MiB
    extra = peaks["calibrate"] - peaks["baseline"]
    assert extra < (2 + 1) * BRANCHES * OUTPUT_MIB + 24, peaks


def test_cache_memory_is_one_output_per_branch(peaks):
    extra = peaks["cache"] - peaks["baseline"]
    assert extra < BRANCHES * OUTPUT_MIB + 24, peaks


def test_stats_report_exact_cache_bytes_per_cfg_call(tiny_dit):
    def two_calls(model, ts):
        x = torch.randn(1, 4, 8, 8)
        with torch.no_grad():
            for t in ts:
                for label in (3, 1000):
                    model(x, timestep=torch.tensor([t]), class_labels=torch.tensor([label]))

    with SmoothCache(tiny_dit, {"attn1": [1, 0, 1], "ff": [1, 1, 0]}) as cache:
        two_calls(tiny_dit, (900, 600, 300))
        # 3 blocks x 2 branches x 2 CFG calls x one (1, 16, 16) float32 output each
        assert cache.stats.cache_bytes == 3 * 2 * 2 * 16 * 16 * 4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_weights(dtype):
    model = make_tiny_dit().to(dtype)
    ts = tuple(range(999, 0, -100))

    def run(m):
        x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
        with torch.no_grad():
            for t in ts:
                x = x - 0.05 * m(x, timestep=torch.full((2,), t), class_labels=torch.tensor([1, 2])).sample
        return x

    base = run(model)
    with SmoothCache(model, Schedule.full(len(ts), ["attn1", "ff"])):
        assert torch.equal(run(model), base)
    with Calibrator(model) as cal:
        run(model)
    mean, _ = cal.profile.mean_errors("attn1")
    assert np.isfinite(mean[0, :-1]).all()
    with SmoothCache(model, Schedule.from_profile(cal.profile, 0.3)) as cache:
        out = run(model)
    assert out.dtype == dtype and cache.stats.predicted > 0


def test_autocast():
    model = make_tiny_dit()
    ts = tuple(range(999, 0, -100))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        base = run_steps(model, ts)
        with SmoothCache(model, Schedule.full(len(ts), ["attn1", "ff"])):
            assert torch.equal(run_steps(model, ts), base)
        with Calibrator(model) as cal:
            run_steps(model, ts)
        with SmoothCache(model, Schedule.from_profile(cal.profile, 0.3)) as cache:
            run_steps(model, ts)
    assert cache.stats.predicted > 0


class Big(nn.Module):
    """A half-precision branch whose L1 norm overflows float16 (65504) but not float32."""

    def __init__(self):
        super().__init__()
        self.value = 60000.0

    def forward(self, x):
        return torch.full((64, 64), self.value, dtype=torch.float16)


class BigBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Big()

    def forward(self, x):
        return x + self.attn(x).float().mean()


def test_errors_are_computed_in_float32():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([BigBlock()])

        def forward(self, x, t):
            self.blocks[0].attn.value = 60000.0 if t > 1 else 30000.0
            return self.blocks[0](x)

    net = Net()
    with Calibrator(net, ["attn"], lookahead=1, block_classes=[BigBlock], measure_macs=False) as cal:
        for t in (3.0, 2.0, 1.0):
            net(torch.zeros(1), torch.tensor(t))
    mean, _ = cal.profile.mean_errors("attn")
    assert mean[0, 0] == 0.0 and mean[0, 1] == pytest.approx(1.0)  # |30000 - 60000| / 30000
