"""Tiny, random-weight members of every DiT family smoothcache supports, each run through its real pipeline.

Every family is a :class:`Family`: ``build()`` makes the pipeline (or, for the Open-Sora-style STDiT, a
model plus its own sampling loop) from tiny configs, offline; ``run(pipe, steps, seed)`` generates and
returns a numpy array. Text encoders and tokenizers are never built: every pipeline gets seeded random
``prompt_embeds`` (and negatives) of the shape its transformer expects.

All builders seed torch first, so two builds of one family have the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn


@dataclass
class Family:
    """One block family, as the tests drive it.

    Attributes:
        name: test id.
        build: ``build(scheduler=None) -> pipe``; ``pipe.transformer`` is the denoiser.
        run: ``run(pipe, steps, seed) -> np.ndarray`` (a full generation).
        keys: schedule keys of every branch the family has (the ``Schedule.full`` keys).
        calls_per_step: denoiser calls per denoising step (2 for pipelines that run cond and uncond apart).
        blocks: number of blocks carrying each key (to count expected computations).
        cache_kwargs: extra ``SmoothCache`` / ``Calibrator`` arguments (user-given block classes).
        pipeline / solver / cfg: what the supported-models table says.
    """

    name: str
    build: Callable[..., Any]
    run: Callable[..., np.ndarray]
    keys: tuple[str, ...]
    calls_per_step: int
    blocks: dict[str, int]
    cache_kwargs: dict = field(default_factory=dict)
    pipeline: str = ""
    solver: str = ""
    cfg: str = ""


def _embeds(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _tiny_vae(latent_channels: int = 4, **kwargs):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8,), norm_num_groups=8, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",), **kwargs,
    ).eval()


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------------------------- PixArt
def build_pixart(scheduler=None, sigma: bool = False):
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        PixArtAlphaPipeline,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )

    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=2,
        caption_channels=32, in_channels=4, cross_attention_dim=16, out_channels=8, attention_bias=True,
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6,
    ).eval()
    cls = PixArtSigmaPipeline if sigma else PixArtAlphaPipeline
    default = DPMSolverMultistepScheduler() if sigma else DDIMScheduler()
    pipe = cls(tokenizer=None, text_encoder=None, vae=_tiny_vae(), transformer=transformer,
               scheduler=scheduler or default)
    return _quiet(pipe)


def run_pixart(pipe, steps: int, seed: int = 0, guidance_scale: float = 4.5, output_type: str = "np"):
    mask = torch.ones(2, 6)
    mask[1, 4:] = 0  # a padded caption: the attention mask path is used
    return pipe(
        negative_prompt=None,
        prompt_embeds=_embeds(seed, 2, 6, 32), prompt_attention_mask=mask,
        negative_prompt_embeds=_embeds(seed + 100, 2, 6, 32), negative_prompt_attention_mask=torch.ones(2, 6),
        num_inference_steps=steps, guidance_scale=guidance_scale, use_resolution_binning=False,
        generator=torch.Generator().manual_seed(seed), output_type=output_type,
    ).images


# ------------------------------------------------------------------------------------------------ SD3
def build_sd3(scheduler=None):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    # Two joint blocks: block 0 has the SD3.5 (MMDiT-X) second attention and ff_context; block 1 is the
    # context_pre_only last block (no ff_context).
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        caption_projection_dim=16, joint_attention_dim=32, pooled_projection_dim=24, out_channels=4,
        pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm",
    ).eval()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=scheduler or FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_tiny_vae(shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    return _quiet(pipe)


def run_sd3(pipe, steps: int, seed: int = 0, output_type: str = "np"):
    return pipe(
        prompt_embeds=_embeds(seed, 1, 7, 32),
        pooled_prompt_embeds=_embeds(seed + 1, 1, 24),
        negative_prompt_embeds=_embeds(seed + 100, 1, 7, 32),
        negative_pooled_prompt_embeds=_embeds(seed + 101, 1, 24),
        height=16,
        width=16,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(seed),
        output_type=output_type,
    ).images


# ----------------------------------------------------------------------------------------------- Flux
def build_flux(scheduler=None, guidance_embeds: bool = True):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=24,
        axes_dims_rope=[2, 2, 4],
        guidance_embeds=guidance_embeds,
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    ).eval()
    pipe = FluxPipeline(
        scheduler=scheduler or FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        transformer=transformer,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
    )
    return _quiet(pipe)


def run_flux(pipe, steps: int, seed: int = 0, output_type: str = "np"):
    return pipe(
        prompt_embeds=_embeds(seed, 1, 5, 32),
        pooled_prompt_embeds=_embeds(seed + 1, 1, 24),
        height=8,
        width=8,
        num_inference_steps=steps,
        guidance_scale=3.5,
        generator=torch.Generator().manual_seed(seed),
        output_type=output_type,
    ).images


def build_flux_true_cfg(scheduler=None):
    return build_flux(scheduler, guidance_embeds=False)


def run_flux_true_cfg(pipe, steps: int, seed: int = 0, output_type: str = "np"):
    """True CFG: a negative prompt and ``true_cfg_scale > 1`` make FluxPipeline call the transformer twice per
    step, in ``cache_context("cond")`` then ``cache_context("uncond")``."""
    return pipe(
        prompt_embeds=_embeds(seed, 1, 5, 32),
        pooled_prompt_embeds=_embeds(seed + 1, 1, 24),
        negative_prompt_embeds=_embeds(seed + 100, 1, 5, 32),
        negative_pooled_prompt_embeds=_embeds(seed + 101, 1, 24),
        true_cfg_scale=3.0,
        height=8,
        width=8,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output_type=output_type,
    ).images


# ------------------------------------------------------------------------------------- Stable Audio
def sde_dpmsolver_3m():
    """DPM-Solver++(3M) SDE, the sampler of the SmoothCache paper's Stable Audio Open experiments."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=3)


def build_stable_audio(scheduler=None):
    from diffusers import AutoencoderOobleck, StableAudioDiTModel, StableAudioPipeline
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel

    torch.manual_seed(0)
    transformer = StableAudioDiTModel(
        sample_size=8,
        in_channels=3,
        num_layers=2,
        attention_head_dim=4,
        num_attention_heads=2,
        num_key_value_attention_heads=1,
        out_channels=3,
        cross_attention_dim=8,
        time_proj_dim=8,
        global_states_input_dim=8,
        cross_attention_input_dim=4,
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderOobleck(
        encoder_hidden_size=6,
        downsampling_ratios=[1, 2],
        decoder_channels=3,
        decoder_input_channels=3,
        audio_channels=2,
        channel_multiples=[2, 4],
        sampling_rate=4,
    ).eval()
    torch.manual_seed(0)
    projection = StableAudioProjectionModel(
        text_encoder_dim=6, conditioning_dim=4, min_value=0, max_value=32
    ).eval()
    pipe = StableAudioPipeline(
        vae=vae,
        text_encoder=None,
        projection_model=projection,
        tokenizer=None,
        transformer=transformer,
        scheduler=scheduler or sde_dpmsolver_3m(),
    )
    return _quiet(pipe)


def run_stable_audio(pipe, steps: int, seed: int = 0, output_type: str = "np"):
    return pipe(
        prompt_embeds=_embeds(seed, 1, 5, 6),
        negative_prompt_embeds=_embeds(seed + 100, 1, 5, 6),
        attention_mask=torch.ones(1, 5, dtype=torch.long),
        negative_attention_mask=torch.ones(1, 5, dtype=torch.long),
        num_inference_steps=steps,
        guidance_scale=5.0,
        audio_end_in_s=3.0,
        generator=torch.Generator().manual_seed(seed),
        output_type=output_type,
    ).audios


# --------------------------------------------------------------------------------------------- Latte
def build_latte(scheduler=None):
    from diffusers import DDIMScheduler, LattePipeline, LatteTransformer3DModel

    torch.manual_seed(0)
    transformer = LatteTransformer3DModel(
        sample_size=8,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=16,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        video_length=3,
    ).eval()
    pipe = LattePipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_tiny_vae(),
        transformer=transformer,
        scheduler=scheduler or DDIMScheduler(),
    )
    return _quiet(pipe)


def run_latte(pipe, steps: int, seed: int = 0, output_type: str = "np"):
    return pipe(
        negative_prompt=None,
        prompt_embeds=_embeds(seed, 1, 6, 32),
        negative_prompt_embeds=_embeds(seed + 100, 1, 6, 32),
        video_length=3,
        height=8,
        width=8,
        num_inference_steps=steps,
        guidance_scale=4.5,
        mask_feature=False,
        generator=torch.Generator().manual_seed(seed),
        output_type=output_type,
    ).frames


# ----------------------------------------------------------------------------------------- CogVideoX
def build_cogvideox(scheduler=None):
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=8,
        text_embed_dim=16,
        num_layers=2,
        sample_width=4,
        sample_height=4,
        sample_frames=5,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=8,
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    ).eval()
    pipe = CogVideoXPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler or CogVideoXDDIMScheduler(),
    )
    return _quiet(pipe)


def run_cogvideox(pipe, steps: int, seed: int = 0, output_type: str = "np"):
    return pipe(
        prompt_embeds=_embeds(seed, 1, 8, 16),
        negative_prompt_embeds=_embeds(seed + 100, 1, 8, 16),
        height=16,
        width=16,
        num_frames=5,
        num_inference_steps=steps,
        guidance_scale=6.0,
        generator=torch.Generator().manual_seed(seed),
        output_type=output_type,
    ).frames


# ----------------------------------------------------------------------------------------------- Wan
def build_wan(scheduler=None):
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=16,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    ).eval()
    pipe = WanPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler or FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    return _quiet(pipe)


def run_wan(pipe, steps: int, seed: int = 0, output_type: str = "np"):
    return pipe(
        prompt_embeds=_embeds(seed, 1, 6, 16),
        negative_prompt_embeds=_embeds(seed + 100, 1, 6, 16),
        height=16,
        width=16,
        num_frames=5,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(seed),
        output_type=output_type,
    ).frames


def build_wan_ti2v(scheduler=None):
    """Wan 2.2 TI2V image-to-video: ``expand_timesteps=True`` gives the transformer one timestep per token,
    0 on the tokens of the clean first (image) frame."""
    from diffusers import WanImageToVideoPipeline

    wan = build_wan(scheduler)
    pipe = WanImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=wan.vae,
        scheduler=wan.scheduler,
        transformer=wan.transformer,
        expand_timesteps=True,
    )
    return _quiet(pipe)


def run_wan_ti2v(pipe, steps: int, seed: int = 0, output_type: str = "np"):
    from PIL import Image

    pixels = (
        torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(seed)).mul(255).to(torch.uint8).numpy()
    )
    return pipe(
        image=Image.fromarray(pixels),
        prompt_embeds=_embeds(seed, 1, 6, 16),
        negative_prompt_embeds=_embeds(seed + 100, 1, 6, 16),
        height=16,
        width=16,
        num_frames=5,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(seed),
        output_type=output_type,
    ).frames


# ------------------------------------------------------------------------ Open-Sora-style STDiT (ours)
from original_dit import Attention, Mlp  # noqa: E402  (the same branch modules as DiT's)


def _modulate(x, shift, scale):
    return x * (1 + scale) + shift


class _STBlock(nn.Module):
    """adaLN-single block (Open-Sora STDiT3 style): x + gate * attn(mod(norm(x))), x + gate * mlp(...)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads=2)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, 2 * dim)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def _tokens(self, x):  # (B, T, S, D) -> sequences this block attends over
        raise NotImplementedError

    def _untokens(self, x, shape):
        raise NotImplementedError

    def forward(self, x, t_mod):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + t_mod.reshape(x.shape[0], 6, -1)
        ).chunk(6, dim=1)
        b, f, s, d = x.shape
        h = _modulate(self.norm1(x), shift_msa[:, None], scale_msa[:, None])
        h = self._untokens(self.attn(self._tokens(h)), x.shape)
        x = x + gate_msa[:, None] * h
        h = _modulate(self.norm2(x), shift_mlp[:, None], scale_mlp[:, None])
        return x + gate_mlp[:, None] * self.mlp(h)


class SpatialBlock(_STBlock):
    """Attention over the patches of each frame."""

    def _tokens(self, x):
        b, f, s, d = x.shape
        return x.reshape(b * f, s, d)

    def _untokens(self, x, shape):
        return x.reshape(shape)


class TemporalBlock(_STBlock):
    """Attention over the frames at each patch position."""

    def _tokens(self, x):
        b, f, s, d = x.shape
        return x.permute(0, 2, 1, 3).reshape(b * s, f, d)

    def _untokens(self, x, shape):
        b, f, s, d = shape
        return x.reshape(b, s, f, d).permute(0, 2, 1, 3)


class TinySTDiT(nn.Module):
    """Open-Sora-style STDiT: alternating spatial and temporal blocks, text as a pooled class-free condition.

    ``forward(x, timestep, y)`` with x of shape (B, C, F, H, W), timestep (B,), y (B, D) a text embedding.
    """

    def __init__(self, channels: int = 4, dim: int = 16, depth: int = 2, patch: int = 2):
        super().__init__()
        self.patch = patch
        self.x_embed = nn.Linear(channels * patch * patch, dim)
        self.t_embed = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.y_embed = nn.Linear(dim, dim)
        self.spatial_blocks = nn.ModuleList(SpatialBlock(dim) for _ in range(depth))
        self.temporal_blocks = nn.ModuleList(TemporalBlock(dim) for _ in range(depth))
        self.final = nn.Linear(dim, channels * patch * patch)
        self.dim = dim

    def _timestep_embedding(self, t):
        half = self.dim // 2
        freqs = torch.exp(-np.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, x, timestep, y):
        b, c, f, h, w = x.shape
        p = self.patch
        tokens = (
            x.reshape(b, c, f, h // p, p, w // p, p).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, f, -1, c * p * p)
        )
        hidden = self.x_embed(tokens)
        t = self.t_embed(self._timestep_embedding(timestep)) + self.y_embed(y)
        t_mod = self.t_block(t)
        for spatial, temporal in zip(self.spatial_blocks, self.temporal_blocks):
            hidden = temporal(spatial(hidden, t_mod), t_mod)
        out = self.final(hidden)
        return out.reshape(b, f, h // p, w // p, c, p, p).permute(0, 4, 1, 2, 5, 3, 6).reshape(b, c, f, h, w)


class STDiTSampler:
    """The pipeline of the STDiT family: rectified-flow Euler (FlowMatchEulerDiscreteScheduler) with CFG
    batched into one call per step, as Open-Sora samples."""

    def __init__(self, transformer, scheduler=None):
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.transformer = transformer
        self.scheduler = scheduler or FlowMatchEulerDiscreteScheduler()

    @torch.no_grad()
    def __call__(self, steps: int, seed: int = 0, guidance_scale: float = 4.0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(1, 4, 3, 8, 8, generator=g)
        cond, uncond = _embeds(seed + 1, 1, 16), torch.zeros(1, 16)
        self.scheduler.set_timesteps(steps)
        for t in self.scheduler.timesteps:
            pred = self.transformer(torch.cat([x, x]), torch.full((2,), float(t)), torch.cat([cond, uncond]))
            c, u = pred.chunk(2)
            x = self.scheduler.step(u + guidance_scale * (c - u), t, x).prev_sample
        return x.numpy()


def build_stdit(scheduler=None):
    torch.manual_seed(0)
    return STDiTSampler(TinySTDiT().eval(), scheduler)


def run_stdit(pipe, steps: int, seed: int = 0):
    return pipe(steps, seed)


# -------------------------------------------------------------------------------------- the registry
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "pixart_alpha",
            build_pixart,
            run_pixart,
            ("attn1", "attn2", "ff"),
            1,
            {"attn1": 2, "attn2": 2, "ff": 2},
            pipeline="PixArtAlphaPipeline",
            solver="DDIM",
            cfg="batched (one call)",
        ),
        Family(
            "pixart_sigma",
            lambda scheduler=None: build_pixart(scheduler, sigma=True),
            run_pixart,
            ("attn1", "attn2", "ff"),
            1,
            {"attn1": 2, "attn2": 2, "ff": 2},
            pipeline="PixArtSigmaPipeline",
            solver="DPM-Solver++ (2M)",
            cfg="batched (one call)",
        ),
        Family(
            "sd3",
            build_sd3,
            run_sd3,
            ("attn", "attn2", "ff", "ff_context"),
            1,
            {"attn": 2, "attn2": 1, "ff": 2, "ff_context": 1},
            pipeline="StableDiffusion3Pipeline",
            solver="flow-matching Euler",
            cfg="batched (one call)",
        ),
        Family(
            "flux",
            build_flux,
            run_flux,
            ("attn", "ff", "ff_context", "single_attn", "single_mlp"),
            1,
            {"attn": 2, "ff": 2, "ff_context": 2, "single_attn": 2, "single_mlp": 2},
            pipeline="FluxPipeline",
            solver="flow-matching Euler",
            cfg="guidance-distilled (one call)",
        ),
        Family(
            "flux_true_cfg",
            build_flux_true_cfg,
            run_flux_true_cfg,
            ("attn", "ff", "ff_context", "single_attn", "single_mlp"),
            2,
            {"attn": 2, "ff": 2, "ff_context": 2, "single_attn": 2, "single_mlp": 2},
            pipeline="FluxPipeline (true_cfg_scale)",
            solver="flow-matching Euler",
            cfg='two calls, cache_context("cond"/"uncond")',
        ),
        Family(
            "stable_audio",
            build_stable_audio,
            run_stable_audio,
            ("attn1", "attn2", "ff"),
            1,
            {"attn1": 2, "attn2": 2, "ff": 2},
            pipeline="StableAudioPipeline",
            solver="DPM-Solver++(3M) SDE",
            cfg="batched (one call)",
        ),
        Family(
            "latte",
            build_latte,
            run_latte,
            ("attn1", "attn2", "ff"),
            1,
            {"attn1": 4, "attn2": 2, "ff": 4},
            pipeline="LattePipeline",
            solver="DDIM",
            cfg="batched (one call)",
        ),
        Family(
            "cogvideox",
            build_cogvideox,
            run_cogvideox,
            ("attn1", "ff"),
            1,
            {"attn1": 2, "ff": 2},
            pipeline="CogVideoXPipeline",
            solver="CogVideoX DDIM",
            cfg='batched, cache_context("cond_uncond")',
        ),
        Family(
            "wan",
            build_wan,
            run_wan,
            ("attn1", "attn2", "ffn"),
            2,
            {"attn1": 2, "attn2": 2, "ffn": 2},
            pipeline="WanPipeline",
            solver="flow-matching Euler",
            cfg='two calls, cache_context("cond"/"uncond")',
        ),
        Family(
            "wan_ti2v",
            build_wan_ti2v,
            run_wan_ti2v,
            ("attn1", "attn2", "ffn"),
            2,
            {"attn1": 2, "attn2": 2, "ffn": 2},
            pipeline="WanImageToVideoPipeline (expand_timesteps=True, Wan 2.2 TI2V)",
            solver="flow-matching Euler",
            cfg='two calls, cache_context("cond"/"uncond"), per-token timesteps',
        ),
        Family(
            "stdit",
            build_stdit,
            run_stdit,
            ("attn", "mlp"),
            1,
            {"attn": 4, "mlp": 4},
            cache_kwargs={"block_classes": [SpatialBlock, TemporalBlock], "keys": ["attn", "mlp"]},
            pipeline="own loop (tests/families.py)",
            solver="rectified-flow Euler",
            cfg="batched (one call)",
        ),
    ]
}
