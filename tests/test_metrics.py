"""Tests of the offline sample-quality metrics (smoothcache.zoo.metrics)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from smoothcache.zoo.digits_eval import DigitsEvaluator
from smoothcache.zoo.digits_net import FEATURES_DIR
from smoothcache.zoo.metrics import (
    REFERENCE_STATS_NAME,
    class_consistency,
    feature_statistics,
    frechet_distance,
    load_reference_stats,
    precision_recall,
    psnr,
    ssim,
)


@pytest.fixture
def feats() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(400, 8))


def fid_of(a, b) -> float:
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


# ------------------------------------------------------------------------ FID
def test_fid_identical_is_zero(feats):
    assert fid_of(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_fid_grows_with_shift(feats):
    values = [fid_of(feats, feats + s) for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(values, values[1:]))
    # a pure mean shift s in every one of the 8 dimensions costs exactly 8 s^2
    assert values[-1] == pytest.approx(8 * 2.0 ** 2, rel=1e-6)


def test_fid_covariance_difference(feats):
    assert fid_of(feats, feats * 2.0) > fid_of(feats, feats * 1.2) > 0.0


def test_fid_known_gaussians():
    # N(0, I) vs N(0, 4I) in 3-D: tr(I + 4I - 2*2I) = 3
    assert frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), 4 * np.eye(3)) == pytest.approx(3.0)


def test_fid_singular_covariances_are_finite():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 16))  # fewer samples than dimensions: rank-deficient covariance
    b = rng.normal(size=(5, 16))
    b[:, 3] = 0.0  # a constant feature
    value = fid_of(a, b)
    assert math.isfinite(value) and value > 0


def test_fid_accepts_torch_tensors(feats):
    t = torch.from_numpy(feats)
    assert frechet_distance(*feature_statistics(t), *feature_statistics(t + 1)) == pytest.approx(
        8.0, rel=1e-6
    )


def test_fid_shape_errors(feats):
    mu, sigma = feature_statistics(feats)
    with pytest.raises(ValueError, match="same length"):
        frechet_distance(mu, sigma, mu[:4], sigma[:4, :4])
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(mu, sigma, mu, sigma[:4, :4])
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu * np.nan, sigma, mu, sigma)
    with pytest.raises(ValueError, match="2-D"):
        feature_statistics(feats[0])
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics(feats[:1])


# ----------------------------------------------------------- precision/recall
def test_precision_recall_identical_sets(feats):
    assert precision_recall(feats, feats, k=3) == (1.0, 1.0)


def test_precision_recall_disjoint_sets(feats):
    assert precision_recall(feats, feats + 100.0, k=3) == (0.0, 0.0)


def test_precision_recall_partial_overlap(feats):
    # fake = half real points, half far away: precision drops to ~0.5, recall stays high
    fake = np.concatenate([feats[:200], feats[200:] + 100.0])
    prec, rec = precision_recall(feats, fake, k=3)
    assert prec == pytest.approx(0.5, abs=0.01)
    assert 0.3 < rec < 1.0


def test_precision_recall_errors(feats):
    with pytest.raises(ValueError, match="feature dimensions differ"):
        precision_recall(feats, feats[:, :4])
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(feats, feats[:3], k=3)
    with pytest.raises(ValueError, match="2-D"):
        precision_recall(feats[0], feats)


# ---------------------------------------------------------- class consistency
def test_class_consistency():
    assert class_consistency([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0
    assert class_consistency(torch.tensor([0, 1, 2, 3]), [0, 1, 2, 0]) == 0.75
    assert class_consistency(np.array([5, 5]), [1, 2]) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        class_consistency([0, 1], [0, 1, 2])


# ---------------------------------------------------------------- PSNR / SSIM
def test_psnr():
    a = torch.full((3, 1, 16, 16), 0.5, dtype=torch.float64)
    assert psnr(a, a) == math.inf
    # a uniform error of 0.1 on a [0, 1] range: MSE 0.01 -> 20 dB
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)
    # on a [-1, 1] range (data_range 2) the same error is 20 + 20 log10(2) dB
    assert psnr(a, a + 0.1, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2), abs=1e-9)
    per_image = psnr(a, a + 0.1, reduction="none")
    assert per_image.shape == (3,)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, a[:2])


def test_ssim():
    rng = torch.Generator().manual_seed(0)
    a = torch.rand((4, 1, 16, 16), generator=rng)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    noisy = (a + 0.1 * torch.randn(a.shape, generator=rng)).clamp(0, 1)
    very_noisy = (a + 0.3 * torch.randn(a.shape, generator=rng)).clamp(0, 1)
    s1, s2 = ssim(a, noisy), ssim(a, very_noisy)
    assert 0.0 < s2 < s1 < 1.0
    assert ssim(a, noisy, window_size=11) < 1.0
    with pytest.raises(ValueError, match="smaller than"):
        ssim(a[..., :6, :6], a[..., :6, :6])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ssim(a[0], a[0])


# ------------------------------------------------------------- reference stats
def test_reference_stats_shipped_and_valid():
    stats = load_reference_stats(FEATURES_DIR / REFERENCE_STATS_NAME)
    d = stats["mu"].shape[0]
    assert stats["sigma"].shape == (d, d)
    assert stats["features"].shape == (1497, d)
    assert stats["heldout_features"].shape == (300, d)


def test_reference_stats_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_reference_stats(tmp_path / "nope.npz")


def test_reference_stats_corrupt_file(tmp_path):
    bad = tmp_path / REFERENCE_STATS_NAME
    bad.write_bytes(b"this is not an npz file")
    with pytest.raises(ValueError, match="corrupt"):
        load_reference_stats(bad)


def test_reference_stats_missing_keys_and_bad_shapes(tmp_path):
    path = tmp_path / REFERENCE_STATS_NAME
    np.savez(path, mu=np.zeros(4), sigma=np.eye(4))
    with pytest.raises(ValueError, match="features"):
        load_reference_stats(path)
    np.savez(path, mu=np.zeros(4), sigma=np.eye(3), features=np.zeros((10, 4)))
    with pytest.raises(ValueError, match="'sigma' must have shape"):
        load_reference_stats(path)
    np.savez(path, mu=np.zeros(4), sigma=np.eye(4), features=np.zeros((10, 5)))
    with pytest.raises(ValueError, match="'features' must have shape"):
        load_reference_stats(path)


def test_evaluator_rejects_corrupt_stats(tmp_path):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(FEATURES_DIR / name, tmp_path / name)
    (tmp_path / REFERENCE_STATS_NAME).write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="corrupt"):
        DigitsEvaluator(tmp_path)
    np.savez(tmp_path / REFERENCE_STATS_NAME, mu=np.zeros(8), sigma=np.eye(8), features=np.zeros((10, 8)))
    with pytest.raises(ValueError, match="dimension"):
        DigitsEvaluator(tmp_path)


def test_evaluator_missing_network(tmp_path):
    with pytest.raises(FileNotFoundError, match="feature network"):
        DigitsEvaluator(tmp_path)


# ------------------------------------------------------------------ evaluator
def test_evaluator_floor_and_bad_inputs():
    ev = DigitsEvaluator()
    floor = ev.real_floor()
    assert 0.0 < floor["fid"] < 5.0
    assert floor["precision"] > 0.7 and floor["recall"] > 0.7
    with pytest.raises(ValueError, match="expected images"):
        ev.evaluate(torch.zeros(4, 1, 8, 8), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="requested labels"):
        ev.evaluate(torch.zeros(4, 1, 16, 16), [0, 1, 2])
    with pytest.raises(ValueError, match="dimension"):
        ev.evaluate_features(np.zeros((10, 3)))


def test_evaluator_on_real_heldout_digits():
    pytest.importorskip("sklearn")
    from smoothcache.zoo.digits_data import digits_split

    split = digits_split()
    ev = DigitsEvaluator()
    images01 = (split.test_images + 1) / 2  # pipeline range [0, 1]
    res = ev.evaluate(images01, split.test_labels)
    assert res["fid"] == pytest.approx(ev.real_floor()["fid"], rel=1e-4)
    assert res["class_consistency"] >= 0.98
    # numpy (N, H, W, 1) layout, as returned by output_type="np"
    res_np = ev.evaluate(images01.permute(0, 2, 3, 1).numpy(), split.test_labels.numpy())
    assert res_np["fid"] == pytest.approx(res["fid"], rel=1e-5)
    # pure noise is far away and inconsistent
    noise = torch.rand((300, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    bad = ev.evaluate(noise, split.test_labels)
    assert bad["fid"] > 20 * res["fid"]
    assert bad["precision"] < 0.1


def test_reference_stats_of_another_width_than_the_network_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "stats.npz"
    np.savez(path, mu=np.zeros(3), sigma=np.eye(3), features=rng.normal(size=(5, 3)))
    assert load_reference_stats(path, 3)["mu"].shape == (3,)
    with pytest.raises(ValueError, match="dimension 3 but the video network produces 4"):
        load_reference_stats(path, 4, "video network")
