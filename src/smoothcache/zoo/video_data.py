"""Moving digits: scikit-learn's 8x8 digits sliding across a 24x24 canvas over 8 frames.

A small, deterministic stand-in for Moving MNIST, generated on the fly from the digits that ship in
scikit-learn's wheel (no network). Every video shows one digit (its class is the video's label) moving
in a straight line at constant velocity:

* the digit is the raw 8x8 sklearn image, values 0..16 scaled to [0, 1], pasted on a black canvas;
* the velocity ``(vy, vx)`` is drawn uniformly from the 24 integer pairs in ``{-2..2}^2`` other than
  ``(0, 0)`` (up to 2 px per frame along each axis);
* the start corner ``(y0, x0)`` is drawn uniformly among the integer positions that keep the digit
  fully on the canvas for all 8 frames (the top-left corner stays in ``[0, 16]``). There are no
  bounces: 8 frames are short enough that every path fits, so the centre of mass of a real video moves
  exactly along a line, which makes the motion-consistency metric exact (0 px error for real videos).

Videos are tensors ``(N, F, 1, H, W)`` in [0, 1], the layout of the pipeline's ``.frames``.
The train / held-out digits follow :func:`smoothcache.zoo.digits_data.digits_split` (same seed and
stratification, so the two splits hold the same digits as the image model's). scikit-learn is a
train/dev dependency only: it is imported lazily by :func:`raw_digits_split`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .digits_data import NUM_CLASSES, SPLIT_SEED, TEST_SIZE

__all__ = [
    "CANVAS",
    "DIGIT_SIZE",
    "MAX_SPEED",
    "NUM_CLASSES",
    "NUM_FRAMES",
    "MotionBatch",
    "RawDigitsSplit",
    "VELOCITIES",
    "make_videos",
    "raw_digits_split",
    "render_videos",
    "sample_motions",
]

#: Side of the square canvas (pixels).
CANVAS = 24
#: Frames per video.
NUM_FRAMES = 8
#: Side of a digit (the raw sklearn resolution).
DIGIT_SIZE = 8
#: Largest speed along each axis, pixels per frame.
MAX_SPEED = 2
#: The 24 allowed velocities (vy, vx), in a fixed order (index = velocity class of the feature net).
VELOCITIES = torch.tensor(
    [(vy, vx) for vy in range(-MAX_SPEED, MAX_SPEED + 1) for vx in range(-MAX_SPEED, MAX_SPEED + 1)
     if (vy, vx) != (0, 0)], dtype=torch.int64)


class RawDigitsSplit(NamedTuple):
    """Train / held-out raw digits (N, 8, 8) float32 in [0, 1] and int64 labels."""

    train_digits: torch.Tensor
    train_labels: torch.Tensor
    test_digits: torch.Tensor
    test_labels: torch.Tensor


class MotionBatch(NamedTuple):
    """Videos (N, F, 1, H, W) in [0, 1] with their labels (N,), start corners and velocities (N, 2) as (y,
    x)."""

    videos: torch.Tensor
    labels: torch.Tensor
    starts: torch.Tensor
    velocities: torch.Tensor


def raw_digits_split(test_size: int = TEST_SIZE, seed: int = SPLIT_SEED) -> RawDigitsSplit:
    """The 8x8 digits split exactly as :func:`~smoothcache.zoo.digits_data.digits_split` splits them.

    Args:
        test_size: held-out digits (stratified over the classes).
        seed: split seed; the default is the image model's, never change it for shipped artefacts.
    """
    from sklearn.datasets import load_digits  # train/dev dependency only
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        index, test_size=test_size, random_state=seed, stratify=labels.numpy(), shuffle=True
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return RawDigitsSplit(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])


def sample_motions(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random start corners and velocities, (n, 2) int64 each, that keep the digit on the canvas.

    Args:
        n: number of paths.
        generator: the torch generator all randomness is drawn from (deterministic for a seed).
    """
    velocities = VELOCITIES[torch.randint(len(VELOCITIES), (n,), generator=generator)]
    span = CANVAS - DIGIT_SIZE  # the corner lives in [0, span]
    travel = velocities * (NUM_FRAMES - 1)
    low = (-travel).clamp(min=0)
    high = span - travel.clamp(min=0)  # inclusive
    u = torch.rand(n, 2, generator=generator)
    starts = low + (u * (high - low + 1).to(u.dtype)).long().clamp(max=high - low)
    return starts, velocities


def render_videos(digits: torch.Tensor, starts: torch.Tensor, velocities: torch.Tensor) -> torch.Tensor:
    """Paste each digit along its path: (N, 8, 8) digits -> (N, F, 1, CANVAS, CANVAS) videos in [0, 1].

    Args:
        digits: (N, 8, 8) digits in [0, 1].
        starts: (N, 2) integer top-left corners (y, x) of frame 0.
        velocities: (N, 2) integer pixels per frame (y, x).
    """
    n = digits.shape[0]
    if digits.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or starts.shape != (n, 2) or velocities.shape != (n, 2):
        raise ValueError(
            f"expected digits (N, {DIGIT_SIZE}, {DIGIT_SIZE}) and (N, 2) starts / velocities, got "
            f"{tuple(digits.shape)}, {tuple(starts.shape)}, {tuple(velocities.shape)}"
        )
    t = torch.arange(NUM_FRAMES)
    corners = starts[:, None, :] + velocities[:, None, :] * t[None, :, None]  # (N, F, 2)
    if int(corners.min()) < 0 or int(corners.max()) > CANVAS - DIGIT_SIZE:
        raise ValueError("a path leaves the canvas; draw paths with sample_motions")
    # gather: canvas pixel (r, c) of frame f shows digit pixel (r - y_f, c - x_f) when that is inside the
    # digit
    rows = torch.arange(CANVAS)[None, None, :] - corners[..., 0:1]  # (N, F, CANVAS)
    cols = torch.arange(CANVAS)[None, None, :] - corners[..., 1:2]
    inside_r = (rows >= 0) & (rows < DIGIT_SIZE)
    inside_c = (cols >= 0) & (cols < DIGIT_SIZE)
    r = rows.clamp(0, DIGIT_SIZE - 1)
    c = cols.clamp(0, DIGIT_SIZE - 1)
    flat = digits.reshape(n, 1, DIGIT_SIZE * DIGIT_SIZE).expand(n, NUM_FRAMES, -1)
    index = (r[..., :, None] * DIGIT_SIZE + c[..., None, :]).reshape(n, NUM_FRAMES, -1)
    frames = torch.gather(flat, 2, index).reshape(n, NUM_FRAMES, CANVAS, CANVAS)
    frames = frames * (inside_r[..., :, None] & inside_c[..., None, :])
    return frames[:, :, None].contiguous()


def make_videos(
    digits: torch.Tensor,
    labels: torch.Tensor,
    n: int,
    seed: int | torch.Generator,
    classes: torch.Tensor | None = None,
) -> MotionBatch:
    """``n`` moving-digit videos drawn deterministically from a pool of digits.

    Args:
        digits: (M, 8, 8) pool of digits in [0, 1] (a split of :func:`raw_digits_split`).
        labels: (M,) their classes.
        n: number of videos.
        seed: an int seed or a torch generator (a generator continues its stream: used for training).
        classes: optional (n,) classes to draw: video ``i`` then shows a random digit of class ``classes[i]``.
    """
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    if classes is None:
        idx = torch.randint(len(labels), (n,), generator=gen)
    else:
        classes = torch.as_tensor(classes, dtype=torch.int64).reshape(-1)
        if classes.numel() != n:
            raise ValueError(f"classes has {classes.numel()} entries for {n} videos")
        u = torch.rand(n, generator=gen)
        idx = torch.empty(n, dtype=torch.int64)
        for c in classes.unique():
            pool = torch.nonzero(labels == c).reshape(-1)
            if pool.numel() == 0:
                raise ValueError(f"no digit of class {int(c)} in the pool")
            where = classes == c
            idx[where] = pool[(u[where] * pool.numel()).long().clamp(max=pool.numel() - 1)]
    starts, velocities = sample_motions(n, gen)
    return MotionBatch(render_videos(digits[idx], starts, velocities), labels[idx], starts, velocities)
