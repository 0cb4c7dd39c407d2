"""Synthesise the spoken-digits data set of the embedded audio DiT with espeak-ng (offline, deterministic).

    apt-get install -y espeak-ng                   # the only place espeak-ng is needed
    python scripts/make_audio_data.py              # -> /work/data/audio/{train,heldout}.npz (~2-4 min)
    python scripts/make_audio_data.py --out DIR --per-class 600 --heldout-per-class 100

Every clip is one English digit word ("zero" .. "nine") spoken by espeak-ng with a random voice
(8 English accents x 16 voice variants), pitch and speed, resampled to 8 kHz, trimmed of silence,
placed at a small random onset in a fixed 6,080-sample (0.76 s) window, scaled to a random peak
amplitude and mixed with light white noise.  The split is by voice variant: the variants in
``HELDOUT_VARIANTS`` never appear in the train split (a real-vs-real floor for the evaluator that
measures unseen speakers, not unseen draws of the same ones).

Output: ``train.npz`` / ``heldout.npz`` with ``audio`` (N, 6080) int16 PCM, ``labels`` (N,) int64,
``voice`` / ``variant`` (N,) unicode, ``pitch`` / ``speed`` (N,) int64, ``sample_rate`` (); saved with
``np.savez`` (no pickled objects), read back with ``allow_pickle=False``.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import time
import wave
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from smoothcache.zoo.audio_spectrogram import NUM_SAMPLES, SAMPLE_RATE

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
VARIANTS = (
    "",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt4",
)
HELDOUT_VARIANTS = ("m3", "f4")
SEED = 20240611
DEFAULT_OUT = Path("/work/data/audio")


def espeak(word: str, voice: str, pitch: int, speed: int) -> tuple[np.ndarray, int]:
    """Raw espeak-ng output of one word: float waveform in [-1, 1] and its sample rate."""
    proc = subprocess.run(
        ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", word],
        check=True,
        capture_output=True,
    )
    data = proc.stdout
    # --stdout writes a streaming WAV header (unknown length): parse the header, take the rest as PCM
    with wave.open(io.BytesIO(data)) as w:
        rate, width = w.getframerate(), w.getsampwidth()
    if width != 2 or data[36:40] != b"data":
        raise RuntimeError(f"unexpected espeak-ng WAV output for {voice!r} (sample width {width})")
    body = data[44:]
    pcm = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2")
    return pcm.astype(np.float64) / 32768.0, rate


def trim(x: np.ndarray, rel_threshold: float = 0.02) -> np.ndarray:
    """Drop leading/trailing samples quieter than ``rel_threshold`` of the peak."""
    idx = np.nonzero(np.abs(x) > rel_threshold * np.abs(x).max())[0]
    return x[idx[0] : idx[-1] + 1] if idx.size else x


def make_clip(rng: np.random.Generator, label: int, variants: tuple[str, ...]) -> tuple[np.ndarray, dict]:
    """One deterministic clip (float64, NUM_SAMPLES) given the generator state."""
    accent = ACCENTS[rng.integers(len(ACCENTS))]
    variant = variants[rng.integers(len(variants))]
    voice = accent + (f"+{variant}" if variant else "")
    pitch = int(rng.integers(25, 76))
    speed = int(rng.integers(130, 201))
    onset = int(rng.uniform(0.02, 0.10) * SAMPLE_RATE)
    peak = rng.uniform(0.25, 0.9)
    snr_db = rng.uniform(35.0, 50.0)
    noise = rng.standard_normal(NUM_SAMPLES)
    fade = int(0.01 * SAMPLE_RATE)
    while True:  # too long for the window at this speed: speak faster
        raw, rate = espeak(WORDS[label], voice, pitch, speed)
        g = gcd(SAMPLE_RATE, rate)
        x = trim(resample_poly(raw, SAMPLE_RATE // g, rate // g))
        if onset + len(x) + fade <= NUM_SAMPLES or speed >= 400:
            break
        speed = int(speed * 1.15)
    x = x[: NUM_SAMPLES - onset]
    ramp = np.linspace(0.0, 1.0, min(fade, len(x)))
    x[: len(ramp)] *= ramp
    x[len(x) - len(ramp) :] *= ramp[::-1]
    clip = np.zeros(NUM_SAMPLES)
    clip[onset : onset + len(x)] = x / np.abs(x).max() * peak
    rms = np.sqrt(np.mean(x**2)) / np.abs(x).max() * peak
    clip += noise * rms * 10 ** (-snr_db / 20)
    meta = {"voice": accent, "variant": variant or "default", "pitch": pitch, "speed": speed}
    return np.clip(clip, -1.0, 1.0), meta


def make_split(per_class: int, variants: tuple[str, ...], seed: int) -> dict[str, np.ndarray]:
    n = per_class * len(WORDS)
    audio = np.zeros((n, NUM_SAMPLES), dtype=np.int16)
    labels = np.arange(n, dtype=np.int64) % len(WORDS)
    metas = []
    t0 = time.time()
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        clip, meta = make_clip(rng, int(labels[i]), variants)
        audio[i] = np.round(clip * 32767).astype(np.int16)
        metas.append(meta)
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1}/{n} clips ({time.time() - t0:.0f} s)", flush=True)
    return {
        "audio": audio,
        "labels": labels,
        "sample_rate": np.array(SAMPLE_RATE),
        "voice": np.array([m["voice"] for m in metas]),
        "variant": np.array([m["variant"] for m in metas]),
        "pitch": np.array([m["pitch"] for m in metas], dtype=np.int64),
        "speed": np.array([m["speed"] for m in metas], dtype=np.int64),
    }


def load_split(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(audio float32 (N, NUM_SAMPLES) in [-1, 1], labels int64 (N,))`` of a saved split."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["sample_rate"]) != SAMPLE_RATE or z["audio"].shape[1] != NUM_SAMPLES:
            raise ValueError(
                f"{path}: expected {NUM_SAMPLES} samples at {SAMPLE_RATE} Hz, got "
                f"{z['audio'].shape[1]} at {int(z['sample_rate'])} Hz; regenerate the data"
            )
        return z["audio"].astype(np.float32) / 32767.0, z["labels"].astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--heldout-per-class", type=int, default=100)
    args = ap.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found: apt-get install -y espeak-ng")
    args.out.mkdir(parents=True, exist_ok=True)
    train_variants = tuple(v for v in VARIANTS if v not in HELDOUT_VARIANTS)
    for name, per_class, variants, seed in (
        ("train", args.per_class, train_variants, SEED),
        ("heldout", args.heldout_per_class, HELDOUT_VARIANTS, SEED + 1),
    ):
        print(f"{name}: {per_class * len(WORDS)} clips, variants {variants}")
        split = make_split(per_class, variants, seed)
        np.savez(args.out / f"{name}.npz", **split)
        print(f"wrote {args.out / f'{name}.npz'}; speeds {split['speed'].min()}-{split['speed'].max()} wpm")


if __name__ == "__main__":
    main()
