"""Branch outputs as trees of tensors: the one walker (``torch.utils._pytree``) every policy uses.

A branch returns a tensor, or a tuple/list/dict/diffusers output of tensors (SD3's joint attention returns
``(image, context)``). ``None`` entries are allowed; anything else cannot be cached or predicted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import _pytree as pytree

__all__ = ["cast", "cast_back", "check_cacheable", "dtypes", "lerp", "nbytes", "tensors", "versions"]


def tensors(out: Any) -> list[torch.Tensor]:
    """The tensors of an output, in tree order."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [leaf for leaf in pytree.tree_leaves(out) if isinstance(leaf, torch.Tensor)]


def check_cacheable(out: Any, path: str) -> None:
    """Raise if ``out`` holds anything but tensors and None (it could not be reused or predicted)."""
    if isinstance(out, torch.Tensor):
        return
    leaves = pytree.tree_leaves(out)
    bad = [type(leaf).__name__ for leaf in leaves if leaf is not None and not isinstance(leaf, torch.Tensor)]
    if bad or not any(isinstance(leaf, torch.Tensor) for leaf in leaves):
        what = ", ".join(dict.fromkeys(bad)) or "nothing"
        raise TypeError(
            f"{path} returned {what} besides tensors; smoothcache can only cache branches that return "
            "tensors "
            "(or tuples of them): leave this branch out with components=[...]"
        )


def versions(out: Any) -> tuple:
    """Version counters of the tensors (to detect in-place edits of a cached output); None for inference
    tensors."""
    return tuple(None if t.is_inference() else t._version for t in tensors(out))


def nbytes(out: Any) -> int:
    """Bytes held by the tensors of an output."""
    return sum(t.numel() * t.element_size() for t in tensors(out))


def _cast_leaf(leaf: Any, dtype: torch.dtype) -> Any:
    return leaf.to(dtype) if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() else leaf


def cast(out: Any, dtype: torch.dtype) -> Any:
    """The output with its floating tensors cast to ``dtype``."""
    if isinstance(out, torch.Tensor):
        return _cast_leaf(out, dtype)
    return pytree.tree_map(lambda leaf: _cast_leaf(leaf, dtype), out)


def dtypes(out: Any) -> Any:
    """The output's tree with each tensor replaced by its dtype (to cast a low-precision copy back)."""
    if isinstance(out, torch.Tensor):
        return out.dtype
    return pytree.tree_map(lambda leaf: leaf.dtype if isinstance(leaf, torch.Tensor) else None, out)


def cast_back(out: Any, dtype_tree: Any) -> Any:
    """``out`` with each floating tensor cast to the matching dtype of ``dtype_tree`` (from
    :func:`dtypes`)."""
    if isinstance(out, torch.Tensor):
        return _cast_leaf(out, dtype_tree)
    return pytree.tree_map(lambda leaf, dt: _cast_leaf(leaf, dt) if dt is not None else leaf, out, dtype_tree)


def lerp(start: Any, end: Any, weight: float) -> Any:
    """``start + weight * (end - start)`` for every tensor pair (``weight > 1`` extrapolates past ``end``)."""
    if isinstance(end, torch.Tensor):
        return torch.lerp(start, end, weight)
    return pytree.tree_map(
        lambda a, b: torch.lerp(a, b, weight) if isinstance(b, torch.Tensor) else b, start, end
    )
