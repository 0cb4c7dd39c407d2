"""The ComfyUI adapter without ComfyUI: block patches, runs, sigma steps, slots, in-place inputs, release.

A Flux-like model with ComfyUI's block loop and hooks, a fake ModelPatcher and a fake sampler run
(tests/comfy_fakes.py) stand in for ComfyUI; tests/test_comfyui_integration.py runs the real one.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest
import torch
import torch.nn as nn

from comfy_fakes import FakePatcher, FluxLike, install_fake_comfy, sample
from smoothcache import CalibrationProfile, Schedule
from smoothcache.cli.comfyui import install_command
from smoothcache.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from smoothcache.comfyui.clock import SigmaClock, conditioning_of
from smoothcache.comfyui.families import find_blocks
from smoothcache.comfyui.install import install
from smoothcache.comfyui.nodes import SmoothCacheApply, SmoothCacheCalibrate, resolve_path
from smoothcache.comfyui.patch import KEY, BlockPatch, SmoothCacheSetup
from smoothcache.comfyui.runs import check_schedule, group_runs
from smoothcache.comfyui.session import SamplingRun
from smoothcache.comfyui.streams import Layout, learn_layout, sampled
from smoothcache.errors import ProfileError, ScheduleError, SmoothCacheWarning, TargetError

SIGMAS = [1.0, 0.9, 0.75, 0.6, 0.45, 0.3, 0.15, 0.0]
BLOCKS = {"double_block": 2, "single_block": 3}


@pytest.fixture(autouse=True)
def fake_comfy(monkeypatch):
    install_fake_comfy(monkeypatch)


def setup_of(patcher) -> SmoothCacheSetup:
    return patcher.model_options["transformer_options"][KEY]


def schedule_file(tmp_path, row, predictor="reuse", name="s.json"):
    return Schedule({k: list(row) for k in BLOCKS}, predictor=predictor).save(tmp_path / name)


def applied(model, tmp_path, row, predictor="reuse", speedup=2.0):
    return SmoothCacheApply().apply(
        FakePatcher(model), speedup, str(schedule_file(tmp_path, row, predictor))
    )["result"][0]


# ---------------------------------------------------------------------------------------------- families
def test_families_are_found_by_structure_and_lumina_is_refused_with_the_reason():
    flux = find_blocks(FluxLike())
    assert flux.kinds == ["double_block", "single_block"] and flux.fuse_runs
    assert flux.blocks()[:3] == [
        ("double_block", 0, "double_blocks.0"),
        ("double_block", 1, "double_blocks.1"),
        ("single_block", 0, "single_blocks.0"),
    ]
    branches = flux.branches(FluxLike())
    assert [(b.key, b.block, b.path) for b in branches][-1] == ("single_block", 2, "single_blocks.2")

    def model_with(**lists):
        m = nn.Module()
        for name, n in lists.items():
            setattr(m, name, nn.ModuleList(nn.Linear(2, 2) for _ in range(n)))
        return m

    assert find_blocks(model_with(blocks=3)).structure.startswith("Wan")
    assert find_blocks(model_with(joint_blocks=2)).structure.startswith("MMDiT")
    assert find_blocks(model_with(transformer_blocks=2)).structure == "Qwen-Image"
    assert not find_blocks(model_with(blocks=3, vace_blocks=1)).fuse_runs
    with pytest.raises(TargetError, match="Lumina 2 / Z-Image.*not supported"):
        find_blocks(model_with(layers=2, noise_refiner=1))
    with pytest.raises(TargetError, match="not supported"):
        find_blocks(model_with(down_blocks=2))


# --------------------------------------------------------------------------------------------- the clock
def test_steps_come_from_sigmas_and_every_evaluation_and_conditioning_has_its_slot():
    clock = SigmaClock(SIGMAS)
    assert clock.num_steps == 7
    assert [clock.step_of(s) for s in SIGMAS[:-1]] == list(range(7))
    assert clock.step_of(0.8) == 1 and clock.step_of(0.05) == 6 and clock.step_of(1.5) == 0  # midpoints, ends
    a, b = conditioning_of({"uuids": ["c", "u"]}), conditioning_of({"uuids": ["c"]})
    assert a != b and conditioning_of({"cond_or_uncond": [1, 0]}) != conditioning_of({"cond_or_uncond": [0]})
    first, again, other = clock.call(0.9, a), clock.call(0.9, a), clock.call(0.9, b)
    assert (first.step, again.step) == (1, 1) and len({first.slot, again.slot, other.slot}) == 3
    assert clock.call(0.75, a).slot == (0, a)  # a new step starts at evaluation 0


# ----------------------------------------------------------------------------------------------- streams
def test_a_layout_names_the_streams_a_block_continues():
    x, t = torch.zeros(2, 4, 3), torch.zeros(2, 2, 3)
    assert learn_layout({"img": x, "txt": t, "vec": torch.zeros(2)}, {"img": x, "txt": None}) == Layout(
        ("img",), ("txt",)
    )
    assert "does not continue" in learn_layout({"img": x}, {"out": x})
    assert "shape" in learn_layout({"img": x}, {"img": torch.zeros(2, 5, 3)})
    assert "not a dict" in learn_layout({"img": x}, x)
    small = torch.arange(12.0).reshape(3, 4)
    assert torch.equal(sampled(small), small.reshape(-1))
    big = torch.arange(64 * 3072.0).reshape(64, 3072)
    part = sampled(big, limit=1000)
    assert 900 < part.numel() <= 1000
    stride = int(part[1])  # the element index of the second sample
    assert stride > 1 and np.gcd(stride, 3072) == 1  # every channel is sampled across tokens


# -------------------------------------------------------------------------------------------------- runs
def test_blocks_that_skip_on_the_same_steps_form_one_run_per_list():
    blocks = find_blocks(FluxLike())
    whole = Schedule({"double_block": [1, 0, 1, 0, 1], "single_block": [1, 0, 1, 0, 1]})
    runs = group_runs(blocks, whole, fuse=True)
    assert {r.owner for r in runs.values()} == {("run", "double_block", 0, 1), ("run", "single_block", 0, 2)}
    assert len({r.owner for r in group_runs(blocks, whole, fuse=False).values()}) == 5
    split = Schedule(
        {"double_block": [1, 0, 1, 0, 1], "single_block": [1, 0, 1, 0, 1], "single_block-1": [1, 1, 1, 0, 1]}
    )
    owners = sorted({r.owner for r in group_runs(blocks, split, fuse=True).values()})
    assert owners == [
        ("run", "double_block", 0, 1),
        ("run", "single_block", 0, 0),
        ("run", "single_block", 1, 1),
        ("run", "single_block", 2, 2),
    ]
    assert group_runs(blocks, Schedule({"double_block": [1] * 5, "single_block": [1] * 5}), fuse=True) == {}
    with pytest.raises(ScheduleError, match="block kinds"):
        check_schedule(Schedule({"attn1": [1, 0, 1]}), blocks)
    with pytest.raises(ScheduleError, match="has 3 single_blocks"):
        check_schedule(Schedule({"single_block-7": [1, 0, 1]}), blocks)


# ------------------------------------------------------------------------------------------ sampling runs
def test_an_all_ones_schedule_is_bit_identical_to_no_cache_and_the_patcher_is_untouched(tmp_path):
    model = FluxLike()
    reference, _ = sample(FakePatcher(model), SIGMAS)
    base = FakePatcher(model)
    patched = SmoothCacheApply().apply(base, 2.0, str(schedule_file(tmp_path, [1] * 7)))["result"][0]
    assert base.model_options == {"transformer_options": {}} and base.wrappers == {}
    out, guider = sample(patched, SIGMAS)
    assert torch.equal(out, reference)
    assert setup_of(patched).last_run["computed"] == 7 * 5 and setup_of(patched).last_run["skipped"] == 0
    assert not isinstance(guider.model_options["transformer_options"][KEY], SamplingRun)


def test_skipped_steps_skip_every_block_of_each_run_and_two_runs_in_a_row_are_independent(tmp_path):
    model = FluxLike()
    reference, _ = sample(FakePatcher(model), SIGMAS)
    patched = applied(model, tmp_path, [1, 0, 1, 0, 0, 1, 1], "linear")
    model.calls = {"double_block": 0, "single_block": 0}
    out, guider = sample(patched, SIGMAS)
    summary = setup_of(patched).last_run
    assert summary["by_step"] == {0: (5, 0), 1: (0, 5), 2: (5, 0), 3: (0, 5), 4: (0, 5), 5: (5, 0), 6: (5, 0)}
    assert model.calls == {"double_block": 4 * 2, "single_block": 4 * 3}  # the blocks really did not run
    assert torch.isfinite(out).all() and not torch.equal(out, reference)
    again, _ = sample(patched, SIGMAS)
    assert torch.equal(again, out)
    assert guider.model_options["transformer_options"][KEY] is setup_of(patched)  # run state put back


# Blocks whose residual is linear in sigma: a linear forecast from two computed steps is exact, so a cached
# run equals the uncached one only if every residual was taken from an uncorrupted input, kept in the right
# slot (cond / uncond, evaluation) and added back to the right input.
EXACT_ROW = [1, 1, 0, 1, 0, 0, 1]


@pytest.mark.parametrize(
    "how",
    [
        dict(batched=True),
        dict(batched=False, txt_len=4),
        dict(evaluations=2),
        dict(control=torch.full((1, 5, 8), 0.01)),
    ],
    ids=["cond+uncond batched", "cond, uncond apart", "two evaluations per step", "controlnet"],
)
def test_a_linear_forecast_of_linear_residuals_is_exact_whatever_the_calls(tmp_path, how):
    model = FluxLike(input_free=True)
    reference, _ = sample(FakePatcher(model), SIGMAS, **how)
    out, _ = sample(applied(model, tmp_path, EXACT_ROW, "linear"), SIGMAS, **how)
    reused, _ = sample(applied(model, tmp_path, EXACT_ROW, "reuse"), SIGMAS, **how)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    assert (reused - reference).abs().max() > 1e-3  # the check can fail: reuse is not exact here


def test_kept_residuals_are_not_corrupted_by_blocks_adding_in_place(tmp_path):
    """Single blocks edit their input in place, and later blocks edit what a block returned: the residual kept
    for each conditioning is still what its computed step really had, and a skip leaves it as it was."""
    model = FluxLike()
    setup = setup_of(applied(model, tmp_path, [1, 0, 1, 1, 1, 1, 1]))
    setup.source.refresh()
    run = SamplingRun(setup.blocks, model, SIGMAS, schedule=setup.source.schedule_for(SIGMAS))
    hooks = {"dit": {(k, i): BlockPatch(k, i) for k, n in BLOCKS.items() for i in range(n)}}
    g = torch.Generator().manual_seed(3)
    inputs = {c: (torch.randn(1, 5, 8, generator=g), torch.randn(1, 3, 8, generator=g)) for c in "cu"}
    kept = {}
    with torch.inference_mode():
        for c, (x, txt) in inputs.items():
            options = {"patches_replace": hooks, KEY: run, "uuids": [c]}
            with run.model_call(1.0, options):
                model(x.clone(), txt.clone(), torch.tensor([1.0]), options)
            img, t = x.clone(), txt.clone()  # the single-block run's residual at step 0, computed apart
            vec = torch.tensor([2.0]).reshape(-1, 1, 1)
            for block in model.double_blocks:
                img, t = block(img, t, vec)
            start = torch.cat((t, img), 1)
            h = start.clone()
            for block in model.single_blocks:
                h = block(h, vec)
            slot = (0, conditioning_of(options))
            kept[c] = run.skipper.store.sources(
                ("run", "single_block", 0, 2), slot, (("img", tuple(start.shape)),)
            )
            assert kept[c] is not None
            torch.testing.assert_close(kept[c][-1].out["img"], h - start)
        assert not torch.equal(kept["c"][-1].out["img"], kept["u"][-1].out["img"])
        before = {c: k[-1].out["img"].clone() for c, k in kept.items()}
        for c, (x, txt) in inputs.items():
            options = {"patches_replace": hooks, KEY: run, "uuids": [c]}
            with run.model_call(0.9, options):
                assert torch.isfinite(model(x.clone(), txt.clone(), torch.tensor([0.9]), options)).all()
        for c in "cu":
            assert torch.equal(kept[c][-1].out["img"], before[c])  # later in-place edits did not reach it
    assert run.skipper.counts[1] == [0, 10]
    run.release()
    assert len(run.skipper.store) == 0


def test_cond_and_uncond_calls_skip_from_their_own_slots(tmp_path):
    model = FluxLike()
    patched = applied(model, tmp_path, [1, 0, 1, 0, 1, 0, 1])
    sample(patched, SIGMAS, batched=True)
    assert setup_of(patched).last_run["model_calls"] == 7 and setup_of(patched).last_run["skipped"] == 3 * 5
    sample(patched, SIGMAS, batched=False, txt_len=4)
    assert (
        setup_of(patched).last_run["model_calls"] == 14 and setup_of(patched).last_run["skipped"] == 2 * 3 * 5
    )


def test_heun_like_double_evaluations_count_as_one_step_with_a_slot_each(tmp_path):
    model = FluxLike()
    patched = applied(model, tmp_path, [1, 0, 1, 0, 1, 0, 1])
    out, _ = sample(patched, SIGMAS, evaluations=2)
    summary = setup_of(patched).last_run
    assert summary["model_calls"] == 14 and summary["steps"] == 7
    assert summary["by_step"][1] == (0, 10)  # both evaluations of a skipped step skip, each from its own slot
    assert torch.isfinite(out).all()


def test_a_hidden_state_replaced_between_blocks_splits_the_run(tmp_path, caplog):
    model = FluxLike()
    setup = setup_of(applied(model, tmp_path, [1, 0, 1, 0, 1, 0, 1]))
    setup.source.refresh()
    run = SamplingRun(setup.blocks, model, SIGMAS, schedule=setup.source.schedule_for(SIGMAS))
    original = model.double_blocks[1]

    def replaced(args):  # something runs between double blocks 0 and 1 and hands block 1 a new tensor
        return {"img": args["img"] + 0.0, "txt": args["txt"]}

    options = {"uuids": ["c"], KEY: run}
    x, txt, vec = torch.randn(1, 5, 8), torch.randn(1, 3, 8), torch.ones(1, 1, 1)
    with caplog.at_level(logging.WARNING), run.model_call(1.0, options):
        out = run.block(
            "double_block",
            0,
            {"img": x, "txt": txt, "vec": vec},
            lambda a: dict(zip(("img", "txt"), model.double_blocks[0](a["img"], a["txt"], a["vec"]))),
        )
        moved = replaced(out)
        run.block(
            "double_block",
            1,
            {**moved, "vec": vec},
            lambda a: dict(zip(("img", "txt"), original(a["img"], a["txt"], a["vec"]))),
        )
    assert "does not receive what block 0 returned" in caplog.text
    assert not run.skipper.fuse and run.skipper.runs[False][("double_block", 0)].last == 0


def test_a_block_returning_something_else_is_never_skipped(tmp_path, caplog):
    model = FluxLike()
    setup = setup_of(applied(model, tmp_path, [1, 0, 1, 0, 1, 0, 1]))
    setup.source.refresh()
    run = SamplingRun(setup.blocks, model, SIGMAS, schedule=setup.source.schedule_for(SIGMAS))
    with caplog.at_level(logging.WARNING):
        for sigma in SIGMAS[:2]:
            with run.model_call(sigma, {"uuids": ["c"]}):
                out = run.block(
                    "single_block", 1, {"img": torch.ones(1, 2, 8)}, lambda a: {"img": torch.ones(1, 3, 8)}
                )
    assert out["img"].shape == (1, 3, 8) and "never skips single_block block 1" in caplog.text
    assert ("single_block", 1) not in run.skipper.runs[False]


# -------------------------------------------------------------------------------------- state on failure
class Interrupted(Exception):
    """Stands in for comfy.model_management.InterruptProcessingException."""


@pytest.mark.parametrize("error", [RuntimeError("boom"), Interrupted()])
def test_the_run_state_is_released_and_the_options_put_back_when_sampling_fails(tmp_path, error):
    model = FluxLike()
    patched = applied(model, tmp_path, [1, 0, 1, 0, 1, 0, 1])
    reference, _ = sample(patched, SIGMAS)
    with pytest.raises(type(error)):
        sample(patched, SIGMAS, fail_at=(3, error))
    setup = setup_of(patched)
    assert setup.last_run["steps"] == 7 and setup.last_run["model_calls"] == 3
    again, guider = sample(patched, SIGMAS)
    assert torch.equal(again, reference)
    assert guider.model_options["transformer_options"][KEY] is setup


def test_a_block_called_outside_a_sampler_run_runs_as_it_is():
    patch = BlockPatch("single_block", 0)
    x = torch.ones(1, 2, 3)
    assert (
        patch({"img": x, "transformer_options": {}}, {"original_block": lambda a: {"img": a["img"] * 2}})[
            "img"
        ]
        .eq(2)
        .all()
    )


# ------------------------------------------------------------------------------------- calibrate / apply
def test_calibration_writes_a_profile_per_block_and_changes_nothing(tmp_path, caplog):
    model = FluxLike()
    reference, _ = sample(FakePatcher(model), SIGMAS)
    node = SmoothCacheCalibrate().calibrate(FakePatcher(model), str(tmp_path / "p.safetensors"), 2, "7")
    assert "p.safetensors" in node["ui"]["text"][0]
    patched = node["result"][0]
    with caplog.at_level(logging.INFO):
        out, _ = sample(patched, SIGMAS)
    assert torch.equal(out, reference)
    assert "wrote the calibration profile" in caplog.text
    profile = CalibrationProfile.load(tmp_path / "p.safetensors")
    assert profile.num_steps == 7 and profile.lookahead == 2 and profile.runs == 1
    assert sorted(profile.errors) == [
        "double_blocks.0",
        "double_blocks.1",
        "single_blocks.0",
        "single_blocks.1",
        "single_blocks.2",
    ]
    assert profile.keys == ["double_block", "single_block"] and profile.blocks("single_block") == [0, 1, 2]
    np.testing.assert_allclose(profile.timesteps, SIGMAS[:-1], rtol=1e-6)
    mean, _ = profile.mean_errors("single_block", 1, "linear")
    assert np.isfinite(mean).any() and np.nanmax(mean) > 0  # residuals were taken before the in-place edits
    assert profile.times["call"] > 0 and set(profile.times["blocks"]) == set(profile.errors)
    sample(patched, SIGMAS, seed=1)
    assert CalibrationProfile.load(tmp_path / "p.safetensors").runs == 2  # same sigmas: runs add up
    sample(patched, [1.0, 0.8, 0.5, 0.2, 0.0])
    assert CalibrationProfile.load(tmp_path / "p.safetensors").runs == 1  # other sigmas: a new profile


def test_a_profile_is_planned_for_each_runs_sigmas(tmp_path, caplog):
    model = FluxLike()
    calibrating = SmoothCacheCalibrate().calibrate(FakePatcher(model), str(tmp_path / "p.safetensors"), 3)[
        "result"
    ][0]
    sample(calibrating, SIGMAS)
    patched = SmoothCacheApply().apply(FakePatcher(model), 1.5, str(tmp_path / "p.safetensors"))["result"][0]
    sample(patched, SIGMAS)
    assert setup_of(patched).last_run["skipped"] > 0
    longer = list(np.linspace(1.0, 0.1, 12)) + [0.0]
    with caplog.at_level(logging.INFO):
        out, _ = sample(patched, longer)
    assert "resampled by sigma" in caplog.text
    assert setup_of(patched).last_run["steps"] == 12 and setup_of(patched).last_run["skipped"] > 0
    segment = SIGMAS[3:]  # a KSamplerAdvanced-style second half
    sample(patched, segment)
    assert setup_of(patched).last_run["steps"] == 4 and torch.isfinite(out).all()


def test_the_one_line_mode_calibrates_on_the_first_run_and_caches_from_the_second():
    model = FluxLike()
    reference, _ = sample(FakePatcher(model), SIGMAS)
    node = SmoothCacheApply().apply(FakePatcher(model), 1.5, "")
    assert "first sampler run calibrates" in node["ui"]["text"][0]
    patched = node["result"][0]
    first, _ = sample(patched, SIGMAS)
    assert torch.equal(first, reference) and setup_of(patched).last_run["skipped"] == 0
    second, _ = sample(patched, SIGMAS)
    assert setup_of(patched).last_run["skipped"] > 0 and not torch.equal(second, reference)


def test_a_schedule_of_another_step_count_warns_and_computes_everything(tmp_path):
    model = FluxLike()
    patched = applied(model, tmp_path, [1, 0, 1, 0, 1])
    reference, _ = sample(FakePatcher(model), SIGMAS)
    with pytest.warns(SmoothCacheWarning, match="has 5 steps but this sampler run has 7"):
        out, _ = sample(patched, SIGMAS)
    assert torch.equal(out, reference)


def test_files_that_do_not_fit_are_refused_with_the_fix(tmp_path):
    model = FluxLike()
    with pytest.raises(ScheduleError, match="block kinds"):
        SmoothCacheApply().apply(
            FakePatcher(model), 2.0, str(Schedule({"attn1": [1, 0, 1]}).save(tmp_path / "a.json"))
        )
    other = CalibrationProfile(2, 4, model="Other")
    other.errors["layers.0"] = CalibrationProfile.load(_calibrated(model, tmp_path)).errors["double_blocks.0"]
    other.save(tmp_path / "other.safetensors")
    with pytest.raises(ProfileError, match="calibrate this model with the SmoothCache Calibrate node"):
        SmoothCacheApply().apply(FakePatcher(model), 2.0, str(tmp_path / "other.safetensors"))
    missing = SmoothCacheApply().apply(FakePatcher(model), 2.0, str(tmp_path / "later.safetensors"))
    assert "not written yet" in missing["ui"]["text"][0]
    with pytest.raises(ProfileError, match="run a workflow with the SmoothCache Calibrate node"):
        sample(missing["result"][0], SIGMAS)


def _calibrated(model, tmp_path):
    path = tmp_path / "own.safetensors"
    patched = SmoothCacheCalibrate().calibrate(FakePatcher(model), str(path), 2)["result"][0]
    sample(patched, [1.0, 0.7, 0.4, 0.2, 0.0])
    return path


# ------------------------------------------------------------------------------------ nodes and install
def test_the_nodes_declare_comfyui_inputs_and_a_later_node_replaces_an_earlier_one(tmp_path):
    assert (
        set(NODE_CLASS_MAPPINGS)
        == set(NODE_DISPLAY_NAME_MAPPINGS)
        == {"SmoothCacheCalibrate", "SmoothCacheApply"}
    )
    for cls in NODE_CLASS_MAPPINGS.values():
        inputs = cls.INPUT_TYPES()
        assert inputs["required"]["model"] == ("MODEL",) and cls.RETURN_TYPES == ("MODEL",)
        assert callable(getattr(cls, cls.FUNCTION))
    assert resolve_path("x/p.safetensors").is_absolute() and resolve_path("/a/b").as_posix() == "/a/b"
    model = FluxLike()
    calibrating = SmoothCacheCalibrate().calibrate(FakePatcher(model), str(tmp_path / "p.safetensors"), 2)[
        "result"
    ][0]
    both = SmoothCacheApply().apply(calibrating, 2.0, "")["result"][0]
    assert len(both.wrappers_of("outer_sample")) == 1 and setup_of(both).profile_path is None


def test_install_writes_a_custom_nodes_folder_that_loads_the_nodes(tmp_path, capsys):
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes").mkdir(parents=True)
    assert install_command(["install", str(comfy)]) == 0
    target = comfy / "custom_nodes" / "smoothcache" / "__init__.py"
    assert str(target) in capsys.readouterr().out
    spec = importlib.util.spec_from_file_location("loaded_pack", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS is NODE_CLASS_MAPPINGS
    assert install(comfy) == target  # the same file again is fine
    target.write_text("# someone else's\n")
    with pytest.raises(FileExistsError, match="--force"):
        install(comfy)
    assert install(comfy, force=True) == target
    with pytest.raises(SystemExit):
        install_command(["install", str(tmp_path / "nowhere")])
    assert "not a ComfyUI folder" in capsys.readouterr().err
