"""Video transformers: HunyuanVideo (1.0, 1.5, FramePack), LTX-Video, LTX-2, SkyReels V2, ChronoEdit, Wan
VACE, Kandinsky 5, Mochi, Allegro, Cosmos, EasyAnimate, Sana Video, Motif-Video, ConsisID. See
``generic_families.py``.
"""

from __future__ import annotations

import math

import torch

from generic_calls import cfg, first, full_t, randn, seeded, unzeroed


# ------------------------------------------------------------------------------------------ HunyuanVideo
def hunyuan_video():
    from diffusers import HunyuanVideoTransformer3DModel

    return seeded(
        HunyuanVideoTransformer3DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_single_layers=2,
        num_refiner_layers=1,
        patch_size=2,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 2, 4),
    )


def hunyuan_video_inputs(g):
    return {"x": randn(g, 1, 4, 2, 8, 8), "txt": randn(g, 1, 6, 16), "pooled": randn(g, 1, 8)}


def hunyuan_video_call(model, x, t, c):
    # HunyuanVideoPipeline: scheduler timesteps (sigma * 1000), guidance * 1000, guidance-distilled (one call)
    return first(
        model(
            hidden_states=x,
            timestep=full_t(t),
            encoder_hidden_states=c["txt"],
            encoder_attention_mask=torch.ones(1, 6),
            pooled_projections=c["pooled"],
            guidance=full_t(6000.0),
            return_dict=False,
        )
    )


# --------------------------------------------------------------------------------------- HunyuanVideo 1.5
def hunyuan_video15():
    from diffusers import HunyuanVideo15Transformer3DModel

    return seeded(
        HunyuanVideo15Transformer3DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=16,
        text_embed_2_dim=8,
        image_embed_dim=12,
        rope_axes_dim=(2, 2, 4),
        target_size=16,
        task_type="t2v",
    )


def hunyuan_video15_inputs(g):
    return {
        "x": randn(g, 1, 4, 1, 8, 8),
        "txt": randn(g, 1, 6, 16),
        "txt2": randn(g, 1, 4, 8),
        "neg": randn(g, 1, 6, 16),
    }


def hunyuan_video15_call(model, x, t, c):
    # HunyuanVideo15Pipeline: scheduler timesteps, guider calls cond / uncond in cache_context
    def one(i):
        return first(
            model(
                hidden_states=x,
                timestep=full_t(t),
                encoder_hidden_states=i["txt"],
                encoder_attention_mask=torch.ones(1, 6),
                encoder_hidden_states_2=i["txt2"],
                encoder_attention_mask_2=torch.ones(1, 4),
                image_embeds=torch.zeros(1, 3, 12),
                return_dict=False,
            )
        )

    return cfg(one, c, {"txt": c["neg"]})


# ---------------------------------------------------------------------------------- HunyuanVideo FramePack
def framepack():
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    return seeded(
        HunyuanVideoFramepackTransformer3DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_single_layers=2,
        num_refiner_layers=1,
        patch_size=2,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 2, 4),
        has_image_proj=True,
        image_proj_dim=16,
        has_clean_x_embedder=True,
    )


def framepack_inputs(g):
    return {
        "x": randn(g, 1, 4, 3, 4, 4),
        "txt": randn(g, 1, 6, 16),
        "pooled": randn(g, 1, 8),
        "image": randn(g, 1, 4, 16),
        "clean": randn(g, 1, 4, 2, 4, 4),
        "h2": randn(g, 1, 4, 2, 4, 4),
        "h4": randn(g, 1, 4, 8, 4, 4),
    }


def framepack_call(model, x, t, c):
    # HunyuanVideoFramepackPipeline: scheduler timesteps, guidance * 1000, image embeddings, the clean and
    # history latents of the sections generated so far with their frame indices
    return first(
        model(
            hidden_states=x,
            timestep=full_t(t),
            encoder_hidden_states=c["txt"],
            encoder_attention_mask=torch.ones(1, 6),
            pooled_projections=c["pooled"],
            image_embeds=c["image"],
            indices_latents=torch.arange(3),
            guidance=full_t(10000.0),
            latents_clean=c["clean"],
            indices_latents_clean=torch.arange(3, 5),
            latents_history_2x=c["h2"],
            indices_latents_history_2x=torch.arange(5, 7),
            latents_history_4x=c["h4"],
            indices_latents_history_4x=torch.arange(7, 15),
            return_dict=False,
        )
    )


# -------------------------------------------------------------------------------------------- LTX-Video
def ltx():
    from diffusers import LTXVideoTransformer3DModel

    return seeded(
        LTXVideoTransformer3DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=2,
        caption_channels=16,
    )


def ltx_inputs(g):
    return {"x": randn(g, 1, 2 * 4 * 4, 4), "txt": randn(g, 2, 6, 16)}


def ltx_call(model, x, t, c):
    # LTXPipeline: batched CFG in cache_context("cond_uncond"), scheduler timesteps (sigma * 1000)
    out = first(
        model(
            hidden_states=torch.cat([x, x]),
            encoder_hidden_states=c["txt"],
            timestep=full_t(t, 2),
            encoder_attention_mask=torch.ones(2, 6, dtype=torch.bool),
            num_frames=2,
            height=4,
            width=4,
            return_dict=False,
        )
    )
    uncond, cond = out.chunk(2)
    return uncond + 3.0 * (cond - uncond)


# -------------------------------------------------------------------------------------------------- LTX-2
def ltx2():
    from diffusers import LTX2VideoTransformer3DModel

    return seeded(
        LTX2VideoTransformer3DModel,
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        caption_channels=16,
        rope_double_precision=False,
    )


_LTX2_VIDEO, _LTX2_AUDIO = (1, 2 * 4 * 4, 4), (1, 5, 4)


def ltx2_inputs(g):
    video, audio = randn(g, *_LTX2_VIDEO), randn(g, *_LTX2_AUDIO)
    return {
        "x": torch.cat([video.flatten(), audio.flatten()]),
        "txt": randn(g, 2, 6, 16),
        "audio_txt": randn(g, 2, 6, 16),
    }


def ltx2_call(model, x, t, c):
    # LTX2Pipeline: video and audio latents denoised together, batched CFG, timestep and sigma both passed
    n = math.prod(_LTX2_VIDEO)
    video, audio = x[:n].reshape(_LTX2_VIDEO), x[n:].reshape(_LTX2_AUDIO)
    pred_video, pred_audio = model(
        hidden_states=torch.cat([video, video]),
        audio_hidden_states=torch.cat([audio, audio]),
        encoder_hidden_states=c["txt"],
        audio_encoder_hidden_states=c["audio_txt"],
        timestep=full_t(t, 2),
        sigma=full_t(t, 2),
        encoder_attention_mask=torch.ones(2, 6, dtype=torch.bool),
        audio_encoder_attention_mask=torch.ones(2, 6, dtype=torch.bool),
        num_frames=2,
        height=4,
        width=4,
        audio_num_frames=5,
        fps=25.0,
        return_dict=False,
    )[:2]
    guided = [u + 3.0 * (p - u) for u, p in (pred_video.chunk(2), pred_audio.chunk(2))]
    return torch.cat([g.flatten() for g in guided])


# ------------------------------------------------------------------------------------------- SkyReels V2
def skyreels():
    from diffusers import SkyReelsV2Transformer3DModel

    return seeded(
        SkyReelsV2Transformer3DModel,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=16,
        num_layers=2,
        rope_max_seq_len=32,
    )


def skyreels_inputs(g):
    return {"x": randn(g, 1, 4, 2, 8, 8), "txt": randn(g, 1, 6, 16), "neg": randn(g, 1, 6, 16)}


def skyreels_call(model, x, t, c):
    # SkyReelsV2Pipeline: scheduler timesteps, cond and uncond calls in cache_context
    def one(i):
        return first(
            model(hidden_states=x, timestep=full_t(t), encoder_hidden_states=i["txt"], return_dict=False)
        )

    return cfg(one, c, {"txt": c["neg"]})


# --------------------------------------------------------------------------------------------- ChronoEdit
def chronoedit():
    from diffusers import ChronoEditTransformer3DModel

    return seeded(
        ChronoEditTransformer3DModel,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=16,
        num_layers=2,
        rope_max_seq_len=32,
    )


def chronoedit_call(model, x, t, c):
    # ChronoEditPipeline: scheduler timesteps, cond / uncond calls in cache_context
    def one(i):
        return first(
            model(hidden_states=x, timestep=full_t(t), encoder_hidden_states=i["txt"], return_dict=False)
        )

    return cfg(one, c, {"txt": c["neg"]})


# ---------------------------------------------------------------------------------------------- Wan VACE
def wan_vace():
    from diffusers import WanVACETransformer3DModel

    return seeded(
        WanVACETransformer3DModel,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=16,
        num_layers=2,
        rope_max_seq_len=32,
        vace_layers=[0],
        vace_in_channels=8,
    )


def wan_vace_inputs(g):
    return {
        "x": randn(g, 1, 4, 2, 8, 8),
        "txt": randn(g, 1, 6, 16),
        "neg": randn(g, 1, 6, 16),
        "control": randn(g, 1, 8, 2, 8, 8),
    }


def wan_vace_call(model, x, t, c):
    # WanVACEPipeline: scheduler timesteps, control video through the VACE blocks, cond / uncond calls
    def one(i):
        return first(
            model(
                hidden_states=x,
                timestep=full_t(t),
                encoder_hidden_states=i["txt"],
                control_hidden_states=c["control"],
                return_dict=False,
            )
        )

    return cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------- Kandinsky 5
def kandinsky5():
    from diffusers import Kandinsky5Transformer3DModel

    return unzeroed(
        seeded(
            Kandinsky5Transformer3DModel,
            in_visual_dim=4,
            in_text_dim=16,
            in_text_dim2=8,
            time_dim=16,
            out_visual_dim=4,
            patch_size=(1, 2, 2),
            model_dim=16,
            ff_dim=32,
            num_text_blocks=2,
            num_visual_blocks=2,
            axes_dims=(4, 2, 2),
        )
    )


def kandinsky5_inputs(g):
    return {"x": randn(g, 1, 1, 8, 8, 4), "txt": randn(g, 1, 6, 16), "pooled": randn(g, 1, 8)}


def kandinsky5_call(model, x, t, c):
    # Kandinsky5T2VPipeline: scheduler timesteps, (B, F, H, W, C) latents, rope positions
    rope = [torch.arange(1), torch.arange(4), torch.arange(4)]
    return model(
        hidden_states=x,
        encoder_hidden_states=c["txt"],
        pooled_projections=c["pooled"],
        timestep=full_t(t),
        visual_rope_pos=rope,
        text_rope_pos=torch.arange(6),
        return_dict=True,
    ).sample


# ------------------------------------------------------------------------------------------------- Mochi
def mochi():
    from diffusers import MochiTransformer3DModel

    return seeded(
        MochiTransformer3DModel,
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=4,
        text_embed_dim=16,
        time_embed_dim=4,
        max_sequence_length=16,
    )


def mochi_inputs(g):
    return {"x": randn(g, 1, 4, 2, 8, 8), "txt": randn(g, 2, 6, 16)}


def mochi_call(model, x, t, c):
    # MochiPipeline: inverted sigmas, so the timestep rises (0 .. 1000); batched CFG in cache_context
    out = first(
        model(
            hidden_states=torch.cat([x, x]),
            encoder_hidden_states=c["txt"],
            timestep=full_t(t, 2),
            encoder_attention_mask=torch.ones(2, 6, dtype=torch.bool),
            return_dict=False,
        )
    )
    uncond, cond = out.chunk(2)
    return -(uncond + 4.5 * (cond - uncond))


# ------------------------------------------------------------------------------------------------ Allegro
def allegro():
    from diffusers import AllegroTransformer3DModel

    return seeded(
        AllegroTransformer3DModel,
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        cross_attention_dim=16,
        sample_height=8,
        sample_width=8,
        sample_frames=4,
        caption_channels=16,
    )


def allegro_inputs(g):
    return {"x": randn(g, 1, 4, 2, 8, 8), "txt": randn(g, 2, 6, 16)}


def allegro_call(model, x, t, c):
    # AllegroPipeline: EulerAncestral integer timesteps, batched CFG
    out = first(
        model(
            hidden_states=torch.cat([x, x]),
            encoder_hidden_states=c["txt"],
            timestep=torch.full((2,), int(t)),
            return_dict=False,
        )
    )
    uncond, cond = out.chunk(2)
    return uncond + 7.5 * (cond - uncond)


# ------------------------------------------------------------------------------------------------- Cosmos
def cosmos():
    from diffusers import CosmosTransformer3DModel

    return seeded(
        CosmosTransformer3DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=2,
        mlp_ratio=2,
        text_embed_dim=16,
        adaln_lora_dim=4,
        max_size=(4, 16, 16),
        patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0),
        concat_padding_mask=False,
        extra_pos_embed_type="learnable",
    )  # the mask path needs torchvision


def cosmos_inputs(g):
    return {"x": randn(g, 1, 4, 1, 8, 8), "txt": randn(g, 1, 6, 16), "neg": randn(g, 1, 6, 16)}


def cosmos_call(model, x, t, c):
    # CosmosTextToWorldPipeline: EDM c_noise timesteps, cond and uncond calls
    def one(i):
        return first(
            model(
                hidden_states=x, timestep=full_t(t), encoder_hidden_states=i["txt"], fps=30, return_dict=False
            )
        )

    return cfg(one, c, {"txt": c["neg"]})


# -------------------------------------------------------------------------------------------- EasyAnimate
def easyanimate():
    from diffusers import EasyAnimateTransformer3DModel

    return seeded(
        EasyAnimateTransformer3DModel,
        attention_head_dim=16,
        num_attention_heads=2,
        in_channels=4,
        mmdit_layers=2,
        num_layers=2,
        out_channels=4,
        patch_size=2,
        sample_height=16,
        sample_width=16,
        text_embed_dim=16,
        time_embed_dim=8,
    )


def easyanimate_inputs(g):
    return {"x": randn(g, 1, 4, 2, 8, 8), "txt": randn(g, 2, 6, 16)}


def easyanimate_call(model, x, t, c):
    # EasyAnimatePipeline: scheduler timesteps, batched CFG
    out = first(model(torch.cat([x, x]), full_t(t, 2), encoder_hidden_states=c["txt"], return_dict=False))
    uncond, cond = out.chunk(2)
    return uncond + 5.0 * (cond - uncond)


# --------------------------------------------------------------------------------------------- Sana Video
def sana_video():
    from diffusers import SanaVideoTransformer3DModel

    return seeded(
        SanaVideoTransformer3DModel,
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
        patch_size=(1, 2, 2),
        rope_max_seq_len=32,
    )


def sana_video_inputs(g):
    return {"x": randn(g, 1, 4, 2, 8, 8), "txt": randn(g, 2, 6, 16)}


def sana_video_call(model, x, t, c):
    # SanaVideoPipeline: scheduler timesteps, batched CFG
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
    return uncond + 6.0 * (cond - uncond)


# --------------------------------------------------------------------------------------------- Motif-Video
def motif():
    from diffusers import MotifVideoTransformer3DModel

    return seeded(
        MotifVideoTransformer3DModel,
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=2,
        num_single_layers=2,
        num_decoder_layers=0,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=16,
        image_embed_dim=4,
        rope_axes_dim=(4, 4, 4),
        enable_text_cross_attention_dual=False,
        enable_text_cross_attention_single=False,
    )


def motif_inputs(g):
    return {"x": randn(g, 1, 4, 2, 4, 4), "txt": randn(g, 1, 6, 16), "neg": randn(g, 1, 6, 16)}


def motif_call(model, x, t, c):
    # MotifVideoPipeline: scheduler timesteps, cond / uncond calls
    def one(i):
        return first(
            model(hidden_states=x, encoder_hidden_states=i["txt"], timestep=full_t(t), return_dict=False)
        )

    return cfg(one, c, {"txt": c["neg"]})


# ------------------------------------------------------------------------------------------------ ConsisID
def consisid():
    from diffusers import ConsisIDTransformer3DModel

    return seeded(
        ConsisIDTransformer3DModel,
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=8,
        text_embed_dim=16,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=5,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=6,
        use_rotary_positional_embeddings=False,
    )


def consisid_inputs(g):
    return {"x": randn(g, 1, 2, 4, 8, 8), "txt": randn(g, 2, 6, 16)}


def consisid_call(model, x, t, c):
    # ConsisIDPipeline: CogVideoX DDIM integer timesteps, (batch, frames, channels, h, w) latents, batched CFG
    out = first(
        model(
            torch.cat([x, x]),
            encoder_hidden_states=c["txt"],
            timestep=torch.full((2,), int(t)),
            return_dict=False,
        )
    )
    uncond, cond = out.chunk(2)
    return uncond + 6.0 * (cond - uncond)
