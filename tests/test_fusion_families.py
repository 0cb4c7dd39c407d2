"""Block fusion on every family, through its real call: with a whole-step forecast schedule every block whose
branches are all scheduled is skipped whole (dual-stream and split-and-rejoin blocks included), runs of blocks
give what per-block fusion gives, and a run keeps one residual per stream instead of one per block."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from families import FAMILIES
from generic_families import GENERIC_FAMILIES, generate
from smoothcache import Schedule, SmoothCache

STEPS = 6
ROW = (1, 1, 0, 1, 0, 1)


def _whole_step(keys) -> Schedule:
    return Schedule({key: ROW for key in keys}, predictor="linear")


def _fused(cache) -> tuple[int, int]:
    """(blocks skipped whole, blocks that could be) of a cache after a run."""
    fusable = [g for g in cache.hooks.blocks if g.path in cache.policy.fusion.fusable]
    return cache.stats.fused_blocks, len(fusable)


def _close(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_block_of_a_pipeline_family_is_fused(name):
    fam = FAMILIES[name]
    pipe = fam.build()
    outs = {}
    for mode in ("runs", "blocks"):
        with SmoothCache(
            pipe.transformer, _whole_step(fam.keys), fuse_blocks=mode, **fam.cache_kwargs
        ) as cache:
            outs[mode] = fam.run(pipe, STEPS, seed=1)
            held = dict(cache.stats.bytes_by_kind)
        fused, fusable = _fused(cache)
        assert cache.stats.refused == {} and fused == fusable > 0, (cache.stats.refused, fused, fusable)
        assert held.get("branch", 0) == 0  # fusion serves every skipped step: no branch output is kept
        if mode == "runs":
            runs = cache.stats.runs
    assert runs <= fusable
    print(name, "runs", runs, "blocks", fusable)
    assert _close(outs["runs"], outs["blocks"])


@pytest.mark.parametrize("name", list(GENERIC_FAMILIES))
def test_every_block_of_a_discovered_family_is_fused(name):
    fam = GENERIC_FAMILIES[name]
    model = fam.build()
    outs = {}
    for mode in ("runs", "blocks"):
        with SmoothCache(model, _whole_step(fam.keys), fuse_blocks=mode) as cache:
            outs[mode] = generate(fam, model, STEPS, seed=3)
        fused, fusable = _fused(cache)
        assert fused + len(cache.stats.refused) == fusable and fused > 0, cache.stats.refused
        for path, why in cache.stats.refused.items():  # only blocks whose outputs are not continuations
            assert "matches" in why or "returns" in why or "continues none" in why, (path, why)
    assert torch.allclose(outs["runs"], outs["blocks"], rtol=1e-4, atol=1e-4)
