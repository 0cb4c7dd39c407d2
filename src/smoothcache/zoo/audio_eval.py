"""The audio evaluator (FID on classifier features, class consistency) and cached-vs-uncached fidelity.

* :class:`AudioEvaluator` -- Fréchet distance between Gaussians fitted to the shipped spoken-digit
  classifier's 64-d penultimate features (:mod:`smoothcache.zoo.audio_features`) of generated clips and of
  the train split, improved precision / recall, and class consistency (the classifier hears the word that
  was asked for);
* :func:`log_spectral_distance` and :func:`snr` -- fidelity of cached audio to the uncached audio of the
  same seeds;
* :func:`save_wav` -- write clips to a 16-bit PCM WAV file (stdlib ``wave``, with an optional ``INFO`` title),
  e.g. for the demo.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import torch

from ..fidelity import log_spectral_distance, snr
from .audio_features import AUDIO_FEATURES_DIR, load_audio_classifier, log_mel
from .audio_spectrogram import SAMPLE_RATE
from .metrics import (
    REFERENCE_STATS_NAME,
    ArrayLike,
    class_consistency,
    load_reference_stats,
    reference_metrics,
)

__all__ = ["AudioEvaluator", "log_spectral_distance", "save_wav", "snr"]


def _as_audio(audios: ArrayLike, name: str = "audios") -> torch.Tensor:
    """(N, 1, L), (N, L) tensor/array -> (N, L) float32 tensor."""
    x = audios.detach().cpu() if isinstance(audios, torch.Tensor) else torch.as_tensor(np.asarray(audios))
    x = x.float()
    if x.ndim == 3 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, 1, L) or (N, L) with N >= 1, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contain NaN or inf")
    return x


class AudioEvaluator:
    """FID, precision / recall and class consistency of generated spoken digits.

    Args:
        folder: folder with the classifier and ``reference_stats.npz`` (default: the shipped
            ``smoothcache/zoo/audio_features``).
        device: torch device for the classifier.
        batch_size: clips per classifier forward pass.
        k: neighbourhood size for precision / recall.

    Example:
        >>> ev = AudioEvaluator()
        >>> ev.real_floor()["class_consistency"] > 0.9
        True
    """

    def __init__(self, folder: str | Path | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 256, k: int = 3):
        self.folder = Path(folder) if folder is not None else AUDIO_FEATURES_DIR
        self.device = torch.device(device)
        self.batch_size, self.k = int(batch_size), int(k)
        self.net = load_audio_classifier(self.folder, device=self.device)
        self.stats = load_reference_stats(
            self.folder / REFERENCE_STATS_NAME, self.net.fc.out_features, "classifier"
        )

    @torch.no_grad()
    def _run(self, audios: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        x = _as_audio(audios)
        if x.shape[1] != self.net.num_samples:
            raise ValueError(
                f"expected clips of {self.net.num_samples} samples at {SAMPLE_RATE} Hz, got {x.shape[1]}"
            )
        feats, preds = [], []
        for start in range(0, x.shape[0], self.batch_size):
            f = self.net.features(log_mel(x[start : start + self.batch_size].to(self.device)))
            feats.append(f.cpu())
            preds.append(self.net.head(f).argmax(dim=1).cpu())
        return torch.cat(feats), torch.cat(preds)

    def features(self, audios: ArrayLike) -> torch.Tensor:
        """Classifier features (N, D) of (N, 1, L) clips in [-1, 1]."""
        return self._run(audios)[0]

    def predict(self, audios: ArrayLike) -> torch.Tensor:
        """Predicted word ids (N,) of clips."""
        return self._run(audios)[1]

    def evaluate_features(
        self,
        feats: ArrayLike,
        pred_labels: ArrayLike | None = None,
        requested_labels: ArrayLike | None = None,
    ) -> dict[str, float]:
        """Metrics from precomputed features (and optionally predicted / requested labels)."""
        out = reference_metrics(feats, self.stats, self.k)
        if pred_labels is not None and requested_labels is not None:
            out["class_consistency"] = class_consistency(pred_labels, requested_labels)
        return out

    def evaluate(self, audios: ArrayLike, requested_labels: ArrayLike) -> dict[str, float]:
        """``{"fid", "precision", "recall", "class_consistency"}`` of generated clips.

        Args:
            audios: pipeline outputs, (N, 1, L) tensor (``output_type="pt"``) or array (``"np"``), in [-1, 1].
            requested_labels: the class ids the clips were generated for, (N,).
        """
        req = np.asarray(
            requested_labels.cpu() if isinstance(requested_labels, torch.Tensor) else requested_labels
        ).reshape(-1)
        feats, preds = self._run(audios)
        if req.shape[0] != feats.shape[0]:
            raise ValueError(f"got {feats.shape[0]} clips but {req.shape[0]} requested labels")
        return self.evaluate_features(feats, preds, req)

    def real_floor(self, resynthesised: bool = False) -> dict[str, float]:
        """Metrics of the real held-out split (unseen voices) against the train reference.

        Args:
            resynthesised: score the held-out clips after a Griffin-Lim round trip through the pipeline's
                spectrogram autoencoder instead: the best a model that generates spectrograms can reach.
        """
        key = "heldout_resynth_features" if resynthesised else "heldout_features"
        if key not in self.stats or "heldout_labels" not in self.stats:
            raise ValueError(
                f"reference statistics lack '{key}' / 'heldout_labels'; cannot compute the floor"
            )
        feats = torch.from_numpy(self.stats[key].astype(np.float32))
        with torch.no_grad():
            preds = self.net.head(feats.to(self.device)).argmax(dim=1).cpu()
        return self.evaluate_features(feats, preds, self.stats["heldout_labels"])


def save_wav(
    path: str | Path,
    audios: ArrayLike,
    sample_rate: int = SAMPLE_RATE,
    gap: float = 0.2,
    title: str | None = None,
) -> Path:
    """Write clips one after another (with ``gap`` seconds of silence between them) as 16-bit mono PCM WAV.

    Args:
        path: output file.
        audios: (N, 1, L), (N, L) or (L,) clips in [-1, 1] (values outside are clipped).
        sample_rate: sample rate in Hz.
        gap: silence between consecutive clips, in seconds.
        title: stored in a ``LIST``/``INFO`` chunk after the samples (``INAM``, the title players show).
    """
    x = (
        audios.detach().cpu().float().numpy()
        if isinstance(audios, torch.Tensor)
        else np.asarray(audios, np.float32)
    )
    if x.ndim == 1:
        x = x[None]
    x = _as_audio(x).numpy()
    silence = np.zeros((x.shape[0], int(round(gap * sample_rate))), dtype=np.float32)
    stream = np.concatenate([x, silence], axis=1).reshape(-1)
    if silence.shape[1]:
        stream = stream[: -silence.shape[1]]
    pcm = np.round(np.clip(stream, -1.0, 1.0) * 32767).astype("<i2")
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    if title is not None:
        _append_info(path, {b"INAM": title})
    return path


def _append_info(path: Path, fields: dict[bytes, str]) -> None:
    """Append a RIFF ``LIST``/``INFO`` chunk (null-terminated UTF-8 strings) and fix the RIFF size."""
    body = b"INFO"
    for key, text in fields.items():
        data = text.encode("utf-8") + b"\0"
        body += key + struct.pack("<I", len(data)) + data + b"\0" * (len(data) % 2)
    with open(path, "r+b") as f:
        f.seek(0, 2)
        f.write(b"LIST" + struct.pack("<I", len(body)) + body)
        size = f.tell()
        f.seek(4)
        f.write(struct.pack("<I", size - 8))
