"""A short run of the main job, `smoothcache demo`, on the embedded model (one run shared by the tests)."""

import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from smoothcache import Schedule
from smoothcache.cli import main
from smoothcache.zoo.demo import format_table, write_image_grid


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            ["demo", "--out", str(out), "--samples", "20", "--steps", "10", "--alpha", "0.3", "--json"]
        )
    return out, code, printed.getvalue()


def test_demo_runs_and_reports_a_cache_that_skipped_work(demo):
    parent, code, printed = demo
    assert code == 0
    out = parent / "digits"  # each model has its own subfolder: the demos do not overwrite each other
    assert os.listdir(parent) == ["digits"]
    result = json.loads(printed)
    assert result["steps"] == 10 and result["samples"] == 20
    stats = result["cache_stats"]
    computed = sum(v["computed"] for v in stats.values())
    reused = sum(v["predicted"] for v in stats.values())
    assert reused > 0 and computed + reused == 2 * 10 * 6  # 2 keys x 10 steps x 6 blocks, the last generation
    assert result["compute_fraction"]["macs"] < 1 and result["theoretical_speedup"] > 1
    assert abs(result["theoretical_speedup"] * result["compute_fraction"]["macs"] - 1) < 1e-9
    fidelity = result["fidelity"]
    assert 20 < fidelity["psnr_db"] < 200 and 0 < fidelity["ssim"] < 1  # outputs differ, but little
    assert result["metrics"]["no cache"]["class_consistency"] >= 0.9  # the model draws the requested digits
    schedule = Schedule.load(out / "schedule.json")
    assert schedule.num_steps == 10 and 0 in schedule.entries["attn1"] + schedule.entries["ff"]
    grid = out / "samples_side_by_side.png"
    assert result["model"] == "digits" and list(result["files"]["samples"]) == [str(grid)]
    for name in ("samples_side_by_side.png", "error_curves.png", "schedule.json"):
        assert str(out / name) in format_table(result)
    for name in ("samples_side_by_side.png", "error_curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    with Image.open(grid) as png:  # which side is which, in the file as in the printed table
        assert png.text["Description"].startswith("left: uncached, right: SmoothCache alpha=0.3")
    table = format_table(result)
    for row in (
        "compute fraction (MACs)",
        "theoretical speed-up",
        "measured speed-up",
        "FID (real floor",
        "class consistency",
        "PSNR vs no cache",
        "SSIM vs no cache",
        "greedy scan at alpha=0.3",
        f"{grid}  left: uncached, right: SmoothCache alpha=0.3",
    ):
        assert row in table
    assert f"{result['theoretical_speedup']:.2f}x" in table and f"{fidelity['psnr_db']:.1f} dB" in table


def test_the_image_grid_titles_both_sides(tmp_path):
    images = torch.rand(20, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    files = write_image_grid(tmp_path / "a", images, images, cached_label="SmoothCache 2.00x plan")
    ((path, what),) = files.items()
    assert what.startswith("left: uncached, right: SmoothCache 2.00x plan")
    with Image.open(path) as png:
        assert png.text["Title"] == "uncached | SmoothCache 2.00x plan" and png.text["Description"] == what
        drawn = np.asarray(png.convert("L"))
    # the title is drawn: another label changes the pixels above the samples, and only there
    (other,) = write_image_grid(tmp_path / "b", images, images, cached_label="SmoothCache 3.00x plan")
    with Image.open(other) as png:
        changed = np.argwhere(np.asarray(png.convert("L")) != drawn)
    assert changed.size and changed[:, 0].max() < drawn.shape[0] // 10
