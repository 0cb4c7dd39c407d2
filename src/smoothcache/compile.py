"""torch.compile for cached inference: regional compilation, with SmoothCache's decisions outside the graphs.

The schedule is static, but *which* entry applies depends on Python state (the step counter); traced into a
graph, that state becomes a guard and every step recompiles (the original implementation's problem). So
smoothcache's wrappers are excluded from tracing (``torch.compiler.disable``): a compiled block breaks its
graph at each wrapped branch, and the branch itself, when computed, runs its own compiled graph. Repeated
blocks share graphs (their parameters are graph inputs), so a DiT compiles a handful of graphs once and
never again per step.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn as nn

from .targets import find_branches

__all__ = ["compile_repeated_blocks", "compiled_forward"]

_OPTIONS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_COMPILED: dict[tuple, Callable] = {}


def compile_repeated_blocks(
    model: nn.Module,
    components: Iterable[str] | None = None,
    block_classes: Sequence[type | str] | type | str | None = None,
    **compile_kwargs: Any,
) -> nn.Module:
    """Compile every transformer block and every cacheable branch of ``model`` in place.

    Works before or after a :class:`~smoothcache.SmoothCache` is enabled, and without one. Keyword
    arguments go to ``torch.compile`` (``backend``, ``mode``, ``dynamic``...); ``fullgraph=True`` is not
    possible with a cache, whose decisions are graph breaks.

    Example:
        >>> from diffusers import DiTTransformer2DModel
        >>> import smoothcache
        >>> model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
        ...                               out_channels=4, num_layers=2, sample_size=8)
        >>> model = smoothcache.compile_repeated_blocks(model, backend="eager")
    """
    if compile_kwargs.get("fullgraph"):
        raise ValueError("fullgraph=True cannot be used: smoothcache's cache decisions are graph breaks")
    branches = find_branches(model, components, block_classes)
    modules = dict(model.named_modules())
    block_paths = dict.fromkeys(b.block_path or b.path.rsplit(".", 1)[0] for b in branches)
    for path in block_paths:
        modules[path].compile(**compile_kwargs)
        _OPTIONS[modules[path]] = dict(compile_kwargs)  # a fused block's wrapper calls its compiled forward
    for branch in branches:
        branch.module.compile(**compile_kwargs)
        _OPTIONS[branch.module] = dict(compile_kwargs)
    return model


def compiled_forward(module: nn.Module, original: Callable) -> Callable:
    """What a cache wrapper should call to compute ``module``: a compiled forward if the module was
    compiled (by :func:`compile_repeated_blocks` or ``module.compile()``), else ``original``."""
    if getattr(module, "_compiled_call_impl", None) is None:
        return original
    options = _OPTIONS.get(module, {})
    func = getattr(original, "__func__", None)
    if func is None or getattr(original, "__self__", None) is not module:
        return original  # an instance-level forward (offloading hook...): keep it eager
    key = (func, tuple(sorted((k, repr(v)) for k, v in options.items())))
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = torch.compile(func, **options)
    return functools.partial(compiled, module)
