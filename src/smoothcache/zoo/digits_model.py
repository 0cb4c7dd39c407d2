"""The embedded digits DiT: a small class-conditional ``DiTPipeline`` trained here (see ``digits/README.md``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

__all__ = ["DIGITS_DIR", "DIGITS_GUIDANCE_SCALE", "digits_evaluator", "digits_pipeline"]

#: Folder of the packaged pipeline (``DiTPipeline.save_pretrained`` output).
DIGITS_DIR = Path(__file__).resolve().parent / "digits"
#: Classifier-free guidance scale chosen by the sweep in the model card.
DIGITS_GUIDANCE_SCALE = 1.0

_SCHEDULERS = ("ddim", "dpm", "dpm-sde")


class _DropVaeTypeWarning(logging.Filter):
    """Hide diffusers' "Expected types for ..." notices about the intended identity VAE (not an
    AutoencoderKL) and the JSON id2label (string keys, converted by DiTPipeline)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("Expected types for vae") or msg.startswith("Expected types for id2label"))


def digits_pipeline(device: str | torch.device = "cpu", scheduler: str = "ddim",
                    torch_dtype: torch.dtype = torch.float32):
    """Load the packaged digits ``DiTPipeline`` from its local folder (never the hub).

    ``DiTPipeline.from_pretrained`` is given the local folder path with
    ``local_files_only=True``, so no network access is attempted and
    ``HF_HUB_OFFLINE=1`` is fine.

    ``scheduler``: ``"ddim"`` (the saved DDIMScheduler), ``"dpm"`` (DPM-Solver++
    multistep) or ``"dpm-sde"`` (SDE-DPM-Solver++, stochastic), both built with
    ``from_config`` of the saved scheduler config.  Class ids are 0..9
    (``pipe.get_label_ids(["3"])``); 1000 is the null class used for guidance.
    """
    if scheduler not in _SCHEDULERS:
        raise ValueError(f"scheduler must be one of {_SCHEDULERS}, got {scheduler!r}")
    from diffusers import DiTPipeline, DPMSolverMultistepScheduler

    from . import identity_vae  # noqa: F401  (diffusers resolves the custom VAE from sys.modules)

    diffusers_logger = logging.getLogger("diffusers.pipelines.pipeline_utils")
    quiet = _DropVaeTypeWarning()
    diffusers_logger.addFilter(quiet)
    try:
        pipe = DiTPipeline.from_pretrained(str(DIGITS_DIR), dtype=torch_dtype, local_files_only=True)
    finally:
        diffusers_logger.removeFilter(quiet)
    if scheduler != "ddim":
        algorithm = "dpmsolver++" if scheduler == "dpm" else "sde-dpmsolver++"
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type=algorithm)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def digits_evaluator(device: str | torch.device = "cpu"):
    """The :class:`~smoothcache.zoo.digits_eval.DigitsEvaluator` for the digits model."""
    from .digits_eval import DigitsEvaluator

    return DigitsEvaluator(device=device)
