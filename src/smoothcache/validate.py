"""Argument checks shared by every module: each raises a clear error that names the argument and the value."""

from __future__ import annotations

import math
from typing import Iterable

import torch

__all__ = ["check_choice", "check_dtype", "check_fraction", "check_int", "check_number"]


def check_int(value, name: str, minimum: int = 1, error: type[Exception] = ValueError) -> int:
    """An integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_number(value, name: str, minimum: float = 0.0, finite: bool = True,
                 error: type[Exception] = ValueError) -> float:
    """A real number (not a bool) of at least ``minimum``; finite unless ``finite=False``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum
            or (finite and not math.isfinite(value))):
        raise error(f"{name} must be a {'finite ' if finite else ''}number >= {minimum:g}, got {value!r}")
    return float(value)


def check_fraction(value, name: str, error: type[Exception] = ValueError) -> float:
    """A number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise error(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def check_choice(value, name: str, choices: Iterable[str], error: type[Exception] = ValueError) -> str:
    """One of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise error(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value


def check_dtype(value, name: str) -> torch.dtype | None:
    """None or a floating-point torch dtype."""
    if value is not None and not (isinstance(value, torch.dtype) and value.is_floating_point):
        raise ValueError(f"{name} must be a floating torch.dtype, got {value!r}")
    return value

