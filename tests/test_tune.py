"""``smoothcache.tune`` and ``smoothcache tune``: a sweep of budgets measured on held-out inputs, the fastest
one meeting a fidelity target, the report folder (all or nothing), and a clear message for each bad input."""

import json
import math
import sys

import pytest
import torch

import smoothcache
from conftest import REPO
from smoothcache import Schedule, tuning_report
from smoothcache.cli import main
from smoothcache.errors import TargetNotMetError
from smoothcache.fidelity import psnr
from smoothcache.tuning import sweep
from smoothcache.tuning_result import TuneResult

STEPS = 8
LABELS = [0, 1, 2, 3]
INPUTS = [{"class_labels": LABELS}]


@pytest.fixture(scope="module")
def pipe():
    from smoothcache import zoo

    return zoo.digits_pipeline()


@pytest.fixture(scope="module")
def result(pipe):
    return smoothcache.tune(pipe, INPUTS, held_out=2, steps=STEPS, points=3, cost="macs", progress=False,
                            target={"min_psnr": 20}, name="digits")


def _generate(pipe, seed):
    return pipe(class_labels=LABELS, num_inference_steps=STEPS, output_type="np",
                generator=torch.Generator().manual_seed(seed)).images


# ------------------------------------------------------------------------------------------------ the run
def test_every_budget_is_planned_and_measured_on_held_out_seeds(result):
    table = result.table
    assert result.kind == "image" and result.figures == ("psnr_db", "ssim")
    assert [row["speedup"] for row in table] == sorted(result.schedules) and len(table) >= 2
    assert table[0]["speedup"] == 1.5 and table[-1]["speedup"] <= result.info["reachable_speedup"]
    for row in table:
        assert row["planned_speedup_macs"] >= row["speedup"] * 0.98  # cost="macs": planned in MACs
        assert row["measured_speedup"] > 0 and row["seconds"] > 0
        assert row["psnr_db_worst"] <= row["psnr_db"] and row["ssim_worst"] <= row["ssim"] <= 1.0
        assert math.isfinite(row["psnr_db"])
    calibration = {g["seed"] for g in result.info["calibration"]}
    held = [g["seed"] for g in result.info["held_out"]]
    assert len(held) == 2 and not calibration & set(held)
    assert result.info["held_out_samples"] == 2 * len(LABELS)
    assert "tensor" not in repr(result) and repr(result).startswith("TuneResult(image, ")


def test_the_figures_are_the_fidelity_of_each_schedule_on_the_held_out_seeds(pipe, result):
    row = result.table[-1]
    schedule = result.schedules[row["speedup"]]
    values = []
    for generation in result.info["held_out"]:
        uncached = _generate(pipe, generation["seed"])
        with smoothcache.SmoothCache(pipe.transformer, schedule):
            cached = _generate(pipe, generation["seed"])
        values.append(psnr(torch.from_numpy(uncached).permute(0, 3, 1, 2),
                           torch.from_numpy(cached).permute(0, 3, 1, 2), reduction="none"))
    values = torch.cat(values)
    assert row["psnr_db"] == pytest.approx(float(values.mean()), abs=1e-6)
    assert row["psnr_db_worst"] == pytest.approx(float(values.min()), abs=1e-6)


def test_the_model_is_restored_after_a_run_and_after_a_failed_one(pipe, result):
    before = _generate(pipe, 5)
    with pytest.raises(ValueError, match=r"out of reach: the largest these calibration tables allow is \d"):
        smoothcache.tune(pipe, INPUTS, held_out=1, steps=STEPS, speedups=[50], progress=False)
    assert (_generate(pipe, 5) == before).all()
    with smoothcache.Calibrator(pipe.transformer):  # nothing left wrapping the model
        pass


def test_one_progress_bar_counts_every_denoising_step(pipe, capsys):
    smoothcache.tune(pipe, INPUTS, held_out=1, steps=STEPS, speedups=[1.5, 2.0], cost="macs")
    # 1 calibration + 1 held-out x (uncached + 2 budgets) generations of STEPS steps
    assert f"{4 * STEPS}/{4 * STEPS}" in capsys.readouterr().err


def test_any_dit_pipeline_tunes_and_its_report_is_refused_by_check_tune(tmp_path, capsys):
    from conftest import make_tiny_pipe

    tiny = make_tiny_pipe()
    result = smoothcache.tune(tiny, [{"class_labels": [7, 300]}], held_out=1, steps=6, speedups=[1.2, 1.5],
                              cost="macs", progress=False, target={"min_ssim": 0})
    assert result.kind == "image" and len(result.table) == 2 and result.info["held_out_samples"] == 2
    assert result.info["name"] == "DiTPipeline" and result.chosen.speedup == 1.5
    folder = result.save(tmp_path / "report")
    assert (folder / "schedule.json").is_file()
    assert _check_tune().main([str(folder)]) == 2
    assert "written by the Python API" in capsys.readouterr().err


def _check_tune():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import check_tune
    finally:
        sys.path.pop(0)
    return check_tune


def test_the_default_sweep_spans_1_5x_to_the_largest_reachable():
    assert sweep(3.607, 6) == [1.5, 1.92, 2.34, 2.76, 3.18, 3.6]
    assert sweep(1.3, 3) == [1.1, 1.2, 1.3]  # less than 1.5x reachable: below it
    assert sweep(2.0, 1) == [2.0]
    with pytest.raises(ValueError, match="reach no speed-up"):
        sweep(1.004)


def test_default_held_out_inputs_take_new_seeds_above_every_calibration_seed():
    from smoothcache.tuning_inputs import generations, held_out_generations

    calibration = generations([{"class_labels": [1]}, {"class_labels": [2], "seed": 10_000}], "inputs", 0)
    assert calibration == [({"class_labels": [1]}, 0), ({"class_labels": [2]}, 10_000)]
    held = held_out_generations(3, calibration, 0)
    assert [seed for _, seed in held] == [10_001, 10_002, 10_003]
    assert [kwargs["class_labels"] for kwargs, _ in held] == [[1], [2], [1]]


# ------------------------------------------------------------------------------------------------ best()
def _made_up(rows, kind="image", target=None):
    figures = {"image": ("psnr_db", "ssim"), "audio": ("lsd_db", "snr_db")}[kind]
    table = []
    for speedup, measured, *values in rows:
        row = {"speedup": speedup, "planned_speedup_time": speedup, "planned_speedup_macs": speedup,
               "measured_speedup": measured, "seconds": 1.0}
        for figure, value in zip(figures, values):
            row[figure], row[f"{figure}_worst"] = value, value - 3 if figure != "lsd_db" else value + 1
        table.append(row)
    schedules = {row["speedup"]: Schedule.full(10, ["attn1"]) for row in table}
    return TuneResult(kind, table, schedules, profile=None, target=target or {}, info={"held_out_samples": 8})


def test_best_is_the_fastest_budget_whose_mean_meets_the_target():
    result = _made_up([(1.5, 1.4, 45.0, 0.99), (2.0, 1.9, 41.0, 0.98), (2.5, 2.3, 38.0, 0.97),
                       (3.0, 2.2, 36.0, 0.95)])
    assert result.best(min_psnr=40).speedup == 2.0
    assert result.best(min_psnr=37).speedup == 2.5
    assert result.best(min_psnr=40, min_ssim=0.985).speedup == 1.5  # every target must hold
    assert result.best(min_psnr=20).speedup == 3.0  # the largest budget, though measured a little slower
    audio = _made_up([(1.5, 1.5, 1.2, 20.0), (2.0, 2.0, 2.5, 15.0)], kind="audio", target={"max_lsd": 2})
    assert audio.best().speedup == 1.5 and audio.chosen.speedup == 1.5
    assert audio.best(max_lsd=3).schedule is audio.schedules[2.0]


def test_a_target_no_budget_reaches_names_the_best_reached():
    result = _made_up([(1.5, 1.4, 45.0, 0.99), (2.0, 1.9, 41.0, 0.98)], target={"min_psnr": 50})
    with pytest.raises(TargetNotMetError, match=r"PSNR >= 50.00 dB.*best reached is 45.00 dB at 1.50x") as e:
        result.best()
    assert e.value.best == {"min_psnr": (45.0, 1.5)}
    assert result.chosen is None and "no budget meets" in repr(result)


def test_best_refuses_a_figure_the_output_is_not_measured_by_and_no_target():
    result = _made_up([(1.5, 1.4, 45.0, 0.99)])
    with pytest.raises(ValueError, match="outputs image.*max_lsd does not apply; use min_psnr, min_ssim"):
        result.best(max_lsd=2)
    with pytest.raises(ValueError, match="give a fidelity target"):
        result.best()


# ------------------------------------------------------------------------------------------------ report
def test_the_report_folder_holds_every_file(result, tmp_path):
    folder = result.save(tmp_path / "report")
    names = {p.name for p in folder.iterdir()}
    budgets = [f"schedule_{s:.2f}x.json" for s in result.schedules]
    assert {"report.md", "report.json", "pareto.png", "samples.png", "schedule.json",
            "calibration.safetensors", *budgets} == names
    for name in ("pareto.png", "samples.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for speedup, schedule in result.schedules.items():
        assert Schedule.load(folder / f"schedule_{speedup:.2f}x.json") == schedule
    assert Schedule.load(folder / "schedule.json") == result.chosen.schedule
    data = json.loads((folder / "report.json").read_text())
    assert data["kind"] == "image" and data["meets"] == "the mean over the held-out samples"
    assert [r["speedup"] for r in data["table"]] == [r["speedup"] for r in result.table]
    assert data["chosen"]["speedup"] == result.chosen.speedup
    text = (folder / "report.md").read_text()
    assert result.markdown() in text and "![Pareto plot" in text and "## What the figures mean" in text
    assert "**chosen**" in text and "PSNR mean | PSNR worst" in text
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left


def test_an_existing_folder_is_refused_unless_overwrite(result, tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="exists: choose another folder, or overwrite it"):
        result.save(folder)
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    result.save(folder, overwrite=True)
    assert not (folder / "mine.txt").exists() and (folder / "report.md").is_file()


def test_nothing_is_half_written_when_writing_fails(result, tmp_path, monkeypatch):
    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(tuning_report, "_write_samples", broken)
    with pytest.raises(OSError, match="disk full"):
        result.save(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / "old"
    old.mkdir()
    (old / "mine.txt").write_text("keep")
    with pytest.raises(OSError, match="disk full"):
        result.save(old, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["old"] and (old / "mine.txt").read_text() == "keep"


# ------------------------------------------------------------------------------------------------ bad input
class _TextOutput:
    """A pipeline whose output is text, not images, video or audio."""

    def __init__(self, pipe):
        self.transformer, self._pipe = pipe.transformer, pipe

    def __call__(self, **kwargs):
        self._pipe(**kwargs)
        return {"text": ["a digit"]}


class _TwoDenoisers:
    def __init__(self, pipe):
        self.transformer, self.transformer_2 = pipe.transformer, torch.nn.Linear(2, 2)

    def __call__(self, **kwargs):  # pragma: no cover - refused before any call
        raise AssertionError


@pytest.mark.parametrize("make, error, match", [
    (lambda p: object(), TypeError, "object is not a pipeline tune can run"),
    (lambda p: p.transformer, TypeError, "tune needs the pipeline, got the model"),
    (_TwoDenoisers, ValueError, r"several denoisers \(transformer, transformer_2\)"),
])
def test_what_is_not_a_pipeline_it_can_tune_is_refused(pipe, make, error, match):
    with pytest.raises(error, match=match):
        smoothcache.tune(make(pipe), INPUTS, progress=False)


@pytest.mark.parametrize("inputs, held_out, options, error, match", [
    ([], None, {}, ValueError, "no inputs: give at least one dict"),
    ("a cat", None, {}, TypeError, "inputs must be a list of dicts"),
    ([[0, 1]], None, {}, TypeError, r"inputs\[0\] must be a dict"),
    ([{"class_labels": [0], "generator": torch.Generator()}], None, {}, ValueError, "give a 'seed' instead"),
    (INPUTS, [{"class_labels": LABELS, "seed": 0}], {}, ValueError, r"held_out\[0\] is inputs\[0\]"),
    (INPUTS, [], {}, ValueError, "no held_out"),
    (INPUTS, None, {"speedups": [0.8, 2]}, ValueError, "speed-ups must be above 1.*got 0.8"),
    (INPUTS, None, {"speedups": []}, ValueError, "speedups is empty"),
    (INPUTS, None, {"target": {"min_fid": 3}}, ValueError, "unknown fidelity target 'min_fid'"),
    ([{"class_labels": [0], "num_inference_steps": 4}, {"class_labels": [1], "num_inference_steps": 6}], None,
     {"steps": None}, ValueError, r"different num_inference_steps \[4, 6\]"),
])
def test_bad_inputs_are_refused_before_generating(pipe, inputs, held_out, options, error, match):
    options = {"steps": STEPS, **options}
    with pytest.raises(error, match=match):
        smoothcache.tune(pipe, inputs, held_out, progress=False, **options)


def test_outputs_that_are_not_images_video_or_audio_are_refused_after_the_first_generation(pipe):
    before = _generate(pipe, 5)
    with pytest.raises(TypeError, match="returned dict, not images, video frames or audio"):
        smoothcache.tune(_TextOutput(pipe), INPUTS, steps=STEPS, progress=False)
    assert (_generate(pipe, 5) == before).all()


def test_a_target_on_a_figure_the_output_has_not_is_refused_after_the_first_generation(pipe):
    with pytest.raises(ValueError, match="outputs image.*max_lsd does not apply"):
        smoothcache.tune(pipe, INPUTS, steps=STEPS, target={"max_lsd": 2}, progress=False)


# ------------------------------------------------------------------------------------------------ the command
def _tune(capsys, *argv):
    code = main(["tune", "digits", "--steps", str(STEPS), "--classes", "0", "1", "--held-out", "1",
                 "--threads", "1", *argv])
    return code, capsys.readouterr()


@pytest.mark.parametrize("argv, match", [
    (["--speedups", "0.5,2"], "--speedups must be finite speed-ups above 1.*got 0.5"),
    (["--speedups", "fast"], "--speedups must be comma-separated speed-ups above 1"),
    (["--speedups", "50"], r"out of reach: the largest these calibration tables allow is \d"),
    (["--max-lsd", "2"], "outputs image.*max_lsd does not apply"),
    (["--held-out", "0"], "--held-out must be an integer >= 1"),
    (["--calibration-inputs", "0"], "--calibration-inputs must be an integer >= 1"),
])
def test_command_errors_name_the_problem_and_write_nothing(capsys, tmp_path, argv, match):
    code, out = _tune(capsys, "--out", str(tmp_path / "r"), *argv)
    assert code == 2 and "smoothcache tune: error: " in out.err
    assert __import__("re").search(match, out.err), out.err
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_an_unknown_pipeline_and_an_existing_folder(capsys, tmp_path):
    assert main(["tune", "nonsense", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown pipeline 'nonsense': give a shipped model (digits, audio, video)" in err
    assert main(["tune", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "no pipeline folder at" in capsys.readouterr().err
    (tmp_path / "r").mkdir()
    assert main(["tune", "digits", "--out", str(tmp_path / "r")]) == 2
    assert "exists: choose another folder, or pass --overwrite" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert main(["tune", "digits", "--out", str(tmp_path / "f"), "--overwrite"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_the_command_writes_the_report_and_the_chosen_schedule_that_check_tune_checks(capsys, tmp_path):
    folder = tmp_path / "report"
    code, out = _tune(capsys, "--out", str(folder), "--points", "2", "--min-psnr", "10")
    assert code == 0, out.err
    assert "| budget | planned (time) |" in out.out and f"{folder / 'schedule.json'}" in out.out
    data = json.loads((folder / "report.json").read_text())
    assert data["info"]["command"]["model"] == "digits" and data["chosen"] is not None
    check_tune = _check_tune()
    assert check_tune.main([str(folder), "--tolerance", "1000", "--threads", "1"]) == 0
    assert "new inputs" in capsys.readouterr().out
    assert check_tune.main([str(folder), "--tolerance", "0", "--threads", "1"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_the_command_reports_a_target_no_budget_reaches(capsys, tmp_path):
    folder = tmp_path / "report"
    code, out = _tune(capsys, "--out", str(folder), "--speedups", "1.5", "--min-psnr", "1000")
    assert code == 1
    assert "no budget meets PSNR >= 1000.00 dB" in out.err and "best reached is" in out.err
    assert (folder / "report.md").is_file() and not (folder / "schedule.json").exists()
    assert "Target not met" in (folder / "report.md").read_text()
