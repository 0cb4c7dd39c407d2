"""Tiny random-weight diffusers transformers that smoothcache supports without a table row.

Every family is a :class:`GenericFamily`: ``build()`` makes the transformer from a tiny config (seeded, offline);
``inputs(generator)`` makes the fixed conditioning of one generation (text embeddings, ids, masks) and the initial
latent under ``"x"``; ``call(model, x, t, inputs)`` calls the transformer the way its diffusers pipeline does for
one denoising step (timestep scale, keyword names, separate cond/uncond calls) and returns the prediction shaped
like ``x``. :func:`generate` runs a whole generation with the family's time convention (:data:`TIMES`).

The registry :data:`GENERIC_FAMILIES` also says what discovery must find (``blocks``: branch key -> number of
blocks carrying it, ``block_classes``) and renders the README's supported-models rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn


# ------------------------------------------------------------------------------------------------- time
def _sigmas(steps: int) -> list[float]:
    return [1.0 - i / steps for i in range(steps)]  # 1 .. 1/steps, flow-matching noise levels


def _karras(steps: int, lo: float = 0.002, hi: float = 80.0, rho: float = 7.0) -> list[float]:
    ramp = [i / max(steps - 1, 1) for i in range(steps)]
    return [(hi ** (1 / rho) + r * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho for r in ramp]


#: The timestep each pipeline passes to its transformer at each step (a scalar; ``call`` expands it).
TIMES: dict[str, Callable[[int], list[float]]] = {
    "ddpm": lambda n: [float(round(999 * (1 - i / n))) for i in range(n)],  # integer DDPM/Euler timesteps
    "sigma*1000": lambda n: [1000.0 * s for s in _sigmas(n)],  # flow matching, scheduler.timesteps
    "sigma": _sigmas,  # flow matching, timestep / 1000 (the model scales it back)
    "1-sigma": lambda n: [1.0 - s for s in _sigmas(n)],  # Z-Image, Lumina 2: 0 = noise, 1 = image (rising)
    "1000*(1-sigma)": lambda n: [1000.0 * (1.0 - s) for s in _sigmas(n)],  # Mochi's inverted sigmas (rising)
    "edm c_noise": lambda n: [0.25 * math.log(s) for s in _karras(n)],  # Cosmos 1 (EDM preconditioning)
}

RISING = {"1-sigma", "1000*(1-sigma)"}


@dataclass
class GenericFamily:
    """One diffusers transformer family, as the tests drive it.

    Attributes:
        name: test id.
        title: the family as the README names it.
        build: ``build() -> model`` (eval mode, seeded).
        inputs: ``inputs(generator) -> dict``: the conditioning of one generation, and the initial latent as ``x``.
        call: ``call(model, x, t, inputs) -> prediction`` for one step (``t`` a float of the time convention).
        time: key of :data:`TIMES`.
        blocks: branch key -> number of blocks carrying it (what discovery must find).
        block_classes: block classes discovery must find, in module order.
        calls_per_step: denoiser calls per step (2 where the pipeline calls cond and uncond apart).
        pipeline: the pipeline whose call the test reproduces.
        repeats: branch key -> calls of that branch per block call, where the block calls it more than once
            (CogView4 runs ``ff`` on image and on text tokens apart); each call has its own cache entry.
    """

    name: str
    title: str
    build: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator], dict]
    call: Callable[[nn.Module, torch.Tensor, float, dict], torch.Tensor]
    time: str
    blocks: dict[str, int]
    block_classes: tuple[str, ...]
    calls_per_step: int = 1
    pipeline: str = ""
    repeats: dict = field(default_factory=dict)

    def calls(self, key: str) -> int:
        """Calls of the branch ``key`` over all its blocks in one denoiser call."""
        return self.blocks[key] * self.repeats.get(key, 1)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.blocks)

    @property
    def rising(self) -> bool:
        return self.time in RISING


def generate(fam: GenericFamily, model: nn.Module, steps: int, seed: int = 0) -> torch.Tensor:
    """A whole generation: ``steps`` calls of ``fam.call`` on the time convention, Euler-like updates."""
    inputs = fam.inputs(torch.Generator().manual_seed(seed))
    x = inputs.pop("x")
    with torch.no_grad():
        for t in TIMES[fam.time](steps):
            x = x + 0.3 * (fam.call(model, x, t, inputs).to(x.dtype) - x)
    return x


def _seeded(cls, **config) -> nn.Module:
    torch.manual_seed(0)
    return cls(**config).eval()


def _unzeroed(model: nn.Module) -> nn.Module:
    """Zero-initialised weights (adaLN-zero modulations) made small and random, so every branch matters."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.1)
    return model


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def _t(t: float, batch: int = 1) -> torch.Tensor:
    return torch.full((batch,), t)


def _cfg(model_call: Callable[[dict], torch.Tensor], inputs: dict, neg: dict, scale: float = 3.0) -> torch.Tensor:
    """Two calls, cond then uncond (``neg`` replaces some inputs), combined like classifier-free guidance."""
    cond = model_call(inputs)
    uncond = model_call({**inputs, **neg})
    return uncond + scale * (cond - uncond)


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


# ------------------------------------------------------------------------------------------------ Flux 2
def _flux2():
    from diffusers import Flux2Transformer2DModel

    return _seeded(Flux2Transformer2DModel, patch_size=1, in_channels=4, num_layers=2, num_single_layers=2,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                   timestep_guidance_channels=16, axes_dims_rope=(2, 2, 2, 2))


def _ids4(t: int, h: int, w: int, length: int) -> torch.Tensor:
    return torch.cartesian_prod(torch.arange(t), torch.arange(h), torch.arange(w), torch.arange(length))


def _flux2_inputs(g):
    return {"x": _randn(g, 1, 16, 4), "txt": _randn(g, 1, 6, 16), "img_ids": _ids4(1, 4, 4, 1)[None],
            "txt_ids": _ids4(1, 1, 1, 6)[None]}


def _flux2_call(model, x, t, c):
    # Flux2Pipeline: timestep / 1000 (the model multiplies by 1000), guidance embedded, one call
    return _first(model(hidden_states=x, encoder_hidden_states=c["txt"], timestep=_t(t), guidance=_t(4.0),
                        img_ids=c["img_ids"], txt_ids=c["txt_ids"], return_dict=False))


# -------------------------------------------------------------------------------------------- Qwen-Image
def _qwen():
    from diffusers import QwenImageTransformer2DModel

    return _seeded(QwenImageTransformer2DModel, patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16, axes_dims_rope=(4, 2, 2))


def _qwen_inputs(g):
    return {"x": _randn(g, 1, 16, 16), "txt": _randn(g, 1, 6, 16), "neg": _randn(g, 1, 6, 16)}


def _qwen_call(model, x, t, c):
    # QwenImagePipeline: timestep / 1000, true CFG as two calls in cache_context("cond"/"uncond")
    def one(i):
        return _first(model(hidden_states=x, encoder_hidden_states=i["txt"],
                            encoder_hidden_states_mask=torch.ones(1, 6, dtype=torch.long), timestep=_t(t),
                            img_shapes=[(1, 4, 4)], return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------ HunyuanVideo
def _hunyuan_video():
    from diffusers import HunyuanVideoTransformer3DModel

    return _seeded(HunyuanVideoTransformer3DModel, in_channels=4, out_channels=4, num_attention_heads=2,
                   attention_head_dim=8, num_layers=2, num_single_layers=2, num_refiner_layers=1, patch_size=2,
                   patch_size_t=1, guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=8,
                   rope_axes_dim=(2, 2, 4))


def _hunyuan_video_inputs(g):
    return {"x": _randn(g, 1, 4, 2, 8, 8), "txt": _randn(g, 1, 6, 16), "pooled": _randn(g, 1, 8)}


def _hunyuan_video_call(model, x, t, c):
    # HunyuanVideoPipeline: scheduler timesteps (sigma * 1000), guidance * 1000, guidance-distilled (one call)
    return _first(model(hidden_states=x, timestep=_t(t), encoder_hidden_states=c["txt"],
                        encoder_attention_mask=torch.ones(1, 6), pooled_projections=c["pooled"],
                        guidance=_t(6000.0), return_dict=False))


# -------------------------------------------------------------------------------------------- LTX-Video
def _ltx():
    from diffusers import LTXVideoTransformer3DModel

    return _seeded(LTXVideoTransformer3DModel, in_channels=4, out_channels=4, num_attention_heads=2,
                   attention_head_dim=8, cross_attention_dim=16, num_layers=2, caption_channels=16)


def _ltx_inputs(g):
    return {"x": _randn(g, 1, 2 * 4 * 4, 4), "txt": _randn(g, 2, 6, 16)}


def _ltx_call(model, x, t, c):
    # LTXPipeline: batched CFG in cache_context("cond_uncond"), scheduler timesteps (sigma * 1000)
    out = _first(model(hidden_states=torch.cat([x, x]), encoder_hidden_states=c["txt"], timestep=_t(t, 2),
                       encoder_attention_mask=torch.ones(2, 6, dtype=torch.bool), num_frames=2, height=4, width=4,
                       return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 3.0 * (cond - uncond)


# ----------------------------------------------------------------------------------------------- Z-Image
def _z_image():
    from diffusers import ZImageTransformer2DModel

    return _seeded(ZImageTransformer2DModel, all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=16,
                   n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, qk_norm=True, cap_feat_dim=16,
                   axes_dims=[4, 2, 2], axes_lens=[64, 16, 16])


def _z_image_inputs(g):
    return {"x": _randn(g, 1, 4, 8, 8), "txt": _randn(g, 6, 16)}


def _z_image_call(model, x, t, c):
    # ZImagePipeline: t = (1000 - timestep) / 1000 (rising), lists of per-sample tensors, one call
    out = model([x[0].unsqueeze(1)], _t(t), [c["txt"]], return_dict=False)[0]
    return -out[0].squeeze(1).unsqueeze(0)


# ------------------------------------------------------------------------------------------------ Chroma
def _chroma():
    from diffusers import ChromaTransformer2DModel

    return _seeded(ChromaTransformer2DModel, patch_size=1, in_channels=4, num_layers=2, num_single_layers=2,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16, axes_dims_rope=(2, 2, 4),
                   approximator_num_channels=8, approximator_hidden_dim=16, approximator_layers=1)


def _ids3(h: int, w: int) -> torch.Tensor:
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = torch.arange(h)[:, None]
    ids[..., 2] = torch.arange(w)[None, :]
    return ids.reshape(h * w, 3)


def _chroma_inputs(g):
    return {"x": _randn(g, 1, 16, 4), "txt": _randn(g, 1, 6, 16), "neg": _randn(g, 1, 6, 16)}


def _chroma_call(model, x, t, c):
    # ChromaPipeline: timestep / 1000, CFG as two calls
    def one(i):
        return _first(model(hidden_states=x, encoder_hidden_states=i["txt"], timestep=_t(t), img_ids=_ids3(4, 4),
                            txt_ids=torch.zeros(6, 3), return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------- SkyReels V2
def _skyreels():
    from diffusers import SkyReelsV2Transformer3DModel

    return _seeded(SkyReelsV2Transformer3DModel, patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                   in_channels=4, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=16, num_layers=2,
                   rope_max_seq_len=32)


def _skyreels_inputs(g):
    return {"x": _randn(g, 1, 4, 2, 8, 8), "txt": _randn(g, 1, 6, 16), "neg": _randn(g, 1, 6, 16)}


def _skyreels_call(model, x, t, c):
    # SkyReelsV2Pipeline: scheduler timesteps, cond and uncond calls in cache_context
    def one(i):
        return _first(model(hidden_states=x, timestep=_t(t), encoder_hidden_states=i["txt"], return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# -------------------------------------------------------------------------------------------------- Sana
def _sana():
    from diffusers import SanaTransformer2DModel

    return _seeded(SanaTransformer2DModel, in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8,
                   num_layers=2, num_cross_attention_heads=2, cross_attention_head_dim=8, cross_attention_dim=16,
                   caption_channels=16, sample_size=8, patch_size=1)


def _sana_inputs(g):
    return {"x": _randn(g, 1, 4, 8, 8), "txt": _randn(g, 2, 6, 16)}


def _sana_call(model, x, t, c):
    # SanaPipeline: batched CFG, timestep * timestep_scale
    out = _first(model(torch.cat([x, x]), encoder_hidden_states=c["txt"], timestep=_t(t, 2),
                       encoder_attention_mask=torch.ones(2, 6), return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 4.5 * (cond - uncond)


# ---------------------------------------------------------------------------------------------- Lumina 2
def _lumina2():
    from diffusers import Lumina2Transformer2DModel

    return _seeded(Lumina2Transformer2DModel, sample_size=8, patch_size=2, in_channels=4, hidden_size=24,
                   num_layers=2, num_refiner_layers=1, num_attention_heads=3, num_kv_heads=1, multiple_of=2,
                   axes_dim_rope=(4, 2, 2), axes_lens=(64, 16, 16), cap_feat_dim=16)


def _lumina2_inputs(g):
    return {"x": _randn(g, 1, 4, 8, 8), "txt": _randn(g, 1, 6, 16), "neg": _randn(g, 1, 6, 16)}


def _lumina2_call(model, x, t, c):
    # Lumina2Pipeline: 1 - t / 1000 (rising), cond then uncond calls
    def one(i):
        return _first(model(hidden_states=x, timestep=_t(t), encoder_hidden_states=i["txt"],
                            encoder_attention_mask=torch.ones(1, 6, dtype=torch.bool), return_dict=False))

    return -_cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------ HunyuanImage
def _hunyuan_image():
    from diffusers import HunyuanImageTransformer2DModel

    return _seeded(HunyuanImageTransformer2DModel, in_channels=4, out_channels=4, num_attention_heads=2,
                   attention_head_dim=8, num_layers=2, num_single_layers=2, num_refiner_layers=1, patch_size=(1, 1),
                   text_embed_dim=16, rope_axes_dim=(4, 4))


def _hunyuan_image_inputs(g):
    return {"x": _randn(g, 1, 4, 4, 4), "txt": _randn(g, 1, 6, 16), "neg": _randn(g, 1, 6, 16)}


def _hunyuan_image_call(model, x, t, c):
    # HunyuanImagePipeline: scheduler timesteps, guider calls cond / uncond in cache_context
    def one(i):
        return _first(model(hidden_states=x, timestep=_t(t), encoder_hidden_states=i["txt"],
                            encoder_attention_mask=torch.ones(1, 6), return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------- Kandinsky 5
def _kandinsky5():
    from diffusers import Kandinsky5Transformer3DModel

    return _unzeroed(_seeded(Kandinsky5Transformer3DModel, in_visual_dim=4, in_text_dim=16, in_text_dim2=8, time_dim=16,
                   out_visual_dim=4, patch_size=(1, 2, 2), model_dim=16, ff_dim=32, num_text_blocks=2,
                   num_visual_blocks=2, axes_dims=(4, 2, 2)))


def _kandinsky5_inputs(g):
    return {"x": _randn(g, 1, 1, 8, 8, 4), "txt": _randn(g, 1, 6, 16), "pooled": _randn(g, 1, 8)}


def _kandinsky5_call(model, x, t, c):
    # Kandinsky5T2VPipeline: scheduler timesteps, (B, F, H, W, C) latents, rope positions
    rope = [torch.arange(1), torch.arange(4), torch.arange(4)]
    return model(hidden_states=x, encoder_hidden_states=c["txt"], pooled_projections=c["pooled"], timestep=_t(t),
                 visual_rope_pos=rope, text_rope_pos=torch.arange(6), return_dict=True).sample


# ------------------------------------------------------------------------------------------------- Mochi
def _mochi():
    from diffusers import MochiTransformer3DModel

    return _seeded(MochiTransformer3DModel, patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2,
                   pooled_projection_dim=16, in_channels=4, text_embed_dim=16, time_embed_dim=4,
                   max_sequence_length=16)


def _mochi_inputs(g):
    return {"x": _randn(g, 1, 4, 2, 8, 8), "txt": _randn(g, 2, 6, 16)}


def _mochi_call(model, x, t, c):
    # MochiPipeline: inverted sigmas, so the timestep rises (0 .. 1000); batched CFG in cache_context
    out = _first(model(hidden_states=torch.cat([x, x]), encoder_hidden_states=c["txt"], timestep=_t(t, 2),
                       encoder_attention_mask=torch.ones(2, 6, dtype=torch.bool), return_dict=False))
    uncond, cond = out.chunk(2)
    return -(uncond + 4.5 * (cond - uncond))


# ------------------------------------------------------------------------------------------------ Allegro
def _allegro():
    from diffusers import AllegroTransformer3DModel

    return _seeded(AllegroTransformer3DModel, num_attention_heads=2, attention_head_dim=8, in_channels=4,
                   out_channels=4, num_layers=2, cross_attention_dim=16, sample_height=8, sample_width=8,
                   sample_frames=4, caption_channels=16)


def _allegro_inputs(g):
    return {"x": _randn(g, 1, 4, 2, 8, 8), "txt": _randn(g, 2, 6, 16)}


def _allegro_call(model, x, t, c):
    # AllegroPipeline: EulerAncestral integer timesteps, batched CFG
    out = _first(model(hidden_states=torch.cat([x, x]), encoder_hidden_states=c["txt"],
                       timestep=torch.full((2,), int(t)), return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 7.5 * (cond - uncond)


# ------------------------------------------------------------------------------------------------- Cosmos
def _cosmos():
    from diffusers import CosmosTransformer3DModel

    return _seeded(CosmosTransformer3DModel, in_channels=4, out_channels=4, num_attention_heads=2,
                   attention_head_dim=12, num_layers=2, mlp_ratio=2, text_embed_dim=16, adaln_lora_dim=4,
                   max_size=(4, 16, 16), patch_size=(1, 2, 2), rope_scale=(2.0, 1.0, 1.0),
                   concat_padding_mask=False, extra_pos_embed_type="learnable")  # the mask path needs torchvision


def _cosmos_inputs(g):
    return {"x": _randn(g, 1, 4, 1, 8, 8), "txt": _randn(g, 1, 6, 16), "neg": _randn(g, 1, 6, 16)}


def _cosmos_call(model, x, t, c):
    # CosmosTextToWorldPipeline: EDM c_noise timesteps, cond and uncond calls
    def one(i):
        return _first(model(hidden_states=x, timestep=_t(t), encoder_hidden_states=i["txt"], fps=30,
                            return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------------ HiDream
def _hidream():
    from diffusers import HiDreamImageTransformer2DModel

    return _seeded(HiDreamImageTransformer2DModel, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                   num_single_layers=2, attention_head_dim=8, num_attention_heads=2, caption_channels=[8, 4],
                   text_emb_dim=8, num_routed_experts=2, num_activated_experts=2, axes_dims_rope=(4, 2, 2),
                   max_resolution=(16, 16), llama_layers=(0, 1, 2, 3))


def _hidream_inputs(g):
    return {"x": _randn(g, 1, 4, 8, 8), "t5": _randn(g, 2, 6, 8), "llama": _randn(g, 4, 2, 6, 4),
            "pooled": _randn(g, 2, 8)}


def _hidream_call(model, x, t, c):
    # HiDreamImagePipeline: scheduler timesteps, batched CFG, `timesteps=` keyword
    out = _first(model(hidden_states=torch.cat([x, x]), timesteps=_t(t, 2), encoder_hidden_states_t5=c["t5"],
                       encoder_hidden_states_llama3=c["llama"], pooled_embeds=c["pooled"], return_dict=False))
    uncond, cond = out.chunk(2)
    return -(uncond + 5.0 * (cond - uncond))


# --------------------------------------------------------------------------------------- HunyuanVideo 1.5
def _hunyuan_video15():
    from diffusers import HunyuanVideo15Transformer3DModel

    return _seeded(HunyuanVideo15Transformer3DModel, in_channels=4, out_channels=4, num_attention_heads=2,
                   attention_head_dim=8, num_layers=2, num_refiner_layers=1, mlp_ratio=2.0, patch_size=1,
                   patch_size_t=1, text_embed_dim=16, text_embed_2_dim=8, image_embed_dim=12, rope_axes_dim=(2, 2, 4),
                   target_size=16, task_type="t2v")


def _hunyuan_video15_inputs(g):
    return {"x": _randn(g, 1, 4, 1, 8, 8), "txt": _randn(g, 1, 6, 16), "txt2": _randn(g, 1, 4, 8),
            "neg": _randn(g, 1, 6, 16)}


def _hunyuan_video15_call(model, x, t, c):
    # HunyuanVideo15Pipeline: scheduler timesteps, guider calls cond / uncond in cache_context
    def one(i):
        return _first(model(hidden_states=x, timestep=_t(t), encoder_hidden_states=i["txt"],
                            encoder_attention_mask=torch.ones(1, 6), encoder_hidden_states_2=i["txt2"],
                            encoder_attention_mask_2=torch.ones(1, 4), image_embeds=torch.zeros(1, 3, 12),
                            return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# -------------------------------------------------------------------------------------------------- LTX-2
def _ltx2():
    from diffusers import LTX2VideoTransformer3DModel

    return _seeded(LTX2VideoTransformer3DModel, in_channels=4, out_channels=4, patch_size=1, patch_size_t=1,
                   num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16, audio_in_channels=4,
                   audio_out_channels=4, audio_num_attention_heads=2, audio_attention_head_dim=4,
                   audio_cross_attention_dim=8, num_layers=2, caption_channels=16, rope_double_precision=False)


_LTX2_VIDEO, _LTX2_AUDIO = (1, 2 * 4 * 4, 4), (1, 5, 4)


def _ltx2_inputs(g):
    video, audio = _randn(g, *_LTX2_VIDEO), _randn(g, *_LTX2_AUDIO)
    return {"x": torch.cat([video.flatten(), audio.flatten()]), "txt": _randn(g, 2, 6, 16),
            "audio_txt": _randn(g, 2, 6, 16)}


def _ltx2_call(model, x, t, c):
    # LTX2Pipeline: video and audio latents denoised together, batched CFG, timestep and sigma both passed
    n = math.prod(_LTX2_VIDEO)
    video, audio = x[:n].reshape(_LTX2_VIDEO), x[n:].reshape(_LTX2_AUDIO)
    pred_video, pred_audio = model(
        hidden_states=torch.cat([video, video]), audio_hidden_states=torch.cat([audio, audio]),
        encoder_hidden_states=c["txt"], audio_encoder_hidden_states=c["audio_txt"], timestep=_t(t, 2),
        sigma=_t(t, 2), encoder_attention_mask=torch.ones(2, 6, dtype=torch.bool),
        audio_encoder_attention_mask=torch.ones(2, 6, dtype=torch.bool), num_frames=2, height=4, width=4,
        audio_num_frames=5, fps=25.0, return_dict=False)[:2]
    guided = [u + 3.0 * (p - u) for u, p in (pred_video.chunk(2), pred_audio.chunk(2))]
    return torch.cat([g.flatten() for g in guided])


# ----------------------------------------------------------------------------------------- Stable Audio 3
def _stable_audio3():
    from diffusers import StableAudio3DiTModel

    return _seeded(StableAudio3DiTModel, io_channels=8, patch_size=1, embed_dim=32, depth=2, num_heads=4,
                   cond_token_dim=16, global_cond_dim=12, local_add_cond_dim=5, timestep_features_dim=16, ff_mult=2,
                   num_memory_tokens=3, use_differential_attention=False)


def _stable_audio3_inputs(g):
    return {"x": _randn(g, 1, 8, 16), "txt": _randn(g, 2, 4, 16), "glob": _randn(g, 2, 12)}


def _stable_audio3_call(model, x, t, c):
    # StableAudio3Pipeline: sigma in (0, 1] positional, batched CFG (negative first)
    out = model(torch.cat([x, x]), _t(t, 2), encoder_hidden_states=c["txt"], global_hidden_states=c["glob"],
                encoder_attention_mask=torch.ones(2, 4, dtype=torch.bool), return_dict=False)[0]
    uncond, cond = out.chunk(2)
    return uncond + 4.0 * (cond - uncond)


# ------------------------------------------------------------------------------------------ Flux Kontext
def _flux_kontext():
    from diffusers import FluxTransformer2DModel

    return _seeded(FluxTransformer2DModel, patch_size=1, in_channels=4, num_layers=2, num_single_layers=2,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8,
                   axes_dims_rope=[2, 2, 4], guidance_embeds=True)


def _flux_kontext_inputs(g):
    return {"x": _randn(g, 1, 16, 4), "image": _randn(g, 1, 16, 4), "txt": _randn(g, 1, 6, 16),
            "pooled": _randn(g, 1, 8)}


def _flux_kontext_call(model, x, t, c):
    # FluxKontextPipeline: the reference image's latent tokens follow the noisy ones (ids with t = 1)
    img_ids = _ids3(4, 4)
    ref_ids = img_ids.clone()
    ref_ids[:, 0] = 1
    out = _first(model(hidden_states=torch.cat([x, c["image"]], dim=1), encoder_hidden_states=c["txt"],
                       pooled_projections=c["pooled"], timestep=_t(t), guidance=_t(2.5),
                       img_ids=torch.cat([img_ids, ref_ids]), txt_ids=torch.zeros(6, 3), return_dict=False))
    return out[:, : x.shape[1]]


# -------------------------------------------------------------------------------------------------- Bria
def _bria():
    from diffusers import BriaTransformer2DModel

    return _seeded(BriaTransformer2DModel, patch_size=1, in_channels=4, num_layers=2, num_single_layers=2,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16, axes_dims_rope=[2, 2, 4])


def _bria_inputs(g):
    return {"x": _randn(g, 1, 16, 4), "txt": _randn(g, 2, 6, 16)}


def _bria_call(model, x, t, c):
    # BriaPipeline: scheduler timesteps, batched CFG
    out = _first(model(hidden_states=torch.cat([x, x]), encoder_hidden_states=c["txt"], timestep=_t(t, 2),
                       img_ids=_ids3(4, 4), txt_ids=torch.zeros(6, 3), return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 5.0 * (cond - uncond)


# ------------------------------------------------------------------------------------------------ OmniGen
def _omnigen():
    from diffusers import OmniGenTransformer2DModel

    return _seeded(OmniGenTransformer2DModel, hidden_size=16, num_attention_heads=4, num_key_value_heads=4,
                   intermediate_size=32, num_layers=2, pad_token_id=0, vocab_size=64, in_channels=4, time_step_dim=4,
                   rope_scaling={"long_factor": [1, 2], "short_factor": [1, 2]})


def _omnigen_inputs(g):
    return {"x": _randn(g, 1, 4, 8, 8), "ids": torch.randint(1, 64, (2, 6), generator=g)}


def _omnigen_call(model, x, t, c):
    # OmniGenPipeline: inverted sigmas on 1 train timestep, so the timestep rises 0 -> 1; batched cond/uncond
    length = 6 + 1 + 16
    out = _first(model(hidden_states=torch.cat([x, x]), timestep=_t(t, 2), input_ids=c["ids"],
                       input_img_latents=[], input_image_sizes={}, attention_mask=torch.ones(2, length, length),
                       position_ids=torch.arange(length).expand(2, -1), return_dict=False))
    cond, uncond = out.chunk(2)
    return uncond + 2.5 * (cond - uncond)


# -------------------------------------------------------------------------------------------- EasyAnimate
def _easyanimate():
    from diffusers import EasyAnimateTransformer3DModel

    return _seeded(EasyAnimateTransformer3DModel, attention_head_dim=16, num_attention_heads=2, in_channels=4,
                   mmdit_layers=2, num_layers=2, out_channels=4, patch_size=2, sample_height=16, sample_width=16,
                   text_embed_dim=16, time_embed_dim=8)


def _easyanimate_inputs(g):
    return {"x": _randn(g, 1, 4, 2, 8, 8), "txt": _randn(g, 2, 6, 16)}


def _easyanimate_call(model, x, t, c):
    # EasyAnimatePipeline: scheduler timesteps, batched CFG
    out = _first(model(torch.cat([x, x]), _t(t, 2), encoder_hidden_states=c["txt"], return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 5.0 * (cond - uncond)


# ------------------------------------------------------------------------------------------------ CogView4
def _cogview4():
    from diffusers import CogView4Transformer2DModel

    return _seeded(CogView4Transformer2DModel, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                   attention_head_dim=8, num_attention_heads=2, text_embed_dim=16, time_embed_dim=8,
                   condition_dim=4, pos_embed_max_size=8, sample_size=8, rope_axes_dim=(4, 4))


def _cogview4_inputs(g):
    return {"x": _randn(g, 1, 4, 8, 8), "txt": _randn(g, 1, 6, 16), "neg": _randn(g, 1, 6, 16)}


def _cogview4_call(model, x, t, c):
    # CogView4Pipeline: scheduler timesteps, cond / uncond calls in cache_context
    def one(i):
        return _first(model(hidden_states=x, encoder_hidden_states=i["txt"], timestep=_t(t),
                            original_size=torch.tensor([[64.0, 64.0]]), target_size=torch.tensor([[64.0, 64.0]]),
                            crop_coords=torch.tensor([[0.0, 0.0]]), return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------------ AuraFlow
def _auraflow():
    from diffusers import AuraFlowTransformer2DModel

    return _seeded(AuraFlowTransformer2DModel, sample_size=8, patch_size=2, in_channels=4, num_mmdit_layers=2,
                   num_single_dit_layers=2, attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                   caption_projection_dim=16, out_channels=4, pos_embed_max_size=16)


def _auraflow_inputs(g):
    return {"x": _randn(g, 1, 4, 8, 8), "txt": _randn(g, 2, 6, 16)}


def _auraflow_call(model, x, t, c):
    # AuraFlowPipeline: timestep / 1000, batched CFG
    out = _first(model(torch.cat([x, x]), encoder_hidden_states=c["txt"], timestep=_t(t, 2), return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 3.5 * (cond - uncond)


# --------------------------------------------------------------------------------------------- Hunyuan-DiT
def _hunyuan_dit():
    from diffusers import HunyuanDiT2DModel

    return _seeded(HunyuanDiT2DModel, num_attention_heads=2, attention_head_dim=8, in_channels=4, patch_size=2,
                   sample_size=8, hidden_size=16, num_layers=4, cross_attention_dim=16, cross_attention_dim_t5=8,
                   pooled_projection_dim=8, text_len=6, text_len_t5=4)


def _hunyuan_dit_inputs(g):
    return {"x": _randn(g, 1, 4, 8, 8), "txt": _randn(g, 2, 6, 16), "t5": _randn(g, 2, 4, 8)}


def _hunyuan_dit_call(model, x, t, c):
    # HunyuanDiTPipeline: DDPM integer timesteps, batched CFG, 2D RoPE and image meta sizes
    from diffusers.models.embeddings import get_2d_rotary_pos_embed

    rope = get_2d_rotary_pos_embed(8, ((0, 0), (4, 4)), (4, 4))
    out = _first(model(torch.cat([x, x]), torch.full((2,), float(int(t))), encoder_hidden_states=c["txt"],
                       text_embedding_mask=torch.ones(2, 6), encoder_hidden_states_t5=c["t5"],
                       text_embedding_mask_t5=torch.ones(2, 4),
                       image_meta_size=torch.tensor([[64, 64, 64, 64, 0, 0]] * 2, dtype=torch.float),
                       style=torch.zeros(2, dtype=torch.long), image_rotary_emb=rope, return_dict=False))
    uncond, cond = out[:, :4].chunk(2)
    return uncond + 5.0 * (cond - uncond)


# ---------------------------------------------------------------------------------------------- Wan VACE
def _wan_vace():
    from diffusers import WanVACETransformer3DModel

    return _seeded(WanVACETransformer3DModel, patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                   in_channels=4, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=16, num_layers=2,
                   rope_max_seq_len=32, vace_layers=[0], vace_in_channels=8)


def _wan_vace_inputs(g):
    return {"x": _randn(g, 1, 4, 2, 8, 8), "txt": _randn(g, 1, 6, 16), "neg": _randn(g, 1, 6, 16),
            "control": _randn(g, 1, 8, 2, 8, 8)}


def _wan_vace_call(model, x, t, c):
    # WanVACEPipeline: scheduler timesteps, control video through the VACE blocks, cond / uncond calls
    def one(i):
        return _first(model(hidden_states=x, timestep=_t(t), encoder_hidden_states=i["txt"],
                            control_hidden_states=c["control"], return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# --------------------------------------------------------------------------------------------- Sana Video
def _sana_video():
    from diffusers import SanaVideoTransformer3DModel

    return _seeded(SanaVideoTransformer3DModel, in_channels=4, out_channels=4, num_attention_heads=2,
                   attention_head_dim=8, num_layers=2, num_cross_attention_heads=2, cross_attention_head_dim=8,
                   cross_attention_dim=16, caption_channels=16, sample_size=8, patch_size=(1, 2, 2),
                   rope_max_seq_len=32)


def _sana_video_inputs(g):
    return {"x": _randn(g, 1, 4, 2, 8, 8), "txt": _randn(g, 2, 6, 16)}


def _sana_video_call(model, x, t, c):
    # SanaVideoPipeline: scheduler timesteps, batched CFG
    out = _first(model(torch.cat([x, x]), encoder_hidden_states=c["txt"], timestep=_t(t, 2),
                       encoder_attention_mask=torch.ones(2, 6), return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 6.0 * (cond - uncond)


# -------------------------------------------------------------------------------------- Ovis-Image, LongCat
def _ovis():
    from diffusers import OvisImageTransformer2DModel

    return _seeded(OvisImageTransformer2DModel, patch_size=1, in_channels=4, out_channels=4, num_layers=2,
                   num_single_layers=2, attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                   axes_dims_rope=(2, 2, 4))


def _longcat():
    from diffusers import LongCatImageTransformer2DModel

    return _seeded(LongCatImageTransformer2DModel, patch_size=1, in_channels=4, num_layers=2, num_single_layers=2,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=16,
                   axes_dims_rope=[2, 2, 4])


def _flux_like_inputs(g):
    return {"x": _randn(g, 1, 16, 4), "txt": _randn(g, 1, 6, 16), "neg": _randn(g, 1, 6, 16)}


def _flux_like_call(model, x, t, c):
    # OvisImagePipeline / LongCatImagePipeline: timestep / 1000, cond / uncond calls
    def one(i):
        return _first(model(hidden_states=x, encoder_hidden_states=i["txt"], timestep=_t(t), img_ids=_ids3(4, 4),
                            txt_ids=torch.zeros(6, 3), return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# --------------------------------------------------------------------------------------------- ERNIE-Image
def _ernie():
    from diffusers import ErnieImageTransformer2DModel

    return _unzeroed(_seeded(ErnieImageTransformer2DModel, hidden_size=16, num_attention_heads=2, num_layers=2,
                             ffn_hidden_size=32, in_channels=4, out_channels=4, patch_size=1, text_in_dim=16,
                             rope_axes_dim=(4, 2, 2)))


def _ernie_inputs(g):
    return {"x": _randn(g, 1, 4, 4, 4), "txt": _randn(g, 2, 6, 16)}


def _ernie_call(model, x, t, c):
    # ErnieImagePipeline: scheduler timesteps, batched CFG, text as (batch, tokens, dim) with lengths
    out = _first(model(torch.cat([x, x]), _t(t, 2), text_bth=c["txt"], text_lens=torch.tensor([6, 6]),
                       return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 4.0 * (cond - uncond)


# --------------------------------------------------------------------------------------------- Motif-Video
def _motif():
    from diffusers import MotifVideoTransformer3DModel

    return _seeded(MotifVideoTransformer3DModel, in_channels=4, out_channels=4, num_attention_heads=2,
                   attention_head_dim=12, num_layers=2, num_single_layers=2, num_decoder_layers=0, patch_size=1,
                   patch_size_t=1, text_embed_dim=16, image_embed_dim=4, rope_axes_dim=(4, 4, 4),
                   enable_text_cross_attention_dual=False, enable_text_cross_attention_single=False)


def _motif_inputs(g):
    return {"x": _randn(g, 1, 4, 2, 4, 4), "txt": _randn(g, 1, 6, 16), "neg": _randn(g, 1, 6, 16)}


def _motif_call(model, x, t, c):
    # MotifVideoPipeline: scheduler timesteps, cond / uncond calls
    def one(i):
        return _first(model(hidden_states=x, encoder_hidden_states=i["txt"], timestep=_t(t), return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# --------------------------------------------------------------------------------------------- ChronoEdit
def _chronoedit():
    from diffusers import ChronoEditTransformer3DModel

    return _seeded(ChronoEditTransformer3DModel, patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                   in_channels=4, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=16, num_layers=2,
                   rope_max_seq_len=32)


def _chronoedit_call(model, x, t, c):
    # ChronoEditPipeline: scheduler timesteps, cond / uncond calls in cache_context
    def one(i):
        return _first(model(hidden_states=x, timestep=_t(t), encoder_hidden_states=i["txt"], return_dict=False))

    return _cfg(one, c, {"txt": c["neg"]})


# --------------------------------------------------------------------------------------------- Lumina-Next
def _lumina_next():
    from diffusers import LuminaNextDiT2DModel

    return _seeded(LuminaNextDiT2DModel, sample_size=8, patch_size=2, in_channels=4, hidden_size=16, num_layers=2,
                   num_attention_heads=2, num_kv_heads=1, multiple_of=16, learn_sigma=False, cross_attention_dim=16)


def _lumina_next_inputs(g):
    return {"x": _randn(g, 1, 4, 8, 8), "txt": _randn(g, 2, 6, 16)}


def _lumina_next_call(model, x, t, c):
    # LuminaPipeline (Lumina-Next): 1 - t / 1000 (rising), batched CFG, 2D RoPE from the pipeline
    from diffusers.models.embeddings import get_2d_rotary_pos_embed_lumina

    rope = get_2d_rotary_pos_embed_lumina(model.head_dim, 16, 16)
    out = _first(model(torch.cat([x, x]), _t(t, 2), encoder_hidden_states=c["txt"], encoder_mask=torch.ones(2, 6),
                       image_rotary_emb=rope, cross_attention_kwargs={}, return_dict=False))
    cond, uncond = out[:, :4].chunk(2)
    return -(uncond + 4.0 * (cond - uncond))


# -------------------------------------------------------------------------------------------- CogView3-Plus
def _cogview3():
    from diffusers import CogView3PlusTransformer2DModel

    return _seeded(CogView3PlusTransformer2DModel, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                   num_attention_heads=2, out_channels=4, text_embed_dim=16, time_embed_dim=8, condition_dim=2,
                   pos_embed_max_size=8, sample_size=8)


def _cogview3_inputs(g):
    return {"x": _randn(g, 1, 4, 8, 8), "txt": _randn(g, 2, 6, 16)}


def _cogview3_call(model, x, t, c):
    # CogView3PlusPipeline: DDIM integer timesteps, batched CFG, SDXL-style size conditioning
    size = torch.tensor([[64.0, 64.0]] * 2)
    out = _first(model(torch.cat([x, x]), encoder_hidden_states=c["txt"], timestep=torch.full((2,), int(t)),
                       original_size=size, target_size=size, crop_coords=torch.zeros(2, 2), return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 7.0 * (cond - uncond)


# ------------------------------------------------------------------------------------------------ ConsisID
def _consisid():
    from diffusers import ConsisIDTransformer3DModel

    return _seeded(ConsisIDTransformer3DModel, num_attention_heads=2, attention_head_dim=8, in_channels=4,
                   out_channels=4, time_embed_dim=8, text_embed_dim=16, num_layers=2, sample_width=8,
                   sample_height=8, sample_frames=5, patch_size=2, temporal_compression_ratio=4,
                   max_text_seq_length=6, use_rotary_positional_embeddings=False)


def _consisid_inputs(g):
    return {"x": _randn(g, 1, 2, 4, 8, 8), "txt": _randn(g, 2, 6, 16)}


def _consisid_call(model, x, t, c):
    # ConsisIDPipeline: CogVideoX DDIM integer timesteps, (batch, frames, channels, h, w) latents, batched CFG
    out = _first(model(torch.cat([x, x]), encoder_hidden_states=c["txt"], timestep=torch.full((2,), int(t)),
                       return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 6.0 * (cond - uncond)


# ---------------------------------------------------------------------------------- HunyuanVideo FramePack
def _framepack():
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    return _seeded(HunyuanVideoFramepackTransformer3DModel, in_channels=4, out_channels=4, num_attention_heads=2,
                   attention_head_dim=8, num_layers=2, num_single_layers=2, num_refiner_layers=1, patch_size=2,
                   patch_size_t=1, guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=8,
                   rope_axes_dim=(2, 2, 4), has_image_proj=True, image_proj_dim=16, has_clean_x_embedder=True)


def _framepack_inputs(g):
    return {"x": _randn(g, 1, 4, 3, 4, 4), "txt": _randn(g, 1, 6, 16), "pooled": _randn(g, 1, 8),
            "image": _randn(g, 1, 4, 16), "clean": _randn(g, 1, 4, 2, 4, 4), "h2": _randn(g, 1, 4, 2, 4, 4),
            "h4": _randn(g, 1, 4, 8, 4, 4)}


def _framepack_call(model, x, t, c):
    # HunyuanVideoFramepackPipeline: scheduler timesteps, guidance * 1000, image embeddings, the clean and
    # history latents of the sections generated so far with their frame indices
    return _first(model(hidden_states=x, timestep=_t(t), encoder_hidden_states=c["txt"],
                        encoder_attention_mask=torch.ones(1, 6), pooled_projections=c["pooled"],
                        image_embeds=c["image"], indices_latents=torch.arange(3), guidance=_t(10000.0),
                        latents_clean=c["clean"], indices_latents_clean=torch.arange(3, 5),
                        latents_history_2x=c["h2"], indices_latents_history_2x=torch.arange(5, 7),
                        latents_history_4x=c["h4"], indices_latents_history_4x=torch.arange(7, 15),
                        return_dict=False))


# -------------------------------------------------------------------------------------------- the registry
def _n(n: int, *keys: str) -> dict[str, int]:
    return {k: n for k in keys}


_F = GenericFamily
_FLUX_LIKE = ("attn", "ff", "ff_context")
GENERIC_FAMILIES: dict[str, GenericFamily] = {
    f.name: f
    for f in [
        _F("flux2", "Flux 2", _flux2, _flux2_inputs, _flux2_call, "sigma",
           {**_n(2, *_FLUX_LIKE), "single_attn": 2}, ("Flux2TransformerBlock", "Flux2SingleTransformerBlock"),
           pipeline="Flux2Pipeline"),
        _F("qwen_image", "Qwen-Image", _qwen, _qwen_inputs, _qwen_call, "sigma",
           _n(2, "attn", "img_mlp", "txt_mlp"), ("QwenImageTransformerBlock",), 2, "QwenImagePipeline"),
        _F("hunyuan_video", "HunyuanVideo", _hunyuan_video, _hunyuan_video_inputs, _hunyuan_video_call,
           "sigma*1000", {**_n(1, "refiner_attn", "refiner_ff"), **_n(2, *_FLUX_LIKE, "single_attn", "single_mlp")},
           ("HunyuanVideoIndividualTokenRefinerBlock", "HunyuanVideoTransformerBlock",
            "HunyuanVideoSingleTransformerBlock"), pipeline="HunyuanVideoPipeline"),
        _F("ltx_video", "LTX-Video", _ltx, _ltx_inputs, _ltx_call, "sigma*1000", _n(2, "attn1", "attn2", "ff"),
           ("LTXVideoTransformerBlock",), pipeline="LTXPipeline"),
        _F("z_image", "Z-Image", _z_image, _z_image_inputs, _z_image_call, "1-sigma",
           {**_n(1, "noise_refiner_attention", "noise_refiner_feed_forward", "context_refiner_attention",
                 "context_refiner_feed_forward"), **_n(2, "attention", "feed_forward")},
           ("ZImageTransformerBlock",), pipeline="ZImagePipeline"),
        _F("chroma", "Chroma", _chroma, _chroma_inputs, _chroma_call, "sigma",
           _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"), ("ChromaTransformerBlock", "ChromaSingleTransformerBlock"),
           2, "ChromaPipeline"),
        _F("skyreels_v2", "SkyReels V2", _skyreels, _skyreels_inputs, _skyreels_call, "sigma*1000",
           _n(2, "attn1", "attn2", "ffn"), ("SkyReelsV2TransformerBlock",), 2, "SkyReelsV2Pipeline"),
        _F("sana", "Sana", _sana, _sana_inputs, _sana_call, "sigma*1000", _n(2, "attn1", "attn2", "ff"),
           ("SanaTransformerBlock",), pipeline="SanaPipeline"),
        _F("lumina2", "Lumina 2", _lumina2, _lumina2_inputs, _lumina2_call, "1-sigma",
           {**_n(1, "noise_refiner_attn", "noise_refiner_feed_forward", "context_refiner_attn",
                 "context_refiner_feed_forward"), **_n(2, "attn", "feed_forward")},
           ("Lumina2TransformerBlock",), 2, "Lumina2Pipeline"),
        _F("hunyuan_image", "HunyuanImage 2.1", _hunyuan_image, _hunyuan_image_inputs, _hunyuan_image_call,
           "sigma*1000", {**_n(1, "refiner_attn", "refiner_ff"), **_n(2, *_FLUX_LIKE, "single_attn", "single_mlp")},
           ("HunyuanImageIndividualTokenRefinerBlock", "HunyuanImageTransformerBlock",
            "HunyuanImageSingleTransformerBlock"), 2, "HunyuanImagePipeline"),
        _F("kandinsky5", "Kandinsky 5", _kandinsky5, _kandinsky5_inputs, _kandinsky5_call, "sigma*1000",
           _n(2, "text_self_attention", "text_feed_forward", "visual_self_attention", "visual_cross_attention",
              "visual_feed_forward"),
           ("Kandinsky5TransformerEncoderBlock", "Kandinsky5TransformerDecoderBlock"), pipeline="Kandinsky5T2VPipeline"),
        _F("mochi", "Mochi", _mochi, _mochi_inputs, _mochi_call, "1000*(1-sigma)",
           {"attn1": 2, "ff": 2, "ff_context": 1}, ("MochiTransformerBlock",), pipeline="MochiPipeline"),
        _F("allegro", "Allegro", _allegro, _allegro_inputs, _allegro_call, "ddpm", _n(2, "attn1", "attn2", "ff"),
           ("AllegroTransformerBlock",), pipeline="AllegroPipeline"),
        _F("cosmos", "Cosmos 1", _cosmos, _cosmos_inputs, _cosmos_call, "edm c_noise", _n(2, "attn1", "attn2", "ff"),
           ("CosmosTransformerBlock",), 2, "CosmosTextToWorldPipeline"),
        _F("hidream", "HiDream-I1", _hidream, _hidream_inputs, _hidream_call, "sigma*1000",
           {**_n(2, "double_stream_attn1", "double_stream_ff_i", "double_stream_ff_t"),
            **_n(2, "single_stream_attn1", "single_stream_ff_i")}, ("HiDreamBlock",), pipeline="HiDreamImagePipeline"),
        _F("hunyuan_video15", "HunyuanVideo 1.5", _hunyuan_video15, _hunyuan_video15_inputs, _hunyuan_video15_call,
           "sigma*1000", {**_n(1, "refiner_attn", "refiner_ff"), **_n(2, *_FLUX_LIKE)},
           ("HunyuanVideo15IndividualTokenRefinerBlock", "HunyuanVideo15TransformerBlock"), 2,
           "HunyuanVideo15Pipeline"),
        _F("ltx2", "LTX-2", _ltx2, _ltx2_inputs, _ltx2_call, "sigma*1000",
           _n(2, "attn1", "audio_attn1", "attn2", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn", "ff",
              "audio_ff"), ("LTX2VideoTransformerBlock",), pipeline="LTX2Pipeline"),
        _F("stable_audio3", "Stable Audio 3", _stable_audio3, _stable_audio3_inputs, _stable_audio3_call, "sigma",
           _n(2, "self_attn", "cross_attn", "ff"), ("StableAudio3DiTBlock",), pipeline="StableAudio3Pipeline"),
        _F("flux_kontext", "Flux Kontext", _flux_kontext, _flux_kontext_inputs, _flux_kontext_call, "sigma",
           _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"), ("FluxTransformerBlock", "FluxSingleTransformerBlock"),
           pipeline="FluxKontextPipeline"),
        _F("bria", "Bria 3.2", _bria, _bria_inputs, _bria_call, "sigma*1000", _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"),
           ("BriaTransformerBlock", "BriaSingleTransformerBlock"), pipeline="BriaPipeline"),
        _F("omnigen", "OmniGen", _omnigen, _omnigen_inputs, _omnigen_call, "1-sigma", _n(2, "self_attn", "mlp"),
           ("OmniGenBlock",), pipeline="OmniGenPipeline"),
        _F("easyanimate", "EasyAnimate", _easyanimate, _easyanimate_inputs, _easyanimate_call, "sigma*1000",
           _n(2, "attn1", "ff", "txt_ff"), ("EasyAnimateTransformerBlock",), pipeline="EasyAnimatePipeline"),
        _F("cogview4", "CogView4", _cogview4, _cogview4_inputs, _cogview4_call, "sigma*1000", _n(2, "attn1", "ff"),
           ("CogView4TransformerBlock",), 2, "CogView4Pipeline", repeats={"ff": 2}),
        _F("auraflow", "AuraFlow", _auraflow, _auraflow_inputs, _auraflow_call, "sigma",
           _n(2, "joint_attn", "joint_ff", "joint_ff_context", "single_attn", "single_ff"),
           ("AuraFlowJointTransformerBlock", "AuraFlowSingleTransformerBlock"), pipeline="AuraFlowPipeline"),
        _F("hunyuan_dit", "Hunyuan-DiT", _hunyuan_dit, _hunyuan_dit_inputs, _hunyuan_dit_call, "ddpm",
           _n(4, "attn1", "attn2", "ff"), ("HunyuanDiTBlock",), pipeline="HunyuanDiTPipeline"),
        _F("wan_vace", "Wan VACE", _wan_vace, _wan_vace_inputs, _wan_vace_call, "sigma*1000",
           {**_n(2, "attn1", "attn2", "ffn"), **_n(1, "vace_attn1", "vace_attn2", "vace_ffn")},
           ("WanTransformerBlock", "WanVACETransformerBlock"), 2, "WanVACEPipeline"),
        _F("sana_video", "Sana Video", _sana_video, _sana_video_inputs, _sana_video_call, "sigma*1000",
           _n(2, "attn1", "attn2", "ff"), ("SanaVideoTransformerBlock",), pipeline="SanaVideoPipeline"),
        _F("ovis_image", "Ovis-Image", _ovis, _flux_like_inputs, _flux_like_call, "sigma",
           _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"),
           ("OvisImageTransformerBlock", "OvisImageSingleTransformerBlock"), 2, "OvisImagePipeline"),
        _F("longcat_image", "LongCat-Image", _longcat, _flux_like_inputs, _flux_like_call, "sigma",
           _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"),
           ("LongCatImageTransformerBlock", "LongCatImageSingleTransformerBlock"), 2, "LongCatImagePipeline"),
        _F("ernie_image", "ERNIE-Image", _ernie, _ernie_inputs, _ernie_call, "sigma*1000",
           _n(2, "self_attention", "mlp"), ("ErnieImageSharedAdaLNBlock",), pipeline="ErnieImagePipeline"),
        _F("motif_video", "Motif-Video", _motif, _motif_inputs, _motif_call, "sigma*1000",
           _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"),
           ("MotifVideoTransformerBlock", "MotifVideoSingleTransformerBlock"), 2, "MotifVideoPipeline"),
        _F("chronoedit", "ChronoEdit", _chronoedit, _skyreels_inputs, _chronoedit_call, "sigma*1000",
           _n(2, "attn1", "attn2", "ffn"), ("WanTransformerBlock",), 2, "ChronoEditPipeline"),
        _F("lumina_next", "Lumina-Next", _lumina_next, _lumina_next_inputs, _lumina_next_call, "1-sigma",
           _n(2, "attn1", "attn2", "feed_forward"), ("LuminaNextDiTBlock",), pipeline="LuminaPipeline"),
        _F("cogview3plus", "CogView3-Plus", _cogview3, _cogview3_inputs, _cogview3_call, "ddpm",
           _n(2, "attn1", "ff"), ("CogView3PlusTransformerBlock",), pipeline="CogView3PlusPipeline"),
        _F("consisid", "ConsisID", _consisid, _consisid_inputs, _consisid_call, "ddpm",
           _n(2, "attn1", "ff"), ("ConsisIDBlock",), pipeline="ConsisIDPipeline"),
        _F("framepack", "HunyuanVideo FramePack", _framepack, _framepack_inputs, _framepack_call, "sigma*1000",
           {**_n(1, "refiner_attn", "refiner_ff"), **_n(2, *_FLUX_LIKE, "single_attn", "single_mlp")},
           ("HunyuanVideoIndividualTokenRefinerBlock", "HunyuanVideoTransformerBlock",
            "HunyuanVideoSingleTransformerBlock"), pipeline="HunyuanVideoFramepackPipeline"),
    ]
}
