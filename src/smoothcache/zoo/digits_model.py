"""The embedded digits DiT: a small class-conditional ``DiTPipeline`` trained here (see
``digits/README.md``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from diffusers import DiTPipeline

__all__ = ["DIGITS_DIR", "DIGITS_GUIDANCE_SCALE", "DigitsPipeline", "digits_evaluator", "digits_pipeline"]

#: Folder of the packaged pipeline (``DiTPipeline.save_pretrained`` output).
DIGITS_DIR = Path(__file__).resolve().parent / "digits"
#: Classifier-free guidance scale chosen by the sweep in the model card.
DIGITS_GUIDANCE_SCALE = 1.0

_SCHEDULERS = ("ddim", "dpm", "dpm-sde")


class DigitsPipeline(DiTPipeline):
    """diffusers' ``DiTPipeline`` with the model card's guidance scale as the default.

    ``DiTPipeline`` defaults to ``guidance_scale=4.0`` (tuned for DiT-XL/2 on ImageNet); the digits model was
    evaluated at :data:`DIGITS_GUIDANCE_SCALE`, so ``pipe(class_labels=[3])`` samples as its model card
    reports.
    Everything else is ``DiTPipeline``'s.  ``save_pretrained`` writes a plain ``DiTPipeline`` folder (like the
    shipped one), which ``DiTPipeline.from_pretrained`` and this class's ``from_pretrained`` both load.
    """

    def __call__(self, class_labels: list[int], guidance_scale: float = DIGITS_GUIDANCE_SCALE,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 num_inference_steps: int = 50,
                 output_type: str | None = "pil", return_dict: bool = True, **kwargs):
        """``DiTPipeline.__call__`` with ``guidance_scale`` defaulting to :data:`DIGITS_GUIDANCE_SCALE`
        (1.0: no classifier-free guidance, one transformer pass per step)."""
        return super().__call__(class_labels, guidance_scale=guidance_scale, generator=generator,
                                num_inference_steps=num_inference_steps, output_type=output_type,
                                return_dict=return_dict, **kwargs)

    def to_json_string(self) -> str:
        """The pipeline's ``model_index.json`` as the shipped folder has it: naming ``DiTPipeline`` (so saved
        folders load without this class) and keeping ``id2label`` (which ``DiTPipeline`` does not save)."""
        config = json.loads(super().to_json_string())
        config["_class_name"] = DiTPipeline.__name__
        names: dict[int, list[str]] = {}
        for label, class_id in getattr(self, "labels", {}).items():
            names.setdefault(class_id, []).append(label)
        if names:
            config["id2label"] = {str(i): ", ".join(names[i]) for i in sorted(names)}
        return json.dumps(config, indent=2, sort_keys=True) + "\n"


class _DropVaeTypeWarning(logging.Filter):
    """Hide diffusers' "Expected types for ..." notices about the intended identity VAE (not an
    AutoencoderKL) and the JSON id2label (string keys, converted by DiTPipeline)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("Expected types for vae") or msg.startswith("Expected types for id2label"))


def digits_pipeline(device: str | torch.device = "cpu", scheduler: str = "ddim",
                    torch_dtype: torch.dtype = torch.float32,
                    folder: str | Path | None = None) -> DigitsPipeline:
    """Load the packaged digits pipeline from its local folder (never the hub).

    A :class:`DigitsPipeline` (a ``DiTPipeline`` whose ``guidance_scale`` defaults to
    :data:`DIGITS_GUIDANCE_SCALE`); ``from_pretrained`` is given the local folder path with
    ``local_files_only=True``, so no network access is attempted and ``HF_HUB_OFFLINE=1`` is fine.
    ``folder``: a ``save_pretrained`` folder of this model (default: the shipped ``zoo/digits``).

    ``scheduler``: ``"ddim"`` (the saved DDIMScheduler), ``"dpm"`` (DPM-Solver++
    multistep) or ``"dpm-sde"`` (SDE-DPM-Solver++, stochastic), both built with
    ``from_config`` of the saved scheduler config.  Class ids are 0..9
    (``pipe.get_label_ids(["3"])``); 1000 is the null class used for guidance.
    """
    if scheduler not in _SCHEDULERS:
        raise ValueError(f"scheduler must be one of {_SCHEDULERS}, got {scheduler!r}")
    from diffusers import DPMSolverMultistepScheduler

    from . import identity_vae  # noqa: F401  (diffusers resolves the custom VAE from sys.modules)

    folder = Path(folder) if folder is not None else DIGITS_DIR
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"{folder} is not a saved digits pipeline (no model_index.json); "
                                "leave folder out for the shipped model")
    diffusers_logger = logging.getLogger("diffusers.pipelines.pipeline_utils")
    quiet = _DropVaeTypeWarning()
    diffusers_logger.addFilter(quiet)
    try:
        pipe = DigitsPipeline.from_pretrained(str(folder), dtype=torch_dtype, local_files_only=True)
    finally:
        diffusers_logger.removeFilter(quiet)
    if scheduler != "ddim":
        algorithm = "dpmsolver++" if scheduler == "dpm" else "sde-dpmsolver++"
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(
            pipe.scheduler.config, algorithm_type=algorithm
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def digits_evaluator(device: str | torch.device = "cpu"):
    """The :class:`~smoothcache.zoo.digits_eval.DigitsEvaluator` for the digits model."""
    from .digits_eval import DigitsEvaluator

    return DigitsEvaluator(device=device)
