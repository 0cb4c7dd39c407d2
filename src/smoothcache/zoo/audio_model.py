"""The embedded audio DiT: a small class-conditional Stable-Audio-style pipeline trained here on spoken
digits.

Components (saved with ``save_pretrained`` in ``zoo/audio/``, model card ``zoo/audio/README.md``):

* ``transformer``: diffusers' ``StableAudioDiTModel`` (``StableAudioDiTBlock`` blocks with self-attention
  ``attn1``, cross-attention ``attn2`` and ``ff``), v-prediction, called with ``timestep=`` the continuous
  cosine-schedule time ``t = (2 / pi) * atan(sigma / alpha)`` in [0, 1], as in Stable Audio Open;
* ``projection_model``: :class:`ClassProjectionModel`, learned class tokens for the cross-attention and a
  global token prepended to the sequence (Stable Audio's ``projection_model`` maps text and seconds the same
  way);
* ``vae``: :class:`~smoothcache.zoo.audio_spectrogram.SpectrogramAutoencoder` (log-magnitude STFT,
  Griffin-Lim);
* ``scheduler``: :class:`~smoothcache.zoo.audio_scheduler.DPMSolver3MSDEScheduler`, diffusers'
  ``DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=3)`` with its third-order SDE
  step corrected, i.e. DPM-Solver++(3M) SDE, the sampler of Stable Audio Open's paper, 100 steps by default.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from diffusers import CosineDPMSolverMultistepScheduler, DiffusionPipeline, DPMSolverMultistepScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models import StableAudioDiTModel
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.modeling_utils import ModelMixin
from diffusers.pipelines.pipeline_utils import AudioPipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from .audio_scheduler import (
    DPMSolver3MSDEScheduler,
)  # imported so from_pretrained can load the saved scheduler
from .audio_spectrogram import SpectrogramAutoencoder
from .labels import class_label_tensor

__all__ = [
    "AUDIO_DIR",
    "AUDIO_GUIDANCE_SCALE",
    "AUDIO_WORDS",
    "AudioDiTPipeline",
    "ClassProjectionModel",
    "audio_evaluator",
    "audio_pipeline",
    "model_time",
]

logger = logging.getLogger(__name__)

#: Folder of the packaged pipeline (``AudioDiTPipeline.save_pretrained`` output).
AUDIO_DIR = Path(__file__).resolve().parent / "audio"
#: Classifier-free guidance scale chosen by the sweep in the model card.
AUDIO_GUIDANCE_SCALE = 2.0
#: The spoken words, indexed by class id.
AUDIO_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
AUDIO_DEFAULT_STEPS = 100

_SCHEDULERS = ("dpm-sde", "dpm", "cosine-dpm-sde")


class ClassProjectionModel(ModelMixin, ConfigMixin):
    """Class labels -> the DiT's cross-attention tokens and global (prepended) token.

    Row ``num_classes`` of each table is the null class of classifier-free guidance.

    Args:
        num_classes: number of real classes (ids 0 .. num_classes - 1).
        num_tokens: cross-attention tokens per class.
        cross_attention_input_dim: width of each cross-attention token (the DiT's
            ``cross_attention_input_dim``).
        global_states_input_dim: width of the global token (the DiT's ``global_states_input_dim``).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        num_classes: int = 10,
        num_tokens: int = 4,
        cross_attention_input_dim: int = 128,
        global_states_input_dim: int = 128,
    ):
        super().__init__()
        self.class_tokens = nn.Embedding(num_classes + 1, num_tokens * cross_attention_input_dim)
        self.class_global = nn.Embedding(num_classes + 1, global_states_input_dim)

    @property
    def null_class(self) -> int:
        """Id of the unconditional (null) class."""
        return self.config.num_classes

    def forward(self, class_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) ids in 0..num_classes -> (encoder_hidden_states (B, num_tokens, D), global (B, 1, G))."""
        if class_labels.ndim != 1:
            raise ValueError(f"class_labels must be 1-D, got shape {tuple(class_labels.shape)}")
        if class_labels.numel() and (
            int(class_labels.min()) < 0 or int(class_labels.max()) > self.null_class
        ):
            raise ValueError(
                f"class ids must be in 0..{self.null_class} ({self.null_class} = null class), "
                f"got {class_labels.tolist()}"
            )
        n, cfg = class_labels.shape[0], self.config
        tokens = self.class_tokens(class_labels).view(n, cfg.num_tokens, cfg.cross_attention_input_dim)
        return tokens, self.class_global(class_labels)[:, None]


def model_time(scheduler, timestep: torch.Tensor) -> torch.Tensor:
    """The transformer's time input for a scheduler timestep: ``t = (2 / pi) * atan(sigma / alpha)`` in [0,
    1].

    For ``DPMSolverMultistepScheduler`` (discrete VP schedule) ``sigma / alpha`` comes from
    ``alphas_cumprod``; ``CosineDPMSolverMultistepScheduler`` already uses this time as its timesteps.
    """
    if isinstance(scheduler, CosineDPMSolverMultistepScheduler):
        return timestep.float()
    if hasattr(scheduler, "alphas_cumprod"):
        abar = scheduler.alphas_cumprod.to(timestep.device)[timestep.long()].double()
        return (torch.atan(((1 - abar) / abar).sqrt()) * (2 / math.pi)).float()
    raise TypeError(
        f"unsupported scheduler {type(scheduler).__name__}: use DPMSolverMultistepScheduler or "
        "CosineDPMSolverMultistepScheduler"
    )


class AudioDiTPipeline(DiffusionPipeline):
    """Class-conditional spoken-digit generation with a Stable-Audio-style DiT.

    Args:
        transformer: the ``StableAudioDiTModel`` denoiser (v-prediction).
        projection_model: :class:`ClassProjectionModel` giving the conditioning tokens.
        vae: :class:`~smoothcache.zoo.audio_spectrogram.SpectrogramAutoencoder`.
        scheduler: ``DPMSolverMultistepScheduler`` (v_prediction, cosine betas) or
            ``CosineDPMSolverMultistepScheduler``.

    Example:
        >>> pipe = audio_pipeline()
        >>> g = torch.Generator().manual_seed(0)
        >>> out = pipe(class_labels=[3, 7], num_inference_steps=10, generator=g)
        >>> out.audios.shape
        torch.Size([2, 1, 6080])
    """

    model_cpu_offload_seq = "projection_model->transformer->vae"

    def __init__(
        self,
        transformer: StableAudioDiTModel,
        projection_model: ClassProjectionModel,
        vae: SpectrogramAutoencoder,
        scheduler: DPMSolverMultistepScheduler,
    ):
        super().__init__()
        self.register_modules(
            transformer=transformer, projection_model=projection_model, vae=vae, scheduler=scheduler
        )

    @property
    def sample_rate(self) -> int:
        """Sample rate (Hz) of the generated audio."""
        return int(self.vae.config.sample_rate)

    def get_label_ids(self, words: str | list[str]) -> list[int]:
        """Class ids of spoken words, e.g. ``pipe.get_label_ids(["seven", "3"]) == [7, 3]``.

        Args:
            words: words from :data:`AUDIO_WORDS` or digit strings "0" .. "9".
        """
        lookup = {w: i for i, w in enumerate(AUDIO_WORDS)} | {str(i): i for i in range(len(AUDIO_WORDS))}
        words = [words] if isinstance(words, str) else list(words)
        unknown = [w for w in words if w not in lookup]
        if unknown:
            raise ValueError(f"unknown words {unknown}; choose from {list(AUDIO_WORDS)}")
        return [lookup[w] for w in words]

    def _labels(self, class_labels) -> torch.Tensor:
        num_classes = self.projection_model.config.num_classes
        return class_label_tensor(class_labels, num_classes, self._execution_device)

    @torch.no_grad()
    def __call__(
        self,
        class_labels,
        num_inference_steps: int = AUDIO_DEFAULT_STEPS,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        """Generate one clip per class label.

        Args:
            class_labels: class ids 0..9 (``AUDIO_WORDS[i]`` is the word of class ``i``).
            num_inference_steps: sampler steps (100 as in Stable Audio Open).
            guidance_scale: classifier-free guidance; None uses :data:`AUDIO_GUIDANCE_SCALE`; <= 1 disables it
                (one transformer call per step).
            generator: torch generator for the initial noise and the SDE noise.
            latents: optional initial noise (B, latent_channels, latent_length), unscaled.
            output_type: ``"pt"`` (tensor), ``"np"`` (array), both (B, 1, samples) in [-1, 1], or
                ``"latent"``.
            return_dict: return an ``AudioPipelineOutput`` (else a tuple).
        """
        if output_type not in ("pt", "np", "latent"):
            raise ValueError(f"output_type must be 'pt', 'np' or 'latent', got {output_type!r}")
        if int(num_inference_steps) < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        guidance = AUDIO_GUIDANCE_SCALE if guidance_scale is None else float(guidance_scale)
        labels = self._labels(class_labels)
        device, dtype = self._execution_device, self.transformer.dtype
        batch = labels.shape[0]
        use_cfg = guidance > 1.0
        if use_cfg:  # unconditional first, like diffusers' pipelines
            labels = torch.cat([torch.full_like(labels, self.projection_model.null_class), labels])
        enc, glob = self.projection_model(labels)
        enc, glob = enc.to(dtype), glob.to(dtype)

        shape = (batch, self.vae.latent_channels, self.vae.latent_length)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device, dtype) * self.scheduler.init_noise_sigma

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        head_dim = self.transformer.config.attention_head_dim
        rotary = get_1d_rotary_pos_embed(
            head_dim // 2, latents.shape[2] + 1, use_real=True, repeat_interleave_real=False
        )
        for t in self.progress_bar(self.scheduler.timesteps):
            x_in = torch.cat([latents] * 2) if use_cfg else latents
            x_in = self.scheduler.scale_model_input(x_in, t)
            time = model_time(self.scheduler, t.reshape(1)).to(device, dtype).expand(x_in.shape[0])
            pred = self.transformer(
                x_in,
                timestep=time,
                encoder_hidden_states=enc,
                global_hidden_states=glob,
                rotary_embedding=rotary,
                return_dict=False,
            )[0]
            if use_cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            latents = self.scheduler.step(pred, t, latents, generator=generator).prev_sample

        audio = latents if output_type == "latent" else self.vae.decode(latents).sample
        if output_type == "np":
            audio = audio.cpu().float().numpy()
        self.maybe_free_model_hooks()
        return AudioPipelineOutput(audios=audio) if return_dict else (audio,)


def _check_folder(folder: Path) -> None:
    needed = ["model_index.json"] + [
        f"{c}/{f}"
        for c in ("transformer", "projection_model", "vae")
        for f in ("config.json", "diffusion_pytorch_model.safetensors")
    ]
    needed.append("scheduler/scheduler_config.json")
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"audio pipeline folder {folder} is incomplete: missing {', '.join(missing)} "
            "(run scripts/train_audio.py)"
        )


def audio_pipeline(
    device: str | torch.device = "cpu",
    scheduler: str = "dpm-sde",
    torch_dtype: torch.dtype = torch.float32,
    folder: str | Path | None = None,
) -> AudioDiTPipeline:
    """Load the packaged spoken-digits ``AudioDiTPipeline`` from its local folder (never the hub).

    Args:
        device: torch device.
        scheduler: ``"dpm-sde"`` (the saved DPM-Solver++(3M) SDE), ``"dpm"`` (DPM-Solver++(3M), deterministic)
            or ``"cosine-dpm-sde"`` (diffusers' ``CosineDPMSolverMultistepScheduler``, 2M SDE, the scheduler
            of the Stable Audio Open diffusers port, with its sigma range 0.3 .. 500; needs ``torchsde``).
        torch_dtype: dtype of the models.
        folder: a ``save_pretrained`` folder (default: the shipped ``zoo/audio``).
    """
    if scheduler not in _SCHEDULERS:
        raise ValueError(f"scheduler must be one of {_SCHEDULERS}, got {scheduler!r}")
    folder = Path(folder) if folder is not None else AUDIO_DIR
    _check_folder(folder)
    pipe = AudioDiTPipeline.from_pretrained(str(folder), dtype=torch_dtype, local_files_only=True)
    if pipe.transformer.config.in_channels != pipe.vae.latent_channels:
        raise ValueError(
            f"{folder}: the transformer takes {pipe.transformer.config.in_channels} channels but the "
            f"vae makes {pipe.vae.latent_channels}-channel latents"
        )
    if scheduler == "dpm-sde" and type(pipe.scheduler) is DPMSolverMultistepScheduler:
        # a folder saved before the fix names diffusers' class, whose third-order SDE step adds noise
        pipe.scheduler = DPMSolver3MSDEScheduler.from_config(pipe.scheduler.config)
    elif scheduler == "dpm":
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(
            pipe.scheduler.config, algorithm_type="dpmsolver++"
        )
    elif scheduler == "cosine-dpm-sde":
        pipe.scheduler = CosineDPMSolverMultistepScheduler(prediction_type="v_prediction", solver_order=2)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def audio_evaluator(device: str | torch.device = "cpu"):
    """The :class:`~smoothcache.zoo.audio_eval.AudioEvaluator` for the audio model."""
    from .audio_eval import AudioEvaluator

    return AudioEvaluator(device=device)
