"""Old spellings that keep working, with a ``DeprecationWarning`` naming the new one."""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Mapping

__all__ = ["moved", "renamed"]


def renamed(value: Any, old_value: Any, old: str, new: str) -> Any:
    """``value``, or the value given under a keyword's former name ``old`` (with a deprecation warning)."""
    if old_value is None:
        return value
    if value is not None:
        raise TypeError(f"give {new}= only; {old}= is its former name")
    warnings.warn(f"{old}= is deprecated; call it {new}=", DeprecationWarning, stacklevel=3)
    return old_value


def moved(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving names that moved: ``names[old] = "smoothcache.where:new_name"``."""

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, new = target.partition(":")
        warnings.warn(f"{module}.{name} is deprecated; use {where}.{new}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(where), new)

    return __getattr__
