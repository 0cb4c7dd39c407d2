"""Single-stream and cross-attention DiTs: Z-Image, Sana, Lumina 2 / Next, OmniGen, CogView 3 / 4,
Hunyuan-DiT, ERNIE-Image, and the audio DiT Stable Audio 3. See ``generic_families.py`` for what each function
does.
"""

from __future__ import annotations

import torch

from generic_calls import cfg, first, full_t, randn, seeded, unzeroed


# ----------------------------------------------------------------------------------------------- Z-Image
def z_image():
    from diffusers import ZImageTransformer2DModel

    return seeded(ZImageTransformer2DModel, all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=16,
                   n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, qk_norm=True, cap_feat_dim=16,
                   axes_dims=[4, 2, 2], axes_lens=[64, 16, 16])


def z_image_inputs(g):
    return {"x": randn(g, 1, 4, 8, 8), "txt": randn(g, 6, 16)}


def z_image_call(model, x, t, c):
    # ZImagePipeline: t = (1000 - timestep) / 1000 (rising), lists of per-sample tensors, one call
    out = model([x[0].unsqueeze(1)], full_t(t), [c["txt"]], return_dict=False)[0]
    return -out[0].squeeze(1).unsqueeze(0)


# -------------------------------------------------------------------------------------------------- Sana
def sana():
    from diffusers import SanaTransformer2DModel

    return seeded(
        SanaTransformer2DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=16,
        sample_size=8,
        patch_size=1,
    )


def sana_inputs(g):
    return {"x": randn(g, 1, 4, 8, 8), "txt": randn(g, 2, 6, 16)}


def sana_call(model, x, t, c):
    # SanaPipeline: batched CFG, timestep * timestep_scale
    out = first(
        model(
            torch.cat([x, x]),
            encoder_hidden_states=c["txt"],
            timestep=full_t(t, 2),
            encoder_attention_mask=torch.ones(2, 6),
            return_dict=False,
        )
    )
    uncond, cond = out.chunk(2)
    return uncond + 4.5 * (cond - uncond)


# ---------------------------------------------------------------------------------------------- Lumina 2
def lumina2():
    from diffusers import Lumina2Transformer2DModel

    return seeded(
        Lumina2Transformer2DModel,
        sample_size=8,
        patch_size=2,
        in_channels=4,
        hidden_size=24,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=3,
        num_kv_heads=1,
        multiple_of=2,
        axes_dim_rope=(4, 2, 2),
        axes_lens=(64, 16, 16),
        cap_feat_dim=16,
    )


def lumina2_inputs(g):
    return {"x": randn(g, 1, 4, 8, 8), "txt": randn(g, 1, 6, 16), "neg": randn(g, 1, 6, 16)}


def lumina2_call(model, x, t, c):
    # Lumina2Pipeline: 1 - t / 1000 (rising), cond then uncond calls
    def one(i):
        return first(
            model(
                hidden_states=x,
                timestep=full_t(t),
                encoder_hidden_states=i["txt"],
                encoder_attention_mask=torch.ones(1, 6, dtype=torch.bool),
                return_dict=False,
            )
        )

    return -cfg(one, c, {"txt": c["neg"]})


# --------------------------------------------------------------------------------------------- Lumina-Next
def lumina_next():
    from diffusers import LuminaNextDiT2DModel

    return seeded(
        LuminaNextDiT2DModel,
        sample_size=8,
        patch_size=2,
        in_channels=4,
        hidden_size=16,
        num_layers=2,
        num_attention_heads=2,
        num_kv_heads=1,
        multiple_of=16,
        learn_sigma=False,
        cross_attention_dim=16,
    )


def lumina_next_inputs(g):
    return {"x": randn(g, 1, 4, 8, 8), "txt": randn(g, 2, 6, 16)}


def lumina_next_call(model, x, t, c):
    # LuminaPipeline (Lumina-Next): 1 - t / 1000 (rising), batched CFG, 2D RoPE from the pipeline
    from diffusers.models.embeddings import get_2d_rotary_pos_embed_lumina

    rope = get_2d_rotary_pos_embed_lumina(model.head_dim, 16, 16)
    out = first(
        model(
            torch.cat([x, x]),
            full_t(t, 2),
            encoder_hidden_states=c["txt"],
            encoder_mask=torch.ones(2, 6),
            image_rotary_emb=rope,
            cross_attention_kwargs={},
            return_dict=False,
        )
    )
    cond, uncond = out[:, :4].chunk(2)
    return -(uncond + 4.0 * (cond - uncond))


# ------------------------------------------------------------------------------------------------ OmniGen
def omnigen():
    from diffusers import OmniGenTransformer2DModel

    return seeded(
        OmniGenTransformer2DModel,
        hidden_size=16,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=32,
        num_layers=2,
        pad_token_id=0,
        vocab_size=64,
        in_channels=4,
        time_step_dim=4,
        rope_scaling={"long_factor": [1, 2], "short_factor": [1, 2]},
    )


def omnigen_inputs(g):
    return {"x": randn(g, 1, 4, 8, 8), "ids": torch.randint(1, 64, (2, 6), generator=g)}


def omnigen_call(model, x, t, c):
    # OmniGenPipeline: inverted sigmas on 1 train timestep, so the timestep rises 0 -> 1; batched cond/uncond
    length = 6 + 1 + 16
    out = first(
        model(
            hidden_states=torch.cat([x, x]),
            timestep=full_t(t, 2),
            input_ids=c["ids"],
            input_img_latents=[],
            input_image_sizes={},
            attention_mask=torch.ones(2, length, length),
            position_ids=torch.arange(length).expand(2, -1),
            return_dict=False,
        )
    )
    cond, uncond = out.chunk(2)
    return uncond + 2.5 * (cond - uncond)


# ------------------------------------------------------------------------------------------------ CogView4
def cogview4():
    from diffusers import CogView4Transformer2DModel

    return seeded(
        CogView4Transformer2DModel,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        text_embed_dim=16,
        time_embed_dim=8,
        condition_dim=4,
        pos_embed_max_size=8,
        sample_size=8,
        rope_axes_dim=(4, 4),
    )


def cogview4_inputs(g):
    return {"x": randn(g, 1, 4, 8, 8), "txt": randn(g, 1, 6, 16), "neg": randn(g, 1, 6, 16)}


def cogview4_call(model, x, t, c):
    # CogView4Pipeline: scheduler timesteps, cond / uncond calls in cache_context
    def one(i):
        return first(
            model(
                hidden_states=x,
                encoder_hidden_states=i["txt"],
                timestep=full_t(t),
                original_size=torch.tensor([[64.0, 64.0]]),
                target_size=torch.tensor([[64.0, 64.0]]),
                crop_coords=torch.tensor([[0.0, 0.0]]),
                return_dict=False,
            )
        )

    return cfg(one, c, {"txt": c["neg"]})


# -------------------------------------------------------------------------------------------- CogView3-Plus
def cogview3():
    from diffusers import CogView3PlusTransformer2DModel

    return seeded(
        CogView3PlusTransformer2DModel,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        out_channels=4,
        text_embed_dim=16,
        time_embed_dim=8,
        condition_dim=2,
        pos_embed_max_size=8,
        sample_size=8,
    )


def cogview3_inputs(g):
    return {"x": randn(g, 1, 4, 8, 8), "txt": randn(g, 2, 6, 16)}


def cogview3_call(model, x, t, c):
    # CogView3PlusPipeline: DDIM integer timesteps, batched CFG, SDXL-style size conditioning
    size = torch.tensor([[64.0, 64.0]] * 2)
    out = first(
        model(
            torch.cat([x, x]),
            encoder_hidden_states=c["txt"],
            timestep=torch.full((2,), int(t)),
            original_size=size,
            target_size=size,
            crop_coords=torch.zeros(2, 2),
            return_dict=False,
        )
    )
    uncond, cond = out.chunk(2)
    return uncond + 7.0 * (cond - uncond)


# --------------------------------------------------------------------------------------------- Hunyuan-DiT
def hunyuan_dit():
    from diffusers import HunyuanDiT2DModel

    return seeded(
        HunyuanDiT2DModel,
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        patch_size=2,
        sample_size=8,
        hidden_size=16,
        num_layers=4,
        cross_attention_dim=16,
        cross_attention_dim_t5=8,
        pooled_projection_dim=8,
        text_len=6,
        text_len_t5=4,
    )


def hunyuan_dit_inputs(g):
    return {"x": randn(g, 1, 4, 8, 8), "txt": randn(g, 2, 6, 16), "t5": randn(g, 2, 4, 8)}


def hunyuan_dit_call(model, x, t, c):
    # HunyuanDiTPipeline: DDPM integer timesteps, batched CFG, 2D RoPE and image meta sizes
    from diffusers.models.embeddings import get_2d_rotary_pos_embed

    rope = get_2d_rotary_pos_embed(8, ((0, 0), (4, 4)), (4, 4))
    out = first(
        model(
            torch.cat([x, x]),
            torch.full((2,), float(int(t))),
            encoder_hidden_states=c["txt"],
            text_embedding_mask=torch.ones(2, 6),
            encoder_hidden_states_t5=c["t5"],
            text_embedding_mask_t5=torch.ones(2, 4),
            image_meta_size=torch.tensor([[64, 64, 64, 64, 0, 0]] * 2, dtype=torch.float),
            style=torch.zeros(2, dtype=torch.long),
            image_rotary_emb=rope,
            return_dict=False,
        )
    )
    uncond, cond = out[:, :4].chunk(2)
    return uncond + 5.0 * (cond - uncond)


# --------------------------------------------------------------------------------------------- ERNIE-Image
def ernie():
    from diffusers import ErnieImageTransformer2DModel

    return unzeroed(
        seeded(
            ErnieImageTransformer2DModel,
            hidden_size=16,
            num_attention_heads=2,
            num_layers=2,
            ffn_hidden_size=32,
            in_channels=4,
            out_channels=4,
            patch_size=1,
            text_in_dim=16,
            rope_axes_dim=(4, 2, 2),
        )
    )


def ernie_inputs(g):
    return {"x": randn(g, 1, 4, 4, 4), "txt": randn(g, 2, 6, 16)}


def ernie_call(model, x, t, c):
    # ErnieImagePipeline: scheduler timesteps, batched CFG, text as (batch, tokens, dim) with lengths
    out = first(
        model(
            torch.cat([x, x]),
            full_t(t, 2),
            text_bth=c["txt"],
            text_lens=torch.tensor([6, 6]),
            return_dict=False,
        )
    )
    uncond, cond = out.chunk(2)
    return uncond + 4.0 * (cond - uncond)


# ----------------------------------------------------------------------------------------- Stable Audio 3
def stable_audio3():
    from diffusers import StableAudio3DiTModel

    return seeded(
        StableAudio3DiTModel,
        io_channels=8,
        patch_size=1,
        embed_dim=32,
        depth=2,
        num_heads=4,
        cond_token_dim=16,
        global_cond_dim=12,
        local_add_cond_dim=5,
        timestep_features_dim=16,
        ff_mult=2,
        num_memory_tokens=3,
        use_differential_attention=False,
    )


def stable_audio3_inputs(g):
    return {"x": randn(g, 1, 8, 16), "txt": randn(g, 2, 4, 16), "glob": randn(g, 2, 12)}


def stable_audio3_call(model, x, t, c):
    # StableAudio3Pipeline: sigma in (0, 1] positional, batched CFG (negative first)
    out = model(
        torch.cat([x, x]),
        full_t(t, 2),
        encoder_hidden_states=c["txt"],
        global_hidden_states=c["glob"],
        encoder_attention_mask=torch.ones(2, 4, dtype=torch.bool),
        return_dict=False,
    )[0]
    uncond, cond = out.chunk(2)
    return uncond + 4.0 * (cond - uncond)
