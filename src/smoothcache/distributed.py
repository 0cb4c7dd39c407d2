"""torch.distributed: calibration and sample generation split across ranks.

Start any script or the CLI with ``torchrun``; nothing here launches processes. Every rank runs its own
share of the inputs (:func:`shard`), calibration error sums are all-reduced (:func:`all_reduce_profile`),
so the profile equals a single-process calibration on the union of the inputs, and generated samples are
gathered in rank order (:func:`gather`), which is the original order of a :func:`shard`-ed list. The same
code runs on gloo (CPU) and NCCL (GPU).
"""

from __future__ import annotations

import os
from typing import Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from .predictors import table_shape
from .profile import BranchErrors, CalibrationProfile, ErrorSums, ProfileError

__all__ = ["init", "finish", "is_distributed", "rank", "world_size", "shard", "all_reduce_profile", "gather"]

T = TypeVar("T")


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init(backend: str | None = None) -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1); True if distributed.

    The backend defaults to NCCL when CUDA is available, else gloo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return is_distributed()


def finish() -> None:
    """Wait for every rank, then leave the process group (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def _device() -> torch.device:
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard(items: Sequence[T]) -> list[T]:
    """This rank's contiguous share of ``items`` (sizes differ by at most one; rank 0 gets the first)."""
    n, size, r = len(items), world_size(), rank()
    start = r * (n // size) + min(r, n % size)
    return list(items[start : start + n // size + (1 if r < n % size else 0)])


def all_reduce_profile(profile: CalibrationProfile | None) -> CalibrationProfile:
    """Sum the error statistics of every rank's calibration; every rank gets the combined profile.

    All ranks must have calibrated the same model with the same lookahead, step count and predictors. A
    rank without a completed run passes None (its share was empty).
    """
    if not is_distributed():
        if profile is None:
            raise ProfileError("no calibration profile to reduce")
        return profile
    layout = (
        None
        if profile is None
        else (profile.lookahead, profile.num_steps, sorted(profile.errors), profile.predictors)
    )
    layouts: list = [None] * world_size()
    dist.all_gather_object(layouts, layout)
    known = [x for x in layouts if x is not None]
    if not known:
        raise ProfileError("no rank completed a calibration run")
    if any(x != known[0] for x in known):
        raise ProfileError(
            f"ranks calibrated different layouts (lookahead, steps, branches, predictors): {layouts}"
        )
    lookahead, num_steps, names, predictors = known[0]
    source = layouts.index(known[0])
    meta = [
        None
        if profile is None
        else (profile.macs, profile.model, {n: (b.key, b.block) for n, b in profile.errors.items()})
    ]
    dist.broadcast_object_list(meta, src=source)
    macs, model, keys = meta[0]

    shapes = [table_shape(p, lookahead, num_steps) for p in predictors]
    parts = []
    for name in names:
        for predictor, shape in zip(predictors, shapes):
            sums = profile.errors[name].tables[predictor] if profile is not None else ErrorSums.zeros(shape)
            parts += [sums.total, sums.total_sq, sums.count]
    runs = 0 if profile is None else profile.runs
    ts = (
        np.zeros(num_steps)
        if profile is None or profile.timesteps is None
        else np.nan_to_num(profile.timesteps)
    )
    flat = torch.from_numpy(np.concatenate([p.ravel() for p in parts] + [ts * runs, [runs]])).to(_device())
    dist.all_reduce(flat)  # float64 sums
    flat = flat.cpu().numpy()

    out = CalibrationProfile(lookahead, num_steps, runs=int(round(flat[-1])), macs=dict(macs), model=model)
    offset = 0

    def take(shape: tuple[int, ...]) -> np.ndarray:
        nonlocal offset
        size = int(np.prod(shape))
        chunk = flat[offset : offset + size].reshape(shape)
        offset += size
        return chunk

    for name in names:
        tables = {p: ErrorSums(take(shape), take(shape), take(shape)) for p, shape in zip(predictors, shapes)}
        out.errors[name] = BranchErrors(keys[name][0], keys[name][1], tables)
    out.timesteps = take((num_steps,)) / max(out.runs, 1)
    return out


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's tensor along dim 0, in rank order (ranks may hold different lengths)."""
    if not is_distributed():
        return tensor
    device = _device()
    local = tensor.to(device).contiguous()
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local
    chunks = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(chunks, padded)
    return torch.cat([c[: int(s.item())] for c, s in zip(chunks, sizes)]).to(tensor.device)
