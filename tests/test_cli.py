import subprocess
import sys

import pytest

from conftest import make_tiny_pipe
from smoothcache import CalibrationProfile, Schedule
from smoothcache.cli import main


@pytest.fixture(scope="module")
def pipe_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-dit")
    make_tiny_pipe().save_pretrained(folder)
    return folder


def test_calibrate_schedule_plot(pipe_folder, tmp_path, capsys):
    profile_path = tmp_path / "profile.safetensors"
    assert main(["calibrate", str(pipe_folder), "--steps", "12", "--classes", "1", "2", "--runs", "2",
                 "--scheduler", "ddim", "--out", str(profile_path), "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "2 runs x 2 classes, 12 steps" in out and (tmp_path / "c.png").is_file()
    profile = CalibrationProfile.load(profile_path)
    assert profile.runs == 2 and profile.keys == ["attn1", "ff"]

    schedule_path = tmp_path / "schedule.json"
    assert main(["schedule", str(profile_path), "--alpha", "0.5", "--out", str(schedule_path)]) == 0
    out = capsys.readouterr().out
    assert "theoretical speed-up" in out and "attn1" in out
    schedule = Schedule.load(schedule_path)
    assert schedule == Schedule.from_profile(profile, 0.5)

    assert main(["schedule", str(profile_path), "--alpha", "0.5", "--per-block",
                 "--out", str(tmp_path / "pb.json")]) == 0
    assert "per-block keys" in capsys.readouterr().out
    assert Schedule.load(tmp_path / "pb.json").block_indices("attn1") == [0, 1, 2]

    assert main(["plot", str(profile_path), "--out", str(tmp_path / "p.png"), "--alpha", "0.5"]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["schedule", str(tmp_path / "nope.safetensors"), "--alpha", "0.1", "--out", "x.json"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "p.safetensors").write_bytes(b"garbage")
    assert main(["plot", str(tmp_path / "p.safetensors"), "--out", str(tmp_path / "x.png")]) == 2
    assert "is not a calibration profile" in capsys.readouterr().err


def test_console_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "smoothcache.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("calibrate", "schedule", "plot", "demo"):
        assert command in result.stdout
