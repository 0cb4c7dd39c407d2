"""Argument checks shared by every module: each raises a clear error that names the argument and the value."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Iterable

import torch

__all__ = ["check_alpha", "check_choice", "check_dtype", "check_file", "check_fraction", "check_int",
           "check_number"]


def check_int(value, name: str, minimum: int = 1, error: type[Exception] = ValueError) -> int:
    """An integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_number(value, name: str, minimum: float = 0.0, finite: bool = True,
                 error: type[Exception] = ValueError) -> float:
    """A real number (not a bool) of at least ``minimum``; finite unless ``finite=False``."""
    real = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not real or _too_large(value) or not value >= minimum or (finite and not math.isfinite(value)):
        shown = repr(value) if len(repr(value)) < 40 else f"{repr(value)[:20]}... ({len(repr(value))} digits)"
        raise error(f"{name} must be a {'finite ' if finite else ''}number >= {minimum:g}, got {shown}")
    return float(value)


def _too_large(value: float) -> bool:
    """An integer beyond the range of a float (10**400), which math and float() refuse with OverflowError."""
    try:
        float(value)
    except OverflowError:
        return True
    return False


def check_fraction(value, name: str, error: type[Exception] = ValueError) -> float:
    """A number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise error(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def check_alpha(value, name: str = "alpha", error: type[Exception] = ValueError) -> float:
    """The greedy scan's threshold: a relative L1 error, so a number in [0, 1] (0.08 in the paper).

    A value above 1 is almost always a percentage typed as a fraction (``8`` for ``0.08``), which would plan
    the most aggressive schedule there is without a word; it is refused with the likely intent.
    """
    value = check_number(value, name, error=error)
    if value > 1:
        hint = f"; did you mean {value / 100:g}?" if value <= 100 else ""
        raise error(f"{name} is a relative error threshold (a fraction such as 0.08), got {value:g}{hint}")
    return value


def check_file(path, what: str, error: type[Exception] = ValueError) -> Path:
    """``path`` as a Path, after checking that it names an existing regular file (not a folder, a pipe...)."""
    try:
        path = Path(os.fspath(path))
        mode = path.stat().st_mode
    except TypeError:
        raise error(f"the {what} must be given as a path, got {type(path).__name__}") from None
    except ValueError as err:  # an embedded NUL byte, a name the file system cannot encode
        raise error(f"cannot read {what} {str(path)!r}: not a usable path ({err})") from None
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise error(f"cannot read {what} {path}: it does not exist") from None
        raise error(f"cannot read {what} {path}: {err.strerror or err}") from None
    if stat.S_ISDIR(mode):
        raise error(f"cannot read {what} {path}: it is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise error(f"cannot read {what} {path}: it is not a regular file")
    return path


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

