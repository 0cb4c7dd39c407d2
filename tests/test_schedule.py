import json

import pytest

from smoothcache import Schedule, ScheduleError
from smoothcache.branches import parse_key


def test_every_reference_schedule_loads_and_round_trips(reference_dir, tmp_path):
    files = sorted(reference_dir.glob("*.json"))
    assert len(files) == 9
    for path in files:
        schedule = Schedule.load(path)
        assert schedule.to_dict() == json.loads(path.read_text())
        copy = schedule.save(tmp_path / path.name)
        assert Schedule.load(copy) == schedule
        assert json.loads(copy.read_text()) == json.loads(path.read_text())


def test_reference_files_have_the_documented_shape(reference_dir):
    l2c = Schedule.load(reference_dir / "50-N-2-l2c.json")
    assert l2c.num_steps == 50 and l2c.branch_keys == ["attn", "mlp"]
    assert l2c.block_indices("attn") == list(range(28))
    diffuser = Schedule.load(reference_dir / "diffuser_schedule.json")
    assert diffuser.branch_keys == ["attn1"] and sum(diffuser.entries["attn1"]) == 24


@pytest.mark.parametrize("steps", [30, 50, 70])
def test_fixed_interval_reproduces_the_reference_fora_schedules(reference_dir, steps):
    reference = Schedule.load(reference_dir / f"{steps}-N-2-fora.json")
    assert Schedule.fixed_interval(steps, 2, ["attn", "mlp"]) == reference


def test_fixed_interval_every_third_step():
    assert Schedule.fixed_interval(10, 3, ["ff"]).entries["ff"] == (1, 0, 0, 1, 0, 0, 1, 0, 0, 1)
    assert Schedule.fixed_interval(4, 1, ["ff"]).entries["ff"] == (1, 1, 1, 1)


def test_per_block_key_wins_over_bare_key():
    s = Schedule({"attn": [1, 0, 1], "attn-2": [1, 1, 1]})
    assert s.for_block("attn", 2) == (1, 1, 1)
    assert s.for_block("attn", 1) == (1, 0, 1)
    assert s.for_block("attn", None) == (1, 0, 1)
    assert s.for_block("mlp", 0) is None
    only_block = Schedule({"mlp-0": [1, 0]})
    assert only_block.for_block("mlp", 0) == (1, 0) and only_block.for_block("mlp", 1) is None


def test_compute_fraction():
    s = Schedule({"attn": [1, 0, 1, 0], "mlp": [1, 1, 1, 1]})
    assert s.compute_fraction() == {"attn": 0.5, "mlp": 1.0}
    assert s.compute_fraction("attn") == 0.5
    with pytest.raises(KeyError, match="no key 'ff'"):
        s.compute_fraction("ff")


def test_parse_key():
    assert parse_key("attn1") == ("attn1", None)
    assert parse_key("attn1-12") == ("attn1", 12)
    assert parse_key("ff_context") == ("ff_context", None)
    for bad in ["", "attn-x", "3attn", "attn-", "at tn", "attn--1"]:
        with pytest.raises(ScheduleError, match="is not a branch name"):
            parse_key(bad)


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"attn": [1, 2, 0]}, r"entry 1 is 2; entries must be 0 \(reuse the cache\) or 1"),
        ({"attn": [1, 0.5]}, "entry 1 is 0.5"),
        ({"attn": [1, True]}, "entry 1 is True"),
        ({"attn": [1, "0"]}, "entry 1 is '0'"),
        ({"attn": [1, 0, 1], "mlp": [1, 0]}, r"different lengths \(attn: 3, mlp: 2\)"),
        ({}, "the schedule is empty"),
        ({"attn": []}, "schedule 'attn' is empty"),
        ({"attn": "1010"}, "must be a list of 0/1 entries"),
        ({"attn": [0, 1, 1]}, "step 0 is 0, but the first step must compute"),
        ({"attn-": [1]}, "is not a branch name"),
    ],
)
def test_bad_schedules_get_clear_errors(entries, message):
    with pytest.raises(ScheduleError, match=message):
        Schedule(entries)


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"attn": [1, 0, 1')
    with pytest.raises(ScheduleError, match=r"broken.json is not valid JSON"):
        Schedule.load(path)
    path.write_text("[1, 0, 1]")
    with pytest.raises(ScheduleError, match="must hold a JSON object"):
        Schedule.load(path)
    path.write_text('{"attn": [1, 3]}')
    with pytest.raises(ScheduleError, match=r"broken.json: schedule 'attn': entry 1 is 3"):
        Schedule.load(path)
    with pytest.raises(ScheduleError, match="cannot read schedule file"):
        Schedule.load(tmp_path / "missing.json")


def test_coerce_accepts_dict_path_and_schedule(reference_dir):
    path = reference_dir / "50-N-2-fora.json"
    from_path = Schedule.coerce(path)
    assert Schedule.coerce(str(path)) == from_path
    assert Schedule.coerce(from_path.to_dict()) == from_path
    assert Schedule.coerce(from_path) is from_path


def test_generators_validate_arguments():
    with pytest.raises(ScheduleError, match="interval must be an integer >= 1"):
        Schedule.fixed_interval(10, 0, ["attn"])
    with pytest.raises(ScheduleError, match="num_steps must be an integer >= 1"):
        Schedule.full(0, ["attn"])
    assert Schedule.full(3, ["attn", "mlp"]).compute_fraction() == {"attn": 1.0, "mlp": 1.0}
