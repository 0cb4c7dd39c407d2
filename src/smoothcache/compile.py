"""torch.compile for cached inference: regional compilation, with SmoothCache's decisions outside the graphs.

The schedule is static, but *which* entry applies depends on Python state (the step counter); traced into a
graph, that state becomes a guard and every step recompiles (the original implementation's problem). So
smoothcache's wrappers are excluded from tracing (``torch.compiler.disable``): a compiled block breaks its
graph at each wrapped branch, and the branch itself, when computed, runs its own compiled graph. Repeated
blocks share graphs (their parameters are graph inputs), so a DiT compiles a handful of graphs once and
never again per step. The compiled functions of a model are held through its modules, weakly: a model that
is dropped frees them.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn as nn

__all__ = ["compile_repeated_blocks", "compiled_forward"]


class _Compilation:
    """The ``torch.compile`` options of one model and its compiled ``forward`` functions, one per class."""

    def __init__(self, options: dict[str, Any]):
        self.options = dict(options)
        self.functions: dict[Callable, Callable] = {}

    def compiled(self, func: Callable) -> Callable:
        found = self.functions.get(func)
        if found is None:
            found = self.functions[func] = torch.compile(func, **self.options)
        return found


#: module -> the compilation of the model it belongs to (weak keys: a dropped model frees its graphs).
_COMPILATIONS: "weakref.WeakKeyDictionary[nn.Module, _Compilation]" = weakref.WeakKeyDictionary()
#: for modules compiled with ``module.compile()`` and default options.
_DEFAULT = _Compilation({})


def compile_repeated_blocks(
    model: nn.Module,
    keys: Iterable[str] | None = None,
    block_classes: Sequence[type | str] | type | str | None = None,
    *,
    components: Iterable[str] | None = None,
    **compile_kwargs: Any,
) -> nn.Module:
    """Compile every transformer block and every cacheable branch of ``model`` in place.

    Works before or after a :class:`~smoothcache.SmoothCache` is enabled, and without one. Keyword
    arguments go to ``torch.compile`` (``backend``, ``mode``, ``dynamic``...); ``fullgraph=True`` is not
    possible with a cache, whose decisions are graph breaks. ``keys`` and ``block_classes`` choose the
    branches as for :func:`~smoothcache.targets.find_branches` (``components`` is the former name of
    ``keys``).

    Example:
        >>> from diffusers import DiTTransformer2DModel
        >>> import smoothcache
        >>> model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
        ...                               out_channels=4, num_layers=2, sample_size=8)
        >>> model = smoothcache.compile_repeated_blocks(model, backend="eager")
    """
    from .branches import block_paths
    from .targets import find_branches

    if compile_kwargs.get("fullgraph"):
        raise ValueError("fullgraph=True cannot be used: smoothcache's cache decisions are graph breaks")
    branches = find_branches(model, keys, block_classes, components=components)
    modules = dict(model.named_modules())
    compilation = _Compilation(compile_kwargs)
    for module in [modules[path] for path in block_paths(branches)] + [b.module for b in branches]:
        module.compile(**compile_kwargs)
        _COMPILATIONS[module] = compilation  # a wrapper that computes the module calls the compiled forward
    return model


def compiled_forward(module: nn.Module, original: Callable) -> Callable:
    """What a cache wrapper should call to compute ``module``: a compiled forward if the module was
    compiled (by :func:`compile_repeated_blocks` or ``module.compile()``), else ``original``."""
    if getattr(module, "_compiled_call_impl", None) is None:
        return original
    func = getattr(original, "__func__", None)
    if func is None or getattr(original, "__self__", None) is not module:
        return original  # an instance-level forward (offloading hook...): keep it eager
    compilation = _COMPILATIONS.get(module, _DEFAULT)
    return functools.partial(compilation.compiled(func), module)
