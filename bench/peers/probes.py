"""Failure probing: which peers still fail on a pipeline with our help, and what each does without it."""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from .installers import CONTEXT, TAYLOR_CACHE_IDENTIFIERS
from .points import FAMILIES, peer_methods
from .session import HookSession

__all__ = ["peer_failures", "unassisted_failures"]


def _run(pipe, num_inference_steps: int, guidance_scale: float, class_labels: Sequence[int], seed: int = 0):
    return pipe(class_labels=list(class_labels), num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed),
                output_type="pt").images


def peer_failures(pipe, num_inference_steps: int = 10, guidance_scale: float = 4.0,
                  class_labels: Sequence[int] = (0, 1), calibration_labels: Sequence[int] = (2, 3),
                  families: Sequence[str] = FAMILIES) -> dict[str, str]:
    """Families that still fail on ``pipe`` with all the outside help of :func:`peer_methods`, verbatim.

    Each family's first operating point runs one short generation; a family fails if that raises or gives
    non-finite images. Returns ``{family: "<ExceptionType>: <message> (tried: <context>)"}``, empty when all
    run.

    Args:
        pipe: the ``DiTPipeline``.
        num_inference_steps / guidance_scale / class_labels: the short generation.
        calibration_labels: MagCache's calibration classes.
        families: which families to probe.
    """
    failures: dict[str, str] = {}
    for family in families:
        try:
            methods = peer_methods(
                pipe, num_inference_steps, guidance_scale, calibration_labels, families=(family,)
            )
            with next(iter(methods.values())).apply():
                images = _run(pipe, num_inference_steps, guidance_scale, class_labels)
            if not torch.isfinite(images).all():
                raise FloatingPointError("non-finite images")
        except Exception as e:  # noqa: BLE001  (recorded verbatim)
            failures[family] = f"{type(e).__name__}: {e} (tried: {CONTEXT[family]})"
    return failures


def unassisted_failures(
    pipe, num_inference_steps: int = 7, guidance_scale: float = 4.0, class_labels: Sequence[int] = (0, 1)
) -> dict[str, str]:
    """What each ``apply_*`` does on DiT without (part of) our help, verbatim; documents ``CONTEXT``.

    Keys are ``"<family>: <what was given>"``. The first stage per family is documented usage only (PAB and
    FasterCache get ``current_timestep_callback=lambda: pipe.current_timestep`` as in their docstrings); later
    stages add part of the outside help. Each stage runs two generations with the same seed; besides
    exceptions, "hooked nothing" and "the second generation differs from the first" are reported. Stages that
    run cleanly are left out. The pipeline is restored after every stage.
    """
    from diffusers.hooks import (
        FasterCacheConfig,
        FirstBlockCacheConfig,
        MagCacheConfig,
        PyramidAttentionBroadcastConfig,
        TaylorSeerCacheConfig,
        apply_faster_cache,
        apply_first_block_cache,
        apply_mag_cache,
        apply_pyramid_attention_broadcast,
        apply_taylorseer_cache,
    )

    def pab(tr, s, callback):
        apply_pyramid_attention_broadcast(
            tr,
            PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=2, current_timestep_callback=callback(s)
            ),
        )

    documented = lambda s: lambda: pipe.current_timestep  # noqa: E731
    recorded = lambda s: s.timestep_callback  # noqa: E731
    stages = [  # (label, install, record_timestep, set_context, reset)
        (
            "FirstBlockCache: documented usage",
            lambda tr, s: apply_first_block_cache(tr, FirstBlockCacheConfig(threshold=0.2)),
            False,
            False,
            False,
        ),
        (
            "MagCache: documented usage without mag_ratios",
            lambda tr, s: apply_mag_cache(tr, MagCacheConfig(num_inference_steps=num_inference_steps)),
            False,
            False,
            False,
        ),
        (
            "PyramidAttentionBroadcast: documented usage",
            lambda tr, s: pab(tr, s, documented),
            False,
            False,
            False,
        ),
        (
            "PyramidAttentionBroadcast: timestep callback, no reset between generations",
            lambda tr, s: pab(tr, s, recorded),
            True,
            False,
            False,
        ),
        (
            "FasterCache: documented usage",
            lambda tr, s: apply_faster_cache(tr, FasterCacheConfig(current_timestep_callback=documented(s))),
            False,
            False,
            False,
        ),
        (
            "FasterCache: timestep callback, tensor_format='BCHW'",
            lambda tr, s: apply_faster_cache(
                tr, FasterCacheConfig(current_timestep_callback=s.timestep_callback, tensor_format="BCHW")
            ),
            True,
            False,
            False,
        ),
        (
            "TaylorSeer: documented usage",
            lambda tr, s: apply_taylorseer_cache(tr, TaylorSeerCacheConfig()),
            False,
            False,
            False,
        ),
        (
            "TaylorSeer: DiT cache_identifiers, no cache context",
            lambda tr, s: apply_taylorseer_cache(
                tr, TaylorSeerCacheConfig(cache_identifiers=list(TAYLOR_CACHE_IDENTIFIERS))
            ),
            False,
            False,
            False,
        ),
    ]
    out: dict[str, str] = {}
    quiet = logging.getLogger("diffusers.hooks.faster_cache")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for label, install, record, context, reset in stages:
            try:
                with HookSession(
                    pipe, install, record_timestep=record, set_context=context, reset=reset
                ) as s:
                    first = _run(pipe, num_inference_steps, guidance_scale, class_labels)
                    second = _run(pipe, num_inference_steps, guidance_scale, class_labels)
                if not s.hooked:
                    out[label] = (
                        "no exception, but no module was hooked (the default identifiers match nothing)"
                    )
                elif not torch.equal(first, second):
                    out[label] = (
                        "no exception, but a second generation with the same seed differs from the first "
                        f"(max abs diff {(first - second).abs().max().item():.3g}): state carried over"
                    )
            except Exception as e:  # noqa: BLE001  (recorded verbatim)
                out[label] = f"{type(e).__name__}: {e}"
    finally:
        quiet.setLevel(level)
    return out
