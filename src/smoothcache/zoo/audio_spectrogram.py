"""The audio DiT's "autoencoder": waveform <-> principal components of log-magnitude spectrogram tokens.

The embedded audio model (``zoo/audio/README.md``) diffuses in a fixed, linear transform of the
log-magnitude STFT instead of a learned latent space (no hub autoencoder can be downloaded here).
:class:`SpectrogramAutoencoder` plays the part of Stable Audio's ``vae``:

* ``encode(audio)``: (B, 1, L) waveform -> |STFT| (n_fft 256, hop 64, Hann) -> log, floored at the
  silence level -> two consecutive frames per token (258 values) -> the 96 leading principal components
  of the train-split tokens, scaled by one factor to a mean channel variance of 1: latents (B, 96, 48);
* ``decode(latents)``: the inverse projection, with the phase recovered by fast Griffin-Lim (Perraudin
  et al., 2013; momentum 0.99) from a fixed pseudo-random initial phase, so decoding is deterministic.

The projection keeps the latent narrower than the DiT (96 channels < width 128): ``StableAudioDiTModel``
has no input-to-output skip, so a latent wider than the transformer would leave directions the model
can never denoise.

Like :mod:`smoothcache.zoo.identity_vae`, the class is recorded in ``model_index.json`` as
``["smoothcache.zoo.audio_spectrogram", "SpectrogramAutoencoder"]``, which diffusers resolves from
``sys.modules`` only: :func:`smoothcache.zoo.audio_model.audio_pipeline` imports it first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

__all__ = ["HOP_LENGTH", "NUM_SAMPLES", "N_FFT", "SAMPLE_RATE", "SpectrogramAutoencoder",
           "SpectrogramEncoderOutput", "griffin_lim", "stft_magnitude"]

#: Sample rate of the spoken-digits audio (Hz).
SAMPLE_RATE = 8000
#: Samples per clip: 95 hops of 64, so a centred STFT has 96 frames (0.76 s).
NUM_SAMPLES = 6080
N_FFT = 256
HOP_LENGTH = 64


def _as_batch(audio: torch.Tensor) -> torch.Tensor:
    if audio.ndim == 3 and audio.shape[1] == 1:
        return audio[:, 0]
    if audio.ndim == 2:
        return audio
    raise ValueError(f"expected audio of shape (N, 1, L) or (N, L), got {tuple(audio.shape)}")


def stft_magnitude(audio: torch.Tensor, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH) -> torch.Tensor:
    """|STFT| of (N, L) or (N, 1, L) audio: (N, n_fft // 2 + 1, 1 + L // hop_length), centred Hann frames."""
    x = _as_batch(audio)
    x = x if x.is_floating_point() else x.float()
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(
        x, n_fft, hop_length, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    return spec.abs()


def griffin_lim(
    magnitude: torch.Tensor,
    length: int,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
    n_iter: int = 32,
    momentum: float = 0.99,
    seed: int = 0,
) -> torch.Tensor:
    """Fast Griffin-Lim phase recovery: (N, F, T) magnitudes -> (N, length) waveforms.

    Args:
        magnitude: non-negative STFT magnitudes, F = n_fft // 2 + 1.
        length: samples of the output waveform.
        n_fft: FFT size of the STFT the magnitudes come from.
        hop_length: hop of that STFT.
        n_iter: iterations (each one STFT + one inverse STFT).
        momentum: Perraudin et al.'s acceleration (0 gives the original Griffin-Lim).
        seed: seed of the initial phase, shared by the whole batch, so the result is deterministic.
    """
    mag = magnitude.float()
    window = torch.hann_window(n_fft, dtype=mag.dtype, device=mag.device)
    gen = torch.Generator().manual_seed(seed)
    phase = torch.rand(mag.shape[-2:], generator=gen, dtype=mag.dtype).to(mag.device) * (2 * math.pi)
    angles = torch.polar(torch.ones_like(phase), phase).expand_as(mag)
    previous = torch.zeros_like(angles)

    def istft(a: torch.Tensor) -> torch.Tensor:
        return torch.istft(mag * a, n_fft, hop_length, window=window, center=True, length=length)

    for _ in range(n_iter):
        rebuilt = torch.stft(
            istft(angles),
            n_fft,
            hop_length,
            window=window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        accelerated = rebuilt - (momentum / (1 + momentum)) * previous
        angles = accelerated / accelerated.abs().clamp_min(1e-16)
        previous = rebuilt
    return istft(angles)


@dataclass
class SpectrogramEncoderOutput(BaseOutput):
    """Output of :meth:`SpectrogramAutoencoder.encode`.

    Args:
        latents: (N, latent_channels, latent_length) standardised, folded log-magnitudes.
    """

    latents: torch.Tensor


class SpectrogramAutoencoder(ModelMixin, ConfigMixin):
    """Waveform <-> principal components of folded log-magnitude spectrogram frames.

    A token is ``fold`` consecutive frames of log(max(|STFT|, log_floor)) (F * fold values); its latent is
    the projection on the ``latent_channels`` leading principal components of the train-split tokens,
    scaled to a mean channel variance of 1 (the ``mean``, ``components`` and ``scales`` buffers, set by
    :meth:`fit`).  Decoding maps back, exponentiates and recovers a phase with Griffin-Lim.

    Args:
        sample_rate: audio sample rate (Hz).
        num_samples: samples per clip; ``num_samples % hop_length == 0``.
        n_fft: STFT size (F = n_fft // 2 + 1 frequency bins).
        hop_length: STFT hop.
        fold: consecutive frames per token; must divide the frame count.
        latent_channels: principal components kept, at most F * fold.
        whiten: divide each component by its own standard deviation (all latent channels unit variance);
            False divides all by one factor, keeping their relative scales (mean channel variance 1).
        log_floor: magnitudes are clamped to at least this before the log (the silence level).
        griffin_lim_iters: Griffin-Lim iterations in :meth:`decode`.
        griffin_lim_momentum: fast Griffin-Lim momentum.
        griffin_lim_seed: seed of Griffin-Lim's initial phase.
        scaling_factor: kept at 1.0 (the latents are scaled by ``scales`` already).

    Example:
        >>> ae = SpectrogramAutoencoder()
        >>> ae.encode(torch.zeros(2, 1, NUM_SAMPLES)).latents.shape
        torch.Size([2, 96, 48])
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        num_samples: int = NUM_SAMPLES,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        fold: int = 2,
        latent_channels: int = 96,
        whiten: bool = False,
        log_floor: float = 1e-2,
        griffin_lim_iters: int = 32,
        griffin_lim_momentum: float = 0.99,
        griffin_lim_seed: int = 0,
        scaling_factor: float = 1.0,
    ):
        super().__init__()
        if num_samples % hop_length:
            raise ValueError(f"num_samples ({num_samples}) must be a multiple of hop_length ({hop_length})")
        frames = num_samples // hop_length + 1
        if fold < 1 or frames % fold:
            raise ValueError(f"fold ({fold}) must divide the number of STFT frames ({frames})")
        if log_floor <= 0:
            raise ValueError(f"log_floor must be > 0, got {log_floor}")
        self.num_freqs, self.num_frames = n_fft // 2 + 1, frames
        dim = self.num_freqs * fold
        if not 1 <= latent_channels <= dim:
            raise ValueError(
                f"latent_channels must be in 1..{dim} (frequency bins x fold), got {latent_channels}"
            )
        # token statistics of the train split (identity-like defaults until fit() is called)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("components", torch.eye(dim)[:, :latent_channels].contiguous())
        self.register_buffer("scales", torch.ones(latent_channels))

    @property
    def token_dim(self) -> int:
        """Values per token before the projection: frequency bins x folded frames."""
        return self.num_freqs * self.config.fold

    @property
    def latent_channels(self) -> int:
        """Channels of a latent token (principal components kept)."""
        return int(self.config.latent_channels)

    @property
    def latent_length(self) -> int:
        """Tokens per clip."""
        return self.num_frames // self.config.fold

    @torch.no_grad()
    def fit(self, audio: torch.Tensor, batch: int = 500) -> float:
        """Set ``mean`` / ``components`` / ``scales`` from (N, 1, L) clips; returns the variance fraction
        kept.

        Deterministic: float64 eigendecomposition, each component's sign fixed so that its largest
        entry is positive.
        """
        count, total = 0, torch.zeros(self.token_dim, dtype=torch.float64)
        gram = torch.zeros(self.token_dim, self.token_dim, dtype=torch.float64)
        for i in range(0, len(audio), batch):
            tokens = self.fold_frames(self.log_magnitude(audio[i : i + batch])).transpose(1, 2)
            tokens = tokens.reshape(-1, self.token_dim).double()
            count, total, gram = count + len(tokens), total + tokens.sum(0), gram + tokens.T @ tokens
        mean = total / count
        cov = (gram - count * torch.outer(mean, mean)) / (count - 1)
        evals, evecs = torch.linalg.eigh(cov)
        evals, evecs = evals.flip(0), evecs.flip(1)
        signs = torch.sign(evecs.gather(0, evecs.abs().argmax(0, keepdim=True)))
        evecs = evecs * signs
        k = self.latent_channels
        self.mean.copy_(mean.float())
        self.components.copy_(evecs[:, :k].float())
        kept = evals[:k].clamp_min(1e-12)
        scales = kept.sqrt() if self.config.whiten else kept.mean().sqrt().expand(k)
        self.scales.copy_(scales.float())
        return float(evals[:k].sum() / evals.sum())

    def log_magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """log(max(|STFT|, log_floor)) of (N, 1, L) audio: (N, F, frames)."""
        x = _as_batch(audio)
        if x.shape[-1] != self.config.num_samples:
            raise ValueError(f"expected {self.config.num_samples} samples per clip, got {x.shape[-1]}")
        mag = stft_magnitude(x, self.config.n_fft, self.config.hop_length)
        return mag.clamp_min(self.config.log_floor).log()

    def fold_frames(self, spec: torch.Tensor) -> torch.Tensor:
        """(N, F, frames) -> (N, F * fold, frames / fold): token j holds frames j*fold .. j*fold+fold-1."""
        n, f, t = spec.shape
        k = self.config.fold
        return spec.reshape(n, f, t // k, k).permute(0, 3, 1, 2).reshape(n, k * f, t // k)

    def unfold_frames(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`fold_frames`."""
        n, c, t = tokens.shape
        k = self.config.fold
        return tokens.reshape(n, k, c // k, t).permute(0, 2, 3, 1).reshape(n, c // k, t * k)

    def _check_latents(self, z: torch.Tensor) -> None:
        if z.ndim != 3 or z.shape[1:] != (self.latent_channels, self.latent_length):
            raise ValueError(
                f"expected latents of shape (N, {self.latent_channels}, {self.latent_length}), "
                f"got {tuple(z.shape)}"
            )

    def encode(self, audio: torch.Tensor, return_dict: bool = True):
        """(N, 1, num_samples) audio -> ``.latents`` (N, latent_channels, latent_length)."""
        tokens = self.fold_frames(self.log_magnitude(audio)).transpose(1, 2)  # (N, T, F * fold)
        z = ((tokens - self.mean) @ self.components / self.scales).transpose(1, 2)  # (N, K, T)
        z = z.to(self.mean.dtype)
        return SpectrogramEncoderOutput(latents=z) if return_dict else (z,)

    def decode(self, latents: torch.Tensor, return_dict: bool = True):
        """Latents -> ``DecoderOutput(sample=(N, 1, num_samples) audio in [-1, 1])`` via Griffin-Lim."""
        self._check_latents(latents)
        z = latents.float().transpose(1, 2) * self.scales.float()  # (N, T, K)
        tokens = z @ self.components.float().T + self.mean.float()  # (N, T, F * fold)
        spec = self.unfold_frames(tokens.transpose(1, 2))
        # silence below the floor; cap far above any train clip (|STFT| of a full-scale clip is < 200)
        mag = spec.clamp(math.log(self.config.log_floor), math.log(200.0)).exp()
        cfg = self.config
        audio = griffin_lim(
            mag,
            cfg.num_samples,
            cfg.n_fft,
            cfg.hop_length,
            cfg.griffin_lim_iters,
            cfg.griffin_lim_momentum,
            cfg.griffin_lim_seed,
        )
        audio = audio.clamp(-1.0, 1.0)[:, None].to(latents.dtype)
        return DecoderOutput(sample=audio) if return_dict else (audio,)

    def forward(self, audio: torch.Tensor, return_dict: bool = True):
        """Encode then decode (a Griffin-Lim resynthesis of the input)."""
        return self.decode(self.encode(audio).latents, return_dict=return_dict)
