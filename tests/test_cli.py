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
    result = subprocess.run(
        [sys.executable, "-m", "smoothcache.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in ("calibrate", "schedule", "plot", "demo"):
        assert command in result.stdout


def test_the_shipped_model_calibrates_by_name_and_by_folder(tmp_path, capsys):
    from smoothcache.zoo import DIGITS_DIR

    for model in ("digits", str(DIGITS_DIR)):
        out = tmp_path / "digits.safetensors"
        assert main(["calibrate", model, "--steps", "6", "--classes", "3", "--out", str(out)]) == 0
        profile = CalibrationProfile.load(out)
        assert (
            profile.num_steps == 6
            and profile.keys == ["attn1", "ff"]
            and profile.model == "DiTTransformer2DModel"
        )
    assert "predictors ['reuse', 'linear']" in capsys.readouterr().out


@pytest.mark.parametrize(
    "model,keys", [("audio", ["attn1", "attn2", "ff"]), ("video", ["attn1", "attn2", "ff"])]
)
def test_the_shipped_audio_and_video_models_calibrate_by_name(model, keys, tmp_path, capsys):
    out = tmp_path / f"{model}.safetensors"
    assert main(["calibrate", model, "--steps", "4", "--classes", "3", "--out", str(out)]) == 0
    profile = CalibrationProfile.load(out)
    assert profile.num_steps == 4 and sorted(profile.keys) == keys
    assert main(["calibrate", model, "--classes", "10", "--steps", "4", "--out", str(out)]) == 2
    assert "class id(s) [10] are not classes of this model (valid: 0..9)" in capsys.readouterr().err


def test_calibrate_errors_name_the_problem(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path / "no_such_dir"), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "no pipeline folder at" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "has no model_index.json" in capsys.readouterr().err
    assert (
        main(["calibrate", "digits", "--classes", "5000", "--steps", "4", "--out", str(tmp_path / "x.st")])
        == 2
    )
    assert "class id(s) [5000] are not classes of this model (valid: 0..9)" in capsys.readouterr().err


def test_schedule_for_a_budget_another_step_count_and_a_forecast(pipe_folder, tmp_path, capsys):
    profile_path = tmp_path / "profile.safetensors"
    assert (
        main(["calibrate", str(pipe_folder), "--steps", "12", "--classes", "1", "--out", str(profile_path)])
        == 0
    )
    profile = CalibrationProfile.load(profile_path)
    capsys.readouterr()

    out = tmp_path / "s.json"
    assert main(["schedule", str(profile_path), "--speedup", "1.5", "--cost", "macs", "--out", str(out)]) == 0
    assert Schedule.load(out) == Schedule.for_budget(
        profile, speedup=1.5, cost="macs"
    )  # the recommended mode
    assert Schedule.load(out).predictor in ("linear", "mixed")  # each skip run its best predictor
    assert (
        main(
            [
                "schedule",
                str(profile_path),
                "--speedup",
                "1.5",
                "--predictor",
                "reuse",
                "--planner",
                "greedy",
                "--cost",
                "macs",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    expected = Schedule.for_budget(profile, speedup=1.5, predictor="reuse", planner="greedy", cost="macs")
    assert Schedule.load(out) == expected
    assert (
        main(
            [
                "schedule",
                str(profile_path),
                "--compute-fraction",
                "0.7",
                "--steps",
                "8",
                "--predictor",
                "linear",
                "--cost",
                "macs",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    written = Schedule.load(out)
    assert written.num_steps == 8 and written.predictor == "linear"
    assert written == Schedule.for_budget(
        profile, compute_fraction=0.7, num_steps=8, predictor="linear", cost="macs"
    )
    assert "predictor linear" in capsys.readouterr().out

    assert main(["schedule", str(profile_path), "--out", str(out)]) == 2
    assert "give exactly one of --alpha, --speedup or --compute-fraction" in capsys.readouterr().err
    assert (
        main(["schedule", str(profile_path), "--alpha", "0.1", "--planner", "optimal", "--out", str(out)])
        == 2
    )
    assert "--planner optimal plans for a budget" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys):
    import smoothcache

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"smoothcache {smoothcache.__version__}"


def test_calibrate_defaults_to_the_models_own_classes(pipe_folder, tmp_path, capsys):
    from smoothcache.zoo import DIGITS_DIR

    out = tmp_path / "p.safetensors"
    for model in ("digits", str(DIGITS_DIR)):  # a shipped model: its ten classes, not ImageNet ids
        assert main(["calibrate", model, "--steps", "2", "--out", str(out)]) == 0
        assert "(1 runs x 10 classes, 2 steps" in capsys.readouterr().out
    assert main(["calibrate", str(pipe_folder), "--steps", "2", "--out", str(out)]) == 0  # any other DiT
    assert "(1 runs x 3 classes, 2 steps" in capsys.readouterr().out


def test_calibrate_shows_progress_per_denoising_step(tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    assert (
        main(["calibrate", "digits", "--steps", "3", "--runs", "2", "--classes", "1", "--out", str(out)]) == 0
    )
    bar = capsys.readouterr().err.replace("\r", "\n")
    assert "calibrating: 100%" in bar and "6/6" in bar and "step" in bar and "run 2/2" in bar


class _Bar:
    def __init__(self):
        self.n = 0
        self.updates = []

    def update(self, n=1):
        self.n += n
        self.updates.append(n)


class _CallbackPipe:
    def __call__(self, steps, callback_on_step_end=None):
        for i in range(steps):
            callback_on_step_end(self, i, 1000 - i, {})


class _LoopPipe:
    def progress_bar(self, iterable=None, total=None):
        return iterable

    def __call__(self, steps):
        for _ in self.progress_bar(range(steps)):
            pass


class _OpaquePipe:
    def __call__(self, steps):
        pass


@pytest.mark.parametrize(
    "pipe,updates", [(_CallbackPipe(), [1, 1, 1] * 2), (_LoopPipe(), [1, 1, 1] * 2), (_OpaquePipe(), [3, 3])]
)
def test_step_progress_counts_steps_where_it_can_and_runs_otherwise(pipe, updates):
    from smoothcache.cli import StepProgress

    bar = _Bar()
    with StepProgress(pipe, bar, steps=3) as progress:
        for _ in range(2):
            pipe(3, **progress.call_kwargs)
            progress.end_call()
    assert bar.updates == updates and bar.n == 6
    assert "progress_bar" not in vars(pipe)  # the pipeline is left as it was


def test_step_progress_advances_during_a_digits_generation():
    from smoothcache.cli import StepProgress
    from smoothcache.zoo import digits_pipeline

    pipe = digits_pipeline()
    bar, seen = _Bar(), []
    handle = pipe.transformer.register_forward_pre_hook(lambda module, args: seen.append(bar.n))
    try:
        with StepProgress(pipe, bar, steps=4) as progress:
            pipe(class_labels=[1], num_inference_steps=4, output_type="np", **progress.call_kwargs)
            progress.end_call()
    finally:
        handle.remove()
    assert seen == [0, 1, 2, 3] and bar.n == 4  # one update after each step, not one at the end
    assert "progress_bar" not in vars(pipe)
