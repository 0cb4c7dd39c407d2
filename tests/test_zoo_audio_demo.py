"""The audio model through the public zoo API and `smoothcache demo --model audio` (tiny sizes, seconds)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import struct
import wave

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("scipy")

import smoothcache.zoo as zoo  # noqa: E402
from smoothcache.cli import main  # noqa: E402
from smoothcache.zoo.audio_spectrogram import NUM_SAMPLES, SAMPLE_RATE  # noqa: E402
from smoothcache.zoo.demo import DEMO_MODELS, FIDELITY, audio_fidelity, format_table, write_audio_pairs  # noqa: E402


def test_zoo_exports_the_audio_model():
    for name in ("audio_pipeline", "audio_evaluator", "AUDIO_DIR", "AUDIO_GUIDANCE_SCALE"):
        assert name in zoo.__all__ and name in dir(zoo)
    assert (zoo.AUDIO_DIR / "model_index.json").is_file()
    pipe = zoo.audio_pipeline()
    labels = list(range(10))
    audios = pipe(class_labels=labels, num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                  output_type="pt").audios
    assert audios.shape == (10, 1, NUM_SAMPLES) and bool(torch.isfinite(audios).all())
    assert pipe.sample_rate == SAMPLE_RATE
    result = zoo.audio_evaluator().evaluate(audios, labels)
    assert {"fid", "class_consistency", "precision", "recall"} <= set(result)
    assert math.isfinite(result["fid"]) and result["fid"] > 0 and 0 <= result["class_consistency"] <= 1
    with pytest.raises(AttributeError):
        zoo.video_pipeline_that_does_not_exist  # noqa: B018


def test_demo_entry_matches_the_model():
    spec = DEMO_MODELS["audio"]
    assert spec.output == "audios" and spec.steps == 100 and spec.sampler == "DPM-Solver++(3M) SDE"
    assert spec.guidance == zoo.AUDIO_GUIDANCE_SCALE


def test_audio_fidelity_and_pairs_wav(tmp_path):
    clean = 0.3 * torch.randn(20, 1, NUM_SAMPLES, generator=torch.Generator().manual_seed(0))
    fid = audio_fidelity(clean, 0.5 * clean)
    assert set(fid) == {"lsd_db", "snr_db"} <= set(FIDELITY)
    assert abs(fid["lsd_db"] - 20 * math.log10(2)) < 0.05 and abs(fid["snr_db"] - 20 * math.log10(2)) < 1e-3
    files = write_audio_pairs(tmp_path / "out", clean, 0.5 * clean, cached_label="SmoothCache 2.00x plan")
    names = {path.name: what for path, what in files.items()}
    assert list(names) == ["uncached.wav", "smoothcache.wav", "side_by_side_uncached_then_smoothcache.wav"]
    gap = round(0.25 * SAMPLE_RATE)
    clips = {"uncached.wav": 10, "smoothcache.wav": 10,
             "side_by_side_uncached_then_smoothcache.wav": 10 * 3 - 1}  # pair + pause per class, not last
    for path, what in files.items():
        with wave.open(str(path)) as w:
            frames, rate = w.getnframes(), w.getframerate()
        n = clips[path.name]
        assert rate == SAMPLE_RATE and frames == n * NUM_SAMPLES + (n - 1) * gap
        assert _wav_info(path)[b"INAM"] == what  # the title players show says what the file holds
    assert names["uncached.wav"].startswith("uncached:")
    assert names["smoothcache.wav"].startswith("SmoothCache 2.00x plan:")
    assert names["side_by_side_uncached_then_smoothcache.wav"] == \
        "pairs: each word uncached, then SmoothCache 2.00x plan (same seed)"
    with wave.open(str(tmp_path / "out" / "smoothcache.wav")) as w:  # the cached clips, in class order
        pcm = torch.frombuffer(bytearray(w.readframes(NUM_SAMPLES)), dtype=torch.int16).float() / 32767
    assert torch.allclose(pcm, (0.5 * clean[0, 0]).clamp(-1, 1), atol=1 / 32767)


def _wav_info(path) -> dict[bytes, str]:
    """The fields of a WAV file's LIST/INFO chunk."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and struct.unpack("<I", data[4:8])[0] == len(data) - 8
    at, fields = 12, {}
    while at < len(data):
        kind, size = data[at:at + 4], struct.unpack("<I", data[at + 4:at + 8])[0]
        if kind == b"LIST" and data[at + 8:at + 12] == b"INFO":
            sub = at + 12
            while sub < at + 8 + size:
                key, n = data[sub:sub + 4], struct.unpack("<I", data[sub + 4:sub + 8])[0]
                fields[key] = data[sub + 8:sub + 8 + n].rstrip(b"\0").decode()
                sub += 8 + n + n % 2
        at += 8 + size + size % 2
    return fields


def test_demo_cli_runs_end_to_end(tmp_path):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", "--model", "audio", "--out", str(tmp_path), "--samples", "10", "--steps", "8",
                     "--json"])
    assert code == 0
    result = json.loads(printed.getvalue())
    assert result["model"] == "audio" and result["steps"] == 8 and result["samples"] == 10
    reused = sum(v["predicted"] for v in result["cache_stats"].values())
    assert reused > 0 and result["theoretical_speedup"] > 1
    assert result["fidelity"]["lsd_db"] > 0 and math.isfinite(result["fidelity"]["snr_db"])
    for label in ("no cache", "smoothcache"):
        assert {"fid", "class_consistency"} <= set(result["metrics"][label])
    assert os.listdir(tmp_path) == ["audio"]  # its own subfolder, beside the other models' demos
    out = tmp_path / "audio"
    names = ("uncached.wav", "smoothcache.wav", "side_by_side_uncached_then_smoothcache.wav")
    wavs = [out / name for name in names]
    assert list(result["files"]["samples"]) == [str(w) for w in wavs]
    assert all(w.read_bytes()[:4] == b"RIFF" for w in wavs)
    table = format_table(result)
    for row in ("DPM-Solver++(3M) SDE", "log-spectral distance vs no cache", "waveform SNR vs no cache",
                "class consistency", f"{wavs[2]}  pairs: each word uncached, then SmoothCache "):
        assert row in table
    # the plan is made in wall time: under load, 2x may be out of reach and the best reachable is labelled
    assert re.search(r"then SmoothCache (2\.00|1\.\d\d)x plan", table)
    # what the SNR and the log-spectral distance are, and how to read them together
    notes = " ".join(table.split())
    assert "signal = the uncached clip, noise = the difference" in notes
    assert "ignores: read a low SNR next to a small log-spectral distance" in notes
    assert "0 dB: identical spectra" in notes
