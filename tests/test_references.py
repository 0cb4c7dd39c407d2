"""The original implementation's published schedules, shipped in the package: by name, and fitted to a
model."""

import json
from pathlib import Path

import pytest

from conftest import make_tiny_dit
from original_dit import DiT
from smoothcache import Schedule, ScheduleError, SmoothCache
from smoothcache.references import REFERENCE_DIR, load_reference, map_keys, reference_names

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference_schedules"


def test_all_nine_published_schedules_ship_with_a_notice():
    assert reference_names() == [
        "30-N-2-fora", "30-N-3-threshold-0.35", "50-N-2-fora", "50-N-2-l2c", "50-N-3-threshold-0.08",
        "50-N-3-threshold-0.18", "70-N-2-fora", "70-N-3-threshold-0.08", "diffuser_schedule",
    ]
    notice = (REFERENCE_DIR / "NOTICE").read_text()
    assert "Roblox/SmoothCache" in notice and "Apache License" in notice


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/reference_schedules beside this clone")
def test_shipped_copies_equal_the_published_files():
    for name in reference_names():
        assert json.loads((REFERENCE_DIR / f"{name}.json").read_text()) == \
            json.loads((SHARED / f"{name}.json").read_text()), name


def test_load_by_name_keeps_the_original_keys():
    schedule = load_reference("50-N-3-threshold-0.08")
    assert schedule.branch_keys == ["attn", "mlp"] and schedule.num_steps == 50
    assert sum(schedule.entries["attn"]) == 46
    with pytest.raises(ScheduleError, match="no shipped schedule named 'nope'; choose one of"):
        load_reference("nope")


def test_keys_are_mapped_to_a_diffusers_dit_and_the_cache_runs():
    model = make_tiny_dit(num_layers=3)
    schedule = load_reference("30-N-2-fora", model)
    assert schedule.branch_keys == ["attn1", "ff"]
    assert schedule.entries["attn1"] == load_reference("30-N-2-fora").entries["attn"]
    SmoothCache(model, schedule)  # fits: binding checks every key against the model


def test_per_block_schedule_on_a_smaller_model():
    model = make_tiny_dit(num_layers=3)
    with pytest.raises(
        ScheduleError, match="'attn1-3': DiTTransformer2DModel has 'attn1' only in blocks 0..2"
    ):
        SmoothCache(model, load_reference("50-N-2-l2c", model))
    schedule = load_reference("50-N-2-l2c", model, drop_missing_blocks=True)
    assert sorted(schedule.block_indices("attn1")) == [0, 1, 2]
    assert schedule.entries["ff-2"] == load_reference("50-N-2-l2c").entries["mlp-2"]
    SmoothCache(model, schedule)


def test_original_dit_needs_no_mapping_and_unknown_keys_are_explained():
    schedule = load_reference("50-N-2-fora", DiT())
    assert sorted(schedule.branch_keys) == ["attn", "mlp"] and "mapped" not in schedule.metadata
    with pytest.raises(ScheduleError, match="no known key mapping fits"):
        load_reference("diffuser_schedule", DiT())


def test_map_keys_keeps_block_indices_and_predictor():
    schedule = Schedule({"attn": [1, 0, 1], "attn-2": [1, 1, 1]}, predictor="linear")
    mapped = map_keys(schedule, {"attn": "attn1"})
    assert mapped.entries == {"attn1": (1, 0, 1), "attn1-2": (1, 1, 1)} and mapped.predictor == "linear"
