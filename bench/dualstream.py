"""Tiny dual-stream DiTs with random weights, shaped like Flux, SD3 and HunyuanVideo, and a flow-matching
sampler.

Each model is the real diffusers class at a small size (image and text streams, double- and single-stream
blocks where the family has them), called exactly as its pipeline calls it, with an Euler flow-matching loop
over shifted sigmas. Used by the fusion tests and the memory benchmark (``python -m bench.memory``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["DUAL_STREAM", "DualStream", "build", "generate"]


@dataclass(frozen=True)
class DualStream:
    """A tiny dual-stream model: how to build it, its inputs, and how its pipeline calls it."""

    name: str
    make: Callable[[], torch.nn.Module]
    inputs: Callable[[torch.Generator, int], dict]
    call: Callable[[torch.nn.Module, torch.Tensor, float, dict], torch.Tensor]
    image_tokens: int
    text_tokens: int
    hidden: int
    time_scale: float = 1.0  # the timestep the model receives is sigma * time_scale


def _flux(layers: int = 4, single: int = 8, image: int = 16) -> DualStream:
    from diffusers import FluxTransformer2DModel

    def make():
        return FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=layers,
            num_single_layers=single,
            attention_head_dim=16,
            num_attention_heads=4,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=[4, 6, 6],
        )

    ids = torch.zeros(image, image, 3)
    ids[..., 1], ids[..., 2] = torch.arange(image)[:, None], torch.arange(image)[None, :]

    def inputs(g, batch):
        return {
            "x": torch.randn(batch, image * image, 16, generator=g),
            "text": torch.randn(batch, 32, 32, generator=g),
            "pooled": torch.randn(batch, 32, generator=g),
        }

    def call(model, x, sigma, c):
        return model(
            hidden_states=x,
            encoder_hidden_states=c["text"],
            pooled_projections=c["pooled"],
            timestep=torch.full((x.shape[0],), sigma),
            img_ids=ids.reshape(-1, 3),
            txt_ids=torch.zeros(32, 3),
            return_dict=False,
        )[0]

    return DualStream("flux", make, inputs, call, image * image, 32, 64)


def _sd3(layers: int = 6, image: int = 16) -> DualStream:
    from diffusers import SD3Transformer2DModel

    def make():
        return SD3Transformer2DModel(
            sample_size=2 * image,
            patch_size=2,
            in_channels=16,
            num_layers=layers,
            attention_head_dim=16,
            num_attention_heads=4,
            joint_attention_dim=32,
            caption_projection_dim=64,
            pooled_projection_dim=32,
            out_channels=16,
            pos_embed_max_size=2 * image,
        )

    def inputs(g, batch):
        return {
            "x": torch.randn(batch, 16, 2 * image, 2 * image, generator=g),
            "text": torch.randn(batch, 32, 32, generator=g),
            "pooled": torch.randn(batch, 32, generator=g),
        }

    def call(model, x, sigma, c):
        return model(
            hidden_states=x,
            encoder_hidden_states=c["text"],
            pooled_projections=c["pooled"],
            timestep=torch.full((x.shape[0],), sigma * 1000),
            return_dict=False,
        )[0]

    return DualStream("sd3", make, inputs, call, image * image, 32, 64, time_scale=1000.0)


def _hunyuan_video(layers: int = 2, single: int = 4, frames: int = 2, image: int = 8) -> DualStream:
    from diffusers import HunyuanVideoTransformer3DModel

    def make():
        return HunyuanVideoTransformer3DModel(
            in_channels=4,
            out_channels=4,
            num_attention_heads=4,
            attention_head_dim=16,
            num_layers=layers,
            num_single_layers=single,
            num_refiner_layers=1,
            patch_size=1,
            patch_size_t=1,
            text_embed_dim=32,
            pooled_projection_dim=32,
            rope_axes_dim=(4, 6, 6),
        )

    def inputs(g, batch):
        return {
            "x": torch.randn(batch, 4, frames, image, image, generator=g),
            "text": torch.randn(batch, 16, 32, generator=g),
            "pooled": torch.randn(batch, 32, generator=g),
            "mask": torch.ones(batch, 16, dtype=torch.bool),
        }

    def call(model, x, sigma, c):
        return model(
            hidden_states=x,
            timestep=torch.full((x.shape[0],), sigma * 1000),
            encoder_hidden_states=c["text"],
            encoder_attention_mask=c["mask"],
            pooled_projections=c["pooled"],
            guidance=torch.full((x.shape[0],), 6000.0),
            return_dict=False,
        )[0]

    return DualStream("hunyuan_video", make, inputs, call, frames * image * image, 16, 64, time_scale=1000.0)


DUAL_STREAM: dict[str, Callable[[], DualStream]] = {
    "flux": _flux,
    "sd3": _sd3,
    "hunyuan_video": _hunyuan_video,
}


def build(name: str, seed: int = 0) -> tuple[DualStream, torch.nn.Module]:
    """The spec and a random-weight model of ``name``, in eval mode."""
    spec = DUAL_STREAM[name]()
    torch.manual_seed(seed)
    return spec, spec.make().eval()


def sigmas(steps: int, shift: float = 3.0) -> list[float]:
    """Shifted flow-matching sigmas from 1 towards 0 (the last step ends at 0)."""
    t = torch.linspace(1.0, 1.0 / steps, steps)
    return (shift * t / (1 + (shift - 1) * t)).tolist()


def generate(
    spec: DualStream, model: torch.nn.Module, steps: int = 28, seed: int = 0, batch: int = 1
) -> torch.Tensor:
    """One Euler flow-matching generation from seeded noise; returns the final sample."""
    g = torch.Generator().manual_seed(seed)
    c = spec.inputs(g, batch)
    x = c.pop("x")
    levels = sigmas(steps) + [0.0]
    with torch.no_grad():
        for sigma, following in zip(levels, levels[1:]):
            x = x + (following - sigma) * spec.call(model, x, sigma, c)
    return x
