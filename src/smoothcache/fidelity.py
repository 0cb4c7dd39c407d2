"""Fidelity of a cached output to the uncached one of the same inputs: PSNR and SSIM for images and video
frames, flicker for video, log-spectral distance and SNR for audio; and the pipeline outputs they read.

>>> import torch
>>> a = torch.rand(2, 1, 16, 16)
>>> round(psnr(a, (a + 0.01).clamp(0, 1)), 0) >= 40
True
>>> measure(a, a)["ssim"]
1.0
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "MEASURES",
    "as_output",
    "flicker",
    "log_spectral_distance",
    "measure",
    "psnr",
    "snr",
    "ssim",
]

ArrayLike = np.ndarray | torch.Tensor | Sequence

#: Each figure: what it is called, its unit, and whether a higher value is closer to the uncached output.
MEASURES = {
    "psnr_db": ("PSNR", "dB", True),
    "ssim": ("SSIM", "", True),
    "flicker": ("flicker vs uncached", "x", False),
    "lsd_db": ("log-spectral distance", "dB", False),
    "snr_db": ("SNR", "dB", True),
}

#: What each figure means, for reports.
MEANINGS = {
    "psnr_db": "peak signal-to-noise ratio of the cached output against the uncached one, per sample "
    "(10 log10(1 / MSE), values in [0, 1]); +6 dB halves the error; above ~40 dB the difference is hard "
    "to see.",
    "ssim": "structural similarity (7x7 Gaussian window), per image or video frame; 1 is identical.",
    "flicker": "mean frame-to-frame change of the cached video divided by the uncached video's; 1.0 moves "
    "as smoothly as the uncached video, above 1 flickers more.",
    "lsd_db": "log-spectral distance: per STFT frame (256-point FFT, hop 64), the root mean square over "
    "frequency of the dB difference between the cached and the uncached power spectrum "
    "(floored 80 dB below the uncached clip's loudest bin), averaged over frames and clips. "
    "0 dB: identical spectra; 6.02 dB: the same clip at twice the amplitude. Lower is closer.",
    "snr_db": "waveform SNR: 10 log10(sum uncached^2 / sum (cached - uncached)^2) per clip, i.e. "
    "signal = the uncached clip, noise = the difference, averaged in dB over clips. 0 dB: the "
    "difference is as loud as the clip (below 0: louder); each +10 dB divides its energy by 10. "
    "It compares samples one by one, so it also counts differences of phase, which the "
    "log-spectral distance (magnitudes only) ignores: read a low SNR next to a small log-spectral "
    "distance as waveforms that moved more than their spectra.",
}

#: The figures measured for each kind of output.
FIGURES = {
    "image": ("psnr_db", "ssim"),
    "video": ("psnr_db", "ssim", "flicker"),
    "audio": ("lsd_db", "snr_db"),
}


def _tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, (list, tuple)) and x and hasattr(x[0], "size") and hasattr(x[0], "mode"):  # PIL
        x = np.stack([np.asarray(im) for im in x])
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
    return torch.as_tensor(np.asarray(x))


def _reduce(values: torch.Tensor, reduction: str) -> float | torch.Tensor:
    if reduction == "none":
        return values
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return float(values.mean())


# ----------------------------------------------------------------- images
def _image_pair(a: ArrayLike, b: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    ta, tb = _tensor(a), _tensor(b)
    if ta.shape != tb.shape:
        raise ValueError(f"image batches differ in shape: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    if ta.ndim != 4:
        raise ValueError(f"expected image batches of shape (N, C, H, W), got {tuple(ta.shape)}")
    return ta.to(torch.float64), tb.to(torch.float64)


def psnr(
    a: ArrayLike, b: ArrayLike, data_range: float = 1.0, reduction: str = "mean"
) -> float | torch.Tensor:
    """Peak signal-to-noise ratio in dB between two (N, C, H, W) batches.

    Computed per image (``10 log10(data_range^2 / MSE)``) then averaged (``reduction="mean"``) or returned
    per image (``"none"``). Identical images give ``inf``. ``data_range`` is 1.0 for pipeline outputs in
    [0, 1], 2.0 for [-1, 1].
    """
    ta, tb = _image_pair(a, b)
    mse = (ta - tb).pow(2).flatten(1).mean(dim=1)
    return _reduce(10.0 * torch.log10(data_range**2 / mse), reduction)  # mse == 0 -> inf


def _gaussian_window(size: int, sigma: float, channels: int) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(
    a: ArrayLike,
    b: ArrayLike,
    data_range: float = 1.0,
    window_size: int = 7,
    sigma: float = 1.5,
    reduction: str = "mean",
) -> float | torch.Tensor:
    """Structural similarity (Wang et al., 2004) between two (N, C, H, W) batches.

    Gaussian-weighted local statistics (sigma 1.5, per channel, only full windows), K1 = 0.01, K2 = 0.03,
    mean of the SSIM map per image. The window is 7x7 instead of the usual 11x11 so that 16x16 images keep a
    10x10 map while it still covers about +-2 sigma. Identical images give exactly 1.
    """
    ta, tb = _image_pair(a, b)
    if min(ta.shape[-2:]) < window_size:
        raise ValueError(
            f"images of size {tuple(ta.shape[-2:])} are smaller than the {window_size}px SSIM window"
        )
    c = ta.shape[1]
    w = _gaussian_window(window_size, sigma, c)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, groups=c)

    mu_a, mu_b = filt(ta), filt(tb)
    var_a = filt(ta * ta) - mu_a**2
    var_b = filt(tb * tb) - mu_b**2
    cov = filt(ta * tb) - mu_a * mu_b
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return _reduce(smap.flatten(1).mean(dim=1), reduction)


# ----------------------------------------------------------------- video
def flicker(a: ArrayLike, b: ArrayLike, reduction: str = "mean") -> float | torch.Tensor:
    """Mean absolute frame-to-frame change of the videos ``b`` divided by that of the reference ``a``.

    Both (N, F, C, H, W) with F >= 2; 1.0 means ``b`` moves as smoothly as ``a``, above 1 it flickers more.
    """
    ta, tb = _tensor(a).double(), _tensor(b).double()
    if ta.shape != tb.shape or ta.ndim != 5 or ta.shape[1] < 2:
        raise ValueError(
            f"expected two video batches of one shape (N, F, C, H, W) with F >= 2, got {tuple(ta.shape)} "
            f"and {tuple(tb.shape)}"
        )
    change_a = (ta[:, 1:] - ta[:, :-1]).abs().flatten(1).mean(dim=1)
    change_b = (tb[:, 1:] - tb[:, :-1]).abs().flatten(1).mean(dim=1)
    return _reduce(change_b / change_a.clamp_min(1e-12), reduction)


# ----------------------------------------------------------------- audio
def _audio_pair(a: ArrayLike, b: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    out = []
    for x, name in ((a, "a"), (b, "b")):
        x = _tensor(x).double()
        x = x[:, 0] if x.ndim == 3 and x.shape[1] == 1 else x
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must have shape (N, 1, L) or (N, L) with N >= 1, got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contain NaN or inf")
        out.append(x)
    if out[0].shape != out[1].shape:
        raise ValueError(f"audio batches differ in shape: {tuple(out[0].shape)} vs {tuple(out[1].shape)}")
    return out[0], out[1]


def _power(x: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, dtype=x.dtype)
    return torch.stft(x, n_fft, hop_length, window=window, center=True, pad_mode="reflect",
                      return_complex=True).abs().pow(2)  # (N, n_fft // 2 + 1, frames)


def log_spectral_distance(
    a: ArrayLike, b: ArrayLike, top_db: float = 80.0, reduction: str = "mean", n_fft: int = 256,
    hop_length: int = 64,
) -> float | torch.Tensor:
    """Log-spectral distance in dB between two batches of clips (0 for identical audio).

    Per clip: ``mean_t sqrt(mean_f (10 log10 P_a - 10 log10 P_b)^2)`` on the power STFT, with both powers
    floored ``top_db`` below the reference clip's loudest bin, so inaudible differences in silent bins do not
    dominate. Scaling a clip by 2 (with nothing below the floor) gives 6.02 dB.

    Args:
        a: reference clips (e.g. uncached), (N, 1, L) or (N, L).
        b: clips to compare (e.g. cached), same shape.
        top_db: dynamic range kept below the reference's maximum.
        reduction: ``"mean"`` over clips or ``"none"``.
        n_fft, hop_length: the STFT's frame and hop, in samples.
    """
    ta, tb = _audio_pair(a, b)
    pa, pb = _power(ta, n_fft, hop_length), _power(tb, n_fft, hop_length)
    floor = (pa.amax(dim=(1, 2), keepdim=True) * 10.0 ** (-top_db / 10.0)).clamp_min(1e-20)
    diff = 10.0 * (torch.log10(torch.maximum(pa, floor)) - torch.log10(torch.maximum(pb, floor)))
    return _reduce(diff.pow(2).mean(dim=1).sqrt().mean(dim=1), reduction)


def snr(a: ArrayLike, b: ArrayLike, reduction: str = "mean") -> float | torch.Tensor:
    """Signal-to-noise ratio in dB of ``b`` against the reference ``a``: ``10 log10(sum a^2 / sum (a - b)^2)``
    per clip (identical clips give ``inf``), averaged in dB (``"mean"``) or per clip (``"none"``)."""
    ta, tb = _audio_pair(a, b)
    signal = ta.pow(2).sum(dim=1)
    noise = (ta - tb).pow(2).sum(dim=1)
    return _reduce(10.0 * torch.log10(signal / noise), reduction)


# ----------------------------------------------------------------- pipeline outputs
def as_output(result: Any) -> tuple[str, torch.Tensor]:
    """``(kind, tensor)`` of what a pipeline returned: ``"image"`` (N, C, H, W), ``"video"`` (N, F, C, H, W)
    or ``"audio"`` (N, L), float, on the CPU.

    Reads a diffusers output's ``images`` / ``frames`` / ``audios`` (tensors, arrays or PIL images, as
    ``output_type`` gives them) or a bare (N, C, H, W) tensor; anything else raises a ``TypeError``.
    """
    for kind, field in (("image", "images"), ("video", "frames"), ("audio", "audios")):
        value = getattr(result, field, None)
        if value is None and isinstance(result, dict):
            value = result.get(field)
        if value is not None:
            break
    else:
        if isinstance(result, (tuple, list)) and len(result) == 1 and isinstance(result[0], torch.Tensor):
            result = result[0]
        if not isinstance(result, torch.Tensor) or result.ndim != 4:
            raise TypeError(
                f"the pipeline returned {type(result).__name__}, not images, video frames or audio: expected "
                "an output with .images, .frames or .audios (or an (N, C, H, W) tensor)"
            )
        kind, value = "image", result
    if kind == "video" and isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        value = torch.stack([_tensor(frames) for frames in value])  # lists of PIL frames
    x = _tensor(value)
    if not x.is_floating_point():
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.float()
    channels_last = x.shape[-1] in (1, 3, 4) and x.shape[-3] not in (1, 3, 4)
    if kind == "image" and x.ndim == 4 and channels_last:
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif kind == "image" and x.ndim == 3:
        x = x[:, None]  # greyscale PIL -> (N, 1, H, W)
    elif kind == "video" and x.ndim == 5 and channels_last:
        x = x.permute(0, 1, 4, 2, 3)  # (N, F, H, W, C) -> (N, F, C, H, W)
    elif kind == "audio" and x.ndim == 3 and x.shape[1] == 1:
        x = x[:, 0]
    wanted = {"image": 4, "video": 5, "audio": 2}[kind]
    if x.ndim != wanted:
        raise TypeError(f"the pipeline's {kind} output has shape {tuple(x.shape)}, not a batch of {kind}s")
    return kind, x.contiguous()


def measure(reference: Any, output: Any, reduction: str = "mean") -> dict[str, float | torch.Tensor]:
    """The fidelity figures of ``output`` against the uncached ``reference`` (pipeline results or tensors):
    PSNR and SSIM for images; PSNR, SSIM (per frame) and flicker for video; LSD and SNR for audio."""
    kind, a = as_output(reference)
    other, b = as_output(output)
    if kind != other or a.shape != b.shape:
        raise ValueError(
            f"cannot compare a {kind} batch {tuple(a.shape)} with a {other} batch {tuple(b.shape)}"
        )
    if kind == "image":
        return {"psnr_db": psnr(a, b, reduction=reduction), "ssim": ssim(a, b, reduction=reduction)}
    if kind == "video":
        n = a.shape[0]
        frame_ssim = ssim(a.flatten(0, 1), b.flatten(0, 1), reduction="none").view(n, -1).mean(dim=1)
        return {
            "psnr_db": psnr(a.flatten(1, 2), b.flatten(1, 2), reduction=reduction),
            "ssim": _reduce(frame_ssim, reduction),
            "flicker": flicker(a, b, reduction=reduction),
        }
    return {
        "lsd_db": log_spectral_distance(a, b, reduction=reduction),
        "snr_db": snr(a, b, reduction=reduction),
    }
