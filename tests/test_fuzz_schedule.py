"""Property-based tests of every way a user's schedule reaches smoothcache: ``Schedule.load`` (any bytes, any
encoding, any JSON), ``Schedule.coerce`` and ``Schedule(mapping)``. Each input either loads into a valid
schedule or raises ScheduleError naming the file and the problem; never another exception type."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from fuzzing import bounded, check_message, fuzz
from smoothcache import CalibrationProfile, Schedule, ScheduleError, SmoothCache
from smoothcache.predictors import PREDICTORS
from smoothcache.profile import BranchErrors

# The specification of a schedule key, written independently of smoothcache's parser: an ASCII branch name,
# optionally '-' and a block index written the canonical way (no sign, no leading zero, at most 9 digits).
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*(?:-(?:0|[1-9][0-9]{0,8}))?")

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "attn1",
            "ff",
            "attn1-3",
            "attn-0",
            "mlp-27",
            "norm1.x",
            "_b-1",
            "attn1-03",
            "attn1-+3",
            "attn1\n",
            "attn-\u0663",
            "\u00e9t\u00e9",
            "",
            "-",
            "1attn",
            "attn-",
            "attn-" + "9" * 30,
            "attn-" + "1" * 5000,
            "attn1 ",
            "att\x00n",
        ]
    ),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,6}(-[0-9]{1,3})?", fullmatch=True),
    st.text(max_size=10),
)
PREDICTOR_VALUES = st.sampled_from(
    ["reuse", "linear", "LINEAR", "quadratic", "", None, 0, 1, True, [], {}, ["linear"], 1.5]
)
ENCODINGS = [
    "utf-8",
    "utf-8-sig",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "utf-32",
    "latin-1",
    "cp1252",
    "shift_jis",
]


def row(length: int):
    """A valid 0/1 row of ``length`` entries (first entry 1)."""
    return st.lists(st.sampled_from([0, 1]), min_size=length, max_size=length).map(
        lambda r: [1] + r[1:] if r else r
    )


@st.composite
def schedule_data(draw) -> dict:
    """A JSON object shaped like a schedule: mostly valid, with bad keys, values, lengths and predictors."""
    steps = draw(st.integers(0, 40) | st.sampled_from([1, 2, 1000]))
    values = (
        row(steps)
        | st.lists(st.sampled_from([0, 1]), max_size=8)
        | row(steps + 1)
        | JSON
        | st.lists(
            st.sampled_from([0, 1, 1.0, True, False, 2, -1, None, "1", [1], 10**30]), min_size=1, max_size=6
        )
    )
    entries = draw(
        st.dictionaries(
            KEYS, st.one_of(row(steps), values) if draw(st.booleans()) else row(steps), max_size=5
        )
    )
    if draw(st.integers(0, 3)) == 0:
        entries["predictor"] = draw(PREDICTOR_VALUES)
    return entries


def expected(data) -> tuple[dict, str] | None:
    """What a correct loader returns for this JSON content: (entries, predictor), or None to refuse."""
    if not isinstance(data, dict):
        return None
    data = dict(data)
    predictor = data.pop("predictor", "reuse")
    if not isinstance(predictor, str) or predictor not in PREDICTORS or not data:
        return None
    entries = {}
    for key, values in data.items():
        if not KEY.fullmatch(key) or not isinstance(values, list) or not values:
            return None
        if any(type(v) is not int or v not in (0, 1) for v in values) or values[0] != 1:
            return None
        entries[key] = tuple(values)
    if len({len(v) for v in entries.values()}) != 1:
        return None
    return entries, predictor


def check_schedule(schedule: Schedule) -> None:
    """The invariants every schedule holds."""
    assert isinstance(schedule, Schedule) and schedule.entries and schedule.predictor in PREDICTORS
    lengths = {len(v) for v in schedule.entries.values()}
    assert len(lengths) == 1 and schedule.num_steps >= 1
    for key, values in schedule.entries.items():
        assert KEY.fullmatch(key), key
        assert values[0] == 1 and set(values) <= {0, 1} and all(type(v) is int for v in values)
        name, block = _split(key)
        assert schedule.for_block(name, block) == values  # the key is found where the cache looks for it
    assert Schedule(schedule.to_dict()) == schedule


def _split(key: str) -> tuple[str, int | None]:
    name, _, block = key.partition("-")
    return name, (int(block) if block else None)


def load(path: Path) -> Schedule | None:
    """Schedule.load(path), or None after checking that its ScheduleError names the file and a problem."""
    try:
        schedule = Schedule.load(path)
    except ScheduleError as err:
        check_message(err, str(path))
        return None
    check_schedule(schedule)
    return schedule


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-schedule")


@fuzz()
@given(
    data=schedule_data(),
    encoding=st.sampled_from(ENCODINGS),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 4]),
)
def test_schedule_json_in_any_encoding_loads_exactly_when_valid(folder, data, encoding, ascii_only, indent):
    text = json.dumps(data, ensure_ascii=ascii_only, indent=indent)
    # Shift JIS writes '\u00a5' and '\u203e' as the ASCII bytes of '\\' and '~': read as UTF-8, other JSON
    assume(encoding != "shift_jis" or not {"\u00a5", "\u203e"} & set(text))
    raw = text.encode(
        encoding, errors="replace"
    )  # '?' for what the encoding lacks: non-ASCII is invalid anyway
    path = folder / "schedule.json"
    path.write_bytes(raw)
    loaded, wanted = load(path), expected(data)
    if wanted is None:
        assert loaded is None, f"accepted an invalid schedule: {data!r}"
    else:
        assert loaded is not None, f"refused a valid schedule: {data!r}"
        assert (loaded.entries, loaded.predictor) == wanted


@fuzz()
@given(
    data=schedule_data(),
    encoding=st.sampled_from(ENCODINGS),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=4),
    insert=st.binary(max_size=4),
)
@example(data={"attn1": [1, 0]}, encoding="latin-1", cut=1.0, flips=[(0.5, 0x80)], insert=b"\xe9")
def test_mutated_schedule_files_load_or_raise_a_schedule_error(folder, data, encoding, cut, flips, insert):
    raw = bytearray(json.dumps(data).encode(encoding, errors="replace"))
    for where, mask in flips:
        if raw:
            raw[int(where * (len(raw) - 1))] ^= mask
    raw = raw[: int(cut * len(raw))] + insert + raw[int(cut * len(raw)) :]
    path = folder / "mutated.json"
    path.write_bytes(bytes(raw))
    load(path)


@fuzz()
@given(raw=st.binary(max_size=300))
@example(raw=b"\xff\xfe{\x00")
@example(raw=b"\xef\xbb\xbf")
@example(raw=b"")
def test_arbitrary_bytes_load_or_raise_a_schedule_error(folder, raw):
    path = folder / "bytes.json"
    path.write_bytes(raw)
    load(path)


@fuzz(max_examples=20)
@given(depth=st.integers(1, 200_000), kind=st.sampled_from(["[", '{"a":', '{"attn1":[']))
@example(depth=200_000, kind="[")
def test_deeply_nested_json_is_refused_in_bounded_time(folder, depth, kind):
    path = folder / "deep.json"
    path.write_text(kind * depth)
    with bounded(seconds=1.0):
        assert load(path) is None


@fuzz(max_examples=20)
@given(digits=st.integers(1, 20_000), where=st.sampled_from(["value", "key", "both"]))
@example(digits=5000, where="value")
@example(digits=5000, where="key")
def test_huge_integers_are_refused(folder, digits, where):
    number = "1" + "0" * (digits - 1)
    key = f"attn-{number}" if where in ("key", "both") else "attn"
    value = number if where in ("value", "both") else "0"
    path = folder / "huge.json"
    path.write_text(f'{{"{key}": [1, {value}]}}')
    with bounded(seconds=1.0):
        loaded = load(path)
    key_ok, value_ok = where == "value" or digits <= 9, where == "key" or digits == 1
    assert (loaded is not None) == (key_ok and value_ok)


def test_a_very_long_schedule_loads_quickly(folder):
    path = Schedule({"attn1": [1] + [0, 1] * 50_000, "ff": [1] * 100_001}).save(folder / "long.json")
    with bounded(seconds=1.0):
        assert load(path).num_steps == 100_001


@fuzz()
@given(
    entries=st.dictionaries(
        KEYS | st.integers() | st.none() | st.tuples(st.text(max_size=3)),
        st.one_of(
            row(3),
            JSON,
            st.tuples(st.sampled_from([0, 1])),
            st.sampled_from(
                [range(1, 2), b"\x01", bytearray(b"\x01\x00"), np.array([1, 0]), (1, 0), "10", {1: 1}]
            ),
        ),
        max_size=4,
    ),
    predictor=st.none() | PREDICTOR_VALUES,
)
@example(entries={"attn1\n": [1, 0]}, predictor=None)  # matched by a '$' regex, never looked up by the cache
@example(entries={"attn1-03": [1, 0]}, predictor=None)  # parsed as block 3, looked up as "attn1-3"
@example(entries={"attn1-\u0663": [1, 0]}, predictor=None)  # an Arabic-Indic 3
@example(entries={"attn1": [1, 0], "predictor": []}, predictor=None)  # a falsy predictor read as "reuse"
def test_constructor_takes_any_mapping_or_raises_a_schedule_error(entries, predictor):
    try:
        schedule = Schedule(entries, predictor=predictor)
    except ScheduleError as err:
        check_message(err)
        return
    check_schedule(schedule)


@fuzz()
@given(
    value=st.one_of(
        JSON, st.binary(max_size=8), st.sampled_from(["", ".", "/", "\x00", "a\x00b", "x" * 5000])
    )
)
def test_coerce_takes_anything_or_raises_a_schedule_error(value):
    try:
        schedule = Schedule.coerce(value)
    except ScheduleError as err:
        message = check_message(err)
        if isinstance(value, str) and "\x00" not in value:
            assert value[:200] in message
        return
    check_schedule(schedule)


# ----------------------------------------------------------- a profile where a schedule is expected


def _profile(folder: Path) -> Path:
    profile = CalibrationProfile(2, 4, {"blocks.0.attn1": BranchErrors.empty("attn1", 0, 2, 4)}, runs=1)
    return profile.save(folder / "profile.safetensors")


@pytest.mark.parametrize("name", ["profile.safetensors", "renamed.json"])
def test_a_profile_given_as_a_schedule_says_how_to_plan_one(folder, name, tiny_dit):
    path = folder / name
    path.write_bytes(_profile(folder).read_bytes())
    attempts = (
        Schedule.load,
        Schedule.coerce,
        lambda p: Schedule.coerce(str(p)),
        lambda p: SmoothCache(tiny_dit, p),
    )
    for attempt in attempts:
        with pytest.raises(ScheduleError) as info:
            attempt(path)
        message = check_message(info.value, str(path))
        assert "calibration profile, not a schedule JSON" in message
        assert "Schedule.for_budget(profile, speedup=" in message and "smoothcache schedule" in message


def test_a_safetensors_header_with_any_length_is_recognised_or_refused(folder):
    for length in (0, 2, 7, 2**63, 2**64 - 1):
        path = folder / "header.safetensors"
        path.write_bytes(struct.pack("<Q", length) + b'{"a": 1}')
        assert load(path) is None


@pytest.mark.parametrize("kind", ["folder", "missing", "nul", "fifo", "huge", "huge profile"])
def test_paths_that_are_not_schedule_files_are_named(folder, kind):
    import os

    path = {
        "folder": folder,
        "missing": folder / "missing.json",
        "nul": f"{folder}/a\0b",
        "fifo": folder / "fifo",
        "huge": folder / "huge.json",
        "huge profile": folder / "huge.safetensors",
    }[kind]
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no named pipes here")
        if not path.exists():
            os.mkfifo(path)  # opening it would block until a writer comes
    elif kind.startswith("huge"):
        with open(path, "wb") as f:  # sparse: 65 MiB on paper, nothing on disk
            f.write(struct.pack("<Q", 100) + b'{"' if kind == "huge profile" else b'{"attn1": [1')
            f.truncate(65 * 2**20)
    with bounded(seconds=1.0, mebibytes=4), pytest.raises(ScheduleError) as info:
        Schedule.load(path)
    message = check_message(info.value, str(path) if kind != "nul" else repr(str(path))[1:-1])
    if kind == "huge profile":
        assert "calibration profile, not a schedule JSON" in message
    elif kind == "huge":
        assert "larger than 64 MiB" in message
