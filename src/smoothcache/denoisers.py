"""Denoisers of pipelines: which components of a pipeline are its denoisers, and which pipeline is calling
one.

A pipeline's denoisers are its components named ``transformer``, ``transformer_2``... and ``unet``... (Wan 2.2
A14B has two experts). Nothing here imports diffusers: a pipeline is any object with such components.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Mapping

import torch.nn as nn

from .errors import NotADenoiserError

__all__ = ["DENOISER_NAME", "as_denoiser", "calling_pipeline", "denoisers", "not_a_model"]

DENOISER_NAME = re.compile(r"^(transformer|unet|denoiser)(_\d+)?$")
_KIND_ORDER = ("transformer", "denoiser", "unet")
#: How many frames above a denoiser call :func:`calling_pipeline` looks for the pipeline's ``__call__``.
_FRAMES = 12


def _component_names(pipe: Any) -> list[str]:
    components = getattr(pipe, "components", None)
    names = list(components) if isinstance(components, Mapping) else list(getattr(pipe, "__dict__", {}))
    names = [n for n in names if DENOISER_NAME.match(n)]

    def rank(name: str) -> tuple[int, int]:
        kind, _, number = name.partition("_")
        return _KIND_ORDER.index(kind), int(number or 1)

    return sorted(names, key=rank)


def denoisers(pipe: Any) -> dict[str, nn.Module]:
    """The denoisers of ``pipe`` by attribute name: ``{"transformer": ..., "transformer_2": ...}``.

    Args:
        pipe: a diffusers pipeline (or any object with ``transformer`` / ``unet`` attributes). Components
            that are None (Wan 2.2's ``transformer_2`` in a one-expert pipeline) are left out.

    Example:
        >>> from types import SimpleNamespace
        >>> import torch.nn as nn
        >>> pipe = SimpleNamespace(transformer=nn.Linear(2, 2), transformer_2=None, vae=nn.Linear(2, 2))
        >>> list(denoisers(pipe))
        ['transformer']
    """
    if isinstance(pipe, nn.Module):
        raise TypeError(
            f"{type(pipe).__name__} is a model, not a pipeline: use SmoothCache(model, ...) directly"
        )
    found = {}
    for name in _component_names(pipe):
        module = getattr(pipe, name, None)
        if isinstance(module, nn.Module):
            found[name] = module
    return found


def not_a_model(obj: Any) -> str:
    """The message for a non-module where a denoiser was expected; names the attribute(s) to pass instead."""
    try:
        names = list(denoisers(obj))
    except Exception:  # any odd object: the plain message
        names = []
    if not names:
        return f"expected a torch.nn.Module (the denoiser), got {type(obj).__name__}"
    attrs = " and ".join(f"pipe.{n}" for n in names)
    one = "one cache each" if len(names) > 1 else "the model"
    return (
        f"expected the denoiser, got the pipeline {type(obj).__name__}: pass {attrs} ({one}), "
        "or use smoothcache.enable(pipe, ...) to cache every denoiser of the pipeline"
    )


def as_denoiser(model: Any) -> nn.Module:
    """``model`` itself, or the one denoiser of a pipeline; :class:`NotADenoiserError` naming what to pass
    otherwise."""
    if isinstance(model, nn.Module):
        return model
    try:
        found = denoisers(model)
    except Exception:  # any odd object: the plain message below
        found = {}
    if len(found) == 1:
        return next(iter(found.values()))
    raise NotADenoiserError(not_a_model(model))


def calling_pipeline(model: nn.Module) -> Any | None:
    """The pipeline whose ``__call__`` is running ``model`` now, if any: the first ``__call__`` frame up the
    stack whose ``self`` has ``model`` among its denoisers and a ``maybe_free_model_hooks`` method (every
    diffusers pipeline calls it when a generation returns). Only ``__call__`` frames are read (reading a
    frame's locals keeps a snapshot of them until the frame returns)."""
    frame = sys._getframe(1)
    for _ in range(_FRAMES):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name == "__call__" and code.co_varnames[:1] == ("self",):
            owner = frame.f_locals.get("self")
            if not isinstance(owner, nn.Module) and callable(getattr(owner, "maybe_free_model_hooks", None)):
                try:
                    if any(m is model for m in denoisers(owner).values()):
                        return owner
                except Exception:  # an object that only looks like a pipeline
                    pass
        frame = frame.f_back
    return None
