"""Double-stream (MMDiT) image transformers: Flux 2, Qwen-Image, Chroma, HunyuanImage, HiDream, Flux Kontext,
Bria, AuraFlow, Ovis-Image, LongCat-Image. See ``generic_families.py`` for what each function does.
"""

from __future__ import annotations

import torch

from generic_calls import cfg, first, full_t, ids3, ids4, randn, seeded


# ------------------------------------------------------------------------------------------------ Flux 2
def flux2():
    from diffusers import Flux2Transformer2DModel

    return seeded(Flux2Transformer2DModel, patch_size=1, in_channels=4, num_layers=2, num_single_layers=2,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                   timestep_guidance_channels=16, axes_dims_rope=(2, 2, 2, 2))




def flux2_inputs(g):
    return {"x": randn(g, 1, 16, 4), "txt": randn(g, 1, 6, 16), "img_ids": ids4(1, 4, 4, 1)[None],
            "txt_ids": ids4(1, 1, 1, 6)[None]}


def flux2_call(model, x, t, c):
    # Flux2Pipeline: timestep / 1000 (the model multiplies by 1000), guidance embedded, one call
    return first(
        model(
            hidden_states=x,
            encoder_hidden_states=c["txt"],
            timestep=full_t(t),
            guidance=full_t(4.0),
            img_ids=c["img_ids"],
            txt_ids=c["txt_ids"],
            return_dict=False,
        )
    )


# -------------------------------------------------------------------------------------------- Qwen-Image
def qwen():
    from diffusers import QwenImageTransformer2DModel

    return seeded(
        QwenImageTransformer2DModel,
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=(4, 2, 2),
    )


def qwen_inputs(g):
    return {"x": randn(g, 1, 16, 16), "txt": randn(g, 1, 6, 16), "neg": randn(g, 1, 6, 16)}


def qwen_call(model, x, t, c):
    # QwenImagePipeline: timestep / 1000, true CFG as two calls in cache_context("cond"/"uncond")
    def one(i):
        return first(
            model(
                hidden_states=x,
                encoder_hidden_states=i["txt"],
                encoder_hidden_states_mask=torch.ones(1, 6, dtype=torch.long),
                timestep=full_t(t),
                img_shapes=[(1, 4, 4)],
                return_dict=False,
            )
        )

    return cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------------ Chroma
def chroma():
    from diffusers import ChromaTransformer2DModel

    return seeded(
        ChromaTransformer2DModel,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=(2, 2, 4),
        approximator_num_channels=8,
        approximator_hidden_dim=16,
        approximator_layers=1,
    )


def chroma_inputs(g):
    return {"x": randn(g, 1, 16, 4), "txt": randn(g, 1, 6, 16), "neg": randn(g, 1, 6, 16)}


def chroma_call(model, x, t, c):
    # ChromaPipeline: timestep / 1000, CFG as two calls
    def one(i):
        return first(
            model(
                hidden_states=x,
                encoder_hidden_states=i["txt"],
                timestep=full_t(t),
                img_ids=ids3(4, 4),
                txt_ids=torch.zeros(6, 3),
                return_dict=False,
            )
        )

    return cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------ HunyuanImage
def hunyuan_image():
    from diffusers import HunyuanImageTransformer2DModel

    return seeded(
        HunyuanImageTransformer2DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_single_layers=2,
        num_refiner_layers=1,
        patch_size=(1, 1),
        text_embed_dim=16,
        rope_axes_dim=(4, 4),
    )


def hunyuan_image_inputs(g):
    return {"x": randn(g, 1, 4, 4, 4), "txt": randn(g, 1, 6, 16), "neg": randn(g, 1, 6, 16)}


def hunyuan_image_call(model, x, t, c):
    # HunyuanImagePipeline: scheduler timesteps, guider calls cond / uncond in cache_context
    def one(i):
        return first(
            model(
                hidden_states=x,
                timestep=full_t(t),
                encoder_hidden_states=i["txt"],
                encoder_attention_mask=torch.ones(1, 6),
                return_dict=False,
            )
        )

    return cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------------ HiDream
def hidream():
    from diffusers import HiDreamImageTransformer2DModel

    return seeded(
        HiDreamImageTransformer2DModel,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=[8, 4],
        text_emb_dim=8,
        num_routed_experts=2,
        num_activated_experts=2,
        axes_dims_rope=(4, 2, 2),
        max_resolution=(16, 16),
        llama_layers=(0, 1, 2, 3),
    )


def hidream_inputs(g):
    return {
        "x": randn(g, 1, 4, 8, 8),
        "t5": randn(g, 2, 6, 8),
        "llama": randn(g, 4, 2, 6, 4),
        "pooled": randn(g, 2, 8),
    }


def hidream_call(model, x, t, c):
    # HiDreamImagePipeline: scheduler timesteps, batched CFG, `timesteps=` keyword
    out = first(
        model(
            hidden_states=torch.cat([x, x]),
            timesteps=full_t(t, 2),
            encoder_hidden_states_t5=c["t5"],
            encoder_hidden_states_llama3=c["llama"],
            pooled_embeds=c["pooled"],
            return_dict=False,
        )
    )
    uncond, cond = out.chunk(2)
    return -(uncond + 5.0 * (cond - uncond))


# ------------------------------------------------------------------------------------------ Flux Kontext
def flux_kontext():
    from diffusers import FluxTransformer2DModel

    return seeded(
        FluxTransformer2DModel,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        pooled_projection_dim=8,
        axes_dims_rope=[2, 2, 4],
        guidance_embeds=True,
    )


def flux_kontext_inputs(g):
    return {
        "x": randn(g, 1, 16, 4),
        "image": randn(g, 1, 16, 4),
        "txt": randn(g, 1, 6, 16),
        "pooled": randn(g, 1, 8),
    }


def flux_kontext_call(model, x, t, c):
    # FluxKontextPipeline: the reference image's latent tokens follow the noisy ones (ids with t = 1)
    img_ids = ids3(4, 4)
    ref_ids = img_ids.clone()
    ref_ids[:, 0] = 1
    out = first(
        model(
            hidden_states=torch.cat([x, c["image"]], dim=1),
            encoder_hidden_states=c["txt"],
            pooled_projections=c["pooled"],
            timestep=full_t(t),
            guidance=full_t(2.5),
            img_ids=torch.cat([img_ids, ref_ids]),
            txt_ids=torch.zeros(6, 3),
            return_dict=False,
        )
    )
    return out[:, : x.shape[1]]


# -------------------------------------------------------------------------------------------------- Bria
def bria():
    from diffusers import BriaTransformer2DModel

    return seeded(
        BriaTransformer2DModel,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=[2, 2, 4],
    )


def bria_inputs(g):
    return {"x": randn(g, 1, 16, 4), "txt": randn(g, 2, 6, 16)}


def bria_call(model, x, t, c):
    # BriaPipeline: scheduler timesteps, batched CFG
    out = first(
        model(
            hidden_states=torch.cat([x, x]),
            encoder_hidden_states=c["txt"],
            timestep=full_t(t, 2),
            img_ids=ids3(4, 4),
            txt_ids=torch.zeros(6, 3),
            return_dict=False,
        )
    )
    uncond, cond = out.chunk(2)
    return uncond + 5.0 * (cond - uncond)


# ------------------------------------------------------------------------------------------------ AuraFlow
def auraflow():
    from diffusers import AuraFlowTransformer2DModel

    return seeded(
        AuraFlowTransformer2DModel,
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_mmdit_layers=2,
        num_single_dit_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        out_channels=4,
        pos_embed_max_size=16,
    )


def auraflow_inputs(g):
    return {"x": randn(g, 1, 4, 8, 8), "txt": randn(g, 2, 6, 16)}


def auraflow_call(model, x, t, c):
    # AuraFlowPipeline: timestep / 1000, batched CFG
    out = first(
        model(torch.cat([x, x]), encoder_hidden_states=c["txt"], timestep=full_t(t, 2), return_dict=False)
    )
    uncond, cond = out.chunk(2)
    return uncond + 3.5 * (cond - uncond)


# -------------------------------------------------------------------------------------- Ovis-Image, LongCat
def ovis():
    from diffusers import OvisImageTransformer2DModel

    return seeded(
        OvisImageTransformer2DModel,
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=(2, 2, 4),
    )


def longcat():
    from diffusers import LongCatImageTransformer2DModel

    return seeded(
        LongCatImageTransformer2DModel,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        pooled_projection_dim=16,
        axes_dims_rope=[2, 2, 4],
    )


def flux_like_inputs(g):
    return {"x": randn(g, 1, 16, 4), "txt": randn(g, 1, 6, 16), "neg": randn(g, 1, 6, 16)}


def flux_like_call(model, x, t, c):
    # OvisImagePipeline / LongCatImagePipeline: timestep / 1000, cond / uncond calls
    def one(i):
        return first(
            model(
                hidden_states=x,
                encoder_hidden_states=i["txt"],
                timestep=full_t(t),
                img_ids=ids3(4, 4),
                txt_ids=torch.zeros(6, 3),
                return_dict=False,
            )
        )

    return cfg(one, c, {"txt": c["neg"]})
