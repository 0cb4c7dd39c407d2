"""bench.peers and bench.cachedit: peers on a tiny random DiTPipeline skip work, repeat, and restore
exactly."""

import pytest
import torch

from bench.peers import (
    FAMILIES,
    is_pristine,
    measure_compute,
    peer_failures,
    peer_methods,
    unassisted_failures,
)
from bench.peers.installers import install_faster
from bench.peers.points import hook_method
from conftest import make_tiny_pipe

torch.set_num_threads(1)

# FasterCache's frequency split calls torch.meshgrid without `indexing` (diffusers internals)
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid")

STEPS = 20
GUIDANCE = 4.0
LABELS = [1, 2]
CALIBRATION_LABELS = [5, 6]  # disjoint from LABELS, and another seed (peers' default 1234 vs 3 below)


def generate(pipe, seed=3):
    return pipe(
        class_labels=LABELS,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
    ).images


def state(pipe):
    """What 'restored exactly' means, observed from outside: module tree, parameters, instance attributes,
    torch hooks, the transformer's and the pipeline class's forward / __call__."""
    t = pipe.transformer
    return {
        "modules": [(name, id(m)) for name, m in t.named_modules()],
        "state_dict": list(t.state_dict()),
        "attrs": {name: sorted(vars(m)) for name, m in t.named_modules()},
        "hooks": {
            name: [len(getattr(m, d)) for d in ("_forward_hooks", "_forward_pre_hooks")]
            for name, m in t.named_modules()
        },
        "call": vars(type(pipe)).get("__call__"),
        "pipe_attrs": sorted(vars(pipe)),
    }


class InnerRows:
    """Sample rows through every block's attn1.to_q and ff's first Linear: the work a peer really did."""

    def __init__(self, pipe):
        self.attn = self.ff = 0
        self.handles = []
        for block in pipe.transformer.transformer_blocks:
            self.handles.append(block.attn1.to_q.register_forward_pre_hook(lambda m, a: self._add("attn", a)))
            self.handles.append(
                block.ff.net[0].proj.register_forward_pre_hook(lambda m, a: self._add("ff", a))
            )

    def _add(self, kind, args):
        setattr(self, kind, getattr(self, kind) + args[0].shape[0])

    def remove(self):
        for h in self.handles:
            h.remove()


@pytest.fixture(scope="module")
def pipe():
    return make_tiny_pipe()


@pytest.fixture(scope="module")
def baseline(pipe):
    assert is_pristine(pipe.transformer)
    return generate(pipe)


@pytest.fixture(scope="module")
def methods(pipe, baseline):
    return peer_methods(pipe, STEPS, GUIDANCE, CALIBRATION_LABELS)


def strongest(methods):
    """The most aggressive point of each family (points are ordered gentle -> aggressive)."""
    return {m.family: m for m in methods.values()}


def test_every_family_runs_with_our_help(pipe):
    assert peer_failures(pipe, families=FAMILIES) == {}
    assert is_pristine(pipe.transformer)


@pytest.mark.parametrize("family", FAMILIES)
def test_strongest_point_skips_inner_work(pipe, baseline, methods, family):
    m = strongest(methods)[family]
    full = STEPS * len(pipe.transformer.transformer_blocks) * 2 * len(LABELS)  # CFG doubles the batch
    calls = InnerRows(pipe)
    try:
        with m.apply():
            images = generate(pipe)
    finally:
        calls.remove()
    assert 0 < calls.attn < full, (m.name, calls.attn)
    if family == "PyramidAttentionBroadcast":  # PAB only broadcasts attention
        assert calls.ff == full
    else:
        assert 0 < calls.ff < full, (m.name, calls.ff)
    assert torch.isfinite(images).all() and not torch.equal(images, baseline)


def test_points_go_from_gentle_to_aggressive(pipe, methods):
    for family in FAMILIES:
        fractions = [
            measure_compute(
                pipe, m, class_labels=LABELS, num_inference_steps=STEPS, guidance_scale=GUIDANCE
            ).block_fraction
            for m in methods.values()
            if m.family == family
        ]
        assert fractions == sorted(fractions, reverse=True), (family, fractions)
        assert fractions[-1] < 0.85, (family, fractions)


def test_uncached_compute_is_full(pipe):
    c = measure_compute(pipe, None, class_labels=LABELS, num_inference_steps=STEPS, guidance_scale=GUIDANCE)
    assert c.attn_rows == c.ff_rows == c.full_rows == STEPS * 3 * 2 * len(LABELS)
    assert c.speedup == 1.0


@pytest.mark.parametrize("family", FAMILIES)
def test_repeatable_inside_one_apply_and_restored_exactly(pipe, baseline, methods, family):
    before = state(pipe)
    m = strongest(methods)[family]
    with m.apply() as session:
        first = generate(pipe)
        other_seed = generate(pipe, seed=4)
        second = generate(pipe)
        assert session.generations == 3
        assert not is_pristine(pipe.transformer)
    with m.apply():
        fresh = generate(pipe, seed=4)
    assert torch.equal(first, second), m.name
    assert torch.equal(other_seed, fresh), m.name
    assert state(pipe) == before
    assert is_pristine(pipe.transformer)
    assert torch.equal(generate(pipe), baseline)


def test_restored_after_an_error_and_no_nesting(pipe, baseline, methods):
    m = next(iter(methods.values()))
    with pytest.raises(RuntimeError, match="boom"):
        with m.apply():
            generate(pipe)
            raise RuntimeError("boom")
    assert is_pristine(pipe.transformer)
    with m.apply():
        with pytest.raises(RuntimeError, match="already applied"):
            with m.apply():
                pass
    assert torch.equal(generate(pipe), baseline)


def test_faster_cache_without_skips_is_exact(pipe, baseline):
    """The CFG-halves swap and the split kwargs are transparent when FasterCache skips nothing."""
    config = {
        "spatial_attention_block_skip_range": 2,
        "spatial_attention_timestep_skip_range": (-1, -1),
        "unconditional_batch_skip_range": 5,
        "unconditional_batch_timestep_skip_range": (-1, -1),
    }
    m = hook_method("FasterCache off", "FasterCache", config, pipe, install_faster(config, True), swap=True)
    with m.apply():
        assert torch.equal(generate(pipe), baseline)


def test_mag_ratios_calibrated_per_step(methods):
    mag = [m for m in methods.values() if m.family == "MagCache"]
    ratios = mag[0].config["mag_ratios"]
    assert len(ratios) == STEPS and ratios[0] == 1.0 and all(r > 0 for r in ratios)
    assert all(m.config["num_inference_steps"] == STEPS and m.config["mag_ratios"] == ratios for m in mag)


def test_unassisted_probe_leaves_the_pipeline_as_it_was(pipe, baseline):
    before = state(pipe)
    found = unassisted_failures(pipe, num_inference_steps=5)
    assert all(label.split(":")[0] in FAMILIES and message for label, message in found.items())
    assert state(pipe) == before and torch.equal(generate(pipe), baseline)


# ---------------------------------------------------------------------------------------------- cache-dit
@pytest.fixture(scope="module")
def cachedit_points(pipe, baseline):
    pytest.importorskip("cache_dit", reason="cache-dit is a benchmark-only dependency")
    from bench.cachedit import FAMILIES as CD_FAMILIES
    from bench.cachedit import cachedit_methods

    points = cachedit_methods(pipe, STEPS, thresholds=(0.8,))
    assert {m.family for m in points.values()} == set(CD_FAMILIES)
    return points


def test_cachedit_skips_blocks_and_restores_exactly(pipe, baseline, cachedit_points):
    before = state(pipe)
    full = STEPS * len(pipe.transformer.transformer_blocks) * 2 * len(LABELS)  # CFG doubles the batch
    for m in cachedit_points.values():
        calls = InnerRows(pipe)
        try:
            with m.apply():
                first = generate(pipe)
                second = generate(pipe)
        finally:
            calls.remove()
        assert calls.attn == calls.ff and 0 < calls.attn < 2 * full, (m.name, calls.attn)  # two generations
        assert torch.equal(first, second), m.name
        assert not torch.equal(first, baseline), m.name
        assert state(pipe) == before, m.name
        assert torch.equal(generate(pipe), baseline)


def test_cachedit_no_nesting_and_restored_after_an_error(pipe, baseline, cachedit_points):
    m = next(iter(cachedit_points.values()))
    with pytest.raises(RuntimeError, match="already applied"):
        with m.apply(), m.apply():
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with m.apply():
            raise RuntimeError("boom")
    assert is_pristine(pipe.transformer) and torch.equal(generate(pipe), baseline)


def test_cachedit_documented_usage_probe_restores(pipe, baseline, cachedit_points):
    from bench.cachedit import documented_usage

    before = state(pipe)
    documented_usage(pipe)  # its default Fn_compute_blocks=8 exceeds the tiny DiT's 3 blocks
    assert state(pipe) == before and torch.equal(generate(pipe), baseline)
