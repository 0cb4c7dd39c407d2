"""Offline sample-quality metrics for the embedded models (image, audio, video).

Everything here runs offline on CPU:

* :func:`frechet_distance` / :func:`feature_statistics` -- the Fréchet distance
  between Gaussians fitted to feature sets ("Digits-FID" when the features come
  from the shipped digits CNN, see :mod:`smoothcache.zoo.digits_net`).
* :func:`precision_recall` -- improved precision / recall of Kynkäänniemi et al.
  (2019): k-NN balls around every feature vector approximate each manifold.
* :func:`class_consistency` -- how often the classifier agrees with the class
  label that was requested from the class-conditional model.
* :func:`psnr` and :func:`ssim` -- pixel fidelity between two image batches,
  e.g. a cached sampler's outputs against the uncached ones for the same seeds.

scipy is needed only for :func:`frechet_distance` (``scipy.linalg.sqrtm``) and
is imported lazily.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..fidelity import psnr, ssim

__all__ = [
    "REFERENCE_STATS_NAME",
    "class_consistency",
    "feature_statistics",
    "frechet_distance",
    "load_reference_stats",
    "reference_metrics",
    "precision_recall",
    "psnr",
    "ssim",
]

logger = logging.getLogger(__name__)

REFERENCE_STATS_NAME = "reference_stats.npz"

ArrayLike = np.ndarray | torch.Tensor | Sequence


def _as_numpy(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _as_features(x: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(x.detach().cpu() if isinstance(x, torch.Tensor) else np.asarray(x))
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) feature array, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return t.to(torch.float64)


# --------------------------------------------------------------------------- FID
def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of an (N, D) feature array, N >= 2."""
    f = _as_features(features, "features").numpy()
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or inf")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrtm(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """``scipy.linalg.sqrtm`` and whether scipy flagged the matrix as singular."""
    from scipy import linalg

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        root = linalg.sqrtm(matrix)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    return np.asarray(root), singular


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``, with the
    matrix square root from ``scipy.linalg.sqrtm``.  Robustness: if the product
    is singular (scipy warns, or the square root is not finite) ``eps * I`` is
    added to both covariances; tiny imaginary parts from numerical error are dropped (a large
    one is logged as a warning); the result is clipped at 0.
    """
    mu1, mu2 = _as_numpy(mu1, "mu1"), _as_numpy(mu2, "mu2")
    sigma1, sigma2 = _as_numpy(sigma1, "sigma1"), _as_numpy(sigma2, "sigma2")
    if mu1.ndim != 1 or mu2.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must be 1-D of the same length, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}) to match the means, got {s.shape}")
    for name, a in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf")

    diff = mu1 - mu2
    covmean, singular = _sqrtm(sigma1 @ sigma2)
    if singular or not np.all(np.isfinite(covmean)):
        # Singular / ill-conditioned product (e.g. fewer samples than dimensions, constant
        # features): regularise both covariances with eps * I, as pytorch-fid does.
        logger.debug("frechet_distance: singular product of covariances; adding %g to the diagonals", eps)
        offset = np.eye(d) * eps
        covmean, _ = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(covmean.imag))) if covmean.size else 0.0
        if max_imag > 1e-3 * max(1.0, float(np.max(np.abs(covmean.real)))):
            logger.warning("frechet_distance: dropping an imaginary component of size %.3g", max_imag)
        covmean = covmean.real
    fd = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(fd, 0.0)


# ------------------------------------------------------------ precision / recall
def _kth_nn_radii(feats: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    radii = []
    for start in range(0, feats.shape[0], chunk):
        d = torch.cdist(feats[start:start + chunk], feats)
        # the k+1-th smallest distance: the 1st is the point itself (0)
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    inside = []
    for start in range(0, points.shape[0], chunk):
        d = torch.cdist(points[start:start + chunk], centres)
        inside.append((d <= radii[None, :]).any(dim=1))
    return float(torch.cat(inside).double().mean())


def precision_recall(real_feats: ArrayLike, fake_feats: ArrayLike, k: int = 3,
                     chunk: int = 2048) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019).

    Each set's manifold is the union of balls centred on its points with radius
    the distance to the k-th nearest neighbour in the same set.  Precision is
    the fraction of fake points inside the real manifold, recall the fraction
    of real points inside the fake manifold.  Returns ``(precision, recall)``.
    """
    real = _as_features(real_feats, "real_feats")
    fake = _as_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real {real.shape[1]} vs fake {fake.shape[1]}")
    if k < 1 or k >= min(real.shape[0], fake.shape[0]):
        raise ValueError(f"k must be in [1, min(N_real, N_fake) - 1], got k={k} for sets of "
                         f"{real.shape[0]} and {fake.shape[0]}")
    real_r = _kth_nn_radii(real, k, chunk)
    fake_r = _kth_nn_radii(fake, k, chunk)
    return _coverage(fake, real, real_r, chunk), _coverage(real, fake, fake_r, chunk)


def class_consistency(pred_labels: ArrayLike, requested_labels: ArrayLike) -> float:
    """Fraction of samples whose predicted class equals the requested class."""
    pred = np.asarray(pred_labels.cpu() if isinstance(pred_labels, torch.Tensor) else pred_labels).reshape(-1)
    req = np.asarray(requested_labels.cpu() if isinstance(requested_labels, torch.Tensor)
                     else requested_labels).reshape(-1)
    if pred.shape != req.shape:
        raise ValueError(f"pred_labels and requested_labels differ in length: {pred.shape[0]} vs "
                         f"{req.shape[0]}")
    if pred.size == 0:
        raise ValueError("no labels given")
    return float(np.mean(pred == req))


# ------------------------------------------------------------ reference stats
def reference_metrics(feats: ArrayLike, stats: dict[str, np.ndarray], k: int = 3) -> dict[str, float]:
    """``{"fid", "precision", "recall"}`` of generated samples' features against reference statistics.

    Args:
        feats: (N, D) features of the generated samples.
        stats: :func:`load_reference_stats` output (``mu``, ``sigma`` and the real ``features``).
        k: neighbours of the precision / recall manifolds.
    """
    f = _as_features(feats, "features")
    d = stats["mu"].shape[0]
    if f.shape[1] != d:
        raise ValueError(f"features have dimension {f.shape[1]}, reference has {d}")
    mu, sigma = feature_statistics(f)
    prec, rec = precision_recall(stats["features"].astype(np.float32), f, k=k)
    return {"fid": frechet_distance(mu, sigma, stats["mu"], stats["sigma"]), "precision": prec, "recall": rec}


def load_reference_stats(
    path: str | Path, dim: int | None = None, network: str = "feature network"
) -> dict[str, np.ndarray]:
    """Load and validate ``reference_stats.npz`` (``allow_pickle=False``); with ``dim``, also check that the
    statistics have the width of the ``network`` that makes the features.

    Required arrays: ``mu`` (D,), ``sigma`` (D, D), ``features`` (N, D) -- the
    train-split features for precision/recall.  Optional: ``heldout_features``
    (M, D) for the real-vs-real floor.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"reference statistics file not found: {path} (run scripts/train_features.py)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            stats = {key: np.asarray(npz[key]) for key in npz.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError ...
        raise ValueError(f"reference statistics file {path} is corrupt or not a valid .npz: {exc}") from exc
    missing = {"mu", "sigma", "features"} - set(stats)
    if missing:
        raise ValueError(f"reference statistics file {path} lacks the arrays {sorted(missing)}")
    mu, sigma, feats = stats["mu"], stats["sigma"], stats["features"]
    if mu.ndim != 1:
        raise ValueError(f"{path}: 'mu' must be 1-D, got shape {mu.shape}")
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise ValueError(f"{path}: 'sigma' must have shape ({d}, {d}), got {sigma.shape}")
    for key in ("features", "heldout_features"):
        if key in stats and (stats[key].ndim != 2 or stats[key].shape[1] != d or stats[key].shape[0] < 2):
            raise ValueError(f"{path}: '{key}' must have shape (N>=2, {d}), got {stats[key].shape}")
    if feats.shape[0] < 2:
        raise ValueError(f"{path}: 'features' must hold at least 2 vectors")
    if dim is not None and d != dim:
        raise ValueError(f"reference statistics have dimension {d} but the {network} produces {dim}")
    return stats
