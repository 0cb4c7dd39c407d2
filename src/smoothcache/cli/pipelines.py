"""The pipelines the command line runs: a shipped model by name, a local ``save_pretrained`` folder or a hub
id, with the sampler, classes and guidance it calibrates and samples with."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = [
    "IMAGENET_CLASSES",
    "SCHEDULERS",
    "SHIPPED_CLASSES",
    "ZOO_MODELS",
    "check_classes",
    "default_guidance",
    "dtype_kwargs",
    "load_pipeline",
    "shipped_model",
]

SCHEDULERS = ("keep", "ddim", "dpm", "dpm-sde")


#: Short names of the models that ship with smoothcache (``smoothcache.zoo``).
ZOO_MODELS = ("digits", "audio", "video")  # shipped models, by name (classes 0-9 each)


#: ``calibrate``'s classes when none are given: a shipped model's ten, else three ImageNet classes (DiT-XL/2).
SHIPPED_CLASSES = list(range(10))


IMAGENET_CLASSES = [207, 360, 387]


def dtype_kwargs(dtype) -> dict:
    """``from_pretrained``'s dtype argument: ``dtype=`` since diffusers 0.36, ``torch_dtype=`` before."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401  (present with `dtype=`)
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.endswith("/") or model.count("/") > 1 or "\\" in model


def shipped_model(model: str) -> str | None:
    """The short name of a shipped model given by name (``digits``) or by its folder, else None."""
    if model in ZOO_MODELS:
        return model
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    from .. import zoo

    shipped = {"digits": zoo.DIGITS_DIR, "audio": zoo.AUDIO_DIR, "video": zoo.VIDEO_DIR}
    return next((name for name, path in shipped.items() if folder.resolve() == path), None)


def load_pipeline(model: str, device: str = "cpu", dtype: str = "float32", scheduler: str = "keep"):
    """A class-conditional DiT pipeline: a shipped model by short name (``digits``), a local
    ``save_pretrained`` folder, or a hub id (``facebook/DiT-XL-2-256``)."""
    import torch

    try:
        from diffusers import DDIMScheduler, DiTPipeline, DPMSolverMultistepScheduler
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit("this command needs diffusers: pip install 'smoothcache-dit[diffusers]'") from err
    from .. import zoo

    folder = Path(model).expanduser()
    name = shipped_model(model)
    if name is not None:
        pipe = getattr(zoo, f"{name}_pipeline")(torch_dtype=getattr(torch, dtype))
    elif folder.is_dir():
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{folder} is not a diffusers pipeline folder (it has no model_index.json)"
            )
        pipe = DiTPipeline.from_pretrained(
            str(folder), local_files_only=True, **dtype_kwargs(getattr(torch, dtype))
        )
    elif _looks_like_path(model) or folder.exists():
        raise FileNotFoundError(f"no pipeline folder at {model} (shipped models: {', '.join(ZOO_MODELS)})")
    else:
        pipe = DiTPipeline.from_pretrained(model, **dtype_kwargs(getattr(torch, dtype)))
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    elif scheduler in ("dpm", "dpm-sde"):
        algorithm = "sde-dpmsolver++" if scheduler == "dpm-sde" else "dpmsolver++"
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(
            pipe.scheduler.config, algorithm_type=algorithm
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def check_classes(pipe, classes: Sequence[int], model: str = "") -> None:
    """Class ids the pipeline knows: the shipped models' 0-9, its labels (``id2label``), else the
    transformer's class table."""
    labels = getattr(pipe, "labels", None)
    valid = SHIPPED_CLASSES if shipped_model(model) else sorted(set(labels.values())) if labels else None
    if valid is None:
        n = getattr(pipe.transformer.config, "num_embeds_ada_norm", None)
        valid = list(range(n)) if n else None
    bad = [c for c in classes if valid is not None and c not in valid]
    if bad:
        span = f"{valid[0]}..{valid[-1]}" if valid == list(range(valid[0], valid[-1] + 1)) else str(valid)
        raise ValueError(f"class id(s) {bad} are not classes of this model (valid: {span})")


def default_guidance(model: str) -> float:
    name = shipped_model(model)
    if name is not None:
        from .. import zoo

        return getattr(zoo, f"{name.upper()}_GUIDANCE_SCALE")
    return 4.0
