"""Property-based tests of the command line's arguments: ``smoothcache calibrate / schedule / plot / demo``
with bad numbers, missing files and files of the wrong kind exit with code 2 and a message naming the option
or the file, never a traceback, and before anything slow starts (no calibration, training or plotting
runs)."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fuzzing import check_message, fuzz
from smoothcache import CalibrationProfile, Schedule, ScheduleError
from smoothcache.cli import main
from smoothcache.profile import BranchErrors

K, T = 3, 10
NUMBERS = (
    st.sampled_from(
        [
            "0",
            "1",
            "2",
            "3",
            "-1",
            "8",
            "0.08",
            "0.5",
            "1.5",
            "100",
            "1e999",
            "-1e999",
            "nan",
            "inf",
            "-inf",
            "abc",
            "",
            "1_0",
            " 3 ",
            "10000",
            "10001",
            "99999999999999999999",
            "1.0",
            "1e-9",
        ]
    )
    | st.integers(-5, 20).map(str)
    | st.floats(-2, 20).map(repr)
)


def run(argv: list[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``smoothcache ARGV`` (argparse's own errors exit via SystemExit)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    stderr = err.getvalue()
    assert "Traceback" not in stderr, stderr
    if code != 0:
        assert stderr.strip(), f"exit code {code} without a message"
    return code, out.getvalue(), stderr


def number(text: str, kind: type, low: float, high: float = math.inf) -> bool:
    """Whether ``text`` is a valid value of an option of this kind and range (the specification)."""
    try:
        value = kind(text)
    except ValueError:
        return False
    return math.isfinite(value) and low <= value <= high


def check_invalid(code: int, stderr: str, invalid: list[str]) -> None:
    assert code == 2, (code, stderr)
    assert any(option in stderr for option in invalid), f"{stderr!r} names none of {invalid}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-cli")


@pytest.fixture(scope="module")
def profile_path(folder) -> Path:
    rng = np.random.default_rng(0)
    profile = CalibrationProfile(K, T, runs=1, model="DiTTransformer2DModel")
    for block in range(2):
        for key in ("attn1", "ff"):
            branch = BranchErrors.empty(key, block, K, T, ("reuse", "linear"))
            for sums in branch.tables.values():
                sums.count[...] = 1
                sums.total[...] = rng.random(sums.total.shape) * 0.3
                sums.total_sq[...] = sums.total**2
            profile.errors[f"transformer_blocks.{block}.{key}"] = branch
    profile.macs = {"total": 1e6, **{path: 2e5 for path in profile.errors}}
    return profile.save(folder / "profile.safetensors")


@pytest.fixture(scope="module")
def files(folder, profile_path) -> dict[str, Path]:
    """One file of each kind a user might pass by mistake."""
    kinds = {
        "profile": profile_path,
        "missing": folder / "missing.safetensors",
        "folder": folder / "a-folder",
    }
    kinds["folder"].mkdir(exist_ok=True)
    for name, content in (
        ("schedule", json.dumps({"attn1": [1, 0, 1]}).encode()),
        ("empty", b""),
        ("png", b"\x89PNG\r\n\x1a\n" + bytes(40)),
        ("garbage", bytes(range(256))),
    ):
        kinds[name] = folder / f"{name}.safetensors"
        kinds[name].write_bytes(content)
    return kinds


def options(**choices) -> st.SearchStrategy[dict[str, str]]:
    """Some of the options, each with a value from NUMBERS."""
    return st.fixed_dictionaries({}, optional={option: NUMBERS for option in choices})


@pytest.fixture(scope="module")
def imported(folder) -> None:
    """The calibrate command once, so that its imports (torch, diffusers) are not timed in an example."""
    run(["calibrate", str(folder / "no-such-model") + "/", "--out", str(folder / "p.safetensors")])


@fuzz()
@given(values=options(steps=1, runs=1, lookahead=1, seed=1, guidance=1), out_is_folder=st.booleans())
@example(values={"runs": "0"}, out_is_folder=False)
@example(values={"steps": "0"}, out_is_folder=False)
@example(values={"lookahead": "0"}, out_is_folder=False)
def test_calibrate_checks_its_arguments_before_loading_anything(folder, imported, values, out_is_folder):
    out = folder / ("a-folder" if out_is_folder else "p.safetensors")
    (folder / "a-folder").mkdir(exist_ok=True)
    argv = ["calibrate", str(folder / "no-such-model") + "/", "--out", str(out)]
    argv += [f"--{name}={value}" for name, value in values.items()]
    code, _, stderr = run(argv)
    steps, runs = values.get("steps", "50"), values.get("runs", "1")
    valid = {
        "--steps": number(steps, int, 2, 10_000),
        "--runs": number(runs, int, 1),
        "--lookahead": number(values.get("lookahead", "3"), int, 1),
        "--seed": number(values.get("seed", "0"), int, 0, 2**64 - (int(runs) if number(runs, int, 1) else 1)),
        "--guidance": number(values.get("guidance", "4"), float, -math.inf),
        "--out": not out_is_folder,
    }
    invalid = [option for option, ok in valid.items() if not ok]
    if invalid:
        check_invalid(code, stderr, invalid)
    else:  # every argument is fine: the command got as far as looking for the model
        assert code == 2 and "no pipeline folder at" in stderr, stderr


@fuzz()
@given(
    values=options(alpha=1, speedup=1, compute_fraction=1, steps=1, lookahead=1),
    predictor=st.sampled_from([None, "reuse", "linear"]),
    per_block=st.booleans(),
)
@example(values={"alpha": "8"}, predictor=None, per_block=False)
@example(values={"alpha": "0.08"}, predictor=None, per_block=False)
def test_schedule_checks_its_arguments(folder, profile_path, values, predictor, per_block):
    out = folder / "s.json"
    out.unlink(missing_ok=True)
    argv = ["schedule", str(profile_path), "--out", str(out)]
    argv += [f"--{name.replace('_', '-')}={value}" for name, value in values.items()]
    argv += (["--predictor", predictor] if predictor else []) + (["--per-block"] if per_block else [])
    code, _, stderr = run(argv)
    valid = {
        "--alpha": number(values.get("alpha", "0"), float, 0, 1),
        "--speedup": number(values.get("speedup", "1"), float, 1),
        "--compute-fraction": number(values.get("compute_fraction", "1"), float, 0, 1)
        and float(values.get("compute_fraction", "1")) > 0,
        "--steps": number(values.get("steps", "10"), int, 2, 10_000),
        "--lookahead": number(values.get("lookahead", "1"), int, 1),
    }
    invalid = [option for option, ok in valid.items() if not ok]
    budgets = [name for name in ("alpha", "speedup", "compute_fraction") if name in values]
    if invalid:
        check_invalid(code, stderr, invalid)
    elif len(budgets) != 1:
        assert code == 2 and "give exactly one of --alpha, --speedup or --compute-fraction" in stderr
    elif code == 0:
        schedule = Schedule.load(out)
        assert schedule.num_steps == int(values.get("steps", T))
    else:  # a budget out of reach, or a lookahead beyond the calibration's
        assert budgets != ["alpha"] or int(values.get("lookahead", K)) > K, stderr
        assert code == 2 and ("lookahead" in stderr or "reach" in stderr), stderr


@fuzz()
@given(
    kind=st.sampled_from(["profile", "schedule", "missing", "folder", "empty", "png", "garbage"]),
    command=st.sampled_from(["schedule", "plot"]),
)
def test_wrong_kinds_of_file_name_the_file(files, folder, kind, command, monkeypatch_plot):
    path = files[kind]
    out = folder / ("s.json" if command == "schedule" else "p.png")
    code, _, stderr = run([command, str(path), "--out", str(out), "--alpha", "0.1"])
    if kind == "profile":
        assert code == 0, stderr
    else:
        check_invalid(code, stderr, [str(path)])
    if kind == "schedule":
        assert "schedule JSON, not a calibration profile" in stderr


@pytest.fixture(scope="module")
def monkeypatch_plot():
    """plot_profile replaced by a stub: these tests check arguments, not drawing."""
    from smoothcache.zoo import plot

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plot, "plot_profile", lambda profile, out, alpha=None: Path(out))
        yield


@fuzz()
@given(values=options(alpha=1))
@example(values={"alpha": "8"})
def test_plot_checks_its_threshold(profile_path, folder, values, monkeypatch_plot):
    code, out, stderr = run(
        ["plot", str(profile_path), "--out", str(folder / "p.png")]
        + [f"--alpha={value}" for value in values.values()]
    )
    if "alpha" in values and not number(values["alpha"], float, 0, 1):
        check_invalid(code, stderr, ["--alpha"])
    else:
        assert code == 0 and "error curves:" in out, stderr


@pytest.fixture(scope="module")
def demo_calls():
    """run_demo replaced by a stub recording its arguments: no model is trained or sampled here."""
    from smoothcache.zoo import demo

    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "run_demo", lambda **kwargs: calls.append(kwargs) or {})
        yield calls


@fuzz()
@given(
    values=options(alpha=1, speedup=1, samples=1, steps=1),
    out_kind=st.sampled_from(["new", "folder", "file"]),
)
@example(values={"alpha": "8"}, out_kind="new")
@example(values={"steps": "0"}, out_kind="new")
def test_demo_checks_its_arguments_before_running(folder, demo_calls, values, out_kind):
    out = {"new": folder / "demo-out", "folder": folder / "a-folder", "file": folder / "a-file"}[out_kind]
    (folder / "a-folder").mkdir(exist_ok=True)
    (folder / "a-file").write_text("x")
    demo_calls.clear()
    code, _, stderr = run(
        ["demo", "--json", "--out", str(out)] + [f"--{name}={value}" for name, value in values.items()]
    )
    valid = {
        "--alpha": number(values.get("alpha", "0.1"), float, 0, 1),
        "--speedup": number(values.get("speedup", "2"), float, 1),
        "--samples": number(values.get("samples", "1"), int, 1),
        "--steps": number(values.get("steps", "10"), int, 2, 10_000),
        "--out": out_kind != "file",
    }
    invalid = [option for option, ok in valid.items() if not ok]
    if invalid:
        check_invalid(code, stderr, invalid)
        assert not demo_calls
    elif "alpha" in values and "speedup" in values:
        assert code == 2 and "not both" in stderr and not demo_calls
    else:
        assert code == 0 and len(demo_calls) == 1, stderr
        assert demo_calls[0]["steps"] == (int(values["steps"]) if "steps" in values else None)


def test_calibrate_runs_0_names_the_option(folder):
    code, _, stderr = run(["calibrate", "digits", "--runs", "0", "--out", str(folder / "p.safetensors")])
    assert code == 2 and "--runs must be an integer >= 1, got 0" in stderr


def test_a_percentage_given_as_alpha_is_refused_alike_by_the_api_and_the_cli(folder, profile_path):
    profile = CalibrationProfile.load(profile_path)
    with pytest.raises(ScheduleError) as info:
        Schedule.from_profile(profile, alpha=8)
    message = check_message(info.value, "relative error threshold", "got 8", "did you mean 0.08?")
    code, _, stderr = run(["schedule", str(profile_path), "--alpha", "8", "--out", str(folder / "s.json")])
    assert code == 2 and message.replace("alpha", "--alpha", 1) in stderr
    assert Schedule.from_profile(profile, alpha=1.0).num_steps == T  # the bound itself is a valid threshold


@fuzz()
@given(
    alpha=st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-10, 10**30)
    | st.booleans()
    | st.just(10**400)
)
@example(alpha=10**400)
def test_from_profile_takes_thresholds_in_0_1(profile_path, alpha):
    profile = CalibrationProfile.load(profile_path)
    try:
        schedule = Schedule.from_profile(profile, alpha)
    except ScheduleError as err:
        check_message(err, "alpha")
        assert isinstance(alpha, bool) or not 0 <= alpha <= 1
        return
    assert 0 <= alpha <= 1 and not isinstance(alpha, bool)
    assert schedule.num_steps == T and all(row[0] == row[-1] == 1 for row in schedule.entries.values())
