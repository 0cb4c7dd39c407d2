"""Every DiT family of the targets table, end to end through its real diffusers pipeline (tiny random
weights).

For each family (see ``families.py``): the table finds the expected branches; an all-ones schedule is
bit-identical to no cache; a schedule's zeros really skip the branch modules (counted on the original
forwards and on an inner layer); and calibrate -> ``Schedule.from_profile`` -> ``SmoothCache`` works.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from families import FAMILIES, Family, SpatialBlock, TemporalBlock
from smoothcache import Calibrator, Schedule, SmoothCache, SmoothCacheWarning
from smoothcache.steps import find_timestep
from smoothcache.targets import find_branches

STEPS = 6

# One row per key, each skipping different steps (all start and end with a computed step).
PATTERNS = (
    (1, 0, 1, 0, 1, 1),
    (1, 1, 0, 0, 1, 1),
    (1, 0, 0, 1, 0, 1),
    (1, 1, 1, 0, 1, 1),
    (1, 0, 1, 1, 0, 1),
)


@pytest.fixture(scope="module", params=list(FAMILIES), ids=list(FAMILIES))
def family(request) -> Family:
    return FAMILIES[request.param]


def mixed_schedule(fam: Family, steps: int = STEPS) -> Schedule:
    assert steps == len(PATTERNS[0])
    return Schedule({key: PATTERNS[i % len(PATTERNS)] for i, key in enumerate(fam.keys)})


class ExecutionCounter:
    """Counts the real executions of every branch module of a model, per CFG call of a step.

    ``module.forward`` is replaced by a counting wrapper *before* SmoothCache wraps the module, so it runs
    only when SmoothCache calls the original forward. A forward hook on the branch's first inner ``nn.Linear``
    (``to_q``, ``net.0.proj``, ``qkv``...) counts the same thing independently. The CFG call of a step is the
    denoiser's call number modulo ``calls_per_step`` (pipelines call cond then uncond, in that order).
    """

    def __init__(self, model: nn.Module, branches, calls_per_step: int):
        self.model = model
        self.branches = branches
        self.calls_per_step = calls_per_step
        self.denoiser_calls = 0
        self.runs = {b.path: [0] * calls_per_step for b in branches}
        self.inner = {b.path: 0 for b in branches}
        self._handles = []

    def __enter__(self):
        def pre_hook(module, args):
            self.denoiser_calls += 1

        self._handles.append(self.model.register_forward_pre_hook(pre_hook))
        for b in self.branches:
            original = b.module.forward

            def counted(*args, _path=b.path, _original=original, **kwargs):
                self.runs[_path][(self.denoiser_calls - 1) % self.calls_per_step] += 1
                return _original(*args, **kwargs)

            b.module.forward = counted
            linear = next(
                (m for m in b.module.modules() if isinstance(m, nn.Linear) and m is not b.module), None
            )
            if linear is not None:

                def hook(module, args, out, _path=b.path):
                    self.inner[_path] += 1

                self._handles.append(linear.register_forward_hook(hook))
            else:  # a leaf branch (Flux single-stream proj_mlp): only the forward counter
                self.inner[b.path] = None
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        for b in self.branches:
            del b.module.forward

    def executions(self, path: str) -> int:
        return sum(self.runs[path])


def _branches(fam: Family, model):
    kwargs = fam.cache_kwargs
    return find_branches(model, kwargs.get("keys"), kwargs.get("block_classes"))


# ------------------------------------------------------------------------------------------------ table
def test_the_table_finds_every_branch_of_the_family(family):
    pipe = family.build()
    branches = _branches(family, pipe.transformer)
    per_key: dict[str, int] = {}
    for b in branches:
        per_key[b.key] = per_key.get(b.key, 0) + 1
        assert b.module is pipe.transformer.get_submodule(b.path)
    assert per_key == family.blocks
    assert tuple(per_key) == family.keys


def test_flux_single_stream_keys_do_not_collide_with_double_stream():
    pipe = FAMILIES["flux"].build()
    paths = {(b.family, b.key, b.path) for b in find_branches(pipe.transformer)}
    assert ("flux-double", "attn", "transformer_blocks.1.attn") in paths
    assert ("flux-single", "single_attn", "single_transformer_blocks.1.attn") in paths
    assert ("flux-single", "single_mlp", "single_transformer_blocks.0.proj_mlp") in paths
    # a schedule for the double-stream "attn" leaves the single-stream attention alone
    with SmoothCache(pipe.transformer, {"attn": [1, 0, 1]}) as cache:
        FAMILIES["flux"].run(pipe, 3)
    assert {c.path.split(".")[0] for c in cache.stats.counters.values()} == {"transformer_blocks"}


def test_latte_spatial_and_temporal_blocks_are_numbered_apart():
    """Latte's spatial and temporal blocks are both BasicTransformerBlock: they share the keys, spatial
    blocks are 0..L-1 and temporal blocks L..2L-1, so per-block schedules ("attn1-2") tell them apart."""
    fam = FAMILIES["latte"]
    pipe = fam.build()
    blocks = {b.path: b.block for b in find_branches(pipe.transformer, ["attn1"])}
    assert blocks == {
        "transformer_blocks.0.attn1": 0,
        "transformer_blocks.1.attn1": 1,
        "temporal_transformer_blocks.0.attn1": 2,
        "temporal_transformer_blocks.1.attn1": 3,
    }
    schedule = {
        "attn1": [1, 1, 1],
        "attn1-2": [1, 0, 1],
        "attn1-3": [1, 0, 1],
    }  # skip temporal attention only
    with SmoothCache(pipe.transformer, schedule) as cache:
        fam.run(pipe, 3)
    per_path = {p: (c.computed, c.predicted) for p, c in cache.stats.counters.items()}
    assert per_path == {
        "transformer_blocks.0.attn1": (3, 0),
        "transformer_blocks.1.attn1": (3, 0),
        "temporal_transformer_blocks.0.attn1": (2, 1),
        "temporal_transformer_blocks.1.attn1": (2, 1),
    }


def test_per_token_timesteps_are_read_as_their_highest_entry():
    """Wan 2.2 TI2V image-to-video passes one timestep per token, 0 on the clean first frame: the step is
    followed by the highest entry (reading the first entry saw 0 on every call: one endless step 0)."""
    per_token = torch.tensor([[0.0, 0.0, 937.5, 937.5]]).expand(2, -1)
    assert float(find_timestep((), {"timestep": per_token})) == 937.5
    assert float(find_timestep((torch.zeros(1), torch.tensor([0.0, 500.0])), {})) == 500.0
    assert find_timestep((), {"timestep": 3.0}) == 3.0
    one = torch.tensor([250])
    assert find_timestep((), {"timestep": one}) is one


# ------------------------------------------------------------------------------------- bit-identity
def test_all_ones_schedule_is_bit_identical_to_no_cache(family):
    pipe = family.build()
    base = family.run(pipe, STEPS, seed=3)
    with SmoothCache(pipe.transformer, Schedule.full(STEPS, family.keys), **family.cache_kwargs) as cache:
        cached = family.run(pipe, STEPS, seed=3)
    assert np.array_equal(base, cached)
    calls = STEPS * family.calls_per_step
    assert cache.stats.by_key() == {
        k: {"computed": calls * n, "predicted": 0} for k, n in family.blocks.items()
    }
    again = family.run(pipe, STEPS, seed=3)  # disabled: the model is back to normal
    assert np.array_equal(base, again)


# ------------------------------------------------------------------------------------ real skipping
def test_zeros_of_the_schedule_really_skip_the_branch(family):
    pipe = family.build()
    schedule = mixed_schedule(family)
    branches = _branches(family, pipe.transformer)
    with ExecutionCounter(pipe.transformer, branches, family.calls_per_step) as counter:
        with SmoothCache(pipe.transformer, schedule, **family.cache_kwargs) as cache:
            with warnings.catch_warnings():
                warnings.simplefilter("error", SmoothCacheWarning)
                family.run(pipe, STEPS, seed=1)
            # a diffusers pipeline ends its generation when it returns; a bare loop leaves the last step
            # current
            assert cache.step == (-1 if hasattr(pipe, "maybe_free_model_hooks") else STEPS - 1)
    assert counter.denoiser_calls == STEPS * family.calls_per_step
    stats = cache.stats
    for b in branches:
        row = schedule.entries[b.key]
        ones, zeros = sum(row), len(row) - sum(row)
        assert counter.runs[b.path] == [ones] * family.calls_per_step, b.path  # per CFG call of each step
        assert counter.inner[b.path] in (None, ones * family.calls_per_step), b.path
        c = stats.counters[b.path]
        assert (c.computed, c.predicted) == (ones * family.calls_per_step, zeros * family.calls_per_step), (
            b.path
        )
    expected = {
        k: {
            "computed": sum(schedule.entries[k]) * family.calls_per_step * n,
            "predicted": (STEPS - sum(schedule.entries[k])) * family.calls_per_step * n,
        }
        for k, n in family.blocks.items()
    }
    assert stats.by_key() == expected


# -------------------------------------------------------------------------------------- end to end
def _alpha_that_skips(profile) -> float:
    """The median k=1 error over every key: about half the steps can then reuse their predecessor."""
    values = [v for key in profile.keys for v in profile.mean_errors(key)[0][0] if np.isfinite(v)]
    return float(np.median(values))


def test_calibrate_schedule_apply_end_to_end(family):
    steps = 8
    pipe = family.build()
    with Calibrator(pipe.transformer, lookahead=2, **family.cache_kwargs) as cal:
        for seed in (0, 1):
            family.run(pipe, steps, seed=seed)
    profile = cal.profile
    assert (profile.runs, profile.num_steps) == (2, steps)
    assert profile.keys == list(family.keys)
    assert np.all(np.diff(profile.timesteps) < 0)  # one recorded timestep per step, decreasing

    schedule = Schedule.from_profile(profile, _alpha_that_skips(profile))
    assert schedule.num_steps == steps and set(schedule.branch_keys) == set(family.keys)
    zeros = {k: row.count(0) for k, row in schedule.entries.items()}
    assert sum(zeros.values()) > 0, schedule

    base = family.run(pipe, steps, seed=2)
    with SmoothCache(pipe.transformer, schedule, **family.cache_kwargs) as cache:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SmoothCacheWarning)
            out = family.run(pipe, steps, seed=2)
    c = family.calls_per_step
    assert cache.stats.by_key() == {
        k: {"computed": (steps - zeros[k]) * c * n, "predicted": zeros[k] * c * n}
        for k, n in family.blocks.items()
    }
    assert out.shape == base.shape and np.isfinite(out).all()
    assert not np.array_equal(out, base)  # reused outputs changed the result: the skips happened


def test_wan22_two_experts_each_get_their_own_calibration_and_schedule():
    """Wan 2.2 A14B: WanPipeline switches from ``transformer`` to ``transformer_2`` below boundary_ratio. Each
    expert gets its own Calibrator / SmoothCache; each counts steps from its own first call, so the second
    expert's schedule covers only the steps it runs."""
    from diffusers import WanPipeline

    from families import build_wan

    fam = FAMILIES["wan"]
    high = build_wan()
    torch.manual_seed(1)
    low = build_wan().transformer
    with torch.no_grad():
        for p in low.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pipe = WanPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=high.vae,
        scheduler=high.scheduler,
        transformer=high.transformer,
        transformer_2=low,
        boundary_ratio=0.5,
    )
    pipe.set_progress_bar_config(disable=True)
    steps = 8
    with (
        Calibrator(pipe.transformer, lookahead=2) as cal_high,
        Calibrator(pipe.transformer_2, lookahead=2) as cal_low,
    ):
        for seed in (0, 1):
            fam.run(pipe, steps, seed=seed)
    boundary = 0.5 * pipe.scheduler.config.num_train_timesteps
    n_high = int((pipe.scheduler.timesteps >= boundary).sum())
    assert (cal_high.profile.num_steps, cal_low.profile.num_steps) == (n_high, steps - n_high)
    assert np.all(cal_low.profile.timesteps < boundary) and np.all(cal_high.profile.timesteps >= boundary)

    s_high = Schedule.from_profile(cal_high.profile, _alpha_that_skips(cal_high.profile))
    s_low = Schedule.full(steps - n_high, fam.keys)
    base = fam.run(pipe, steps, seed=2)
    with SmoothCache(pipe.transformer, s_high) as c_high, SmoothCache(pipe.transformer_2, s_low) as c_low:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SmoothCacheWarning)
            out = fam.run(pipe, steps, seed=2)
    # the only warning: the expert with a schedule of all ones skips nothing, and says so
    assert [str(w.message) for w in caught if w.category is SmoothCacheWarning] == [
        "WanTransformer3DModel: a generation ended with no call skipped: the schedule computes every step "
        "(it "
        "has no 0 entry); plan one for a budget to skip calls"
    ]
    assert c_high.stats.predicted > 0 and c_low.stats.predicted == 0
    assert c_low.stats.computed == 2 * (steps - n_high) * sum(fam.blocks.values())
    assert out.shape == base.shape and not np.array_equal(out, base)


# ----------------------------------------------------------------------------- user-given classes
def test_stdit_needs_its_block_classes_and_runs_with_them():
    fam = FAMILIES["stdit"]
    sampler = fam.build()
    with pytest.raises(Exception, match="no transformer blocks found in TinySTDiT"):
        SmoothCache(sampler.transformer, {"attn": [1, 0]})
    # class names work as well as the classes, and one key can be restricted to the temporal blocks
    with SmoothCache(
        sampler.transformer, {"attn": [1, 0, 1, 0, 1, 1]}, block_classes=["TemporalBlock"], keys=["attn"]
    ) as cache:
        fam.run(sampler, STEPS)
    assert {p.split(".")[0] for p in cache.stats.counters} == {"temporal_blocks"}
    assert cache.stats.by_key() == {"attn": {"computed": 2 * 4, "predicted": 2 * 2}}


def test_stdit_branches_are_the_spatial_and_temporal_attn_and_mlp():
    sampler = FAMILIES["stdit"].build()
    found = [
        (b.path, b.key, b.block)
        for b in find_branches(sampler.transformer, ["attn", "mlp"], [SpatialBlock, TemporalBlock])
    ]
    assert found == [
        ("spatial_blocks.0.attn", "attn", 0),
        ("spatial_blocks.0.mlp", "mlp", 0),
        ("spatial_blocks.1.attn", "attn", 1),
        ("spatial_blocks.1.mlp", "mlp", 1),
        ("temporal_blocks.0.attn", "attn", 2),
        ("temporal_blocks.0.mlp", "mlp", 2),
        ("temporal_blocks.1.attn", "attn", 3),
        ("temporal_blocks.1.mlp", "mlp", 3),
    ]


# ----------------------------------------------------------------------------------------- forecasts
def test_forecast_schedules_on_every_family(family):
    """The linear forecast: all-ones is still bit-identical, skips are counted per CFG call like reuse, and
    the forecast really differs from reuse where it extrapolates (PATTERNS skip after two computed steps)."""
    pipe = family.build()
    base = family.run(pipe, STEPS, seed=3)
    with SmoothCache(
        pipe.transformer, Schedule.full(STEPS, family.keys, predictor="linear"), **family.cache_kwargs
    ):
        assert np.array_equal(family.run(pipe, STEPS, seed=3), base)
    outs = {}
    for predictor in ("reuse", "linear"):
        schedule = Schedule(mixed_schedule(family).entries, predictor=predictor)
        with SmoothCache(pipe.transformer, schedule, **family.cache_kwargs) as cache:
            with warnings.catch_warnings():
                warnings.simplefilter("error", SmoothCacheWarning)
                outs[predictor] = family.run(pipe, STEPS, seed=3)
        stats = cache.stats.by_key()
        assert stats == {
            k: {
                "computed": sum(schedule.entries[k]) * family.calls_per_step * n,
                "predicted": (STEPS - sum(schedule.entries[k])) * family.calls_per_step * n,
            }
            for k, n in family.blocks.items()
        }
    assert np.isfinite(outs["linear"]).all() and not np.array_equal(outs["linear"], outs["reuse"])
