"""cache-dit's DBCache (and DBCache with its TaylorSeer calibrator) on a ``DiTPipeline``, as benchmark peers.

cache-dit (PyPI ``cache-dit``, tested with 1.5.3) is a benchmark-only dependency. It requires torch>=2.7.1,
diffusers>=0.36, transformers>=4.55.2, pyyaml and packaging, so next to the project's pinned CPU torch nothing
but cache-dit itself is installed; pinning torch in the same command keeps it that way::

    pip install cache-dit==1.5.3 torch==2.13.0

``DiTPipeline`` is one of cache-dit's registered pipelines (``BlockAdapterRegister`` "DiT": blocks
``transformer.transformer_blocks``, ``ForwardPattern.Pattern_3``, a ``DiTPatchFunctor`` that replaces the
transformer's ``forward``). What we set for DiT:

- ``Fn_compute_blocks=1``: its default, 8, exceeds the digits DiT's 6 blocks and fails an assertion;
  ``Bn_compute_blocks=0`` (its default);
- ``enable_separate_cfg=False``: DiTPipeline batches [cond, uncond] into one transformer call per step;
- ``num_inference_steps`` = the generation's, and ``max_warmup_steps`` 8 at 50 steps, scaled with the steps.

``cache_dit.disable_cache`` does not undo everything ``enable_cache`` did (the patched ``forward``, the
``_norm1_emb`` submodule it registers, statistics attributes on the block list stay), so ``apply()`` restores
the pipeline from a snapshot (:mod:`bench.restore`) after calling it. cache-dit patches
``DiTPipeline.__call__`` at class level to reset its cache context per generation; that is undone on exit too.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, Sequence

from .peers.points import PeerMethod
from .restore import restored

__all__ = ["CONTEXT", "DB_THRESHOLDS", "FAMILIES", "available", "cachedit_methods", "documented_usage"]

FAMILIES = ("DBCache", "DBCache+TaylorSeer")

#: ``residual_diff_threshold`` per operating point, gentle to aggressive (1.35x-3x fewer block calls, digits
# DDIM 50).
DB_THRESHOLDS = (0.05, 0.08, 0.12, 0.2, 0.3, 0.5, 0.8)
FN_COMPUTE_BLOCKS, BN_COMPUTE_BLOCKS, WARMUP_AT_50 = 1, 0, 8
TAYLORSEER_ORDER = 1

CONTEXT = {
    "DBCache": (
        f"cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(Fn_compute_blocks={FN_COMPUTE_BLOCKS}, "
        f"Bn_compute_blocks={BN_COMPUTE_BLOCKS}, residual_diff_threshold=..., "
        f"max_warmup_steps={WARMUP_AT_50} "
        "at 50 steps (scaled), num_inference_steps=..., enable_separate_cfg=False)): its default "
        "Fn_compute_blocks=8 "
        "exceeds the digits DiT's 6 blocks; DiTPipeline batches CFG in one call. disable_cache leaves the "
        "patched "
        "forward, a _norm1_emb submodule and statistics attributes behind: restored from a snapshot."
    ),
    "DBCache+TaylorSeer": (
        "as DBCache, plus calibrator_config=TaylorSeerCalibratorConfig(taylorseer_order="
        f"{TAYLORSEER_ORDER}) (cached residuals forecast by a first-order Taylor expansion)."
    ),
}


def available() -> bool:
    """Whether cache-dit can be imported."""
    try:
        import cache_dit  # noqa: F401
    except ImportError:
        return False
    return True


def _quiet() -> None:
    """cache-dit logs every enable / disable at INFO / WARNING to stdout; keep errors only."""
    os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "error")
    import cache_dit.logger

    handler = getattr(cache_dit.logger, "_default_handler", None)
    if handler is not None:
        handler.setLevel(logging.ERROR)


@contextlib.contextmanager
def _applied(pipe, cache_kwargs: dict, taylorseer: bool) -> Iterator[None]:
    _quiet()
    import cache_dit
    from cache_dit import DBCacheConfig, TaylorSeerCalibratorConfig

    with restored(pipe):
        calibrator = TaylorSeerCalibratorConfig(taylorseer_order=TAYLORSEER_ORDER) if taylorseer else None
        cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(**cache_kwargs), calibrator_config=calibrator)
        try:
            yield
        finally:
            cache_dit.disable_cache(pipe)


def _method(pipe, family: str, threshold: float, steps: int) -> PeerMethod:
    warmup = max(1, round(WARMUP_AT_50 * steps / 50))
    kwargs = {
        "Fn_compute_blocks": FN_COMPUTE_BLOCKS,
        "Bn_compute_blocks": BN_COMPUTE_BLOCKS,
        "residual_diff_threshold": threshold,
        "max_warmup_steps": warmup,
        "num_inference_steps": steps,
        "enable_separate_cfg": False,
    }
    taylorseer = family == "DBCache+TaylorSeer"
    config = dict(kwargs, taylorseer_order=TAYLORSEER_ORDER) if taylorseer else dict(kwargs)
    name = f"{family} F{FN_COMPUTE_BLOCKS}B{BN_COMPUTE_BLOCKS} t={threshold} warmup={warmup}"
    return PeerMethod(name, family, config, CONTEXT[family], lambda: _applied(pipe, kwargs, taylorseer))


def cachedit_methods(
    pipe,
    num_inference_steps: int = 50,
    families: Sequence[str] = FAMILIES,
    thresholds: Sequence[float] = DB_THRESHOLDS,
) -> dict[str, PeerMethod]:
    """cache-dit's operating points for ``pipe`` (a ``DiTPipeline``), keyed by name, gentle first.

    Args:
        pipe: the pipeline.
        num_inference_steps: the generations' step count (DBCache's context and warm-up use it).
        families: which of :data:`FAMILIES`.
        thresholds: ``residual_diff_threshold`` values.

    Raises ``ImportError`` naming the install command when cache-dit is missing.
    """
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown cache-dit families {sorted(unknown)}; choose from {FAMILIES}")
    if not available():
        raise ImportError("cache-dit is not installed: pip install cache-dit==1.5.3 torch==2.13.0")
    methods = [
        _method(pipe, family, t, num_inference_steps)
        for family in FAMILIES
        if family in families
        for t in thresholds
    ]
    return {m.name: m for m in methods}


def documented_usage(pipe, num_inference_steps: int = 5) -> str | None:
    """What ``cache_dit.enable_cache(pipe)`` with its defaults does on ``pipe``: the exception, verbatim, or
    None.

    The pipeline is restored afterwards.
    """
    _quiet()
    import cache_dit

    try:
        with restored(pipe):
            cache_dit.enable_cache(pipe)
            try:
                pipe(class_labels=[0, 1], num_inference_steps=num_inference_steps, output_type="pt")
            finally:
                cache_dit.disable_cache(pipe)
    except Exception as err:  # noqa: BLE001  (recorded verbatim)
        return f"{type(err).__name__}: {err}"
    return None
