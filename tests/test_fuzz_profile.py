"""Property-based tests of ``CalibrationProfile.load``: valid profiles saved, then truncated, bit-flipped,
given lying safetensors headers, wrong dtypes, shapes and values, and broken smoothcache headers. Each file
either loads into a valid, plannable profile or raises ProfileError naming the file and the problem."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from safetensors.numpy import save_file

from fuzzing import bounded, check_message, fuzz
from smoothcache import CalibrationProfile, ProfileError, Schedule, ScheduleError
from smoothcache.predictors import PREDICTORS, table_shape
from smoothcache.profile import BranchErrors

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
SPECIAL = st.sampled_from(
    [
        0,
        -1,
        1,
        2,
        True,
        False,
        None,
        1.0,
        2.5,
        float("nan"),
        float("inf"),
        10**30,
        10**400,
        -(10**20),
        "2",
        "",
        [],
        {},
        [1],
        {"a": 1},
    ]
)


@st.composite
def profiles(draw) -> CalibrationProfile:
    """A valid profile with random sums: 1-3 blocks of attn1/ff, K 1-3, 1-10 steps, one or both predictors."""
    k, t = draw(st.integers(1, 3)), draw(st.integers(1, 10))
    predictors = draw(st.sampled_from([("reuse",), ("reuse", "linear")]))
    blocks = draw(st.integers(1, 3))
    profile = CalibrationProfile(k, t, runs=draw(st.integers(0, 5)), model="DiTTransformer2DModel")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for block in range(blocks):
        for key in ("attn1", "ff"):
            branch = BranchErrors.empty(key, block, k, t, predictors)
            for sums in branch.tables.values():
                sums.count[...] = rng.integers(0, 3, sums.count.shape)
                sums.total[...] = rng.random(sums.total.shape) * sums.count
                sums.total_sq[...] = sums.total**2
            profile.errors[f"transformer_blocks.{block}.{key}"] = branch
    timesteps = draw(st.sampled_from(["none", "known", "unknown"]))
    if timesteps == "known":
        profile.timesteps = np.linspace(999, 0, t)
    elif timesteps == "unknown":
        profile.timesteps = np.full(t, np.nan)
    if draw(st.booleans()):
        profile.macs = {"total": 1e6, **{path: 1e4 for path in profile.errors}}
    return profile


def check_profile(profile: CalibrationProfile, folder: Path) -> None:
    """The invariants of a loaded profile, and that it plans and saves like any other."""
    k, t = profile.lookahead, profile.num_steps
    assert type(k) is int and type(t) is int and k >= 1 and t >= 1
    assert type(profile.runs) is int and profile.runs >= 0
    assert all(type(v) is float and np.isfinite(v) and v >= 0 for v in profile.macs.values())
    assert profile.errors and "reuse" in profile.predictors
    for branch in profile.errors.values():
        assert isinstance(branch.key, str) and branch.key and type(branch.block) is int and branch.block >= 0
        assert list(branch.tables) == profile.predictors
        for predictor, sums in branch.tables.items():
            for part in (sums.total, sums.total_sq, sums.count):
                assert part.dtype == np.float64 and part.shape == table_shape(predictor, k, t)
                assert np.isfinite(part).all() and (part >= 0).all()
    if profile.timesteps is not None:
        ts = profile.timesteps
        assert ts.dtype == np.float64 and ts.shape == (t,) and (np.isfinite(ts).all() or np.isnan(ts).all())
    for plan in (
        lambda: Schedule.from_profile(profile, 0.1),
        lambda: Schedule.for_budget(profile, speedup=1.5),
    ):
        try:
            schedule = plan()
        except (ScheduleError, ProfileError) as err:
            check_message(err)
        else:
            assert schedule.num_steps == t and all(row[0] == 1 for row in schedule.entries.values())
    again = CalibrationProfile.load(profile.save(folder / "again.safetensors"))
    assert again.keys == profile.keys and again.predictors == profile.predictors


def load(path: Path, folder: Path) -> CalibrationProfile | None:
    """CalibrationProfile.load(path), or None after checking that its ProfileError names the file."""
    try:
        profile = CalibrationProfile.load(path)
    except ProfileError as err:
        check_message(err, str(path))
        return None
    check_profile(profile, folder)
    return profile


def split(raw: bytes) -> tuple[dict, bytes]:
    """A safetensors file's JSON header and data."""
    size = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


def join(header: dict, data: bytes, size: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if size is None else size) + text + data


def arrays_and_header(profile: CalibrationProfile, folder: Path) -> tuple[dict, dict]:
    from safetensors.numpy import load_file

    path = profile.save(folder / "base.safetensors")
    header, _ = split(path.read_bytes())
    return load_file(str(path)), json.loads(header["__metadata__"]["smoothcache"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-profile")


@fuzz()
@given(profile=profiles())
def test_valid_profiles_round_trip(folder, profile):
    path = profile.save(folder / "valid.safetensors")
    loaded = load(path, folder)
    assert loaded is not None and loaded.keys == profile.keys and loaded.runs == profile.runs
    for name, branch in profile.errors.items():
        for predictor, sums in branch.tables.items():
            assert np.array_equal(loaded.errors[name].tables[predictor].total, sums.total)


@fuzz()
@given(profile=profiles(), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_profiles_raise_a_profile_error(folder, profile, cut):
    raw = profile.save(folder / "whole.safetensors").read_bytes()
    path = folder / "truncated.safetensors"
    path.write_bytes(raw[: int(cut * len(raw))])
    assert load(path, folder) is None


@fuzz()
@given(
    profile=profiles(),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=6),
    in_header=st.booleans(),
)
def test_flipped_bytes_load_or_raise_a_profile_error(folder, profile, flips, in_header):
    raw = bytearray(profile.save(folder / "whole.safetensors").read_bytes())
    end = 8 + struct.unpack("<Q", bytes(raw[:8]))[0] if in_header else len(raw)
    for where, mask in flips:
        raw[int(where * (end - 1))] ^= mask
    path = folder / "flipped.safetensors"
    path.write_bytes(bytes(raw))
    load(path, folder)


@fuzz()
@given(
    profile=profiles(),
    field=st.sampled_from(["dtype", "shape", "data_offsets", "size", "drop"]),
    which=st.integers(0, 100),
    dtype=st.sampled_from(["F16", "F32", "BF16", "I64", "I32", "U8", "BOOL", "C64", "F8_E4M3", "X"]),
    number=st.sampled_from([0, 1, 7, 2**31, 2**32 + 1, 2**62, 2**63, 2**64 - 1, 2**64, -1, -(2**63)])
    | st.integers(0, 2**64),
)
@example(
    profile=CalibrationProfile(1, 1, {"a.attn1": BranchErrors.empty("attn1", 0, 1, 1)}),
    field="shape",
    which=0,
    dtype="F64",
    number=2**61,
)
def test_lying_safetensors_headers_raise_a_profile_error_in_bounded_memory(
    folder, profile, field, which, dtype, number
):
    header, data = split(profile.save(folder / "whole.safetensors").read_bytes())
    name = sorted(k for k in header if k != "__metadata__")[which % (len(header) - 1)]
    size = None
    if field == "dtype":
        header[name]["dtype"] = dtype
    elif field == "shape":
        header[name]["shape"] = [number] + header[name]["shape"][1:]
    elif field == "data_offsets":
        header[name]["data_offsets"][which % 2] = number
    elif field == "size":
        size = number % 2**64
    else:
        del header[name]
    path = folder / "lying.safetensors"
    path.write_bytes(join(header, data, size))
    with bounded(seconds=1.0, mebibytes=16):
        load(path, folder)


@fuzz()
@given(
    profile=profiles(),
    which=st.integers(0, 100),
    change=st.sampled_from(
        [
            "int64",
            "int32",
            "float16",
            "float32",
            "bool",
            "complex64",
            "uint8",
            "shape",
            "scalar",
            "nan",
            "inf",
            "negative",
            "drop",
            "extra",
        ]
    ),
)
def test_wrong_arrays_load_or_raise_a_profile_error(folder, profile, which, change):
    arrays, header = arrays_and_header(profile, folder)
    name = sorted(arrays)[which % len(arrays)]
    value = arrays[name]
    if change in ("int64", "int32", "float16", "float32", "bool", "complex64", "uint8"):
        arrays[name] = value.astype(change)
    elif change == "shape":
        arrays[name] = np.zeros(value.shape[:-1] + (value.shape[-1] + 1,))
    elif change == "scalar":
        arrays[name] = np.zeros(())
    elif change in ("nan", "inf", "negative"):
        value = value.copy()
        value.flat[which % value.size] = {"nan": np.nan, "inf": np.inf, "negative": -1.0}[change]
        arrays[name] = value
    elif change == "drop":
        del arrays[name]
    else:
        arrays["b999.reuse.total"] = np.zeros(3)
    path = folder / "arrays.safetensors"
    save_file(arrays, str(path), metadata={"smoothcache": json.dumps(header)})
    loaded = load(path, folder)
    if change in ("shape", "scalar", "inf", "int64", "int32", "bool", "complex64", "uint8") or (
        change in ("drop", "negative") and name != "timesteps"
    ):
        assert loaded is None, f"{change} {name} was accepted"


@fuzz()
@given(
    profile=profiles(),
    field=st.sampled_from(
        [
            "format",
            "version",
            "lookahead",
            "num_steps",
            "runs",
            "model",
            "macs",
            "branches",
            "predictors",
            "branch.key",
            "branch.block",
            "branch.id",
            "branch",
            "macs.total",
        ]
    ),
    value=SPECIAL | JSON,
    drop=st.booleans(),
)
def test_broken_smoothcache_headers_load_or_raise_a_profile_error(folder, profile, field, value, drop):
    arrays, header = arrays_and_header(profile, folder)
    if field.startswith("branch."):
        target, key = next(iter(header["branches"].values())), field.split(".")[1]
    elif field == "branch":
        target, key = header["branches"], next(iter(header["branches"]))
    elif field == "macs.total":
        target, key = header.setdefault("macs", {}), "total"
    else:
        target, key = header, field
    if drop:
        target.pop(key, None)
    else:
        target[key] = value
    path = folder / "header.safetensors"
    save_file(arrays, str(path), metadata={"smoothcache": json.dumps(header)})
    load(path, folder)


@fuzz()
@given(
    profile=profiles(),
    text=st.sampled_from(
        [
            "",
            "{",
            "[]",
            "null",
            '"x"',
            "[" * 100_000,
            "1" * 5000,
            '{"format": "smoothcache-profile", "version": ' + "9" * 5000 + "}",
            '{"format": "smoothcache-profile", "version": 3}',
        ]
    )
    | st.text(max_size=40),
)
def test_unparsable_smoothcache_headers_raise_a_profile_error(folder, profile, text):
    arrays, _ = arrays_and_header(profile, folder)
    path = folder / "text.safetensors"
    save_file(arrays, str(path), metadata={"smoothcache": text})
    with bounded(seconds=1.0):
        assert load(path, folder) is None


@pytest.mark.parametrize("version", [0, 4, 99, -1, True, 2.0, "2", None])
def test_unknown_versions_name_the_version(folder, version):
    profile = CalibrationProfile(1, 2, {"a.attn1": BranchErrors.empty("attn1", 0, 1, 2)})
    arrays, header = arrays_and_header(profile, folder)
    header["version"] = version
    path = folder / "version.safetensors"
    save_file(arrays, str(path), metadata={"smoothcache": json.dumps(header)})
    with pytest.raises(ProfileError) as info:
        CalibrationProfile.load(path)
    assert "version" in check_message(info.value, str(path), repr(version))


@fuzz()
@given(raw=st.binary(max_size=300))
@example(raw=b"")
@example(raw=b'{"attn1": [1, 0, 1]}')
def test_arbitrary_bytes_raise_a_profile_error(folder, raw):
    path = folder / "bytes.safetensors"
    path.write_bytes(raw)
    assert load(path, folder) is None


def test_a_schedule_given_as_a_profile_says_so(folder):
    schedule = Schedule({"attn1": [1, 0, 1], "ff": [1, 1, 1]})
    for name, encoding in (("s.json", "utf-8"), ("s.safetensors", "utf-8"), ("s16.json", "utf-16")):
        path = folder / name
        path.write_bytes(json.dumps(schedule.to_dict(), indent=4).encode(encoding))
        with pytest.raises(ProfileError) as info:
            CalibrationProfile.load(path)
        message = check_message(info.value, str(path))
        assert "schedule JSON, not a calibration profile" in message and "smoothcache calibrate" in message


@pytest.mark.parametrize("kind", ["folder", "missing", "nul", "fifo"])
def test_paths_that_are_not_files_raise_a_profile_error(folder, kind):
    import os

    path = {
        "folder": folder,
        "missing": folder / "missing.safetensors",
        "nul": f"{folder}/a\0b",
        "fifo": folder / "fifo",
    }[kind]
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no named pipes here")
        if not path.exists():
            os.mkfifo(path)
    with pytest.raises(ProfileError) as info:
        CalibrationProfile.load(path)
    check_message(info.value, str(path) if kind != "nul" else repr(str(path))[1:-1])


def test_coerce_refuses_other_objects_with_a_clear_message():
    with pytest.raises(TypeError, match="expected a CalibrationProfile or the path of a saved one, got int"):
        CalibrationProfile.coerce(42)


def test_all_predictors_are_covered():
    assert set(PREDICTORS) == {"reuse", "linear"}  # profiles() draws both: update it with a new predictor
