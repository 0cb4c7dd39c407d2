"""The streams of a ComfyUI DiT block call: the hidden states a block continues, found by name.

ComfyUI calls a block replacement with a dict of arguments (``img``, ``txt``, ``vec``, ``pe``...) and reads
the streams back from the dict it returns (``img`` and ``txt`` for Flux double blocks, SD3, Qwen-Image and
HunyuanVideo; ``img`` for Flux single blocks and Wan). A returned entry continues the argument of the same
name and shape; its *residual* is ``out - in``. SD3's last joint block returns ``txt`` as None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

__all__ = ["ERROR_SAMPLE", "Layout", "learn_layout", "sampled", "snapshot"]

#: Most elements of a residual that calibration keeps per stream and call: a larger residual is read at a
#: fixed stride (its relative L1 error is estimated on that sample), so calibrating a large model does not
#: hold 2K + 1 full residuals per block on the device.
ERROR_SAMPLE = 1 << 18


@dataclass(frozen=True)
class Layout:
    """What a block returns: the streams it continues (in order) and the entries it returns as None."""

    streams: tuple[str, ...]
    nones: tuple[str, ...] = ()

    def build(self, values: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The dict a block returns, from the value of each stream."""
        out: dict[str, Any] = {s: values[s] for s in self.streams}
        out.update((n, None) for n in self.nones)
        return out

    def shapes(self, tensors: Mapping[str, torch.Tensor]) -> tuple:
        """The shapes of the streams in ``tensors`` (a block's inputs): calls of another size are apart."""
        return tuple((s, tuple(tensors[s].shape)) for s in self.streams if s in tensors)


def learn_layout(args: Mapping[str, Any], out: Any) -> Layout | str:
    """The layout of a block call (its arguments and what it returned), or why its output cannot be
    predicted."""
    if not isinstance(out, Mapping):
        return f"it returns {type(out).__name__}, not a dict of streams"
    streams, nones = [], []
    for name, value in out.items():
        if value is None:
            nones.append(name)
            continue
        given = args.get(name)
        if not isinstance(value, torch.Tensor) or not isinstance(given, torch.Tensor):
            return f"its output {name!r} does not continue a tensor argument of that name"
        if value.shape != given.shape:
            return f"its output {name!r} has shape {tuple(value.shape)}, its input {tuple(given.shape)}"
        streams.append(name)
    if not streams:
        return "it returns no stream"
    return Layout(tuple(streams), tuple(nones))


def snapshot(args: Mapping[str, Any], layout: Layout | None) -> dict[str, torch.Tensor]:
    """Copies of a block's input streams (every tensor argument while the layout is unknown), taken before
    the block runs: Flux and HunyuanVideo blocks add into their inputs in place."""
    names = (
        layout.streams if layout is not None else [n for n, v in args.items() if isinstance(v, torch.Tensor)]
    )
    return {n: args[n].clone() for n in names if isinstance(args.get(n), torch.Tensor)}


def sampled(residual: torch.Tensor, limit: int = ERROR_SAMPLE) -> torch.Tensor:
    """At most about ``limit`` elements of ``residual``, read at a fixed stride that is coprime with its last
    dimension (so every channel is sampled); the whole tensor, flattened, if it is small enough."""
    flat = residual.reshape(-1)
    stride = max(1, math.ceil(flat.numel() / limit))
    width = residual.shape[-1] if residual.dim() else 1
    while math.gcd(stride, width) != 1:
        stride += 1
    return flat if stride == 1 else flat[::stride]
