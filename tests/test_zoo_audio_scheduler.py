"""The audio model's DPM-Solver++(3M) SDE: a third-order SDE step that converges, saved and loaded by
class."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DPMSolverMultistepScheduler  # noqa: E402

from smoothcache.zoo.audio_model import AUDIO_DIR, audio_pipeline  # noqa: E402
from smoothcache.zoo.audio_scheduler import DPMSolver3MSDEScheduler  # noqa: E402

CONFIG = dict(
    beta_schedule="squaredcos_cap_v2",
    prediction_type="v_prediction",
    algorithm_type="sde-dpmsolver++",
    solver_order=3,
)


def _gaussian_sample_std(scheduler, steps: int, data_std: float = 0.5, n: int = 100_000) -> float:
    """Sample N(0, data_std^2) with the exact v-prediction; return the std of the samples."""
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    abar = scheduler.alphas_cumprod.double()
    for t in scheduler.timesteps:
        a, s = abar[t].sqrt(), (1 - abar[t]).sqrt()
        x0 = a * data_std**2 / (a * a * data_std**2 + s * s) * x  # E[x0 | x_t] for Gaussian data
        v = a * (x - a * x0) / s - s * x0
        x = scheduler.step(v, t, x, generator=g).prev_sample
    return x.std().item()


@pytest.mark.parametrize("steps", [50, 100, 200])
def test_third_order_sde_converges_to_the_data_distribution(steps):
    std = _gaussian_sample_std(DPMSolver3MSDEScheduler(**CONFIG), steps)
    assert std == pytest.approx(0.5, rel=0.01)


def test_other_algorithms_are_diffusers_own():
    """The ODE third-order step is the parent's, bit for bit."""
    ours = _gaussian_sample_std(DPMSolver3MSDEScheduler(**{**CONFIG, "algorithm_type": "dpmsolver++"}), 20)
    theirs = _gaussian_sample_std(
        DPMSolverMultistepScheduler(**{**CONFIG, "algorithm_type": "dpmsolver++"}), 20
    )
    assert ours == theirs


def test_save_and_load_keep_the_class(tmp_path):
    DPMSolver3MSDEScheduler(**CONFIG).save_pretrained(tmp_path)
    assert (
        json.loads((tmp_path / "scheduler_config.json").read_text())["_class_name"]
        == "DPMSolver3MSDEScheduler"
    )
    loaded = DPMSolver3MSDEScheduler.from_pretrained(tmp_path)
    assert loaded.config.solver_order == 3 and loaded.config.algorithm_type == "sde-dpmsolver++"


def test_shipped_pipeline_uses_it_and_old_folders_are_upgraded(tmp_path):
    assert type(audio_pipeline().scheduler) is DPMSolver3MSDEScheduler
    old = tmp_path / "audio"
    shutil.copytree(AUDIO_DIR, old)
    index = json.loads((old / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "DPMSolverMultistepScheduler"]
    (old / "model_index.json").write_text(json.dumps(index))
    cfg_path = old / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["_class_name"] = "DPMSolverMultistepScheduler"
    cfg_path.write_text(json.dumps(cfg))
    pipe = audio_pipeline(folder=old)
    assert type(pipe.scheduler) is DPMSolver3MSDEScheduler
    assert pipe.scheduler.config.solver_order == 3
    assert type(audio_pipeline(folder=old, scheduler="dpm").scheduler) is DPMSolverMultistepScheduler
