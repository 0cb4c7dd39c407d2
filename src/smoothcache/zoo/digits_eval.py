"""The digits evaluator: Digits-FID, precision/recall and class consistency of generated digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .digits_net import FEATURES_DIR, load_feature_net
from .metrics import (
    REFERENCE_STATS_NAME,
    ArrayLike,
    class_consistency,
    load_reference_stats,
    reference_metrics,
)

__all__ = ["DigitsEvaluator"]


class DigitsEvaluator:
    """Digits-FID, precision/recall and class consistency of generated digits.

    Args:
        folder: folder with the feature network and ``reference_stats.npz``
            (default: the shipped ``smoothcache/zoo/digits_features``).
        device: torch device for the feature network.
        batch_size: images per feature-network forward pass.
        k: neighbourhood size for precision/recall.
    """

    def __init__(self, folder: str | Path | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 500, k: int = 3):
        self.folder = Path(folder) if folder is not None else FEATURES_DIR
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.k = int(k)
        self.net = load_feature_net(self.folder, device=self.device)
        self.stats = load_reference_stats(
            self.folder / REFERENCE_STATS_NAME, self.net.fc.out_features, "feature network"
        )

    def _prepare(self, images: ArrayLike, value_range: tuple[float, float]) -> torch.Tensor:
        x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
        x = x.float()
        if x.ndim == 4 and x.shape[-1] == 1 and x.shape[1] != 1:  # (N, H, W, 1) numpy output
            x = x.permute(0, 3, 1, 2)
        size = self.net.image_size
        if x.ndim != 4 or x.shape[1:] != (1, size, size):
            raise ValueError(
                f"expected images of shape (N, 1, {size}, {size}) or (N, {size}, {size}, 1), "
                f"got {tuple(x.shape)}"
            )
        lo, hi = value_range
        return (x - lo) / (hi - lo) * 2.0 - 1.0

    @torch.no_grad()
    def _run(self, images: ArrayLike, value_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._prepare(images, value_range)
        feats, preds = [], []
        for start in range(0, x.shape[0], self.batch_size):
            f = self.net.features(x[start : start + self.batch_size].to(self.device))
            feats.append(f.cpu())
            preds.append(self.net.head(f).argmax(dim=1).cpu())
        return torch.cat(feats), torch.cat(preds)

    def features(self, images: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
        """Feature vectors (N, D) of images (default range [0, 1], the pipeline output)."""
        return self._run(images, value_range)[0]

    def predict(self, images: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
        """Predicted digit classes (N,) of images."""
        return self._run(images, value_range)[1]

    def evaluate_features(
        self,
        feats: ArrayLike,
        pred_labels: ArrayLike | None = None,
        requested_labels: ArrayLike | None = None,
    ) -> dict[str, float]:
        """Metrics from precomputed features (and optionally predicted/requested labels)."""
        out = reference_metrics(feats, self.stats, self.k)
        if pred_labels is not None and requested_labels is not None:
            out["class_consistency"] = class_consistency(pred_labels, requested_labels)
        return out

    def evaluate(
        self, images: ArrayLike, requested_labels: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)
    ) -> dict[str, float]:
        """``{"fid", "precision", "recall", "class_consistency"}`` of generated images.

        ``images``: pipeline outputs, (N, 1, 16, 16) tensor (``output_type="pt"``)
        or (N, 16, 16, 1) array (``output_type="np"``), values in ``value_range``.
        """
        req = np.asarray(
            requested_labels.cpu() if isinstance(requested_labels, torch.Tensor) else requested_labels
        ).reshape(-1)
        feats, preds = self._run(images, value_range)
        if req.shape[0] != feats.shape[0]:
            raise ValueError(f"got {feats.shape[0]} images but {req.shape[0]} requested labels")
        return self.evaluate_features(feats, preds, req)

    def real_floor(self) -> dict[str, float]:
        """Metrics of the real held-out split against the train reference (the floor)."""
        if "heldout_features" not in self.stats:
            raise ValueError("reference statistics lack 'heldout_features'; cannot compute the floor")
        return self.evaluate_features(self.stats["heldout_features"])
