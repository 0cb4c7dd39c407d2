"""Tests of the embedded spoken-digits audio DiT, its spectrogram autoencoder and its evaluator."""

from __future__ import annotations

import json
import math
import shutil
import wave

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("scipy")

from diffusers import DPMSolverMultistepScheduler, StableAudioDiTModel  # noqa: E402
from diffusers.models.transformers.stable_audio_transformer import StableAudioDiTBlock  # noqa: E402

from smoothcache import Schedule, SmoothCache  # noqa: E402
from smoothcache.zoo.audio_eval import AudioEvaluator, log_spectral_distance, save_wav, snr  # noqa: E402
from smoothcache.zoo.audio_model import (  # noqa: E402
    AUDIO_DIR,
    AUDIO_GUIDANCE_SCALE,
    AudioDiTPipeline,
    ClassProjectionModel,
    audio_evaluator,
    audio_pipeline,
    model_time,
)
from smoothcache.zoo.audio_spectrogram import NUM_SAMPLES, SAMPLE_RATE, SpectrogramAutoencoder  # noqa: E402

BRANCHES = ["attn1", "attn2", "ff"]


@pytest.fixture(scope="module")
def pipe():
    return audio_pipeline()


@pytest.fixture(scope="module")
def evaluator():
    return audio_evaluator()


def _run(pipe, steps=4, seed=0, labels=(3, 7), **kw):
    return pipe(
        class_labels=list(labels),
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
        **kw,
    ).audios


def _tone(freq: float, n: int = 2, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(NUM_SAMPLES, dtype=torch.float64) / SAMPLE_RATE
    return (amp * torch.sin(2 * math.pi * freq * t)).float().expand(n, 1, NUM_SAMPLES).clone()


# ------------------------------------------------------------------------------------------ pipeline
def test_packaged_folder_layout():
    index = json.loads((AUDIO_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "AudioDiTPipeline"
    assert index["transformer"] == ["diffusers", "StableAudioDiTModel"]
    assert index["vae"] == ["smoothcache.zoo.audio_spectrogram", "SpectrogramAutoencoder"]
    assert index["projection_model"] == ["smoothcache.zoo.audio_model", "ClassProjectionModel"]
    assert not list(AUDIO_DIR.rglob("*.bin")), "weights must be safetensors only"
    total = sum(p.stat().st_size for p in AUDIO_DIR.rglob("*.safetensors"))
    assert total <= 20 * 1024 * 1024
    for name in ("README.md", "train_info.json", "eval_results.json"):
        assert (AUDIO_DIR / name).is_file()


def test_pipeline_components(pipe):
    assert isinstance(pipe, AudioDiTPipeline)
    assert isinstance(pipe.transformer, StableAudioDiTModel) and pipe.transformer.dtype == torch.float32
    blocks = [m for m in pipe.transformer.modules() if isinstance(m, StableAudioDiTBlock)]
    assert len(blocks) >= 4 and all(hasattr(b, k) for b in blocks for k in BRANCHES)
    sched = pipe.scheduler
    assert isinstance(sched, DPMSolverMultistepScheduler)
    assert sched.config.algorithm_type == "sde-dpmsolver++" and sched.config.solver_order == 3
    assert sched.config.prediction_type == "v_prediction"
    assert isinstance(pipe.vae, SpectrogramAutoencoder) and isinstance(
        pipe.projection_model, ClassProjectionModel
    )
    assert pipe.sample_rate == SAMPLE_RATE
    assert pipe.get_label_ids(["seven", "3", "zero"]) == [7, 3, 0]
    with pytest.raises(ValueError, match="unknown words"):
        pipe.get_label_ids(["eleven"])
    vae = pipe.vae
    assert pipe.transformer.config.in_channels == vae.latent_channels
    # narrower than the transformer: StableAudioDiTModel has no input-to-output skip
    assert (
        vae.latent_channels
        < pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim
    )
    gram = vae.components.T @ vae.components  # fitted principal components: orthonormal, decreasing variance
    assert torch.allclose(gram, torch.eye(vae.latent_channels), atol=1e-4)
    assert bool((vae.scales[1:] <= vae.scales[:-1]).all()) and float(vae.scales[-1]) > 0


def test_generation_shape_range_determinism(pipe):
    a, b, c = _run(pipe, seed=0), _run(pipe, seed=0), _run(pipe, seed=1)
    assert a.shape == (2, 1, NUM_SAMPLES) and a.dtype == torch.float32
    assert float(a.abs().max()) <= 1.0 and float(a.abs().max()) > 0.01
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert AUDIO_GUIDANCE_SCALE > 1  # the default runs the classifier-free guidance path (null class)
    unguided = _run(pipe, seed=0, guidance_scale=1.0)
    assert unguided.shape == a.shape and not torch.equal(unguided, a)
    out = pipe(
        class_labels=[1], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np"
    ).audios
    assert isinstance(out, np.ndarray) and out.shape == (1, 1, NUM_SAMPLES)
    lat = pipe(class_labels=[1], num_inference_steps=2, output_type="latent").audios
    assert lat.shape == (1, pipe.vae.latent_channels, pipe.vae.latent_length)


def test_bad_call_arguments(pipe):
    with pytest.raises(ValueError, match="class_labels must lie in \\[0, 9\\]"):
        _run(pipe, labels=(3, 10))
    with pytest.raises(ValueError, match="output_type"):
        pipe(class_labels=[1], num_inference_steps=2, output_type="pil")
    with pytest.raises(ValueError, match="scheduler must be one of"):
        audio_pipeline(scheduler="euler")


def test_stable_audio_open_port_scheduler():
    pytest.importorskip("torchsde")  # CosineDPMSolverMultistepScheduler's Brownian-tree noise
    from diffusers import CosineDPMSolverMultistepScheduler

    pipe = audio_pipeline(scheduler="cosine-dpm-sde")
    assert isinstance(pipe.scheduler, CosineDPMSolverMultistepScheduler)
    a, b = _run(pipe, steps=4), _run(pipe, steps=4)
    assert a.shape == (2, 1, NUM_SAMPLES) and bool(torch.isfinite(a).all()) and torch.equal(a, b)


def test_model_time_is_the_continuous_cosine_time(pipe):
    sched = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(100)
    t = model_time(sched, sched.timesteps)
    assert bool((t[1:] < t[:-1]).all()), "the transformer must see strictly decreasing timesteps"
    assert 0.99 < float(t[0]) <= 1.0 and 0.0 < float(t[-1]) < 0.05
    abar = sched.alphas_cumprod[sched.timesteps]
    assert torch.allclose(torch.cos(t.double() * math.pi / 2) ** 2, abar.double(), atol=1e-5)


def test_smoothcache_full_schedule_is_bit_identical(pipe):
    steps = 6
    ref = _run(pipe, steps=steps)
    with SmoothCache(pipe.transformer, Schedule.full(steps, BRANCHES)) as cache:
        out = _run(pipe, steps=steps)
    assert torch.equal(out, ref)
    assert cache.stats.predicted == 0 and cache.stats.computed > 0


def test_fora_schedule_skips_branch_calls(pipe):
    steps = 6
    ref = _run(pipe, steps=steps)
    with SmoothCache(pipe.transformer, Schedule.fixed_interval(steps, 2, BRANCHES)) as cache:
        out = _run(pipe, steps=steps)
    blocks = len(pipe.transformer.transformer_blocks)
    by_key = cache.stats.by_key()
    for key in BRANCHES:  # steps 0, 2, 4 and the last one compute; 1 and 3 reuse
        assert by_key[key] == {"computed": 4 * blocks, "predicted": 2 * blocks}
    assert out.shape == ref.shape and bool(torch.isfinite(out).all()) and not torch.equal(out, ref)


def test_generated_words_are_recognisable(pipe, evaluator):
    labels = list(range(10))
    sched = pipe.scheduler
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(sched.config, algorithm_type="dpmsolver++")
    try:
        audios = _run(pipe, steps=12, labels=labels)
    finally:
        pipe.scheduler = sched
    preds = evaluator.predict(audios)
    assert float((preds == torch.tensor(labels)).double().mean()) >= 0.7


def test_model_card_matches_constants():
    results = json.loads((AUDIO_DIR / "eval_results.json").read_text())
    assert results["guidance"] == AUDIO_GUIDANCE_SCALE and results["samples"] >= 200
    rows = {r["steps"]: r for r in results["runs"]}
    worse = {s for s, r in rows.items() if s < 100 and r["fid"] >= 1.2 * rows[100]["fid"]}
    # the yardstick's minimum: the fewest steps are clearly worse than 100 (the uncorrected SDE step failed
    # this)
    assert min(rows) in worse
    assert all(
        "lsd_db" in r and "snr_db" in r for s, r in rows.items() if s < 100
    )  # against the 100-step audio
    sweep = {r["guidance"]: r for r in results["sweep"]["runs"]}
    assert min(sweep, key=lambda g: sweep[g]["fid"]) == AUDIO_GUIDANCE_SCALE
    card = (AUDIO_DIR / "README.md").read_text()
    assert (
        f"AUDIO_GUIDANCE_SCALE = {float(AUDIO_GUIDANCE_SCALE)}" in card and f"{rows[100]['fid']:.2f}" in card
    )
    fewer = {s for s in rows if s < 100}
    assert ("Fewer steps are clearly worse at every step count" in card) == (worse == fewer)  # stated plainly
    assert ("More steps buy quality only up to" in card) == (bool(worse) and worse != fewer)
    assert ("Fewer steps are NOT worse" in card) == (not worse)
    assert results["sampler_check"]["runs"] and "DPMSolver3MSDEScheduler" in card


# ------------------------------------------------------------------------------------------ loader errors
def test_broken_folder_errors_name_the_problem(tmp_path):
    broken = tmp_path / "audio"
    shutil.copytree(AUDIO_DIR, broken)
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="transformer/diffusion_pytorch_model.safetensors"):
        audio_pipeline(folder=broken)
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        audio_pipeline(folder=tmp_path / "nowhere")
    shutil.copy(AUDIO_DIR / "transformer" / "diffusion_pytorch_model.safetensors", broken / "transformer")
    cfg = json.loads((broken / "vae" / "config.json").read_text())
    cfg["latent_channels"] = 32
    (broken / "vae" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError):  # buffers of the wrong size, or the channel check
        audio_pipeline(folder=broken)


def test_broken_evaluator_folder_errors(tmp_path):
    from smoothcache.zoo.audio_features import AUDIO_FEATURES_DIR

    with pytest.raises(FileNotFoundError, match="audio classifier not found"):
        AudioEvaluator(folder=tmp_path)
    folder = tmp_path / "features"
    shutil.copytree(AUDIO_FEATURES_DIR, folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        AudioEvaluator(folder=folder)
    shutil.copy(AUDIO_FEATURES_DIR / "model.safetensors", folder / "model.safetensors")
    (folder / "reference_stats.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        AudioEvaluator(folder=folder)


# ------------------------------------------------------------------------------------------ evaluator
def test_evaluator_real_floor(evaluator):
    floor = evaluator.real_floor()
    assert floor["class_consistency"] >= 0.95
    resynth = evaluator.real_floor(resynthesised=True)
    assert resynth["class_consistency"] >= 0.95
    assert 0.0 < floor["fid"] < 10.0 and 0.0 < resynth["fid"] < 10.0


def test_evaluator_rejects_noise(evaluator):
    g = torch.Generator().manual_seed(0)
    noise = (0.3 * torch.randn(50, 1, NUM_SAMPLES, generator=g)).clamp(-1, 1)
    labels = [i % 10 for i in range(50)]
    res = evaluator.evaluate(noise, labels)
    assert res["class_consistency"] <= 0.3
    assert res["fid"] > 5 * evaluator.real_floor()["fid"]
    with pytest.raises(ValueError, match="requested labels"):
        evaluator.evaluate(noise, labels[:10])
    with pytest.raises(ValueError, match="samples"):
        evaluator.evaluate(torch.zeros(2, 1, 100), [0, 1])


# ------------------------------------------------------------------------------------------ fidelity, wav
def test_fidelity_metrics():
    a = _tone(440.0)
    assert log_spectral_distance(a, a) == 0.0
    assert snr(a, a) == math.inf
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(a.shape, generator=g)
    noise = noise / noise.pow(2).mean().sqrt() * a.pow(2).mean().sqrt() * 0.1  # 20 dB below the signal
    assert abs(snr(a, a + noise) - 20.0) < 0.5
    per_clip = snr(a, a + noise, reduction="none")
    assert per_clip.shape == (2,)
    assert log_spectral_distance(a, a + noise) > log_spectral_distance(a, a + 0.1 * noise) > 0
    assert abs(log_spectral_distance(noise, 2 * noise) - 20 * math.log10(2)) < 1e-6  # a gain of 2 is 6.02 dB
    assert 40.0 < log_spectral_distance(noise, 1e-6 * noise) <= 80.0  # bins floored top_db below the maximum
    assert log_spectral_distance(noise, 1e-6 * noise, top_db=30.0) <= 30.0
    with pytest.raises(ValueError, match="differ in shape"):
        snr(a, a[:1])


def test_save_wav_roundtrip(tmp_path):
    clips = torch.stack([_tone(300.0, 1)[0], _tone(500.0, 1, amp=1.5)[0]])  # second clip clipped to [-1, 1]
    path = save_wav(tmp_path / "x.wav", clips, SAMPLE_RATE, gap=0.1)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    gap = int(0.1 * SAMPLE_RATE)
    assert pcm.shape == (2 * NUM_SAMPLES + gap,)
    assert np.all(pcm[NUM_SAMPLES : NUM_SAMPLES + gap] == 0)
    assert np.abs(pcm[:NUM_SAMPLES] / 32767 - clips[0, 0].numpy()).max() < 1e-4
    assert pcm.max() == 32767


# ------------------------------------------------------------------------------------------ autoencoder
def test_spectrogram_autoencoder_roundtrip(pipe):
    ae = pipe.vae
    x = _run(pipe, steps=6, labels=(0, 5))  # a clip the model makes lies (nearly) in the latent space
    z = ae.encode(x).latents
    assert z.shape == (2, ae.latent_channels, ae.latent_length)
    spec = ae.log_magnitude(x)
    assert torch.equal(ae.unfold_frames(ae.fold_frames(spec)), spec)
    y = ae.decode(z).sample
    assert y.shape == x.shape
    assert log_spectral_distance(x, y) < 6.0  # magnitudes survive the round trip (the phase is free)
    assert log_spectral_distance(x, y) < 0.5 * log_spectral_distance(
        x, _run(pipe, steps=6, labels=(0, 5), seed=3)
    )
    assert torch.equal(ae.decode(z).sample, y)  # deterministic
    with pytest.raises(ValueError, match="samples per clip"):
        ae.encode(torch.zeros(1, 1, 1000))
    with pytest.raises(ValueError, match="latents of shape"):
        ae.decode(torch.zeros(1, 3, 5))
    with pytest.raises(ValueError, match="fold"):
        SpectrogramAutoencoder(fold=5)
    with pytest.raises(ValueError, match="latent_channels"):
        SpectrogramAutoencoder(latent_channels=1000)


def test_spectrogram_autoencoder_fit_is_deterministic_pca():
    g = torch.Generator().manual_seed(0)
    clips = torch.cat([_tone(f, 1) for f in (300.0, 450.0, 700.0, 1100.0)]) * torch.rand(4, 1, 1, generator=g)
    clips = clips + 0.01 * torch.randn(clips.shape, generator=g)
    a, b = SpectrogramAutoencoder(latent_channels=8), SpectrogramAutoencoder(latent_channels=8)
    kept = a.fit(clips, batch=3)
    b.fit(clips)
    assert 0.5 < kept <= 1.0
    for name in ("mean", "components", "scales"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-5)
    z = a.encode(clips).latents
    assert abs(float(z.pow(2).mean()) - 1.0) < 0.1  # whitened
