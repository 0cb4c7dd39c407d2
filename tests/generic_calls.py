"""Shared pieces of the tiny-family builders: seeded construction, inputs, one-step call helpers."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn


def seeded(cls, **config) -> nn.Module:
    torch.manual_seed(0)
    return cls(**config).eval()


def unzeroed(model: nn.Module) -> nn.Module:
    """Zero-initialised weights (adaLN-zero modulations) made small and random, so every branch matters."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.1)
    return model


def randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def full_t(t: float, batch: int = 1) -> torch.Tensor:
    return torch.full((batch,), t)


def cfg(
    model_call: Callable[[dict], torch.Tensor], inputs: dict, neg: dict, scale: float = 3.0
) -> torch.Tensor:
    """Two calls, cond then uncond (``neg`` replaces some inputs), combined like classifier-free guidance."""
    cond = model_call(inputs)
    uncond = model_call({**inputs, **neg})
    return uncond + scale * (cond - uncond)


def first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def ids3(h: int, w: int) -> torch.Tensor:
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = torch.arange(h)[:, None]
    ids[..., 2] = torch.arange(w)[None, :]
    return ids.reshape(h * w, 3)


def ids4(t: int, h: int, w: int, length: int) -> torch.Tensor:
    return torch.cartesian_prod(torch.arange(t), torch.arange(h), torch.arange(w), torch.arange(length))
