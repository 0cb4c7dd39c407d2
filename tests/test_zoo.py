"""Tests of the embedded digits DiT (smoothcache.zoo)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DiTPipeline, DPMSolverMultistepScheduler  # noqa: E402

from smoothcache.zoo import DIGITS_DIR, DIGITS_GUIDANCE_SCALE, digits_evaluator, digits_pipeline  # noqa: E402
from smoothcache.zoo.identity_vae import IdentityVAE  # noqa: E402


@pytest.fixture(scope="module")
def pipe():
    return digits_pipeline()


def test_packaged_folder_layout():
    index = json.loads((DIGITS_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "DiTPipeline"
    assert index["vae"] == ["smoothcache.zoo.identity_vae", "IdentityVAE"]
    assert (DIGITS_DIR / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(DIGITS_DIR.rglob("*.bin")), "weights must be safetensors only"
    total = sum(p.stat().st_size for p in DIGITS_DIR.rglob("*.safetensors"))
    assert total <= 20 * 1024 * 1024
    assert (DIGITS_DIR / "README.md").is_file()


def test_pipeline_config(pipe):
    assert isinstance(pipe, DiTPipeline)
    cfg = pipe.transformer.config
    assert cfg.in_channels == 1 and cfg.out_channels == 1
    assert cfg.sample_size == 16 and cfg.patch_size == 2
    assert (cfg.sample_size // cfg.patch_size) ** 2 == 64  # tokens
    assert cfg.num_layers >= 6
    assert cfg.num_embeds_ada_norm == 1000  # DiTPipeline's null class index
    assert isinstance(pipe.vae, IdentityVAE) and pipe.vae.config.scaling_factor == 1.0
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.scheduler.config.prediction_type in ("epsilon", "v_prediction")
    assert pipe.get_label_ids(["3", "7"]) == [3, 7]
    assert pipe.transformer.dtype == torch.float32
    assert 1.0 <= DIGITS_GUIDANCE_SCALE <= 10.0


def test_pipeline_loads_with_plain_from_pretrained():
    # the documented path: import the custom VAE module, then DiTPipeline.from_pretrained(folder)
    import smoothcache.zoo.identity_vae  # noqa: F401

    pipe = DiTPipeline.from_pretrained(str(DIGITS_DIR), local_files_only=True)
    assert isinstance(pipe.vae, IdentityVAE)


def test_generation_shape_range_determinism(pipe):
    def run(seed):
        # guidance 2.0: exercises the classifier-free-guidance path (null class 1000)
        return pipe(class_labels=[3, 7], guidance_scale=2.0, num_inference_steps=4,
                    generator=torch.Generator().manual_seed(seed), output_type="pt").images

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (2, 1, 16, 16)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    out = pipe(class_labels=[1, 2], guidance_scale=1.0, num_inference_steps=3,
               generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (2, 16, 16, 1) and np.all((out >= 0) & (out <= 1))


@pytest.mark.parametrize("kind", ["dpm", "dpm-sde"])
def test_dpm_schedulers(kind):
    pipe = digits_pipeline(scheduler=kind)
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    torch.manual_seed(0)
    out = pipe(class_labels=[0, 9], guidance_scale=1.5, num_inference_steps=4,
               generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()


def test_bad_scheduler_name():
    with pytest.raises(ValueError, match="scheduler must be one of"):
        digits_pipeline(scheduler="euler")


def test_generated_digits_are_recognisable(pipe):
    labels = list(range(10))
    images = pipe(class_labels=labels, guidance_scale=DIGITS_GUIDANCE_SCALE, num_inference_steps=10,
                  generator=torch.Generator().manual_seed(0), output_type="pt").images
    preds = digits_evaluator().predict(images)
    assert float((preds == torch.tensor(labels)).double().mean()) >= 0.9


def test_identity_vae_roundtrip(tmp_path):
    vae = IdentityVAE(in_channels=1, latent_channels=1, out_channels=1, sample_size=16)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(vae.encode(x).latent_dist.sample(), x)
    assert torch.equal(vae.decode(x).sample, x)
    assert torch.equal(vae.decode(x, return_dict=False)[0], x)
    vae.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = IdentityVAE.from_pretrained(tmp_path)
    public = ("in_channels", "latent_channels", "out_channels", "sample_size", "scaling_factor")
    assert {k: loaded.config[k] for k in public} == {k: vae.config[k] for k in public}
    assert loaded.config.scaling_factor == 1.0
    assert torch.equal(loaded.decode(x).sample, x)
    with pytest.raises(ValueError, match="expects"):
        loaded.decode(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="in_channels == latent_channels"):
        IdentityVAE(in_channels=1, latent_channels=4)


def test_feature_net_heldout_accuracy():
    pytest.importorskip("sklearn")
    from smoothcache.zoo.digits_data import digits_split
    from smoothcache.zoo.digits_net import load_feature_net

    split = digits_split()
    net = load_feature_net()
    with torch.no_grad():
        acc = float((net(split.test_images).argmax(1) == split.test_labels).double().mean())
    assert acc >= 0.98


def test_digits_split_is_deterministic_and_stratified():
    pytest.importorskip("sklearn")
    from smoothcache.zoo.digits_data import digits_split

    a, b = digits_split(), digits_split()
    assert a.train_images.shape == (1497, 1, 16, 16) and a.test_images.shape == (300, 1, 16, 16)
    assert a.train_images.dtype == torch.float32
    assert float(a.train_images.min()) >= -1.0 and float(a.train_images.max()) <= 1.0
    assert torch.equal(a.test_labels, b.test_labels) and torch.equal(a.test_images, b.test_images)
    counts = torch.bincount(a.test_labels, minlength=10)
    assert int(counts.min()) >= 29 and int(counts.max()) <= 31


def test_model_card_matches_constants():
    results = json.loads((DIGITS_DIR / "eval_results.json").read_text())
    assert results["guidance"] == DIGITS_GUIDANCE_SCALE
    assert results["samples"] >= 1000
    card = (DIGITS_DIR / "README.md").read_text()
    assert f"DIGITS_GUIDANCE_SCALE = {float(DIGITS_GUIDANCE_SCALE)}" in card
