"""The scikit-learn handwritten digits, prepared for the embedded digits DiT.

scikit-learn ships 1,797 8x8 grey-level digits (values 0..16, 10 classes) inside
its wheel, so they load without any network access.  The DiT works on 16x16
images (patch size 2 -> 64 tokens), so every digit is upsampled 8x8 -> 16x16
with ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``.

Why bilinear with ``align_corners=False``: it is the standard image-resize
convention (pixel centres, as in PIL/torchvision), so it keeps the digit
centred and does not shift the image by half a pixel; it is smooth (nearest
neighbour would create blocky 2x2 patches that exactly align with the 2x2
patches of the transformer, an artificial structure), and it is linear,
deterministic and exactly reproducible on any machine.  Values are then scaled
from [0, 16] to [-1, 1] (bilinear interpolation of values in [0, 16] stays in
[0, 16], so the range is kept).

scikit-learn is only a train/dev dependency: it is imported lazily inside the
functions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "SPLIT_SEED",
    "TEST_SIZE",
    "DigitsSplit",
    "digits_split",
    "load_digits_images",
    "upsample_digits",
]

#: Side of the images the model sees.
IMAGE_SIZE = 16
#: Number of digit classes (0..9).
NUM_CLASSES = 10
#: Seed of the stratified train / held-out split.  Never change it: the shipped
#: reference statistics and the model were produced with this split.
SPLIT_SEED = 20240521
#: Number of held-out images (stratified over the 10 classes).
TEST_SIZE = 300


class DigitsSplit(NamedTuple):
    """Train / held-out images (N,1,16,16) float32 in [-1, 1] and int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def upsample_digits(raw: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Turn raw sklearn digits (N,64) or (N,8,8) in [0,16] into (N,1,16,16) in [-1,1]."""
    x = torch.as_tensor(np.asarray(raw), dtype=torch.float32)
    if x.ndim == 2 and x.shape[1] == 64:
        x = x.reshape(-1, 8, 8)
    if x.ndim != 3 or x.shape[1:] != (8, 8):
        raise ValueError(f"expected raw digits of shape (N, 64) or (N, 8, 8), got {tuple(x.shape)}")
    x = x[:, None] / 16.0
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return (x * 2.0 - 1.0).clamp(-1.0, 1.0).contiguous()


def load_digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as ((N,1,16,16) float32 in [-1,1], (N,) int64 labels)."""
    from sklearn.datasets import load_digits  # train/dev dependency only

    digits = load_digits()
    images = upsample_digits(digits.images)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    return images, labels


def digits_split(test_size: int = TEST_SIZE, seed: int = SPLIT_SEED) -> DigitsSplit:
    """Deterministic stratified split: 1,497 train / 300 held-out images by default."""
    from sklearn.model_selection import train_test_split  # train/dev dependency only

    images, labels = load_digits_images()
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        index, test_size=test_size, random_state=seed, stratify=labels.numpy(), shuffle=True
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return DigitsSplit(
        images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
    )
