"""The video evaluator: video FID, class consistency, motion consistency, PSNR; and a GIF writer.

Metrics of a batch of generated moving-digit videos (``(N, F, 1, H, W)`` in [0, 1], the pipeline's
``.frames``):

* ``fid`` -- Fréchet distance between Gaussians fitted to the 64-d features of the shipped 3-D CNN
  (:class:`~smoothcache.zoo.video_net.VideoFeatureNet`) of the samples and of 10,000 train videos;
  ``precision`` / ``recall`` (Kynkäänniemi et al., 2019, k = 3) on the same features.
* ``class_consistency`` -- fraction of videos whose predicted class (the per-frame classifier's
  softmax averaged over the frames, then argmax) is the requested one; ``frame_accuracy`` -- fraction
  of single frames classified as the requested class.
* ``motion_consistency`` -- fraction of videos whose digit moves along a straight constant-velocity
  path, within :data:`MOTION_TOLERANCE` px; ``motion_error`` -- the mean path error in px. The path
  error of a video (:func:`motion_residuals`) is the RMS distance between the per-frame centres of mass
  and their least-squares constant-velocity fit. Real videos score exactly 0 px (the training data
  moves at constant velocity, without bounces); shuffling the frames of a real video breaks the line.
* :meth:`VideoEvaluator.psnr` -- per-video PSNR (dB) between two batches, e.g. cached vs uncached;
  :func:`video_fidelity` adds the per-frame SSIM (the demo's fidelity row).

:func:`save_gif` writes videos as one looping GIF; :func:`write_video_gif` is the demo's uncached / cached
grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import (
    REFERENCE_STATS_NAME,
    ArrayLike,
    class_consistency,
    load_reference_stats,
    psnr,
    reference_metrics,
    ssim,
)
from .video_data import CANVAS, NUM_FRAMES
from .video_net import FEATURES_DIR, load_video_nets

__all__ = [
    "MASS_THRESHOLD",
    "MOTION_TOLERANCE",
    "WINDOW",
    "VideoEvaluator",
    "motion_residuals",
    "save_gif",
    "video_evaluator",
    "video_fidelity",
    "write_video_gif",
]

#: Pixels brighter than this (range [0, 1]) carry the centre-of-mass weight ``value - MASS_THRESHOLD``.
MASS_THRESHOLD = 0.2
#: Side of the window the centre of mass is taken in: the brightest WINDOW x WINDOW square of a frame
#: (the 8x8 digit with a pixel of slack on each side), so that stray pixels far away are ignored.
WINDOW = 10
#: A frame whose total weight is below this has no digit; its video gets the worst path error.
MIN_MASS = 1.0
#: Largest path error (px) that still counts as a consistent motion.
MOTION_TOLERANCE = 0.5
#: Path error given to a video with an empty frame (half the canvas).
EMPTY_FRAME_ERROR = CANVAS / 2


def _as_videos(frames: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """(N, F, 1, H, W) tensor or (N, F, H, W, 1) array -> float (N, F, 1, H, W) in [0, 1]."""
    x = frames.detach().cpu() if isinstance(frames, torch.Tensor) else torch.as_tensor(np.asarray(frames))
    x = x.float()
    if x.ndim == 5 and x.shape[-1] == 1 and x.shape[2] != 1:  # output_type="np": (N, F, H, W, 1)
        x = x.permute(0, 1, 4, 2, 3)
    if x.ndim != 5 or x.shape[1:] != (NUM_FRAMES, 1, CANVAS, CANVAS):
        raise ValueError(f"expected videos of shape (N, {NUM_FRAMES}, 1, {CANVAS}, {CANVAS}) or "
                         f"(N, {NUM_FRAMES}, {CANVAS}, {CANVAS}, 1), got {tuple(x.shape)}")
    lo, hi = value_range
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def motion_residuals(frames: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Per-video path error (N,) in px: RMS distance of the centres of mass from a constant-velocity fit.

    Each pixel weighs ``max(value - MASS_THRESHOLD, 0)``; the centre of mass of frame ``t`` is taken in
    the ``WINDOW`` x ``WINDOW`` square of largest total weight (where the digit is; a real digit lies wholly
    inside it, so its centre is exact, while noise or a second blob cannot pull it). A straight
    line ``c0 + v t`` is fitted to the F centres by least squares (each axis); the error is
    ``sqrt(mean_t |c_t - (c0 + v t)|^2)``. A video with a frame of total weight below ``MIN_MASS`` (no
    digit) gets ``EMPTY_FRAME_ERROR``.

    Args:
        frames: videos (N, F, 1, H, W) (or (N, F, H, W, 1)) with values in ``value_range``.
        value_range: the range of ``frames``.
    """
    x = _as_videos(frames, value_range)[:, :, 0].double()  # (N, F, H, W)
    n = x.shape[0]
    w = (x - MASS_THRESHOLD).clamp(min=0.0)
    # mean weight per window
    box = F.avg_pool2d(w.reshape(n * NUM_FRAMES, 1, CANVAS, CANVAS), WINDOW, stride=1)
    side = CANVAS - WINDOW + 1
    best = box.reshape(n, NUM_FRAMES, side * side).argmax(dim=2)
    grid_i = torch.arange(CANVAS)
    r0, c0 = (best // side)[..., None], (best % side)[..., None]  # (N, F, 1)
    in_r = (grid_i >= r0) & (grid_i < r0 + WINDOW)
    in_c = (grid_i >= c0) & (grid_i < c0 + WINDOW)
    w = w * (in_r[..., :, None] & in_c[..., None, :])
    mass = w.sum(dim=(2, 3))  # (N, F)
    grid = torch.arange(CANVAS, dtype=torch.float64)
    safe = mass.clamp(min=1e-12)
    cy = (w.sum(dim=3) * grid).sum(dim=2) / safe
    cx = (w.sum(dim=2) * grid).sum(dim=2) / safe
    centres = torch.stack([cy, cx], dim=-1)  # (N, F, 2)
    t = torch.arange(NUM_FRAMES, dtype=torch.float64)
    design = torch.stack([torch.ones_like(t), t], dim=1)  # (F, 2)
    hat = design @ torch.linalg.pinv(design)  # projection onto constant-velocity paths
    fitted = torch.einsum("st,ntd->nsd", hat, centres)
    err = (centres - fitted).pow(2).sum(dim=-1).mean(dim=1).sqrt()
    empty = (mass < MIN_MASS).any(dim=1)
    return torch.where(empty, torch.full_like(err, EMPTY_FRAME_ERROR), err).float()


class VideoEvaluator:
    """Video FID, precision/recall, class and motion consistency of generated moving-digit videos.

    Args:
        folder: folder with the evaluator networks and ``reference_stats.npz`` (default: the shipped
            ``smoothcache/zoo/video_features``).
        device: torch device for the networks.
        batch_size: videos per forward pass.
        k: neighbourhood size for precision/recall.

    Example::

        ev = VideoEvaluator()
        out = pipe(class_labels=[3, 7], num_inference_steps=30, generator=torch.Generator().manual_seed(0),
                   output_type="pt")
        ev.evaluate(out.frames, [3, 7])  # {"fid": ..., "class_consistency": ..., "motion_consistency": ...}
    """

    def __init__(
        self,
        folder: str | Path | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        k: int = 3,
    ):
        self.folder = Path(folder) if folder is not None else FEATURES_DIR
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.k = int(k)
        self.frame_net, self.video_net, self.config = load_video_nets(self.folder, device=self.device)
        self.stats = load_reference_stats(
            self.folder / REFERENCE_STATS_NAME, self.video_net.fc.out_features, "video network"
        )

    @torch.no_grad()
    def _run(self, frames: ArrayLike, value_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Video features (N, D) and per-frame class probabilities (N, F, classes)."""
        x = _as_videos(frames, value_range) * 2.0 - 1.0  # (N, F, 1, H, W) in [-1, 1]
        feats, probs = [], []
        for start in range(0, x.shape[0], self.batch_size):
            chunk = x[start : start + self.batch_size].to(self.device)
            n = chunk.shape[0]
            feats.append(self.video_net.features(chunk.transpose(1, 2)).cpu())  # (n, 1, F, H, W)
            logits = self.frame_net(chunk.flatten(0, 1))
            probs.append(logits.softmax(dim=1).reshape(n, NUM_FRAMES, -1).cpu())
        return torch.cat(feats), torch.cat(probs)

    def features(self, frames: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
        """Video-network features (N, D) of videos (default range [0, 1], the pipeline output)."""
        return self._run(frames, value_range)[0]

    def predict(self, frames: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
        """Predicted class (N,) of each video: argmax of the frame classifier's mean softmax."""
        return self._run(frames, value_range)[1].mean(dim=1).argmax(dim=1)

    def evaluate_features(self, feats: ArrayLike) -> dict[str, float]:
        """``{"fid", "precision", "recall"}`` of precomputed video features against the train reference."""
        return reference_metrics(feats, self.stats, self.k)

    def evaluate(
        self, frames: ArrayLike, requested_labels: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)
    ) -> dict[str, float]:
        """All metrics of generated videos.

        Args:
            frames: pipeline outputs, (N, F, 1, H, W) tensor (``output_type="pt"``) or (N, F, H, W, 1)
                array (``output_type="np"``), N >= 4, values in ``value_range``.
            requested_labels: the (N,) classes the videos were generated for.
            value_range: the range of ``frames``.

        Returns:
            ``{"fid", "precision", "recall", "class_consistency", "frame_accuracy", "motion_consistency",
            "motion_error"}``.
        """
        req = (
            torch.as_tensor(
                np.asarray(
                    requested_labels.cpu() if isinstance(requested_labels, torch.Tensor) else requested_labels
                )
            )
            .reshape(-1)
            .long()
        )
        feats, probs = self._run(frames, value_range)
        if req.shape[0] != feats.shape[0]:
            raise ValueError(f"got {feats.shape[0]} videos but {req.shape[0]} requested labels")
        out = self.evaluate_features(feats)
        out["class_consistency"] = class_consistency(probs.mean(dim=1).argmax(dim=1), req)
        out["frame_accuracy"] = float((probs.argmax(dim=2) == req[:, None]).double().mean())
        err = motion_residuals(frames, value_range)
        out["motion_consistency"] = float((err < MOTION_TOLERANCE).double().mean())
        out["motion_error"] = float(err.double().mean())
        return out

    def real_floor(self) -> dict[str, float]:
        """Metrics of real held-out videos against the train reference (the floor).

        ``fid`` / ``precision`` / ``recall`` are recomputed from the shipped held-out features; the
        class and motion figures of the same held-out videos are read from ``config.json``.
        """
        if "heldout_features" not in self.stats:
            raise ValueError("reference statistics lack 'heldout_features'; cannot compute the floor")
        out = self.evaluate_features(self.stats["heldout_features"])
        out.update({k: float(v) for k, v in self.config.get("heldout", {}).items()})
        return out

    @staticmethod
    def psnr(a: ArrayLike, b: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> float:
        """Mean per-video PSNR (dB) between two video batches of the same shape (inf if identical)."""
        va, vb = _as_videos(a, value_range), _as_videos(b, value_range)
        if va.shape != vb.shape:
            raise ValueError(f"video batches differ in shape: {tuple(va.shape)} vs {tuple(vb.shape)}")
        return psnr(va.flatten(1, 2), vb.flatten(1, 2), data_range=1.0)


def video_evaluator(device: str | torch.device = "cpu") -> VideoEvaluator:
    """The :class:`VideoEvaluator` with the shipped networks and reference statistics.

    Args:
        device: torch device for the evaluator networks.
    """
    return VideoEvaluator(device=device)


def save_gif(
    path: str | Path,
    frames: ArrayLike,
    scale: int = 4,
    duration_ms: int = 125,
    value_range: tuple[float, float] = (0.0, 1.0),
    rows: int = 1,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Write videos as one looping grey-level GIF; several videos are tiled side by side.

    Args:
        path: output file (``.gif``).
        frames: one video (F, 1, H, W) or (F, H, W), or a batch (N, F, 1, H, W) tiled left to right
            with a 1-pixel grey separator (e.g. uncached | cached).
        rows: lay a batch out in this many rows (row-major; N must be a multiple of it).
        scale: integer nearest-neighbour upscaling factor.
        duration_ms: display time of each frame.
        value_range: the range of ``frames``.
        row_labels: one caption per row, written in a band above it and in the GIF's comment.

    Example::

        save_gif("digits.gif", torch.cat([uncached.frames[:1], cached.frames[:1]]))
    """
    from PIL import Image  # Pillow comes with matplotlib

    x = frames.detach().cpu() if isinstance(frames, torch.Tensor) else torch.as_tensor(np.asarray(frames))
    x = x.float()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5 or x.shape[2] != 1:
        raise ValueError(f"expected (F, 1, H, W), (F, H, W) or (N, F, 1, H, W) frames, got {tuple(x.shape)}")
    if scale < 1 or duration_ms < 1:
        raise ValueError(f"scale and duration_ms must be positive, got {scale} and {duration_ms}")
    lo, hi = value_range
    x = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)[:, :, 0]  # (N, F, H, W)
    n, f, h, w = x.shape
    if rows < 1 or n % rows:
        raise ValueError(f"cannot lay {n} videos out in {rows} rows")
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"got {len(row_labels)} row labels for {rows} rows")
    cols = n // rows
    lines = []
    for r in range(rows):
        if r:
            lines.append(torch.full((f, 1, cols * (w + 1) - 1), 0.5))  # grey separator row
        parts = []
        for i in range(r * cols, (r + 1) * cols):
            if i % cols:
                parts.append(torch.full((f, h, 1), 0.5))  # grey separator column
            parts.append(x[i])
        lines.append(torch.cat(parts, dim=2))  # (F, H, cols * (W + 1) - 1)
    strip = torch.cat(lines, dim=1)
    strip = strip.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    pixels = (strip * 255.0).round().to(torch.uint8).numpy()
    extra = {}
    if row_labels is not None:
        pixels = _caption_rows(pixels, list(row_labels), (h + 1) * scale)
        extra["comment"] = "; ".join(f"row {r + 1}: {label}" for r, label in enumerate(row_labels))
    images = [Image.fromarray(p) for p in pixels]
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0, **extra)
    return path


#: Height in pixels of the caption band :func:`save_gif` puts above each labelled row.
CAPTION_HEIGHT = 14


def _caption_rows(pixels: np.ndarray, labels: list[str], pitch: int) -> np.ndarray:
    """(F, H, W) uint8 frames whose rows start every ``pitch`` pixels -> the same with a captioned black band
    (white text, Pillow's default font) above each row."""
    from PIL import Image, ImageDraw

    frames, _, width = pixels.shape
    parts = []
    for r, label in enumerate(labels):
        band = Image.new("L", (width, CAPTION_HEIGHT), 0)
        ImageDraw.Draw(band).text((3, 1), label, fill=255)
        parts.append(np.broadcast_to(np.asarray(band), (frames, CAPTION_HEIGHT, width)))
        parts.append(pixels[:, r * pitch : (r + 1) * pitch])
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def video_fidelity(uncached: ArrayLike, cached: ArrayLike) -> dict[str, float]:
    """PSNR (per video) and SSIM (per frame) of cached videos against the uncached ones, both in [0, 1]."""
    a, b = _as_videos(uncached), _as_videos(cached)
    if a.shape != b.shape:
        raise ValueError(f"video batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return {"psnr_db": VideoEvaluator.psnr(a, b), "ssim": ssim(a.flatten(0, 1), b.flatten(0, 1))}


def write_video_gif(
    folder: str | Path,
    uncached: ArrayLike,
    cached: ArrayLike,
    per_row: int = 10,
    cached_label: str = "SmoothCache",
) -> dict[Path, str]:
    """GIF: the first ``per_row`` uncached videos (top row, captioned "uncached") above the same seeds with
    SmoothCache (bottom row, captioned ``cached_label``)."""
    a, b = _as_videos(uncached), _as_videos(cached)
    k = min(per_row, a.shape[0])
    path = Path(folder) / "samples_side_by_side.gif"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_gif(path, torch.cat([a[:k], b[:k]]), scale=3, rows=2, row_labels=["uncached", cached_label])
    return {path: f"top row: uncached, bottom row: {cached_label} (same seeds)"}
