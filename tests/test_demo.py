"""A short run of the main job: `smoothcache demo` on the embedded model."""

import json

from smoothcache.cli import main


def test_short_demo_run(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--samples", "20", "--steps", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 10 and result["samples"] == 20
    assert 0 < result["compute_fraction"]["macs"] <= 1
    assert result["theoretical_speedup"] >= 1 and result["measured_speedup"] > 0
    for variant in ("no cache", "smoothcache"):
        m = result["metrics"][variant]
        assert m["fid"] >= 0 and 0 <= m["class_consistency"] <= 1
    assert result["psnr_db"] > 20 and 0 < result["ssim"] <= 1
    for name in ("grid", "error_curves", "schedule"):
        assert (tmp_path / result["files"][name].split("/")[-1]).is_file()


def test_demo_table(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--samples", "10", "--steps", "8", "--alpha", "0.2"]) == 0
    out = capsys.readouterr().out
    for row in ("compute fraction (MACs)", "theoretical speed-up", "measured speed-up", "Digits-FID",
                "class consistency", "PSNR"):
        assert row in out
