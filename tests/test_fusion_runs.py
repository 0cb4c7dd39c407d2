"""Fusion of runs of blocks with several streams: exactness where residuals are linear in time, runs equal to
per-block fusion, memory constant in depth, blocks that edit their input in place, models that work between
blocks."""

import pytest
import torch
import torch.nn as nn

from smoothcache import Schedule, SmoothCache

STEPS = [900, 700, 500, 300, 100, 50]
ROW = [1, 1, 0, 1, 0, 1]
TOKENS, TEXT, DIM = 12, 3, 8


class DualBlock(nn.Module):
    """A dual-stream block (Flux-like): returns ``(text, image)``, residuals linear in the time ``t``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.attn, self.ff, self.ff_context = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.register_buffer("c", torch.ones(DIM))
        self.inplace = inplace
        self.calls = 0

    def forward(self, hidden_states, encoder_hidden_states, temb):
        self.calls += 1
        image = temb * (self.attn(self.c) + self.ff(self.c))
        text = temb * self.ff_context(self.c)
        if self.inplace:  # a block that adds into its input (as ComfyUI's Flux single blocks do)
            hidden_states += image
            return encoder_hidden_states + text, hidden_states
        return encoder_hidden_states + text, hidden_states + image


class DualModel(nn.Module):
    def __init__(self, depth=4, inplace=False, between=None):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList([DualBlock(inplace) for _ in range(depth)])
        self.between = between

    def forward(self, x, timestep, context):
        t = timestep.float() / 1000
        x, context = x.clone(), context.clone()
        for i, block in enumerate(self.blocks):
            context, x = block(hidden_states=x, encoder_hidden_states=context, temb=t)
            if self.between is not None and i == 1:
                x = self.between(x, t)
        return x, context


def _generate(model, steps=STEPS, grad_mode=torch.no_grad, **cache_kwargs):
    x, context = (
        torch.randn(2, TOKENS, DIM, generator=torch.Generator().manual_seed(1)),
        torch.zeros(2, TEXT, DIM),
    )
    outs = []
    with grad_mode():
        if cache_kwargs:
            schedule = cache_kwargs.pop("schedule")
            with SmoothCache(
                model, schedule, block_classes=[DualBlock], keys=["attn", "ff", "ff_context"], **cache_kwargs
            ) as cache:
                outs = [model(x, torch.tensor(float(t)), context) for t in steps]
                cache.held = cache.stats.bytes_by_kind  # what the cache holds after the last step
            return outs, cache
        return [model(x, torch.tensor(float(t)), context) for t in steps], None


def _schedule(predictor="linear", rows=None):
    rows = rows or {"attn": ROW, "ff": ROW, "ff_context": ROW}
    return Schedule(rows, predictor=predictor)


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode])  # inference tensors: no versions
@pytest.mark.parametrize("inplace", [False, True])
def test_linear_forecast_of_a_run_of_dual_stream_blocks_is_exact(inplace, grad_mode):
    model = DualModel(inplace=inplace)
    reference, _ = _generate(model, grad_mode=grad_mode)
    for block in model.blocks:
        block.calls = 0
    got, cache = _generate(model, grad_mode=grad_mode, schedule=_schedule())
    assert [b.calls for b in model.blocks] == [sum(ROW)] * 4
    for (want_x, want_c), (x, c) in zip(reference, got):
        torch.testing.assert_close(x, want_x, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(c, want_c, rtol=1e-5, atol=1e-5)
    stats = cache.stats
    assert stats.runs == 1 and stats.fused_blocks == 4 and stats.refused == {}
    assert stats.by_key()["ff_context"] == {"computed": 4 * sum(ROW), "predicted": 4 * (len(ROW) - sum(ROW))}


@pytest.mark.parametrize("predictor", ["reuse", "linear"])
def test_runs_equal_per_block_fusion(predictor):
    torch.manual_seed(3)
    model = DualModel(depth=5)
    for block in model.blocks:  # residuals that are not linear in time
        block.forward = _nonlinear(block)
    runs, run_cache = _generate(model, schedule=_schedule(predictor), fuse_blocks="runs")
    blocks, block_cache = _generate(model, schedule=_schedule(predictor), fuse_blocks="blocks")
    for (x1, c1), (x2, c2) in zip(runs, blocks):
        torch.testing.assert_close(x1, x2, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(c1, c2, rtol=1e-5, atol=1e-5)
    assert run_cache.stats.runs == 1 and block_cache.stats.runs == 5
    # one residual per run and stream (and source) instead of one per block; no branch output is kept
    assert block_cache.held == {"run": 5 * run_cache.held["run"]}
    assert block_cache.stats.peak_bytes == 5 * run_cache.stats.peak_bytes


def _nonlinear(block):
    def forward(hidden_states, encoder_hidden_states, temb):
        block.calls += 1
        image = torch.sin(3 * temb) * block.attn(hidden_states) + block.ff(hidden_states) ** 2 * temb
        return encoder_hidden_states + temb**2 * block.ff_context(
            encoder_hidden_states
        ), hidden_states + image

    return forward


@pytest.mark.parametrize("depth", [2, 4, 8])
def test_run_memory_is_constant_in_depth(depth):
    _, cache = _generate(DualModel(depth=depth), schedule=_schedule())
    per_state = 2 * (TOKENS + TEXT) * DIM * 4  # batch 2, image + text, float32
    assert cache.stats.peak_bytes == 2 * per_state  # linear: two residuals per stream, one run
    assert cache.held == {"run": 2 * per_state}


def test_work_between_blocks_splits_the_run():
    model = DualModel(depth=4, between=lambda x, t: x + 0.5 * t)
    reference, _ = _generate(model)
    got, cache = _generate(model, schedule=_schedule())
    assert cache.stats.runs == 2  # blocks 0-1 and 2-3: block 2 does not receive block 1's output as returned
    for (want, _), (x, _) in zip(reference, got):
        torch.testing.assert_close(x, want, rtol=1e-5, atol=1e-5)  # still exact: nothing counted twice


def test_different_rows_make_different_runs_and_mixed_steps_skip_branches():
    rows = {
        "attn": ROW,
        "ff": ROW,
        "ff_context": ROW,
        "attn-2": [1, 0, 1, 1, 0, 1],
        "ff-2": [1, 0, 1, 1, 0, 1],
        "ff_context-2": [1, 0, 1, 1, 0, 1],
        "attn-3": [1, 1, 1, 0, 1, 1],
    }
    model = DualModel(depth=4)
    _, cache = _generate(model, schedule=_schedule(rows=rows))
    # blocks 0-1 (one pattern), block 2 (its own), block 3 never has all branches skipped: not fused
    assert cache.stats.runs == 2 and cache.stats.fused_blocks == 3
    assert (
        cache.stats.by_key()["attn"]["predicted"] == 2 * 2 + 2 + 1
    )  # blocks 0, 1; block 2; block 3's branch
