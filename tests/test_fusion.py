"""Block fusion: a block whose every branch skips a step is skipped whole and its residual predicted."""

import pytest
import torch
import torch.nn as nn

from conftest import make_tiny_dit, run_steps
from smoothcache import Schedule, SmoothCache

STEPS = [900, 700, 500, 300, 100]
ROW = [1, 1, 0, 1, 0]


def _norm_calls(model) -> tuple[list[int], list]:
    """A counter of calls of every block's ``norm1`` (run by the block, never by a branch)."""
    calls = [0]
    handles = [b.norm1.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
               for b in model.transformer_blocks]
    return calls, handles


def _run(model, schedule, **kwargs):
    calls, handles = _norm_calls(model)
    try:
        with SmoothCache(model, schedule, **kwargs) as cache:
            out = run_steps(model, STEPS)
    finally:
        for h in handles:
            h.remove()
    return out, calls[0], cache


def test_forecast_skips_whole_blocks_on_all_skipped_steps():
    model = make_tiny_dit()
    schedule = Schedule({"attn1": ROW, "ff": ROW}, predictor="linear")
    out, norms, cache = _run(model, schedule)
    blocks = len(model.transformer_blocks)
    assert norms == sum(ROW) * blocks                       # norm1 ran on computed steps only
    assert cache.stats.by_key()["attn1"] == {"computed": 3 * blocks, "predicted": 2 * blocks}
    unfused, norms_unfused, _ = _run(model, schedule, fuse_blocks=False)
    assert norms_unfused == len(STEPS) * blocks
    reference = run_steps(model, STEPS)
    err_fused = (out - reference).abs().max()
    assert 0 < err_fused < 0.1 and not torch.equal(out, unfused)


class LinearBlock(nn.Module):
    """A block whose residual is ``t * (attn1(c) + ff(c))``: linear in the time ``t`` it is called with."""

    def __init__(self):
        super().__init__()
        self.attn1, self.ff = nn.Linear(4, 4), nn.Linear(4, 4)
        self.register_buffer("c", torch.ones(4))
        self.calls = 0

    def forward(self, hidden_states, t):
        self.calls += 1
        return hidden_states + t * (self.attn1(self.c) + self.ff(self.c))


class LinearModel(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList([LinearBlock(), LinearBlock()])

    def forward(self, x, timestep):
        for b in self.blocks:
            x = b(x, timestep.float() / 1000)
        return x


@pytest.mark.parametrize("steps", [STEPS, [999, 800, 650, 200, 20]])
def test_fused_linear_forecast_is_exact_on_residuals_linear_in_time(steps):
    model = LinearModel()
    x = torch.randn(2, 4)
    with torch.no_grad():
        reference = [model(x, torch.tensor(float(t))) for t in steps]
        model.blocks[0].calls = 0
        with SmoothCache(model, Schedule({"attn1": ROW, "ff": ROW}, predictor="linear"),
                         block_classes=[LinearBlock]):
            got = [model(x, torch.tensor(float(t))) for t in steps]
    assert model.blocks[0].calls == sum(ROW)
    for want, have in zip(reference, got):
        torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-5)


def test_fused_reuse_returns_the_last_computed_residual():
    model = LinearModel()
    x = torch.randn(2, 4)
    with torch.no_grad():
        reference = [model(x, torch.tensor(float(t))) for t in STEPS]
        with SmoothCache(model, Schedule({"attn1": ROW, "ff": ROW}), block_classes=[LinearBlock],
                         fuse_blocks=True):
            got = [model(x, torch.tensor(float(t))) for t in STEPS]
    torch.testing.assert_close(got[2], reference[1])   # step 2 reuses step 1's residual (same input x)
    torch.testing.assert_close(got[4], reference[3])
    torch.testing.assert_close(got[3], reference[3])


def test_nothing_skipped_is_bit_identical_with_fusion():
    model = make_tiny_dit()
    ones = [1] * len(STEPS)
    out, norms, _ = _run(model, Schedule({"attn1": ones, "ff": ones}, predictor="linear"), fuse_blocks=True)
    assert torch.equal(out, run_steps(model, STEPS))
    assert norms == len(STEPS) * len(model.transformer_blocks)


def test_reuse_is_not_fused_by_default_but_can_be():
    model = make_tiny_dit()
    schedule = Schedule({"attn1": ROW, "ff": ROW})
    _, norms, _ = _run(model, schedule)
    assert norms == len(STEPS) * len(model.transformer_blocks)   # the original's behaviour: blocks run
    _, norms, _ = _run(model, schedule, fuse_blocks=True)
    assert norms == sum(ROW) * len(model.transformer_blocks)


def test_a_block_with_an_unscheduled_branch_is_not_fused():
    model = make_tiny_dit()
    out, norms, _ = _run(model, Schedule({"attn1": ROW}, predictor="linear"))
    assert norms == len(STEPS) * len(model.transformer_blocks)
    unfused, _, _ = _run(model, Schedule({"attn1": ROW}, predictor="linear"), fuse_blocks=False)
    assert torch.equal(out, unfused)


def test_a_tuple_of_streams_is_fused_per_stream():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn1, self.ff = nn.Linear(4, 4), nn.Linear(4, 4)
            self.calls = 0

        def forward(self, hidden_states, t):
            self.calls += 1
            return hidden_states + t * self.attn1(hidden_states) + self.ff(hidden_states), t

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.blocks = nn.ModuleList([Block(), Block()])

        def forward(self, x, timestep):
            t = timestep.float() / 1000
            for b in self.blocks:
                x, t = b(x, t)
            return x, t

    model = Model()
    with SmoothCache(model, Schedule({"attn1": ROW, "ff": ROW}, predictor="linear"), block_classes=[Block],
                     keys=["attn1", "ff"]) as cache, torch.no_grad():
        outs = [model(torch.ones(2, 4), torch.tensor(float(t))) for t in STEPS]
    assert [b.calls for b in model.blocks] == [sum(ROW)] * 2   # both streams continue their inputs: fused
    assert all(torch.equal(t, torch.tensor(s / 1000)) for (_, t), s in zip(outs, STEPS))  # t passes through
    assert cache.stats.by_key()["attn1"]["predicted"] == 2 * 2 and cache.stats.refused == {}


def test_a_block_returning_a_new_tensor_keeps_branch_skipping_and_says_why(caplog):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn1, self.ff = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, hidden_states):
            return self.ff(hidden_states + self.attn1(hidden_states))  # (.., 2): continues no input

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.blocks = nn.ModuleList([Block()])

        def forward(self, x, timestep):
            return self.blocks[0](x * timestep)

    model = Model()
    schedule = Schedule({"attn1": ROW, "ff": ROW}, predictor="linear")
    with SmoothCache(model, schedule, block_classes=[Block], keys=["attn1", "ff"]) as cache, torch.no_grad():
        fused = [model(torch.ones(2, 4), torch.tensor(float(t))) for t in STEPS]
    with SmoothCache(model, schedule, block_classes=[Block], keys=["attn1", "ff"], fuse_blocks=False), \
            torch.no_grad():
        unfused = [model(torch.ones(2, 4), torch.tensor(float(t))) for t in STEPS]
    # the branch outputs of step 0 were not kept (fusion was expected): step 2 reuses step 1's instead of
    # extrapolating from steps 0 and 1; from then on the branches skip as without fusion
    assert torch.equal(fused[3], unfused[3]) and not torch.equal(fused[2], unfused[2])
    assert cache.stats.by_key() == {
        "attn1": {"computed": 3, "predicted": 2},
        "ff": {"computed": 3, "predicted": 2},
    }
    assert cache.stats.refused == {"blocks.0": "an output of shape (2, 2) matches no input of that shape"}
    assert "blocks.0 is not fused" in caplog.text and "not fused: blocks.0" in str(cache.stats)


def test_model_restored_after_fused_run_and_after_an_exception():
    model = make_tiny_dit()
    before = {name: m.forward for name, m in model.named_modules()}
    schedule = Schedule({"attn1": ROW, "ff": ROW}, predictor="linear")
    _run(model, schedule)
    assert all("forward" not in m.__dict__ for m in model.modules())
    with pytest.raises(RuntimeError, match="boom"):
        with SmoothCache(model, schedule):
            run_steps(model, STEPS[:3])
            raise RuntimeError("boom")
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert {name: m.forward for name, m in model.named_modules()}.keys() == before.keys()


def test_cache_dtype_applies_to_block_residuals():
    model = make_tiny_dit()
    schedule = Schedule({"attn1": ROW, "ff": ROW}, predictor="linear")
    out, _, cache = _run(model, schedule, cache_dtype=torch.bfloat16)
    full, _, _ = _run(model, schedule)
    assert out.dtype == torch.float32
    assert 0 < (out - full).abs().max() < 0.05


def test_bad_fuse_blocks_value():
    with pytest.raises(TypeError, match="fuse_blocks"):
        SmoothCache(make_tiny_dit(), Schedule({"attn1": ROW}), fuse_blocks="yes")
