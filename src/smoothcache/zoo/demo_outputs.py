"""The demo's fidelity figures (the cached samples against the uncached ones) and its side-by-side files
(PNG with column titles, WAV files named for what they hold)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..fidelity import MEANINGS, log_spectral_distance, psnr, snr, ssim

__all__ = ["FIDELITY", "FIDELITY_NOTES", "audio_fidelity", "image_fidelity", "write_audio_pairs",
           "write_image_grid"]


#: How the table shows each fidelity metric of the cached samples against the uncached ones.
FIDELITY = {
    "psnr_db": ("PSNR vs no cache", "{:.1f} dB"),
    "ssim": ("SSIM vs no cache", "{:.4f}"),
    "lsd_db": ("log-spectral distance vs no cache", "{:.2f} dB"),
    "snr_db": ("waveform SNR vs no cache", "{:.1f} dB"),
}


#: What a fidelity metric means and how to read it, printed under the table.
FIDELITY_NOTES = {key: MEANINGS[key] for key in ("lsd_db", "snr_db")}


def image_fidelity(uncached: torch.Tensor, cached: torch.Tensor) -> dict[str, float]:
    """PSNR and SSIM of the cached images against the uncached ones."""
    return {"psnr_db": psnr(uncached, cached), "ssim": ssim(uncached, cached)}


def write_image_grid(
    folder: Path,
    uncached: torch.Tensor,
    cached: torch.Tensor,
    per_class: int = 3,
    cached_label: str = "SmoothCache",
) -> dict[Path, str]:
    """PNG: for each class, ``per_class`` uncached samples (left) beside the same seeds cached (right); both
    sides are titled (``"uncached"``, ``cached_label``) in the image and in its PNG ``Description``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = uncached.shape[0]
    fig, axes = plt.subplots(10, 2 * per_class + 1, figsize=(1.0 * (2 * per_class + 1), 10.8))
    for c in range(10):
        picks = [i for i in range(c, n, 10)][:per_class]
        for j in range(2 * per_class + 1):
            ax = axes[c][j]
            ax.axis("off")
            if j == per_class:
                continue
            source, k = (uncached, j) if j < per_class else (cached, j - per_class - 1)
            if k < len(picks):
                ax.imshow(source[picks[k], 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
    axes[0][per_class // 2].set_title("uncached", fontsize=9, fontweight="bold")
    axes[0][per_class + 1 + per_class // 2].set_title(cached_label, fontsize=9, fontweight="bold")
    fig.suptitle("same seeds, one class per row", fontsize=8)
    fig.tight_layout()
    what = f"left: uncached, right: {cached_label} (same seeds, {per_class} per class, one class per row)"
    path = folder / "samples_side_by_side.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Title": f"uncached | {cached_label}", "Description": what})
    plt.close(fig)
    return {path: what}


def audio_fidelity(uncached: torch.Tensor, cached: torch.Tensor) -> dict[str, float]:
    """Log-spectral distance and waveform SNR of the cached clips against the uncached ones."""
    return {"lsd_db": log_spectral_distance(uncached, cached), "snr_db": snr(uncached, cached)}


def write_audio_pairs(
    folder: Path,
    uncached: torch.Tensor,
    cached: torch.Tensor,
    per_class: int = 1,
    cached_label: str = "SmoothCache",
) -> dict[Path, str]:
    """WAVs of the first ``per_class`` samples of each class (words zero .. nine, 0.25 s apart):
    ``uncached.wav``, ``smoothcache.wav`` (the same seeds cached) and
    ``side_by_side_uncached_then_smoothcache.wav`` (each uncached clip followed by its cached one, a longer
    pause between pairs). Each file's title (WAV ``INFO`` chunk) says what it holds."""
    from .audio_eval import save_wav

    picks = [i for c in range(10) for i in range(c, uncached.shape[0], 10)[:per_class]]
    pause = torch.zeros_like(uncached[:1])
    pairs = [clip for i in picks for clip in (uncached[i : i + 1], cached[i : i + 1], pause)][:-1]
    words = "the words zero .. nine" + (f", {per_class} of each" if per_class > 1 else "")
    files = {
        "uncached.wav": (uncached[picks], f"uncached: {words}"),
        "smoothcache.wav": (cached[picks], f"{cached_label}: {words}, the same seeds as uncached.wav"),
        "side_by_side_uncached_then_smoothcache.wav": (
            torch.cat(pairs),
            f"pairs: each word uncached, then {cached_label} (same seed)",
        ),
    }
    folder.mkdir(parents=True, exist_ok=True)
    return {
        save_wav(folder / name, clips, gap=0.25, title=what): what for name, (clips, what) in files.items()
    }
