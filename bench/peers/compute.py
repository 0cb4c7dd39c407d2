"""What a peer really executed: sample rows through each block's ``attn1`` and ``ff`` over one generation."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["ComputeCount", "measure_compute"]


@dataclass
class ComputeCount:
    """Sample rows that went through each block's ``attn1`` / ``ff`` during one generation, and the full
    amounts.

    Args:
        attn_rows / ff_rows: rows that reached the first ``Linear`` of ``attn1`` / ``ff``, summed over blocks.
        full_rows: the uncached amount per module kind (transformer calls x blocks x full batch).
        attn_macs_per_row / ff_macs_per_row: MACs of one row through one block's ``attn1`` / ``ff``.
    """

    attn_rows: int
    ff_rows: int
    full_rows: int
    attn_macs_per_row: float
    ff_macs_per_row: float

    @property
    def attn_fraction(self) -> float:
        return self.attn_rows / self.full_rows

    @property
    def ff_fraction(self) -> float:
        return self.ff_rows / self.full_rows

    @property
    def block_fraction(self) -> float:
        """MAC-weighted executed fraction of the blocks' attention + feed-forward."""
        a, f = self.attn_macs_per_row, self.ff_macs_per_row
        return (self.attn_rows * a + self.ff_rows * f) / (self.full_rows * (a + f))

    @property
    def speedup(self) -> float:
        """How many times fewer block MACs than the uncached run."""
        return 1.0 / self.block_fraction if self.block_fraction > 0 else math.inf


def _first_linear(module: torch.nn.Module) -> torch.nn.Linear:
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            return m
    raise ValueError(f"no Linear in {type(module).__name__}")


def measure_compute(pipe, method=None, *, class_labels: Sequence[int] = (0, 1), num_inference_steps: int = 50,
                    guidance_scale: float = 4.0, seed: int = 0) -> ComputeCount:
    """Count executed ``attn1`` / ``ff`` sample rows over one generation (inside ``method.apply()`` if given).

    Forward pre-hooks on the first ``Linear`` of every block's ``attn1`` and ``ff``: a skipped, broadcast or
    predicted module never reaches it, and a half-batch call (FasterCache's CFG skip) counts half.

    Args:
        pipe: a ``DiTPipeline``.
        method: a peer (anything with ``apply()``), or ``None`` for the uncached pipeline.
        class_labels / num_inference_steps / guidance_scale / seed: the generation.
    """
    blocks = pipe.transformer.transformer_blocks
    counts = {"attn": 0, "ff": 0, "calls": 0, "batch": 0}
    shape: dict[str, int] = {}
    handles = []

    def counter(kind):
        def hook(module, args):
            x = args[0]
            counts[kind] += x.shape[0]
            shape["tokens"], shape["dim"] = x.shape[-2], x.shape[-1]
        return hook

    def count_call(module, args, kwargs):
        counts["calls"] += 1
        x = kwargs.get("hidden_states", args[0] if args else None)
        counts["batch"] = max(counts["batch"], x.shape[0])

    with (method.apply() if method is not None else contextlib.nullcontext()):
        # registered inside apply(): a peer's exact restore on exit must not see (or remove) our counting
        # hooks
        for block in blocks:
            handles.append(_first_linear(block.attn1).register_forward_pre_hook(counter("attn")))
            handles.append(_first_linear(block.ff).register_forward_pre_hook(counter("ff")))
        handles.append(pipe.transformer.register_forward_pre_hook(count_call, with_kwargs=True, prepend=True))
        try:
            pipe(
                class_labels=list(class_labels),
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=torch.Generator().manual_seed(seed),
                output_type="pt",
            )
        finally:
            for h in handles:
                h.remove()
    d, tokens = shape["dim"], shape["tokens"]
    ff_hidden = _first_linear(blocks[0].ff).out_features
    attn_macs = 4 * d * d * tokens + 2 * tokens * tokens * d
    ff_macs = 2 * d * ff_hidden * tokens
    full = counts["calls"] * len(blocks) * counts["batch"]
    return ComputeCount(counts["attn"], counts["ff"], full, attn_macs, ff_macs)
