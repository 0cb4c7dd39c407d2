"""The random-weight DiT-S/2-size pipeline that the overhead and compile benchmarks time."""

from __future__ import annotations

import torch

__all__ = ["dit_s2_pipeline"]


def dit_s2_pipeline(layers: int = 12, seed: int = 0):
    """A diffusers ``DiTPipeline`` of DiT-S/2 size with random weights and a one-level VAE.

    Args:
        layers: transformer blocks (DiT-S has 12).
        seed: seed of the weights.

    Hidden 384 (6 heads of 64), 32x32x4 latent, patch 2 (256 tokens), DDIM scheduler, progress bar off.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(seed)
    transformer = DiTTransformer2DModel(
        num_attention_heads=6,
        attention_head_dim=64,
        in_channels=4,
        out_channels=8,
        num_layers=layers,
        sample_size=32,
        patch_size=2,
    ).eval()
    vae = AutoencoderKL(
        block_out_channels=(8,),
        norm_num_groups=8,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
    ).eval()
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe
