"""The small digits CNN whose penultimate activations are the Digits-FID features.

The network is trained on the *train* split of :func:`smoothcache.zoo.digits_data.digits_split`
only (``scripts/train_features.py``) and shipped in ``zoo/digits_features/`` as
``model.safetensors`` + ``config.json``; it is loaded without pickle.

Input: (N, 1, 16, 16) float images in [-1, 1] (the evaluator maps pipeline outputs in [0, 1]
to this range).  Output of
:meth:`DigitsFeatureNet.features`: the ``feature_dim``-dimensional pre-activation
of the penultimate linear layer (dense and roughly Gaussian, which suits the
Fréchet distance better than post-ReLU activations that are often exactly 0).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

__all__ = ["FEATURES_DIR", "DigitsFeatureNet", "load_feature_net"]

logger = logging.getLogger(__name__)

#: Folder of the shipped feature network and reference statistics.
FEATURES_DIR = Path(__file__).resolve().parent / "digits_features"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class DigitsFeatureNet(nn.Module):
    """conv(32)x2 -> pool -> conv(64)x2 -> pool -> linear(feature_dim) -> linear(num_classes)."""

    def __init__(self, channels: tuple[int, int] = (32, 64), feature_dim: int = 64,
                 num_classes: int = 10, image_size: int = 16, dropout: float = 0.3):
        super().__init__()
        c1, c2 = channels
        self.image_size = image_size
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.fc = nn.Linear(c2 * (image_size // 4) ** 2, feature_dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"feature net expects images of shape (N, 1, {self.image_size}, {self.image_size}) "
                f"in [-1, 1], got {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (pre-activation) features, shape (N, feature_dim)."""
        self._check(x)
        return self.fc(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (N, num_classes)."""
        return self.head(self.features(x))


def load_feature_net(
    folder: str | Path | None = None, device: str | torch.device = "cpu"
) -> DigitsFeatureNet:
    """Load the shipped feature network (safetensors + JSON, no pickle), in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else FEATURES_DIR
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file() or not w_path.is_file():
        raise FileNotFoundError(
            f"digits feature network not found in {folder} (need {CONFIG_NAME} and {WEIGHTS_NAME}); "
            "run scripts/train_features.py"
        )
    cfg = json.loads(cfg_path.read_text())
    net = DigitsFeatureNet(
        channels=tuple(cfg["channels"]),
        feature_dim=int(cfg["feature_dim"]),
        num_classes=int(cfg["num_classes"]),
        image_size=int(cfg["image_size"]),
    )
    net.load_state_dict(load_file(str(w_path), device="cpu"))
    logger.debug("loaded digits feature net from %s", folder)
    return net.to(device).eval()
