"""The embedded moving-digits video DiT: a class-conditional Latte pipeline trained here (see
``video/README.md``).

``MovingDigitsPipeline`` is a small diffusers ``DiffusionPipeline`` with three components:

* ``transformer`` -- diffusers' ``LatteTransformer3DModel`` (spatial and temporal ``BasicTransformerBlock``\\
  s, so SmoothCache finds its ``attn1`` / ``attn2`` / ``ff`` branches), working in pixel space on
  (B, 1, 8, 24, 24) clips in [-1, 1];
* ``class_embedder`` -- :class:`VideoClassEmbedding`, a learned table that turns a class id (0..9, or the
  null class 10 for classifier-free guidance) into a few "caption" tokens fed to Latte's cross-attention;
* ``scheduler`` -- ``FlowMatchEulerDiscreteScheduler``: rectified flow sampled with Euler steps, as
  Open-Sora does (30 steps by default).

Call it like diffusers' video pipelines::

    pipe = video_pipeline()
    out = pipe(class_labels=[3, 7], num_inference_steps=30, generator=torch.Generator().manual_seed(0),
               output_type="pt")
    out.frames.shape  # (2, 8, 1, 24, 24), values in [0, 1]

``model_index.json`` records the class embedder as ``["smoothcache.zoo.video_model", "VideoClassEmbedding"]``;
diffusers resolves such custom libraries only from ``sys.modules``, so import this module before calling
``MovingDigitsPipeline.from_pretrained`` (:func:`video_pipeline` does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from diffusers import (
    CogVideoXTransformer3DModel,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    LatteTransformer3DModel,
)
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from .labels import class_label_tensor

__all__ = [
    "VIDEO_DIR",
    "VIDEO_GUIDANCE_SCALE",
    "VIDEO_STEPS",
    "MovingDigitsPipeline",
    "MovingDigitsPipelineOutput",
    "VideoClassEmbedding",
    "denoise",
    "video_pipeline",
]

#: Folder of the packaged pipeline (``MovingDigitsPipeline.save_pretrained`` output).
VIDEO_DIR = Path(__file__).resolve().parent / "video"
#: Default number of sampling steps (Open-Sora's rectified-flow default).
VIDEO_STEPS = 30
#: What the transformer may predict (see :class:`MovingDigitsPipeline`).
PREDICTION_TYPES = ("velocity", "sample")
#: Classifier-free guidance scale chosen in the model card (lowest FID of the sweep 1, 2, 4; doubles the
# batch).
VIDEO_GUIDANCE_SCALE = 4.0


class VideoClassEmbedding(ModelMixin, ConfigMixin):
    """Class id -> ``num_tokens`` learned "caption" tokens for the transformer's cross-attention.

    Args:
        num_classes: real classes; id ``num_classes`` is the null class (classifier-free guidance).
        num_tokens: tokens per class.
        embed_dim: token width (the transformer's ``caption_channels``).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, num_classes: int = 10, num_tokens: int = 4, embed_dim: int = 64):
        super().__init__()
        if num_classes < 1 or num_tokens < 1 or embed_dim < 1:
            raise ValueError(f"num_classes, num_tokens and embed_dim must be positive, got "
                             f"{num_classes}, {num_tokens}, {embed_dim}")
        self.table = nn.Embedding(num_classes + 1, num_tokens * embed_dim)

    @property
    def null_class(self) -> int:
        """The id of the null (unconditional) class."""
        return self.config.num_classes

    def forward(self, class_labels: torch.Tensor) -> torch.Tensor:
        """(B,) int64 ids in [0, num_classes] -> (B, num_tokens, embed_dim)."""
        if class_labels.ndim != 1:
            raise ValueError(f"class_labels must be 1-D, got shape {tuple(class_labels.shape)}")
        return self.table(class_labels).view(-1, self.config.num_tokens, self.config.embed_dim)


def _rotary_embedding(transformer: CogVideoXTransformer3DModel, num_frames: int, height: int, width: int,
                      device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """CogVideoX's 3-D rotary position embedding for a (frames, height, width) clip, as its pipeline builds
    it."""
    cfg = transformer.config
    if not cfg.use_rotary_positional_embeddings:
        return None
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    grid_h, grid_w = height // cfg.patch_size, width // cfg.patch_size
    crops = get_resize_crop_region_for_grid((grid_h, grid_w), cfg.sample_width // cfg.patch_size,
                                            cfg.sample_height // cfg.patch_size)
    return get_3d_rotary_pos_embed(
        embed_dim=cfg.attention_head_dim,
        crops_coords=crops,
        grid_size=(grid_h, grid_w),
        temporal_size=num_frames,
        device=device,
    )


def denoise(
    transformer: LatteTransformer3DModel | CogVideoXTransformer3DModel,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    context: torch.Tensor,
) -> torch.Tensor:
    """One velocity prediction for (B, F, C, H, W) clips: the single place that knows each transformer's
    layout.

    Args:
        transformer: a Latte (input (B, C, F, H, W)) or CogVideoX (input (B, F, C, H, W), 3-D RoPE)
            transformer.
        sample: noisy clips (B, F, C, H, W).
        timestep: (B,) timesteps, ``1000 x`` the noise level; passed as ``timestep=`` (SmoothCache counts
            steps from it).
        context: (B, tokens, dim) class tokens for the transformer's text path.
    """
    if isinstance(transformer, CogVideoXTransformer3DModel):
        _, frames, _, height, width = sample.shape
        rotary = _rotary_embedding(transformer, frames, height, width, sample.device)
        return transformer(
            sample,
            timestep=timestep,
            encoder_hidden_states=context,
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]
    out = transformer(
        sample.transpose(1, 2), timestep=timestep, encoder_hidden_states=context, return_dict=False
    )[0]
    return out.transpose(1, 2)


def _clip_shape(transformer) -> tuple[int, int, int]:
    """(frames, channels, side) of the clips a transformer was built for."""
    cfg = transformer.config
    if isinstance(transformer, CogVideoXTransformer3DModel):
        return cfg.sample_frames, cfg.in_channels, cfg.sample_height
    return cfg.video_length, cfg.in_channels, cfg.sample_size


@dataclass
class MovingDigitsPipelineOutput(BaseOutput):
    """Output of :class:`MovingDigitsPipeline`.

    Args:
        frames: ``output_type="pt"``: (B, F, C, H, W) tensor in [0, 1]; ``"np"``: (B, F, H, W, C) array;
            ``"pil"``: B lists of F PIL images; ``"latent"``: the raw (B, F, C, H, W) sample in [-1, 1].
    """

    frames: torch.Tensor | np.ndarray | list


class MovingDigitsPipeline(DiffusionPipeline):
    """Class-conditional video generation with a video transformer and rectified flow.

    Args:
        transformer: the denoiser (``LatteTransformer3DModel`` or ``CogVideoXTransformer3DModel``), predicting
            the flow velocity ``noise - x0`` of the clips.
        class_embedder: class id -> cross-attention tokens.
        scheduler: a ``FlowMatchEulerDiscreteScheduler``.
        prediction_type: what the transformer predicts: ``"velocity"`` (the flow ``noise - x0``) or
            ``"sample"`` (the clean clip ``x0``, turned into the velocity ``(x_t - x0) / sigma`` for the
            scheduler; x-prediction suits pixel-space transformers with large patches). Saved in
            ``model_index.json``.
    """

    model_cpu_offload_seq = "class_embedder->transformer"

    def __init__(
        self,
        transformer: LatteTransformer3DModel | CogVideoXTransformer3DModel,
        class_embedder: VideoClassEmbedding,
        scheduler: FlowMatchEulerDiscreteScheduler,
        prediction_type: str = "velocity",
    ):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.register_modules(transformer=transformer, class_embedder=class_embedder, scheduler=scheduler)
        self.register_to_config(prediction_type=prediction_type)

    def _labels(self, class_labels) -> torch.Tensor:
        num_classes = self.class_embedder.config.num_classes
        return class_label_tensor(class_labels, num_classes, self._execution_device)

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | Sequence[int] | torch.Tensor,
        num_inference_steps: int = VIDEO_STEPS,
        guidance_scale: float = VIDEO_GUIDANCE_SCALE,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> MovingDigitsPipelineOutput | tuple:
        """Generate one clip per class label.

        Args:
            class_labels: digit classes 0..9, one per video.
            num_inference_steps: Euler steps of the rectified flow.
            guidance_scale: classifier-free guidance; > 1 also runs the null class (doubling the batch).
            generator: torch generator(s) for the initial noise.
            latents: optional initial noise (B, F, C, H, W).
            output_type: ``"pt"``, ``"np"``, ``"pil"`` or ``"latent"`` (the final sample, range [-1, 1]).
            return_dict: return a :class:`MovingDigitsPipelineOutput` instead of a tuple.
        """
        if output_type not in ("pt", "np", "pil", "latent"):
            raise ValueError(f"output_type must be 'pt', 'np', 'pil' or 'latent', got {output_type!r}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        labels = self._labels(class_labels)
        device, dtype = self._execution_device, self.transformer.dtype
        frames, channels, side = _clip_shape(self.transformer)
        shape = (labels.numel(), frames, channels, side, side)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        else:
            latents = latents.to(device=device, dtype=dtype)

        guided = guidance_scale > 1.0
        if guided:
            null = torch.full_like(labels, self.class_embedder.null_class)
            context = self.class_embedder(torch.cat([labels, null])).to(dtype)
        else:
            context = self.class_embedder(labels).to(dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([latents, latents]) if guided else latents
            velocity = denoise(self.transformer, model_input, t.expand(model_input.shape[0]), context)
            if self.config.prediction_type == "sample":  # x0 -> flow velocity; sigma >= 1 / 1000 here
                sigma = t / self.scheduler.config.num_train_timesteps
                velocity = (model_input - velocity) / sigma
            if guided:
                cond, uncond = velocity.chunk(2)
                velocity = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]

        if output_type == "latent":
            frames = latents
        else:
            frames = (latents.float() / 2 + 0.5).clamp(0, 1)  # (B, F, C, H, W)
            if output_type == "np":
                frames = frames.permute(0, 1, 3, 4, 2).cpu().numpy()
            elif output_type == "pil":
                from PIL import Image

                pixels = (frames[:, :, 0] * 255).round().to(torch.uint8).cpu().numpy()
                frames = [[Image.fromarray(p) for p in video] for video in pixels]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return MovingDigitsPipelineOutput(frames=frames)


_COMPONENTS = {  # component -> (library, accepted class names, weights file)
    "transformer": (
        "diffusers",
        ("CogVideoXTransformer3DModel", "LatteTransformer3DModel"),
        "diffusion_pytorch_model.safetensors",
    ),
    "class_embedder": (__name__, ("VideoClassEmbedding",), "diffusion_pytorch_model.safetensors"),
    "scheduler": ("diffusers", ("FlowMatchEulerDiscreteScheduler",), None),
}


def _check_folder(folder: Path) -> None:
    """Raise a clear error if ``folder`` is not a complete moving-digits pipeline folder."""
    if not folder.is_dir():
        raise FileNotFoundError(f"video pipeline folder not found: {folder}")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(
            f"{folder} has no model_index.json: not a saved pipeline (run scripts/train_video.py)"
        )
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{index_path} is not valid JSON: {exc}") from exc
    if not isinstance(index, dict) or index.get("_class_name") != MovingDigitsPipeline.__name__:
        found = index.get("_class_name") if isinstance(index, dict) else type(index).__name__
        raise ValueError(f"{index_path} describes {found!r}, not a {MovingDigitsPipeline.__name__}")
    for name, (library, class_names, weights) in _COMPONENTS.items():
        entry = index.get(name)
        if not (
            isinstance(entry, list) and len(entry) == 2 and entry[0] == library and entry[1] in class_names
        ):
            raise ValueError(
                f"{index_path}: component {name!r} must be [{library!r}, one of {list(class_names)}], got "
                f"{entry!r}"
            )
        sub = folder / name
        config = "scheduler_config.json" if weights is None else "config.json"
        for needed in filter(None, (config, weights)):
            if not (sub / needed).is_file():
                raise FileNotFoundError(f"video pipeline folder {folder} lacks {name}/{needed}")


def video_pipeline(
    device: str | torch.device = "cpu",
    torch_dtype: torch.dtype = torch.float32,
    folder: str | Path | None = None,
) -> MovingDigitsPipeline:
    """Load the packaged moving-digits pipeline from its local folder (never the hub).

    ``MovingDigitsPipeline.from_pretrained`` is given the local folder with ``local_files_only=True``,
    so no network access is attempted and ``HF_HUB_OFFLINE=1`` is fine.

    Args:
        device: torch device.
        torch_dtype: weights dtype.
        folder: a ``save_pretrained`` folder of this pipeline (default: the shipped ``zoo/video``).
    """
    folder = Path(folder) if folder is not None else VIDEO_DIR
    _check_folder(folder)
    try:
        pipe = MovingDigitsPipeline.from_pretrained(str(folder), dtype=torch_dtype, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ValueError(f"cannot load the video pipeline from {folder}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
