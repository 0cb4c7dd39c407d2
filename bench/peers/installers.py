"""One installer per diffusers cache family, with what each needs from outside to run on DiT (``CONTEXT``)."""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import re
from typing import Sequence

import torch

from .session import HookSession

__all__ = ["CONTEXT", "TAYLOR_CACHE_IDENTIFIERS", "calibrate_mag_ratios", "install_faster", "install_fbc",
           "install_mag", "install_pab", "install_taylor"]

#: TaylorSeer's default identifiers (``^transformer_blocks.*attn`` with ``re.fullmatch``) match no module of
# DiT
#: (its attention is ``attn1``); the paper caches the attention and MLP outputs of every block.
TAYLOR_CACHE_IDENTIFIERS = (r"transformer_blocks\.\d+\.attn1", r"transformer_blocks\.\d+\.ff")


def _ensure_block_registered(transformer: torch.nn.Module) -> None:
    """FBC and MagCache look each block class up in diffusers' ``TransformerBlockRegistry``; diffusers 0.42.1
    registers ``BasicTransformerBlock`` (``return_hidden_states_index=0``, no encoder stream), which is right
    for DiT's blocks. Register it with that metadata only if a diffusers version lacks it."""
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

    for cls in {type(b) for b in transformer.transformer_blocks}:
        try:
            TransformerBlockRegistry.get(cls)
        except ValueError:
            TransformerBlockRegistry.register(cls, TransformerBlockMetadata(
                return_hidden_states_index=0, return_encoder_hidden_states_index=None))


def install_fbc(config: dict):
    def install(transformer, session):
        from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

        _ensure_block_registered(transformer)
        apply_first_block_cache(transformer, FirstBlockCacheConfig(**config))
    return install


def install_mag(config: dict, mag_ratios: Sequence[float] | None, num_inference_steps: int, calibrate=False):
    def install(transformer, session):
        from diffusers.hooks import MagCacheConfig, apply_mag_cache

        _ensure_block_registered(transformer)
        kwargs = dict(config, num_inference_steps=num_inference_steps)
        if calibrate:
            kwargs["calibrate"] = True
        else:
            kwargs["mag_ratios"] = torch.tensor(list(mag_ratios), dtype=torch.float32)
        apply_mag_cache(transformer, MagCacheConfig(**kwargs))
    return install


def install_pab(config: dict):
    def install(transformer, session: HookSession):
        from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

        apply_pyramid_attention_broadcast(transformer, PyramidAttentionBroadcastConfig(
            **config, current_timestep_callback=session.timestep_callback))
    return install


def _faster_attention_weight(module) -> float:
    return 0.5  # diffusers' default, given explicitly


def install_faster(config: dict, cfg: bool):
    def install(transformer, session: HookSession):
        from diffusers.hooks import FasterCacheConfig, apply_faster_cache

        faster_logger = logging.getLogger("diffusers.hooks.faster_cache")
        level = faster_logger.level
        faster_logger.setLevel(logging.ERROR)  # its "purely experimental" warning, on every apply
        try:
            apply_faster_cache(
                transformer,
                FasterCacheConfig(
                    **config,
                    tensor_format="BCHW",
                    is_guidance_distilled=not cfg,
                    attention_weight_callback=_faster_attention_weight,
                    current_timestep_callback=session.timestep_callback,
                    _unconditional_conditional_input_kwargs_identifiers=[
                        "hidden_states",
                        "timestep",
                        "class_labels",
                    ],
                ),
            )
        finally:
            faster_logger.setLevel(level)

    return install


def install_taylor(config: dict, identifiers: Sequence[str] = TAYLOR_CACHE_IDENTIFIERS):
    """TaylorSeer on the modules whose path fully matches one of ``identifiers`` (regular expressions)."""

    def install(transformer, session):
        from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

        names = [n for n, _ in transformer.named_modules() if any(re.fullmatch(p, n) for p in identifiers)]
        if not names:
            raise ValueError(
                f"TaylorSeer: no module of {type(transformer).__name__} matches {list(identifiers)}"
            )
        apply_taylorseer_cache(
            transformer,
            TaylorSeerCacheConfig(
                **config, taylor_factors_dtype=torch.float32, cache_identifiers=list(identifiers)
            ),
        )

    return install


CONTEXT = {
    "FirstBlockCache": (
        "apply_first_block_cache as is (BasicTransformerBlock is already in diffusers' "
        "TransformerBlockRegistry, "
        "return_hidden_states_index=0); supplied: a CacheContext set on its StateManager before every "
        "transformer "
        "call (without it: 'No cache context is set'), and a reset of its state at each generation start."
    ),
    "MagCache": (
        "mag_ratios measured with MagCacheConfig(calibrate=True) on a separate calibration generation (same "
        "steps, "
        "guidance and scheduler; ratios read from its log record) and num_inference_steps passed; supplied: "
        "a "
        "CacheContext and a state reset at each generation start (its own step counter only wraps after "
        "exactly "
        "num_inference_steps calls)."
    ),
    "PyramidAttentionBroadcast": (
        "current_timestep_callback = the timestep argument of the current transformer call (DiTPipeline has "
        "no "
        "current_timestep); skips DiT's self-attention attn1 (no cross-attention in DiT); per-hook iteration "
        "counters reset at each generation start."
    ),
    "FasterCache": (
        "current_timestep_callback from the transformer's timestep argument; tensor_format='BCHW'; "
        "_unconditional_conditional_input_kwargs_identifiers += 'class_labels' (DiT's condition; without it "
        "the "
        "CFG-skipping call mixes a half batch of latents with a full batch of labels); "
        "is_guidance_distilled = "
        "guidance_scale <= 1; the CFG halves are swapped around the transformer call (DiTPipeline batches "
        "[cond, uncond], FasterCache assumes [uncond, cond] and keeps/computes the second half); "
        "attention_weight_callback = 0.5 (diffusers' default, explicit); state reset at each generation "
        "start."
    ),
    "TaylorSeer": (
        "cache_identifiers = transformer_blocks.N.attn1 and transformer_blocks.N.ff (the default patterns "
        "match no "
        "DiT module, so the default config silently does nothing); taylor_factors_dtype=float32; a "
        "CacheContext for "
        "its StateManagers (without it: 'No cache context is set') and a state reset at each generation "
        "start."
    ),
}


def calibrate_mag_ratios(
    pipe,
    num_inference_steps: int,
    guidance_scale: float,
    calibration_labels: Sequence[int],
    calibration_seed: int = 1234,
) -> list[float]:
    """Run MagCache's ``calibrate=True`` mode on one generation and return the measured magnitude ratios.

    Args:
        pipe: the ``DiTPipeline``.
        num_inference_steps / guidance_scale: those of the generations the ratios are for.
        calibration_labels / calibration_seed: the calibration generation's classes and seed (keep them
        disjoint
            from the evaluation's).
    """
    records: list[str] = []

    class _Grab(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    mag_logger = logging.getLogger("diffusers.hooks.mag_cache")
    old_level, old_propagate = mag_logger.level, mag_logger.propagate
    handler = _Grab(level=logging.INFO)
    mag_logger.addHandler(handler)
    mag_logger.setLevel(logging.INFO)
    mag_logger.propagate = False
    try:
        with (
            HookSession(pipe, install_mag({}, None, num_inference_steps, calibrate=True)),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            pipe(
                class_labels=list(calibration_labels),
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=torch.Generator().manual_seed(calibration_seed),
                output_type="pt",
            )
    finally:
        mag_logger.removeHandler(handler)
        mag_logger.setLevel(old_level)
        mag_logger.propagate = old_propagate
    prefix = "MagCache Calibration Results: "
    found = [r[len(prefix) :] for r in records if r.startswith(prefix)]
    if len(found) != 1:
        raise RuntimeError(f"MagCache calibration: expected one result record, got {len(found)}: {records}")
    ratios = [float(x) for x in ast.literal_eval(found[0])]
    if len(ratios) != num_inference_steps:
        raise RuntimeError(f"MagCache calibration: {len(ratios)} ratios for {num_inference_steps} steps")
    return ratios
