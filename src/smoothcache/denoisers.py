"""Denoisers of pipelines: which components of a pipeline are its denoisers, and which pipeline is calling
one.

A pipeline's denoisers are its components named ``transformer``, ``transformer_2``... and ``unet``... (Wan 2.2
A14B has two experts). Nothing here imports diffusers: a pipeline is any object with such components.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any, Mapping

import torch.nn as nn

from .errors import NotADenoiserError

__all__ = ["CALL_ARGUMENTS", "DENOISER_NAME", "as_denoiser", "calling_pipeline", "denoisers", "not_a_model",
           "pipeline_call"]

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


#: Arguments of a pipeline's ``__call__`` that smoothcache reads when it finds the pipeline running a
#: denoiser.
CALL_ARGUMENTS = ("guidance_scale", "num_inference_steps")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parameters(code, values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of a ``__call__`` frame (without ``self``), ``**kwargs`` merged in."""
    named = code.co_argcount + code.co_kwonlyargcount
    out = {name: values[name] for name in code.co_varnames[1:named] if name in values}
    if code.co_flags & inspect.CO_VARKEYWORDS:
        extra = values.get(code.co_varnames[named + bool(code.co_flags & inspect.CO_VARARGS)])
        out.update(extra if isinstance(extra, Mapping) else {})
    return out


def calling_pipeline(model: nn.Module) -> Any | None:
    """The pipeline whose ``__call__`` is running ``model`` now, if any (see :func:`pipeline_call`)."""
    return pipeline_call(model, _depth=2)[0]


def pipeline_call(model: nn.Module, everything: bool = False, _depth: int = 1) -> tuple[Any | None, dict]:
    """The pipeline whose ``__call__`` is running ``model`` now and the :data:`CALL_ARGUMENTS` it was called
    with (numbers only), or ``(None, {})``. With ``everything``, every parameter of its ``__call__`` as the
    frame holds it now (a parameter the pipeline reassigned holds its new value).

    The pipeline is the first ``__call__`` frame up the stack whose ``self`` has ``model`` among its
    denoisers and a ``maybe_free_model_hooks`` method (every diffusers pipeline calls it when a generation
    returns). Only ``__call__`` frames are read (reading a frame's locals keeps a snapshot of them until the
    frame returns).
    """
    frame = sys._getframe(_depth)
    for _ in range(_FRAMES):
        if frame is None:
            break
        code = frame.f_code
        if code.co_name == "__call__" and code.co_varnames[:1] == ("self",):
            values = frame.f_locals
            owner = values.get("self")
            if not isinstance(owner, nn.Module) and callable(getattr(owner, "maybe_free_model_hooks", None)):
                try:
                    if any(m is model for m in denoisers(owner).values()):
                        if everything:
                            return owner, _parameters(code, values)
                        arguments = {n: values[n] for n in CALL_ARGUMENTS if _number(values.get(n))}
                        return owner, arguments
                except Exception:  # an object that only looks like a pipeline
                    pass
        frame = frame.f_back
    return None, {}
