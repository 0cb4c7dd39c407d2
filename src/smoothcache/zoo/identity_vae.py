"""A pixel-space identity "VAE" so that diffusers' ``DiTPipeline`` runs unchanged.

``DiTPipeline`` always ends with ``vae.decode(latents / vae.config.scaling_factor)``.
The embedded digits DiT works directly in pixel space, so its "VAE" is the
identity: ``encode(x).latent_dist.sample() == x`` and ``decode(z).sample == z``.

Serialisation: diffusers' ``ModelMixin.save_pretrained`` / ``from_pretrained``
expect a weights file for every model component, and a model with an empty
state dict gives an empty (or missing) weights file that the loader treats as
"no weights found".  The model therefore registers one tiny persistent buffer,
``identity_marker`` (a single float32 equal to 1.0), which is saved to
``diffusion_pytorch_model.safetensors`` and also lets ``.to(device, dtype)``
report the device and dtype of the module.  It is never used in the computation.

In ``model_index.json`` the component is recorded as
``["smoothcache.zoo.identity_vae", "IdentityVAE"]``.  diffusers only resolves such a
custom library name from ``sys.modules`` (it never imports a module because a
repository names it), so import this module before calling
``DiTPipeline.from_pretrained`` -- :func:`smoothcache.zoo.digits_pipeline` does.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin

__all__ = ["IdentityVAE"]


class IdentityVAE(ModelMixin, ConfigMixin):
    """Identity autoencoder: latents are the images themselves (range [-1, 1]).

    Args:
        in_channels: image channels (1 for the digits).
        latent_channels: latent channels; must equal ``in_channels``.
        sample_size: image side, informative only.
        scaling_factor: ``DiTPipeline`` divides latents by it before decoding;
            1.0 keeps pixel space unchanged.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        latent_channels: int = 1,
        out_channels: int = 1,
        sample_size: int = 16,
        scaling_factor: float = 1.0,
    ):
        super().__init__()
        if not (in_channels == latent_channels == out_channels):
            raise ValueError(
                "IdentityVAE needs in_channels == latent_channels == out_channels, got "
                f"{in_channels}, {latent_channels}, {out_channels}"
            )
        # Tiny persistent buffer: gives the model a (non-empty) safetensors file.
        self.register_buffer("identity_marker", torch.ones(1), persistent=True)

    def _check(self, x: torch.Tensor, what: str) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"IdentityVAE.{what} expects (N, {self.config.latent_channels}, H, W), got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """Encode images: a deterministic (zero-variance) Gaussian centred on ``x``."""
        self._check(x, "encode")
        # DiagonalGaussianDistribution(deterministic=True) has std 0: sample() == mode() == x.
        parameters = torch.cat([x, torch.zeros_like(x)], dim=1)
        dist = DiagonalGaussianDistribution(parameters, deterministic=True)
        if not return_dict:
            return (dist,)
        return AutoencoderKLOutput(latent_dist=dist)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        """Decode latents: returns them unchanged as ``DecoderOutput(sample=z)``."""
        self._check(z, "decode")
        if not return_dict:
            return (z,)
        return DecoderOutput(sample=z)

    def forward(self, sample: torch.Tensor, return_dict: bool = True):
        """Encode then decode: the identity."""
        z = self.encode(sample).latent_dist.mode()
        return self.decode(z, return_dict=return_dict)
