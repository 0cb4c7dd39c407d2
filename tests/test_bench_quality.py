"""The quality benchmark's pieces: matched speed-up comparisons, result merging, method building."""

import json
import math

import pytest
import torch

from bench.matching import best_within, compare_points, front, interpolate, targets
from conftest import make_tiny_pipe

torch.set_num_threads(1)


def row(family, kind, measured, psnr, fid):
    return {"family": family, "kind": kind, "measured": measured, "psnr": psnr, "fid": fid, "steps": 50}


ROWS = {
    "no cache": row("no cache", "reference", 1.0, math.inf, 0.40),
    "ours 1.5x": row("ours", "smoothcache", 1.5, 60.0, 0.40),
    "ours 3x": row("ours", "smoothcache", 3.0, 50.0, 0.50),
    "peer A 1.4x": row("A", "peer", 1.4, 55.0, 0.41),
    "peer A 2x": row("A", "peer", 2.0, 40.0, 0.45),
    "peer A 2.2x noisy": row("A", "peer", 2.2, 39.0, 0.60),  # dominated by nothing faster: stays on the front
    "peer A 1.9x dominated": row("A", "peer", 1.9, 30.0, 0.70),  # beaten by the 2x point on both
    "peer B 2.5x": row("B", "peer", 2.5, 52.0, 0.44),
    "peer B 3.2x": row("B", "peer", 3.2, 48.0, 0.52),
}


def test_front_drops_dominated_points_and_sorts_by_speed():
    pts = [(r["measured"], r["psnr"]) for r in ROWS.values() if r["family"] == "A"]
    assert front(pts, "psnr") == [(1.4, 55.0), (2.0, 40.0), (2.2, 39.0)]
    fids = [(r["measured"], r["fid"]) for r in ROWS.values() if r["family"] == "A"]
    assert front(fids, "fid") == [(1.4, 0.41), (2.0, 0.45), (2.2, 0.60)]


def test_interpolate_inside_first_value_below_nan_above():
    curve = [(1.5, 10.0), (3.0, 30.0)]
    assert interpolate(curve, 2.25) == pytest.approx(20.0)
    assert interpolate(curve, 1.0) == 10.0  # the 1.5x point stands in for slower speed-ups
    assert math.isnan(interpolate(curve, 3.5)) and math.isnan(interpolate([], 2.0))


def test_compare_points_picks_the_best_peer_and_the_winner():
    points = {p["name"]: p for p in compare_points(ROWS)}
    low, high = points["ours 1.5x"], points["ours 3x"]
    # 1.5x: A interpolated (55 + (40-55)*0.1/0.6 = 52.5 dB) beats B's slowest point standing in (52 dB)
    assert low["psnr"]["best_peer"] == "A" and low["psnr"]["best"] == pytest.approx(52.5)
    assert low["psnr"]["win"] is True and low["psnr"]["peers"]["B"] == 52.0
    # 3x: A cannot go that fast; B (52 + (48-52)*0.5/0.7); its FID 0.44 + 0.08*0.5/0.7 < ours 0.50: B wins on
    # FID
    assert math.isnan(high["psnr"]["peers"]["A"])
    assert high["psnr"]["best_peer"] == "B" and high["psnr"]["win"] is True
    assert high["fid"]["best"] == pytest.approx(0.44 + 0.08 * 0.5 / 0.7)
    assert high["fid"]["win"] is False


def test_targets_need_two_db_and_no_worse_fid():
    found = {t["speed"]: t for t in targets(ROWS, grid=(1.5, 2.0, 3.0, 3.1, 3.5))}
    assert found[1.5]["met"] is True  # 60 vs 52.5 dB, FID 0.40 vs 0.41...
    assert found[3.0]["met"] is False  # FID worse than B's
    assert found[3.1]["met"] is False  # only a peer reaches 3.1x
    assert found[3.5]["met"] is None  # nobody reaches 3.5x
    assert found[2.0]["psnr"]["peer"] == ("B", 52.0)  # B's 2.5x point beats A at 2x


def test_best_within_tolerance():
    name, r = best_within(ROWS, 0.02)
    assert name == "ours 1.5x"
    assert best_within(ROWS, 0.30)[0] == "ours 3x"
    assert best_within(ROWS, 0.02, kind="peer") is None


def test_merge_replaces_rows_of_the_same_name_and_refuses_other_sample_counts(tmp_path):
    from bench.quality import merge

    def result(samples, names):
        return {"scheduler": "ddim", "steps": 50, "samples": samples, "timing_samples": 10,
                "methods": {n: {"fid": float(i)} for i, n in enumerate(names)}, "skipped": {"x": "why"},
                "runs": [{"date": "now"}]}

    path = tmp_path / "quality_ddim50.json"
    first = merge(path, result(100, ["no cache", "a"]), fresh=False)
    path.write_text(json.dumps(first))
    merged = merge(path, result(100, ["no cache", "b", "x"]), fresh=False)
    assert set(merged["methods"]) == {"no cache", "a", "b", "x"}
    assert merged["methods"]["a"]["run"] == 0 and merged["methods"]["b"]["run"] == 1
    assert merged["skipped"] == {} and len(merged["runs"]) == 2  # "x" now measured
    with pytest.raises(SystemExit, match="samples"):
        merge(path, result(200, ["no cache"]), fresh=False)
    assert set(merge(path, result(200, ["no cache"]), fresh=True)["methods"]) == {"no cache"}


def test_a_timing_only_run_replaces_the_speedups_and_keeps_the_metrics(tmp_path):
    from bench.quality import merge

    path = tmp_path / "quality_ddim50.json"
    saved = {"scheduler": "ddim", "steps": 50, "samples": 300, "timing_samples": 100, "skipped": {},
             "methods": {"no cache": {"fid": 0.9, "measured": 1.0, "run": 0},
                         "a": {"fid": 1.0, "psnr": 50.0, "measured": 1.2, "run": 0}},
             "runs": [{"date": "then"}]}
    path.write_text(json.dumps(saved))
    retimed = {"scheduler": "ddim", "steps": 50, "timing_samples": 50, "runs": [{"timing_only": True}],
               "methods": {"a": {**saved["methods"]["a"], "measured": 1.8, "speedups": [1.7, 1.9]}}}
    merged = merge(path, retimed, fresh=False)
    assert merged["methods"]["a"] == {
        "fid": 1.0,
        "psnr": 50.0,
        "measured": 1.8,
        "run": 0,
        "speedups": [1.7, 1.9],
    }
    assert merged["methods"]["no cache"] == saved["methods"]["no cache"] and merged["samples"] == 300
    assert merged["timing_samples"] == 50 and merged["runs"][-1] == {"timing_only": True}


def test_timing_pairs_each_method_with_nearby_no_cache_runs():
    """Load that triples during the run does not bias the speed-ups (a fake clock advanced by a fake
    pipeline)."""
    from types import SimpleNamespace

    from bench.methods import Method
    from bench.quality import time_methods

    clock = [0.0]

    class Pipe:
        calls = 0

        def __call__(self, num_inference_steps, **kwargs):
            Pipe.calls += 1
            clock[0] += num_inference_steps * (1.0 + 0.05 * Pipe.calls)  # ever slower machine
            return SimpleNamespace(images=None)

    methods = [Method("no cache", "no cache", "reference", 50, 1.0)]
    methods += [Method(f"{k} steps", "fewer steps", "baseline", k, 50 / k) for k in (40, 25, 20, 10, 5)]
    times, speedups = time_methods(
        Pipe(), methods, samples=2, rounds=2, say=lambda line: None, clock=lambda: clock[0]
    )
    for m in methods:
        assert len(speedups[m.name]) == 2
        assert speedups[m.name] == pytest.approx([m.theoretical] * 2, rel=0.03), m.name
    naive = sum(times["no cache"]) / len(times["no cache"]) / (sum(times["5 steps"]) / 2)
    assert abs(naive - 10) > 0.3  # what plain ratios of means would have reported


@pytest.fixture(scope="module")
def setting():
    from bench.methods import Setting
    from smoothcache import Calibrator, MacReport

    pipe = make_tiny_pipe()
    with Calibrator(pipe.transformer) as cal:
        pipe(class_labels=[0, 1], num_inference_steps=20, generator=torch.manual_seed(1), output_type="pt")
    return Setting(pipe, 20, 4.0, cal.profile, MacReport.from_profile(cal.profile), speedups=(1.5, 2.0, 50.0))


def test_build_methods_families_budgets_and_what_is_left_out(setting):
    from bench.methods import GROUPS, build_methods

    methods, skipped = build_methods(setting, ["fewer-steps", "fora", "every-n-forecast", "greedy-forecast"])
    names = [m.name for m in methods]
    assert names[0] == "no cache" and len(set(names)) == len(names)
    assert {m.family for m in methods} == {
        GROUPS[g][0] for g in ("no-cache", "fewer-steps", "fora", "every-n-forecast", "greedy-forecast")
    }
    greedy = [m for m in methods if m.family == GROUPS["greedy-forecast"][0]]
    assert [m.info["target_speedup"] for m in greedy] == [1.5, 2.0]
    assert all(m.theoretical >= m.info["target_speedup"] - 1e-6 for m in greedy)
    assert any("50x" in what for what in skipped)  # out of reach: recorded, not fatal
    forecast = [m for m in methods if m.family == GROUPS["every-n-forecast"][0]]
    with forecast[0].context() as cache:
        assert cache.schedule.predictor == "linear"
    with pytest.raises(ValueError, match="unknown method groups"):
        build_methods(setting, ["no-such-group"])
