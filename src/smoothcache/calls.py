"""What a branch or block call carries: its main input and whether it reads and writes a key/value cache."""

from __future__ import annotations

from typing import Any, Mapping

import torch

__all__ = ["STATEFUL_KWARGS", "first_tensor", "input_shape", "is_stateful_call"]

#: Keyword arguments through which a call reads and writes a key/value cache: such a call changes state that a
#: skipped call would not, so it is always computed.
STATEFUL_KWARGS = ("kv_cache", "kv_caches", "layer_cache", "past_key_value", "past_key_values")


def is_stateful_call(kwargs: Mapping[str, Any]) -> bool:
    """True when a call carries a key/value cache object (see :data:`STATEFUL_KWARGS`)."""
    return any(kwargs.get(name) is not None for name in STATEFUL_KWARGS)


def first_tensor(args: tuple, kwargs: Mapping[str, Any], name: str = "hidden_states") -> torch.Tensor | None:
    """The call's main input: its first positional argument if a tensor, else the tensor passed as
    ``name``."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    value = kwargs.get(name)
    return value if isinstance(value, torch.Tensor) else None


def input_shape(args: tuple, kwargs: Mapping[str, Any]) -> Any:
    """The shape of the call's first tensor argument (positional, else keyword); None if it has none."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0].shape
    for value in kwargs.values():
        if isinstance(value, torch.Tensor):
            return value.shape
    return None
