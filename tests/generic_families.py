"""Tiny random-weight diffusers transformers that smoothcache supports without a table row.

Every family is a :class:`GenericFamily`: ``build()`` makes the transformer from a tiny config (seeded,
offline); ``inputs(generator)`` makes the fixed conditioning of one generation (text embeddings, ids, masks)
and the initial latent under ``"x"``; ``call(model, x, t, inputs)`` calls the transformer the way its
diffusers pipeline does for one denoising step (timestep scale, keyword names, separate cond/uncond calls) and
returns the prediction shaped like ``x``. :func:`generate` runs a whole generation with the family's time
convention (:data:`TIMES`).

The registry :data:`GENERIC_FAMILIES` also says what discovery must find (``blocks``: branch key -> number of
blocks carrying it, ``block_classes``) and renders the README's supported-models rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

import generic_dit as dit
import generic_mmdit as mm
import generic_video as vid


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
        inputs: ``inputs(generator) -> dict``: the conditioning of one generation, and the initial latent as
            ``x``.
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


# -------------------------------------------------------------------------------------------- the registry
def _n(n: int, *keys: str) -> dict[str, int]:
    return {k: n for k in keys}


def _parts(module, stem: str, inputs: str = "", call: str = ""):
    """``<stem>``, ``<stem>_inputs``, ``<stem>_call`` of a builder module."""
    return (
        getattr(module, stem),
        getattr(module, inputs or f"{stem}_inputs"),
        getattr(module, call or f"{stem}_call"),
    )


_F = GenericFamily
_FLUX_LIKE = ("attn", "ff", "ff_context")
GENERIC_FAMILIES: dict[str, GenericFamily] = {
    f.name: f
    for f in [
        _F(
            "flux2",
            "Flux 2",
            *_parts(mm, "flux2"),
            "sigma",
            {**_n(2, *_FLUX_LIKE), "single_attn": 2},
            ("Flux2TransformerBlock", "Flux2SingleTransformerBlock"),
            pipeline="Flux2Pipeline",
        ),
        _F(
            "qwen_image",
            "Qwen-Image",
            *_parts(mm, "qwen"),
            "sigma",
            _n(2, "attn", "img_mlp", "txt_mlp"),
            ("QwenImageTransformerBlock",),
            2,
            "QwenImagePipeline",
        ),
        _F(
            "hunyuan_video",
            "HunyuanVideo",
            *_parts(vid, "hunyuan_video"),
            "sigma*1000",
            {**_n(1, "refiner_attn", "refiner_ff"), **_n(2, *_FLUX_LIKE, "single_attn", "single_mlp")},
            (
                "HunyuanVideoIndividualTokenRefinerBlock",
                "HunyuanVideoTransformerBlock",
                "HunyuanVideoSingleTransformerBlock",
            ),
            pipeline="HunyuanVideoPipeline",
        ),
        _F(
            "ltx_video",
            "LTX-Video",
            *_parts(vid, "ltx"),
            "sigma*1000",
            _n(2, "attn1", "attn2", "ff"),
            ("LTXVideoTransformerBlock",),
            pipeline="LTXPipeline",
        ),
        _F(
            "z_image",
            "Z-Image",
            *_parts(dit, "z_image"),
            "1-sigma",
            {
                **_n(
                    1,
                    "noise_refiner_attention",
                    "noise_refiner_feed_forward",
                    "context_refiner_attention",
                    "context_refiner_feed_forward",
                ),
                **_n(2, "attention", "feed_forward"),
            },
            ("ZImageTransformerBlock",),
            pipeline="ZImagePipeline",
        ),
        _F(
            "chroma",
            "Chroma",
            *_parts(mm, "chroma"),
            "sigma",
            _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"),
            ("ChromaTransformerBlock", "ChromaSingleTransformerBlock"),
            2,
            "ChromaPipeline",
        ),
        _F(
            "skyreels_v2",
            "SkyReels V2",
            *_parts(vid, "skyreels"),
            "sigma*1000",
            _n(2, "attn1", "attn2", "ffn"),
            ("SkyReelsV2TransformerBlock",),
            2,
            "SkyReelsV2Pipeline",
        ),
        _F(
            "sana",
            "Sana",
            *_parts(dit, "sana"),
            "sigma*1000",
            _n(2, "attn1", "attn2", "ff"),
            ("SanaTransformerBlock",),
            pipeline="SanaPipeline",
        ),
        _F(
            "lumina2",
            "Lumina 2",
            *_parts(dit, "lumina2"),
            "1-sigma",
            {
                **_n(
                    1,
                    "noise_refiner_attn",
                    "noise_refiner_feed_forward",
                    "context_refiner_attn",
                    "context_refiner_feed_forward",
                ),
                **_n(2, "attn", "feed_forward"),
            },
            ("Lumina2TransformerBlock",),
            2,
            "Lumina2Pipeline",
        ),
        _F(
            "hunyuan_image",
            "HunyuanImage 2.1",
            *_parts(mm, "hunyuan_image"),
            "sigma*1000",
            {**_n(1, "refiner_attn", "refiner_ff"), **_n(2, *_FLUX_LIKE, "single_attn", "single_mlp")},
            (
                "HunyuanImageIndividualTokenRefinerBlock",
                "HunyuanImageTransformerBlock",
                "HunyuanImageSingleTransformerBlock",
            ),
            2,
            "HunyuanImagePipeline",
        ),
        _F(
            "kandinsky5",
            "Kandinsky 5",
            *_parts(vid, "kandinsky5"),
            "sigma*1000",
            _n(
                2,
                "text_self_attention",
                "text_feed_forward",
                "visual_self_attention",
                "visual_cross_attention",
                "visual_feed_forward",
            ),
            ("Kandinsky5TransformerEncoderBlock", "Kandinsky5TransformerDecoderBlock"),
            pipeline="Kandinsky5T2VPipeline",
        ),
        _F(
            "mochi",
            "Mochi",
            *_parts(vid, "mochi"),
            "1000*(1-sigma)",
            {"attn1": 2, "ff": 2, "ff_context": 1},
            ("MochiTransformerBlock",),
            pipeline="MochiPipeline",
        ),
        _F(
            "allegro",
            "Allegro",
            *_parts(vid, "allegro"),
            "ddpm",
            _n(2, "attn1", "attn2", "ff"),
            ("AllegroTransformerBlock",),
            pipeline="AllegroPipeline",
        ),
        _F(
            "cosmos",
            "Cosmos 1",
            *_parts(vid, "cosmos"),
            "edm c_noise",
            _n(2, "attn1", "attn2", "ff"),
            ("CosmosTransformerBlock",),
            2,
            "CosmosTextToWorldPipeline",
        ),
        _F(
            "hidream",
            "HiDream-I1",
            *_parts(mm, "hidream"),
            "sigma*1000",
            {
                **_n(2, "double_stream_attn1", "double_stream_ff_i", "double_stream_ff_t"),
                **_n(2, "single_stream_attn1", "single_stream_ff_i"),
            },
            ("HiDreamBlock",),
            pipeline="HiDreamImagePipeline",
        ),
        _F(
            "hunyuan_video15",
            "HunyuanVideo 1.5",
            *_parts(vid, "hunyuan_video15"),
            "sigma*1000",
            {**_n(1, "refiner_attn", "refiner_ff"), **_n(2, *_FLUX_LIKE)},
            ("HunyuanVideo15IndividualTokenRefinerBlock", "HunyuanVideo15TransformerBlock"),
            2,
            "HunyuanVideo15Pipeline",
        ),
        _F(
            "ltx2",
            "LTX-2",
            *_parts(vid, "ltx2"),
            "sigma*1000",
            _n(
                2,
                "attn1",
                "audio_attn1",
                "attn2",
                "audio_attn2",
                "audio_to_video_attn",
                "video_to_audio_attn",
                "ff",
                "audio_ff",
            ),
            ("LTX2VideoTransformerBlock",),
            pipeline="LTX2Pipeline",
        ),
        _F(
            "stable_audio3",
            "Stable Audio 3",
            *_parts(dit, "stable_audio3"),
            "sigma",
            _n(2, "self_attn", "cross_attn", "ff"),
            ("StableAudio3DiTBlock",),
            pipeline="StableAudio3Pipeline",
        ),
        _F(
            "flux_kontext",
            "Flux Kontext",
            *_parts(mm, "flux_kontext"),
            "sigma",
            _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"),
            ("FluxTransformerBlock", "FluxSingleTransformerBlock"),
            pipeline="FluxKontextPipeline",
        ),
        _F(
            "bria",
            "Bria 3.2",
            *_parts(mm, "bria"),
            "sigma*1000",
            _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"),
            ("BriaTransformerBlock", "BriaSingleTransformerBlock"),
            pipeline="BriaPipeline",
        ),
        _F(
            "omnigen",
            "OmniGen",
            *_parts(dit, "omnigen"),
            "1-sigma",
            _n(2, "self_attn", "mlp"),
            ("OmniGenBlock",),
            pipeline="OmniGenPipeline",
        ),
        _F(
            "easyanimate",
            "EasyAnimate",
            *_parts(vid, "easyanimate"),
            "sigma*1000",
            _n(2, "attn1", "ff", "txt_ff"),
            ("EasyAnimateTransformerBlock",),
            pipeline="EasyAnimatePipeline",
        ),
        _F(
            "cogview4",
            "CogView4",
            *_parts(dit, "cogview4"),
            "sigma*1000",
            _n(2, "attn1", "ff"),
            ("CogView4TransformerBlock",),
            2,
            "CogView4Pipeline",
            repeats={"ff": 2},
        ),
        _F(
            "auraflow",
            "AuraFlow",
            *_parts(mm, "auraflow"),
            "sigma",
            _n(2, "joint_attn", "joint_ff", "joint_ff_context", "single_attn", "single_ff"),
            ("AuraFlowJointTransformerBlock", "AuraFlowSingleTransformerBlock"),
            pipeline="AuraFlowPipeline",
        ),
        _F(
            "hunyuan_dit",
            "Hunyuan-DiT",
            *_parts(dit, "hunyuan_dit"),
            "ddpm",
            _n(4, "attn1", "attn2", "ff"),
            ("HunyuanDiTBlock",),
            pipeline="HunyuanDiTPipeline",
        ),
        _F(
            "wan_vace",
            "Wan VACE",
            *_parts(vid, "wan_vace"),
            "sigma*1000",
            {**_n(2, "attn1", "attn2", "ffn"), **_n(1, "vace_attn1", "vace_attn2", "vace_ffn")},
            ("WanTransformerBlock", "WanVACETransformerBlock"),
            2,
            "WanVACEPipeline",
        ),
        _F(
            "sana_video",
            "Sana Video",
            *_parts(vid, "sana_video"),
            "sigma*1000",
            _n(2, "attn1", "attn2", "ff"),
            ("SanaVideoTransformerBlock",),
            pipeline="SanaVideoPipeline",
        ),
        _F(
            "ovis_image",
            "Ovis-Image",
            mm.ovis,
            mm.flux_like_inputs,
            mm.flux_like_call,
            "sigma",
            _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"),
            ("OvisImageTransformerBlock", "OvisImageSingleTransformerBlock"),
            2,
            "OvisImagePipeline",
        ),
        _F(
            "longcat_image",
            "LongCat-Image",
            mm.longcat,
            mm.flux_like_inputs,
            mm.flux_like_call,
            "sigma",
            _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"),
            ("LongCatImageTransformerBlock", "LongCatImageSingleTransformerBlock"),
            2,
            "LongCatImagePipeline",
        ),
        _F(
            "ernie_image",
            "ERNIE-Image",
            *_parts(dit, "ernie"),
            "sigma*1000",
            _n(2, "self_attention", "mlp"),
            ("ErnieImageSharedAdaLNBlock",),
            pipeline="ErnieImagePipeline",
        ),
        _F(
            "motif_video",
            "Motif-Video",
            *_parts(vid, "motif"),
            "sigma*1000",
            _n(2, *_FLUX_LIKE, "single_attn", "single_mlp"),
            ("MotifVideoTransformerBlock", "MotifVideoSingleTransformerBlock"),
            2,
            "MotifVideoPipeline",
        ),
        _F(
            "chronoedit",
            "ChronoEdit",
            vid.chronoedit,
            vid.skyreels_inputs,
            vid.chronoedit_call,
            "sigma*1000",
            _n(2, "attn1", "attn2", "ffn"),
            ("WanTransformerBlock",),
            2,
            "ChronoEditPipeline",
        ),
        _F(
            "lumina_next",
            "Lumina-Next",
            *_parts(dit, "lumina_next"),
            "1-sigma",
            _n(2, "attn1", "attn2", "feed_forward"),
            ("LuminaNextDiTBlock",),
            pipeline="LuminaPipeline",
        ),
        _F(
            "cogview3plus",
            "CogView3-Plus",
            *_parts(dit, "cogview3"),
            "ddpm",
            _n(2, "attn1", "ff"),
            ("CogView3PlusTransformerBlock",),
            pipeline="CogView3PlusPipeline",
        ),
        _F(
            "consisid",
            "ConsisID",
            *_parts(vid, "consisid"),
            "ddpm",
            _n(2, "attn1", "ff"),
            ("ConsisIDBlock",),
            pipeline="ConsisIDPipeline",
        ),
        _F(
            "framepack",
            "HunyuanVideo FramePack",
            *_parts(vid, "framepack"),
            "sigma*1000",
            {**_n(1, "refiner_attn", "refiner_ff"), **_n(2, *_FLUX_LIKE, "single_attn", "single_mlp")},
            (
                "HunyuanVideoIndividualTokenRefinerBlock",
                "HunyuanVideoTransformerBlock",
                "HunyuanVideoSingleTransformerBlock",
            ),
            pipeline="HunyuanVideoFramepackPipeline",
        ),
    ]
}


# ------------------------------------------------------------------------------------------- README table
_TIME_TEXT = {
    "ddpm": "integer t, 999 → 0",
    "sigma*1000": "σ·1000",
    "sigma": "σ ∈ (0, 1]",
    "1-sigma": "1 − σ (rising)",
    "1000*(1-sigma)": "1000·(1 − σ) (rising)",
    "edm c_noise": "EDM c_noise = ¼·ln σ",
}
README_BEGIN = "<!-- begin: generated from tests/generic_families.py (python tests/generic_families.py) -->"
README_END = "<!-- end: generated -->"


def readme_table() -> str:
    """The README's table of the families discovery supports, rendered from :data:`GENERIC_FAMILIES`."""
    rows = [
        "| family | block classes | branch keys | call reproduced (pipeline) | timestep passed | calls per "
        "step |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for fam in GENERIC_FAMILIES.values():
        classes = ", ".join(f"`{c}`" for c in fam.block_classes)
        keys = ", ".join(
            f"`{k}`" + (f" (×{fam.repeats[k]} per block)" if k in fam.repeats else "") for k in fam.keys
        )
        calls = "2 (cond, uncond)" if fam.calls_per_step == 2 else "1"
        rows.append(
            f"| {fam.title} | {classes} | {keys} | `{fam.pipeline}` | {_TIME_TEXT[fam.time]} | {calls} |"
        )
    return "\n".join([README_BEGIN, *rows, README_END])


if __name__ == "__main__":
    print(readme_table())
