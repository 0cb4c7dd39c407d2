"""The audio / video benchmark's pieces that need no trained model: method building and the report."""

import torch

from bench.methods import Method
from bench.modality import Bench, build, report
from conftest import make_tiny_pipe
from smoothcache import MacReport
from smoothcache.targets import find_branches
from smoothcache.zoo.demo import DEMO_MODELS, calibrate_pipeline

torch.set_num_threads(1)


def tiny_bench(steps=8):
    """A Bench on the tiny random DiT (no trained model, no evaluator)."""
    bench = Bench.__new__(Bench)
    bench.spec = DEMO_MODELS["digits"]
    bench.pipe = make_tiny_pipe()
    bench.steps, bench.extra = steps, {"guidance_scale": 1.0}
    bench.profile = calibrate_pipeline(bench.pipe, steps, classes=[0, 1], guidance_scale=1.0)
    bench.report = MacReport.from_profile(bench.profile)
    bench.keys = sorted({b.key for b in bench.profile.errors.values()})
    bench.branches = find_branches(bench.pipe.transformer)
    return bench


def test_methods_cover_every_branch_and_peers_count_what_they_ran():
    bench = tiny_bench()
    methods, skipped = build(bench)
    names = [m.name for m in methods]
    assert names[0] == "no cache" and "FORA N=2" in names and "every-N forecast N=3" in names
    assert any(n.startswith("SmoothCache optimal forecast") for n in names)
    fora = next(m for m in methods if m.name == "FORA N=2")
    with fora.context() as cache:
        bench.generate(bench.pipe, Method("x", "", "", bench.steps, 1.0), [0, 1], 0)
    assert set(cache.stats.by_key()) == set(bench.keys)  # FORA skips every branch type, not only attn1 / ff
    taylor = [m for m in methods if m.family == "diffusers TaylorSeer"]
    assert taylor or any("TaylorSeer" in k for k in skipped)
    for m in taylor:  # theoretical speed-up from the branch calls it really ran: between none and all skipped
        assert 1.0 < m.theoretical < bench.steps


def test_report_has_a_row_per_method_and_the_fidelity_columns():
    rows = {
        "no cache": {"steps": 30, "theoretical": 1.0, "measured": 1.0, "fid": 0.5, "class_consistency": 0.9},
        "FORA N=2": {
            "steps": 30,
            "theoretical": 1.9,
            "measured": 1.7,
            "fid": 0.6,
            "class_consistency": 0.8,
            "psnr_db": 31.25,
        },
    }
    text = report(
        {
            "video": {
                "samples": 100,
                "guidance": 2.0,
                "rounds": 1,
                "timing_samples": 20,
                "machine": "m",
                "floor": None,
                "methods": rows,
                "skipped": {"TaylorSeer N=2": "no module matches"},
            }
        }
    )
    assert "| FORA N=2 | 30 | 1.90x | 1.70x | 0.600 | 0.800 | 31.2 dB |" in text
    assert "| no cache | 30 | 1.00x | 1.00x | 0.500 | 0.900 | - |" in text
    assert "Left out TaylorSeer N=2: no module matches" in text
