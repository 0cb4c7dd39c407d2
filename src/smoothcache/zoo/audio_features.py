"""Log-mel features and the small spoken-digit classifier whose penultimate activations are the audio FID
features.

The classifier is trained on the *train* split of the espeak-ng spoken digits only
(``scripts/train_audio_features.py``) and shipped in ``zoo/audio_features/`` as ``model.safetensors`` +
``config.json`` (loaded without pickle), next to ``reference_stats.npz``.

Input of :class:`AudioClassifier`: (N, 1, n_mels, frames) log-mel images from :func:`log_mel`, each clip
normalised to its own maximum (so the loudness of a clip does not matter), in [-1, 1].
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from torch import nn

from .audio_spectrogram import HOP_LENGTH, N_FFT, NUM_SAMPLES, SAMPLE_RATE, stft_magnitude

__all__ = ["AUDIO_FEATURES_DIR", "AudioClassifier", "load_audio_classifier", "log_mel", "mel_filter_bank"]

logger = logging.getLogger(__name__)

#: Folder of the shipped classifier and reference statistics.
AUDIO_FEATURES_DIR = Path(__file__).resolve().parent / "audio_features"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
N_MELS = 40
#: log-mel dynamic range kept below each clip's maximum (dB).
TOP_DB = 80.0


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filter_bank(num_freqs: int, num_mels: int, sample_rate: int, f_min: float = 0.0,
                    f_max: float | None = None) -> torch.Tensor:
    """Triangular HTK-mel filters, (num_freqs, num_mels), each normalised to unit area (Slaney style).

    Args:
        num_freqs: STFT bins (n_fft // 2 + 1), spanning 0 .. sample_rate / 2.
        num_mels: number of mel bands.
        sample_rate: audio sample rate (Hz).
        f_min: lowest band edge (Hz).
        f_max: highest band edge (Hz); default sample_rate / 2.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, num_freqs, dtype=torch.float64)
    edges = _mel_to_hz(
        torch.linspace(
            float(_hz_to_mel(torch.tensor(f_min))),
            float(_hz_to_mel(torch.tensor(f_max))),
            num_mels + 2,
            dtype=torch.float64,
        )
    )
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lower[None]) / (centre - lower)[None]
    down = (upper[None] - freqs[:, None]) / (upper - centre)[None]
    bank = torch.clamp(torch.minimum(up, down), min=0.0)
    return (bank * (2.0 / (upper - lower))[None]).float()


def log_mel(audio: torch.Tensor, num_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(N, 1, L) or (N, L) audio -> (N, 1, num_mels, frames) log-mel in [-1, 1], each clip relative to its
    max.

    Power spectrogram (n_fft 256, hop 64) -> mel bands -> dB -> minus the clip's maximum, floored at
    -80 dB -> divided by 40 and shifted by +1.
    """
    power = stft_magnitude(audio, N_FFT, HOP_LENGTH) ** 2
    bank = mel_filter_bank(power.shape[1], num_mels, sample_rate).to(power.device)
    db = 10.0 * torch.log10(torch.einsum("nft,fm->nmt", power, bank).clamp_min(1e-10))
    db = (db - db.amax(dim=(1, 2), keepdim=True)).clamp_min(-TOP_DB)
    return (db / (TOP_DB / 2) + 1.0)[:, None]


class AudioClassifier(nn.Module):
    """conv(32)x2 -> pool -> conv(64)x2 -> pool -> conv(128) -> global mean -> linear(feature_dim) ->
    linear(classes).

    Args:
        channels: widths of the three convolution stages.
        feature_dim: width of the penultimate (feature) layer.
        num_classes: number of words.
        num_mels: mel bands of the input.
        num_samples: samples per clip the classifier was trained on.
        dropout: dropout before the classification layer.
    """

    def __init__(
        self,
        channels: tuple[int, int, int] = (32, 64, 128),
        feature_dim: int = 64,
        num_classes: int = 10,
        num_mels: int = N_MELS,
        num_samples: int = NUM_SAMPLES,
        dropout: float = 0.3,
    ):
        super().__init__()
        c1, c2, c3 = channels
        self.num_mels, self.num_samples = num_mels, num_samples

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *conv(1, c1),
            *conv(c1, c1),
            nn.MaxPool2d(2),  # (c1, M/2, T/2)
            *conv(c1, c2),
            *conv(c2, c2),
            nn.MaxPool2d(2),  # (c2, M/4, T/4)
            *conv(c2, c3),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (c3,)
        )
        self.fc = nn.Linear(c3, feature_dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def _check(self, x: torch.Tensor) -> None:
        frames = self.num_samples // HOP_LENGTH + 1
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != self.num_mels or x.shape[3] != frames:
            raise ValueError(
                f"classifier expects log-mel input (N, 1, {self.num_mels}, {frames}), got {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (pre-activation) features (N, feature_dim) of log-mel input."""
        self._check(x)
        return self.fc(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes) of log-mel input."""
        return self.head(self.features(x))


def load_audio_classifier(
    folder: str | Path | None = None, device: str | torch.device = "cpu"
) -> AudioClassifier:
    """Load the shipped classifier (safetensors + JSON, no pickle), in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else AUDIO_FEATURES_DIR
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file() or not w_path.is_file():
        raise FileNotFoundError(
            f"audio classifier not found in {folder} (need {CONFIG_NAME} and {WEIGHTS_NAME}); "
            "run scripts/train_audio_features.py"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
        net = AudioClassifier(
            channels=tuple(cfg["channels"]),
            feature_dim=int(cfg["feature_dim"]),
            num_classes=int(cfg["num_classes"]),
            num_mels=int(cfg["num_mels"]),
            num_samples=int(cfg["num_samples"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"invalid audio classifier config {cfg_path}: {exc!r}") from exc
    if int(cfg.get("sample_rate", SAMPLE_RATE)) != SAMPLE_RATE or not math.isclose(
        cfg.get("top_db", TOP_DB), TOP_DB
    ):
        raise ValueError(f"{cfg_path}: classifier was trained for another sample rate / dB range")
    try:
        net.load_state_dict(load_file(str(w_path), device="cpu"))
    except Exception as exc:  # safetensors' own error type, or missing / mis-shaped tensors
        raise ValueError(f"audio classifier weights {w_path} do not load: {exc}") from exc
    logger.debug("loaded audio classifier from %s", folder)
    return net.to(device).eval()
