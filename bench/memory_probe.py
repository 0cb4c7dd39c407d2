"""Measuring what a cache keeps between denoiser calls, whoever made it, and FLUX.1-dev's cache on the meta
device.

:class:`LiveTensors` counts the bytes of every tensor alive (reachable by Python's garbage collector) at the
start of each denoiser call, minus the model's parameters and buffers: the sampler's state plus whatever a
cache keeps. The same generation run uncached gives the sampler's share, so the difference is the cache's
memory, measured the same way for smoothcache, diffusers' TaylorSeer and cache-dit.

:func:`flux_dev_bytes` builds FLUX.1-dev's transformer (19 double- and 38 single-stream blocks, hidden 3072)
on the meta device, where tensors have shapes but no storage, runs a 28-step generation with every-other-step
whole-step skips (the optimal planner's row shape) and reads the bytes each cache keeps.
"""

from __future__ import annotations

import gc
import warnings
from typing import Callable

import torch

__all__ = ["LiveTensors", "flux_dev_bytes", "FLUX_DEV"]


def _storage_key(t: torch.Tensor) -> tuple:
    if t.is_meta:
        return ("meta", id(t))
    return ("data", t.untyped_storage().data_ptr())


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size() if t.is_meta else t.untyped_storage().nbytes()


class LiveTensors:
    """Peak bytes of the tensors alive at the start of each call of ``model`` (parameters and buffers, and the
    tensors alive before entering, excluded)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.peak = 0
        self._handle = None
        self._excluded: set = set()

    def _live(self) -> int:
        seen, total = set(self._excluded), 0
        with warnings.catch_warnings():  # isinstance() on some module objects warns about deprecated names
            warnings.simplefilter("ignore")
            objects = gc.get_objects()
            tensors = [o for o in objects if isinstance(o, torch.Tensor)]
        for obj in tensors:
            if isinstance(obj, torch.Tensor) and not isinstance(obj, torch.nn.Parameter):
                key = _storage_key(obj)
                if key not in seen:
                    seen.add(key)
                    total += _nbytes(obj)
        return total

    def _pre(self, module, args):
        self.peak = max(self.peak, self._live())

    def __enter__(self) -> "LiveTensors":
        gc.collect()
        self._excluded = {_storage_key(t) for t in list(self.model.parameters()) + list(self.model.buffers())}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._excluded |= {_storage_key(o) for o in gc.get_objects() if isinstance(o, torch.Tensor)}
        self._handle = self.model.register_forward_pre_hook(self._pre)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


#: FLUX.1-dev's transformer config (black-forest-labs/FLUX.1-dev, transformer/config.json) and its usual run.
FLUX_DEV = {
    "config": dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                   num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                   guidance_embeds=True, axes_dims_rope=[16, 56, 56]),
    "image_tokens": 4096,  # 1024x1024: a 128x128 latent in 2x2 patches
    "text_tokens": 512,
    "hidden": 3072,
    "steps": 28,
    "dtype": torch.bfloat16,
}


def flux_dev_bytes(
    methods: dict[str, Callable[[torch.nn.Module], object]], batch: int = 1
) -> dict[str, dict]:
    """Per method, the peak bytes its cache keeps over a 28-step FLUX.1-dev generation on the meta device.

    ``methods``: name -> ``make(model)`` returning a context manager that applies the cache (a
    :class:`~smoothcache.SmoothCache`: its ``stats.peak_bytes``; anything else: :class:`LiveTensors`).
    """
    from diffusers import FluxTransformer2DModel

    f = FLUX_DEV
    with torch.device("meta"):
        model = FluxTransformer2DModel(**f["config"]).to(f["dtype"]).eval()

    def empty(*shape, dtype=f["dtype"]):
        return torch.empty(*shape, device="meta", dtype=dtype)

    def run():
        x = empty(batch, f["image_tokens"], 64)
        for step in range(f["steps"]):
            sigma = 1.0 - step / f["steps"]
            with torch.no_grad():
                x = model(
                    hidden_states=x,
                    encoder_hidden_states=empty(batch, f["text_tokens"], 4096),
                    pooled_projections=empty(batch, 768),
                    timestep=torch.full((batch,), sigma, device="meta"),
                    guidance=torch.full((batch,), 3.5, device="meta"),
                    img_ids=empty(f["image_tokens"], 3),
                    txt_ids=empty(f["text_tokens"], 3),
                    return_dict=False,
                )[0]

    results = {}
    for name, make in methods.items():
        ctx = make(model)
        probe = LiveTensors(model)
        with probe, ctx:
            run()
        stats = getattr(ctx, "stats", None)
        results[name] = {"bytes": stats.peak_bytes if stats is not None else probe.peak, "live": probe.peak}
        if stats is not None:
            results[name].update(fused_blocks=stats.fused_blocks, runs=stats.runs)
    return results
