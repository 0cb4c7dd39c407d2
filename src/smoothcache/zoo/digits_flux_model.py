"""The embedded digits Flux: a tiny class-conditional ``FluxTransformer2DModel`` trained here.

Model card: ``digits_flux/README.md``.

The pipeline folder (``DigitsFluxPipeline.save_pretrained`` output) holds three components:

* ``transformer`` -- diffusers' ``FluxTransformer2DModel`` (4 double-stream + 8 single-stream blocks,
  width 64) in pixel space: a 16 x 16 grayscale digit is 256 image tokens of one channel (``patch_size=1``);
* ``class_embedder`` -- :class:`FluxClassEmbedding`: class id -> 32 "text" tokens of width 32 (the
  ``encoder_hidden_states``) and a pooled vector of width 32 (the ``pooled_projections``);
* ``scheduler`` -- ``FlowMatchEulerDiscreteScheduler`` (rectified flow, Euler steps, as FluxPipeline samples).

The transformer is called exactly as ``FluxPipeline`` calls it (``timestep`` = sigma in [0, 1], ``img_ids``
the 16 x 16 grid, ``txt_ids`` zeros). Classifier-free guidance batches the class and null-class passes in
one transformer call, as ``DiTPipeline`` does::

    pipe = digits_flux_pipeline()
    images = pipe(class_labels=[3, 7], generator=torch.Generator().manual_seed(0), output_type="pt").images
    images.shape  # (2, 1, 16, 16), values in [0, 1]

``model_index.json`` records the class embedder as
``["smoothcache.zoo.digits_flux_model", "FluxClassEmbedding"]``; diffusers resolves such custom libraries
from ``sys.modules``, which importing this module takes care of.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from .labels import class_label_tensor

__all__ = [
    "DIGITS_FLUX_DIR",
    "DIGITS_FLUX_GUIDANCE_SCALE",
    "DIGITS_FLUX_STEPS",
    "TRANSFORMER_CONFIG",
    "DigitsFluxPipeline",
    "FluxClassEmbedding",
    "build_transformer",
    "digits_flux_pipeline",
    "image_ids",
    "predict_velocity",
]

#: Folder of the packaged pipeline (``DigitsFluxPipeline.save_pretrained`` output).
DIGITS_FLUX_DIR = Path(__file__).resolve().parent / "digits_flux"
#: Default number of Euler steps (FluxPipeline's default).
DIGITS_FLUX_STEPS = 28
#: Classifier-free guidance scale chosen by the sweep in the model card (> 1 doubles the transformer batch).
DIGITS_FLUX_GUIDANCE_SCALE = 1.0
#: Image side in pixels (one token per pixel).
SIDE = 16
#: The transformer's shape: a real FluxTransformer2DModel, scaled down.
TRANSFORMER_CONFIG = dict(
    patch_size=1, in_channels=1, num_layers=4, num_single_layers=8, attention_head_dim=16,
    num_attention_heads=4, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 6, 6],
    guidance_embeds=False,
)


def build_transformer() -> FluxTransformer2DModel:
    """A freshly initialised transformer of the shipped shape (:data:`TRANSFORMER_CONFIG`)."""
    return FluxTransformer2DModel(**TRANSFORMER_CONFIG)


class FluxClassEmbedding(ModelMixin, ConfigMixin):
    """Class id -> the "prompt" of a Flux transformer: ``num_tokens`` tokens and one pooled vector.

    Args:
        num_classes: real classes; id ``num_classes`` is the null class (classifier-free guidance).
        num_tokens: text tokens per class (the ``encoder_hidden_states`` length).
        embed_dim: token width (the transformer's ``joint_attention_dim``).
        pooled_dim: pooled vector width (the transformer's ``pooled_projection_dim``).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, num_classes: int = 10, num_tokens: int = 32, embed_dim: int = 32,
                 pooled_dim: int = 32):
        super().__init__()
        if min(num_classes, num_tokens, embed_dim, pooled_dim) < 1:
            raise ValueError(f"num_classes, num_tokens, embed_dim and pooled_dim must be positive, got "
                             f"{num_classes}, {num_tokens}, {embed_dim}, {pooled_dim}")
        self.tokens = nn.Embedding(num_classes + 1, num_tokens * embed_dim)
        self.pooled = nn.Embedding(num_classes + 1, pooled_dim)

    @property
    def null_class(self) -> int:
        """The id of the null (unconditional) class."""
        return self.config.num_classes

    def forward(self, class_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) int64 ids in [0, num_classes] -> tokens (B, num_tokens, embed_dim), pooled (B, pooled_dim)."""
        if class_labels.ndim != 1:
            raise ValueError(f"class_labels must be 1-D, got shape {tuple(class_labels.shape)}")
        tokens = self.tokens(class_labels).view(-1, self.config.num_tokens, self.config.embed_dim)
        return tokens, self.pooled(class_labels)


def image_ids(height: int, width: int, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(height * width, 3) positions of the image tokens, as ``FluxPipeline._prepare_latent_image_ids``
    builds them."""
    ids = torch.zeros(height, width, 3)
    ids[..., 1] += torch.arange(height)[:, None]
    ids[..., 2] += torch.arange(width)[None, :]
    return ids.reshape(height * width, 3).to(device=device, dtype=dtype)


def predict_velocity(transformer: FluxTransformer2DModel, images: torch.Tensor, sigma: torch.Tensor,
                     tokens: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """The flow velocity ``noise - x0`` that the transformer predicts for noisy (B, 1, H, W) images.

    The single place that packs pixels into tokens and calls the transformer as ``FluxPipeline`` does:
    ``timestep`` is the noise level sigma in [0, 1] (FluxPipeline passes ``t / 1000``), ``img_ids`` the pixel
    grid, ``txt_ids`` zeros.
    """
    batch, channels, height, width = images.shape
    hidden = images.flatten(2).transpose(1, 2)  # (B, H*W, C): one token per pixel
    txt_ids = torch.zeros(tokens.shape[1], 3, device=images.device, dtype=images.dtype)
    out = transformer(
        hidden_states=hidden,
        encoder_hidden_states=tokens,
        pooled_projections=pooled,
        timestep=sigma.expand(batch).to(images.dtype),
        img_ids=image_ids(height, width, images.device, images.dtype),
        txt_ids=txt_ids,
        return_dict=False,
    )[0]
    return out.transpose(1, 2).reshape(batch, channels, height, width)


class DigitsFluxPipeline(DiffusionPipeline):
    """Class-conditional 16 x 16 digits from a Flux transformer and rectified flow.

    Args:
        transformer: the ``FluxTransformer2DModel`` predicting the flow velocity ``noise - x0``.
        class_embedder: class id -> text tokens and pooled vector.
        scheduler: a ``FlowMatchEulerDiscreteScheduler`` (its ``shift`` is the one the model was trained
            with).
    """

    model_cpu_offload_seq = "class_embedder->transformer"

    def __init__(self, transformer: FluxTransformer2DModel, class_embedder: FluxClassEmbedding,
                 scheduler: FlowMatchEulerDiscreteScheduler):
        super().__init__()
        self.register_modules(transformer=transformer, class_embedder=class_embedder, scheduler=scheduler)

    def _labels(self, class_labels) -> torch.Tensor:
        num_classes = self.class_embedder.config.num_classes
        return class_label_tensor(class_labels, num_classes, self._execution_device)

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | Sequence[int] | torch.Tensor,
        num_inference_steps: int = DIGITS_FLUX_STEPS,
        guidance_scale: float = DIGITS_FLUX_GUIDANCE_SCALE,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Generate one digit per class label.

        Args:
            class_labels: digit classes 0..9.
            num_inference_steps: Euler steps of the rectified flow (sigmas ``linspace(1, 1/N, N)``, as
                FluxPipeline).
            guidance_scale: classifier-free guidance; > 1 runs the class and the null class in one batched
                transformer call per step, 1 only the class.
            generator: torch generator(s) for the initial noise.
            latents: optional initial noise (B, 1, 16, 16).
            output_type: ``"pil"``, ``"np"`` ((B, 16, 16, 1) array in [0, 1]) or ``"pt"`` ((B, 1, 16, 16)
                tensor in [0, 1]), as ``DiTPipeline``.
            return_dict: return an ``ImagePipelineOutput`` instead of a tuple.
        """
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        labels = self._labels(class_labels)
        device, dtype = self._execution_device, self.transformer.dtype
        shape = (labels.numel(), self.transformer.config.in_channels, SIDE, SIDE)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        else:
            latents = latents.to(device=device, dtype=dtype)

        guided = guidance_scale > 1.0
        if guided:
            labels = torch.cat([labels, torch.full_like(labels, self.class_embedder.null_class)])
        tokens, pooled = (e.to(dtype) for e in self.class_embedder(labels))

        sigmas = np.linspace(1.0, 1.0 / num_inference_steps, num_inference_steps)
        self.scheduler.set_timesteps(sigmas=sigmas, device=device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([latents, latents]) if guided else latents
            velocity = predict_velocity(self.transformer, model_input, t / 1000, tokens, pooled)
            if guided:
                cond, uncond = velocity.chunk(2)
                velocity = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]

        images = (latents.float() / 2 + 0.5).clamp(0, 1)
        if output_type != "pt":
            images = images.cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


_COMPONENTS = {  # component -> (library, class name, file that must exist)
    "transformer": ("diffusers", "FluxTransformer2DModel", "diffusion_pytorch_model.safetensors"),
    "class_embedder": (__name__, "FluxClassEmbedding", "diffusion_pytorch_model.safetensors"),
    "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler", "scheduler_config.json"),
}


def _check_folder(folder: Path) -> None:
    """Raise a clear error if ``folder`` is not a complete digits-Flux pipeline folder."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder} is not a saved digits-Flux pipeline (no model_index.json); "
                                "leave folder out for the shipped model")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{index_path} is not valid JSON: {exc}") from exc
    if not isinstance(index, dict) or index.get("_class_name") != DigitsFluxPipeline.__name__:
        found = index.get("_class_name") if isinstance(index, dict) else type(index).__name__
        raise ValueError(f"{index_path} describes {found!r}, not a {DigitsFluxPipeline.__name__}")
    for name, (library, class_name, needed) in _COMPONENTS.items():
        if index.get(name) != [library, class_name]:
            raise ValueError(f"{index_path}: component {name!r} must be [{library!r}, {class_name!r}], "
                             f"got {index.get(name)!r}")
        if not (folder / name / needed).is_file():
            raise FileNotFoundError(f"digits-Flux pipeline folder {folder} lacks {name}/{needed}")


def digits_flux_pipeline(device: str | torch.device = "cpu", torch_dtype: torch.dtype = torch.float32,
                         folder: str | Path | None = None) -> DigitsFluxPipeline:
    """Load the packaged digits-Flux pipeline from its local folder (never the hub).

    ``from_pretrained`` is given the local folder with ``local_files_only=True``, so no network access is
    attempted and ``HF_HUB_OFFLINE=1`` is fine.

    Args:
        device: torch device.
        torch_dtype: weights dtype.
        folder: a ``save_pretrained`` folder of this pipeline (default: the shipped ``zoo/digits_flux``).
    """
    folder = Path(folder) if folder is not None else DIGITS_FLUX_DIR
    _check_folder(folder)
    try:
        pipe = DigitsFluxPipeline.from_pretrained(str(folder), dtype=torch_dtype, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ValueError(f"cannot load the digits-Flux pipeline from {folder}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
