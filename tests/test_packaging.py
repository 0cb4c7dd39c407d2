"""The built wheel carries every subpackage and the embedded model (the original's wheel lacked its
calibration package)."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_all_modules_and_model_files(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(REPO)], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("smoothcache_dit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(REPO / "src").as_posix() for p in (REPO / "src" / "smoothcache").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    for data in ("smoothcache/zoo/digits/model_index.json",
                 "smoothcache/zoo/digits/transformer/diffusion_pytorch_model.safetensors",
                 "smoothcache/zoo/digits/README.md",
                 "smoothcache/zoo/digits_features/model.safetensors",
                 "smoothcache/zoo/digits_features/reference_stats.npz"):
        assert data in names, data
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "smoothcache = smoothcache.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
