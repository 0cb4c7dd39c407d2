"""The two small networks behind the video evaluator: a per-frame digit classifier and a 3-D CNN.

Both are trained on videos of the *train* digits only (``scripts/train_video_features.py``) and
shipped in ``zoo/video_features/`` as safetensors + ``config.json`` (loaded without pickle):

* :class:`FrameClassifier` -- a 2-D CNN that names the digit in one 24x24 frame wherever it is
  (global max pooling makes it translation tolerant). Class consistency of a video is judged from it.
* :class:`VideoFeatureNet` -- a 3-D CNN over a whole (8, 24, 24) clip, trained to name the digit
  *and* its velocity (24 classes), so that its penultimate features encode both appearance and motion.
  The Fréchet distance on these features is the video FID (an FVD in miniature).

Inputs are in [-1, 1] (the evaluator maps pipeline outputs in [0, 1] to this range).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from .video_data import CANVAS, NUM_FRAMES, VELOCITIES

__all__ = ["FEATURES_DIR", "FrameClassifier", "VideoFeatureNet", "load_video_nets"]

logger = logging.getLogger(__name__)

#: Folder of the shipped evaluator networks and reference statistics.
FEATURES_DIR = Path(__file__).resolve().parent / "video_features"
CONFIG_NAME = "config.json"
FRAME_WEIGHTS = "frame_classifier.safetensors"
VIDEO_WEIGHTS = "video_net.safetensors"


def _conv2d(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


def _conv3d(cin: int, cout: int, stride: tuple[int, int, int]) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm3d(cout), nn.ReLU()]


class FrameClassifier(nn.Module):
    """(N, 1, 24, 24) frames -> (N, num_classes) digit logits.

    Args:
        channels: widths of the two conv stages (the last stage repeats the second width).
        num_classes: digit classes.
        image_size: frame side.
    """

    def __init__(self, channels: tuple[int, int] = (32, 64), num_classes: int = 10, image_size: int = CANVAS):
        super().__init__()
        c1, c2 = channels
        self.image_size = image_size
        self.body = nn.Sequential(
            *_conv2d(1, c1), *_conv2d(c1, c1), nn.MaxPool2d(2),   # 24 -> 12
            *_conv2d(c1, c2), *_conv2d(c2, c2), nn.MaxPool2d(2),  # 12 -> 6
            *_conv2d(c2, c2), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(c2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of frames in [-1, 1]."""
        if x.ndim != 4 or x.shape[1:] != (1, self.image_size, self.image_size):
            raise ValueError(f"frame classifier expects (N, 1, {self.image_size}, {self.image_size}) frames, "
                             f"got {tuple(x.shape)}")
        return self.head(self.body(x))


class VideoFeatureNet(nn.Module):
    """(N, 1, F, 24, 24) clips -> ``feature_dim`` features; heads name the digit and the velocity.

    Args:
        channels: widths of the three strided 3-D conv stages.
        feature_dim: width of the penultimate (feature) layer.
        num_classes: digit classes.
        num_velocities: velocity classes (the order of :data:`~smoothcache.zoo.video_data.VELOCITIES`).
        num_frames: clip length.
        image_size: frame side.
    """

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64), feature_dim: int = 64,
                 num_classes: int = 10, num_velocities: int = len(VELOCITIES),
                 num_frames: int = NUM_FRAMES, image_size: int = CANVAS):
        super().__init__()
        c1, c2, c3 = channels
        self.num_frames, self.image_size = num_frames, image_size
        self.body = nn.Sequential(
            *_conv3d(1, c1, (1, 1, 1)),   # (F, 24, 24)
            *_conv3d(c1, c2, (1, 2, 2)),  # (F, 12, 12)
            *_conv3d(c2, c3, (2, 2, 2)),  # (F/2, 6, 6)
            *_conv3d(c3, c3, (1, 1, 1)),
            nn.AdaptiveAvgPool3d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(c3, feature_dim)
        self.class_head = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, num_classes))
        self.velocity_head = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, num_velocities))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (pre-activation) features (N, feature_dim) of clips in [-1, 1]."""
        expected = (1, self.num_frames, self.image_size, self.image_size)
        if x.ndim != 5 or x.shape[1:] != expected:
            raise ValueError(
                f"video net expects (N, {', '.join(map(str, expected))}) clips, got {tuple(x.shape)}"
            )
        return self.fc(self.body(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Digit logits (N, num_classes) and velocity logits (N, num_velocities)."""
        f = self.features(x)
        return self.class_head(f), self.velocity_head(f)


def load_video_nets(
    folder: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[FrameClassifier, VideoFeatureNet, dict]:
    """Load the shipped frame classifier and video network (safetensors + JSON, no pickle), in eval mode.

    Args:
        folder: folder holding ``config.json`` and the two weight files (default: the shipped one).
        device: torch device.

    Returns:
        ``(frame_classifier, video_net, config)``.
    """
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else FEATURES_DIR
    needed = (CONFIG_NAME, FRAME_WEIGHTS, VIDEO_WEIGHTS)
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"video evaluator networks not found in {folder}: missing {missing}; "
            "run scripts/train_video_features.py"
        )
    try:
        cfg = json.loads((folder / CONFIG_NAME).read_text())
        frame = FrameClassifier(
            channels=tuple(cfg["frame"]["channels"]),
            num_classes=int(cfg["num_classes"]),
            image_size=int(cfg["image_size"]),
        )
        video = VideoFeatureNet(
            channels=tuple(cfg["video"]["channels"]),
            feature_dim=int(cfg["video"]["feature_dim"]),
            num_classes=int(cfg["num_classes"]),
            num_velocities=int(cfg["video"]["num_velocities"]),
            num_frames=int(cfg["num_frames"]),
            image_size=int(cfg["image_size"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{folder / CONFIG_NAME} is not a valid video evaluator config: {exc!r}") from exc
    for net, name in ((frame, FRAME_WEIGHTS), (video, VIDEO_WEIGHTS)):
        try:
            net.load_state_dict(load_file(str(folder / name), device="cpu"))
        except Exception as exc:  # safetensors header errors, missing / unexpected keys, shape mismatches
            raise ValueError(f"cannot load {folder / name}: {exc}") from exc
    logger.debug("loaded video evaluator networks from %s", folder)
    return frame.to(device).eval(), video.to(device).eval(), cfg
