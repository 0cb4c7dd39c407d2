"""Diffusers transformer families without a table row, found by structural discovery and run for real.

For each family of ``generic_families.py`` (tiny random weights, called like its pipeline calls it):
discovery finds the expected blocks and keys; an all-ones schedule is bit-identical to no cache; a schedule's
zeros skip the branch (counted on an inner ``nn.Linear`` of each branch module); and the default
``Calibrator`` -> ``Schedule.from_profile`` -> ``SmoothCache`` runs. The schedule tests take a schedule kind
(:data:`KINDS`) so other kinds of schedules can join them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import REPO
from families import FAMILIES
from generic_families import GENERIC_FAMILIES, GenericFamily, generate, readme_table
from smoothcache import Calibrator, Schedule, SmoothCache, SmoothCacheWarning
from smoothcache.targets import find_branches

STEPS = 6
PATTERNS = (
    (1, 0, 1, 0, 1, 1),
    (1, 1, 0, 0, 1, 1),
    (1, 0, 0, 1, 0, 1),
    (1, 1, 1, 0, 1, 1),
    (1, 0, 1, 1, 0, 1),
)

#: Schedule kinds the runtime tests run with: name -> (entries -> schedule).
KINDS = {
    "static": lambda entries: Schedule(entries),
    "linear": lambda entries: Schedule(entries, predictor="linear"),
}


RUN = [pytest.param(name, id=name) for name in GENERIC_FAMILIES]


def _block_path(model: nn.Module, branch_path: str) -> str:
    """The block a branch belongs to: the nearest enclosing item of an ``nn.ModuleList``."""
    parts = branch_path.split(".")
    for end in range(len(parts) - 1, 0, -1):
        parent = model.get_submodule(".".join(parts[: end - 1])) if end > 1 else model
        if isinstance(parent, nn.ModuleList):
            return ".".join(parts[:end])
    raise AssertionError(f"{branch_path} is in no block list")


def _per_key(branches) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in branches:
        out[b.key] = out.get(b.key, 0) + 1
    return out


def _mixed(fam: GenericFamily) -> dict[str, tuple[int, ...]]:
    return {key: PATTERNS[i % len(PATTERNS)] for i, key in enumerate(fam.keys)}


# ------------------------------------------------------------------------------------------- discovery
@pytest.mark.parametrize("name", list(GENERIC_FAMILIES))
def test_discovery_finds_the_blocks_and_keys(name):
    fam = GENERIC_FAMILIES[name]
    model = fam.build()
    branches = find_branches(model)
    assert _per_key(branches) == fam.blocks
    assert tuple(_per_key(branches)) == fam.keys  # module order
    assert [b.block_path for b in branches] == [_block_path(model, b.path) for b in branches]
    classes = [type(model.get_submodule(b.block_path)).__name__ for b in branches]
    assert tuple(dict.fromkeys(classes)) == fam.block_classes
    for b in branches:
        assert b.module is model.get_submodule(b.path)
        assert not isinstance(b.module, (nn.LayerNorm, nn.ModuleList)), b.path
    # blocks are numbered per key group from 0, in module order
    for key in fam.keys:
        assert [b.block for b in branches if b.key == key] == list(range(fam.blocks[key]))


# ------------------------------------------------------------------------------------------ bit-identity
@pytest.mark.parametrize("name", RUN)
def test_all_ones_schedule_is_bit_identical_to_no_cache(name):
    fam = GENERIC_FAMILIES[name]
    model = fam.build()
    base = generate(fam, model, STEPS, seed=3)
    with SmoothCache(model, Schedule.full(STEPS, fam.keys)) as cache:
        cached = generate(fam, model, STEPS, seed=3)
        assert cache.step == STEPS - 1  # one step per generate() step, one generation
    assert torch.equal(base, cached)
    calls = STEPS * fam.calls_per_step
    assert cache.stats.by_key() == {k: {"computed": calls * fam.calls(k), "predicted": 0} for k in fam.keys}
    assert torch.equal(generate(fam, model, STEPS, seed=3), base)  # disabled: the model is back to normal


# ----------------------------------------------------------------------------------------- real skipping
class InnerCounter:
    """Counts real computations of each branch: a forward hook on the branch's first inner ``nn.Linear`` (it
    only runs when the branch is computed); a branch that is itself a Linear (``proj_mlp``) has its forward
    counted instead, replaced before SmoothCache wraps it."""

    def __init__(self, branches):
        self.counts = {b.path: 0 for b in branches}
        self.branches = branches
        self._handles, self._patched = [], []

    def __enter__(self):
        for b in self.branches:

            def count(*_, _path=b.path):
                self.counts[_path] += 1

            inner = next(
                (m for m in b.module.modules() if isinstance(m, nn.Linear) and m is not b.module), None
            )
            if inner is not None:
                self._handles.append(inner.register_forward_hook(lambda m, a, o, _c=count: _c()))
            else:
                original = b.module.forward

                def forward(*args, _c=count, _original=original, **kwargs):
                    _c()
                    return _original(*args, **kwargs)

                b.module.forward = forward
                self._patched.append(b.module)
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        for module in self._patched:
            del module.forward


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", RUN)
def test_zeros_of_the_schedule_skip_the_branch_computation(name, kind):
    fam = GENERIC_FAMILIES[name]
    model = fam.build()
    entries = _mixed(fam)
    branches = find_branches(model)
    with InnerCounter(branches) as counter:
        with SmoothCache(model, KINDS[kind](entries)) as cache:
            with warnings.catch_warnings():
                warnings.simplefilter("error", SmoothCacheWarning)
                out = generate(fam, model, STEPS, seed=1)
    assert torch.isfinite(out).all()
    for b in branches:
        c = fam.calls_per_step * fam.repeats.get(b.key, 1)
        ones = sum(entries[b.key])
        assert counter.counts[b.path] == ones * c, b.path
        stat = cache.stats.counters[b.path]
        assert (stat.computed, stat.predicted) == (ones * c, (STEPS - ones) * c), b.path


# ------------------------------------------------------------------------------------------- end to end
def _alpha_that_skips(profile) -> float:
    values = [v for key in profile.keys for v in profile.mean_errors(key)[0][0] if np.isfinite(v)]
    return float(np.median(values))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", RUN)
def test_calibrate_schedule_cache(name, kind):
    fam = GENERIC_FAMILIES[name]
    steps = 8
    model = fam.build()
    with Calibrator(model) as cal:
        for seed in (0, 1):
            generate(fam, model, steps, seed=seed)
    profile = cal.profile
    assert (profile.runs, profile.num_steps) == (2, steps)
    assert profile.keys == list(fam.keys)

    schedule = KINDS[kind](Schedule.from_profile(profile, _alpha_that_skips(profile)).entries)
    zeros = {k: row.count(0) for k, row in schedule.entries.items()}
    assert sum(zeros.values()) > 0, schedule
    base = generate(fam, model, steps, seed=2)
    with SmoothCache(model, schedule) as cache:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SmoothCacheWarning)
            out = generate(fam, model, steps, seed=2)
    c = fam.calls_per_step
    assert cache.stats.by_key() == {
        k: {"computed": (steps - zeros[k]) * c * fam.calls(k), "predicted": zeros[k] * c * fam.calls(k)}
        for k in fam.keys
    }
    assert torch.isfinite(out).all() and not torch.equal(out, base)


# ------------------------------------------------------------------------------------------------ README
def test_the_readme_supported_models_section_lists_every_tested_family():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Supported models")
    section = readme[start : readme.index("\n## ", start)]
    assert readme_table() in section, (
        "README table out of date: regenerate with `python tests/generic_families.py`"
    )
    for fam in FAMILIES.values():  # the table families, through their real pipelines
        pipeline = fam.pipeline.split()[0]
        assert not pipeline.endswith("Pipeline") or f"`{pipeline}`" in section, pipeline
