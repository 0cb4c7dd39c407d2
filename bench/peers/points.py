"""Operating points of diffusers' caches on DiT, as :class:`PeerMethod` objects ready to apply.

Points were chosen on the embedded digits DiT (``smoothcache.zoo.digits_pipeline()``, DDIM 50, the model's
guidance scale) to span roughly 1.3x-3x fewer block computations; ``python -m bench.peers`` measures them.
PAB only broadcasts attention (DiT has no cross or temporal attention), so its points span 1.5x-2.5x fewer
*attention* calls, i.e. 1.15x-1.3x of block MACs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ContextManager, Sequence

from .installers import (
    CONTEXT,
    TAYLOR_CACHE_IDENTIFIERS,
    calibrate_mag_ratios,
    install_faster,
    install_fbc,
    install_mag,
    install_pab,
    install_taylor,
)
from .session import HookSession

__all__ = ["FAMILIES", "PeerMethod", "peer_methods"]

FAMILIES = ("FirstBlockCache", "MagCache", "PyramidAttentionBroadcast", "FasterCache", "TaylorSeer")

# keyword arguments of the diffusers config classes, per family from gentle to aggressive
FBC_POINTS = ({"threshold": 0.05}, {"threshold": 0.08}, {"threshold": 0.12}, {"threshold": 0.2})
MAG_POINTS = (
    {"threshold": 0.02, "max_skip_steps": 2, "retention_ratio": 0.2},
    {"threshold": 0.06, "max_skip_steps": 3, "retention_ratio": 0.2},  # diffusers' defaults
    {"threshold": 0.15, "max_skip_steps": 4, "retention_ratio": 0.2},
    {"threshold": 0.3, "max_skip_steps": 6, "retention_ratio": 0.1},
)
PAB_POINTS = (
    {"spatial_attention_block_skip_range": 2, "spatial_attention_timestep_skip_range": (100, 800)},
    {"spatial_attention_block_skip_range": 3, "spatial_attention_timestep_skip_range": (100, 800)},
    {"spatial_attention_block_skip_range": 3, "spatial_attention_timestep_skip_range": (-1, 900)},
)
FASTER_POINTS = (
    {  # diffusers' defaults (the paper's values)
        "spatial_attention_block_skip_range": 2, "spatial_attention_timestep_skip_range": (-1, 681),
        "unconditional_batch_skip_range": 5, "unconditional_batch_timestep_skip_range": (-1, 641),
    },
    {
        "spatial_attention_block_skip_range": 2, "spatial_attention_timestep_skip_range": (-1, 901),
        "unconditional_batch_skip_range": 5, "unconditional_batch_timestep_skip_range": (-1, 901),
    },
    {
        "spatial_attention_block_skip_range": 3, "spatial_attention_timestep_skip_range": (-1, 951),
        "unconditional_batch_skip_range": 10, "unconditional_batch_timestep_skip_range": (-1, 951),
    },
)
#: ``disable_cache_before_step`` is for 50 steps and scaled proportionally for other step counts.
TAYLOR_POINTS = (
    {"cache_interval": 2, "disable_cache_before_step": 20, "max_order": 1},
    {"cache_interval": 2, "disable_cache_before_step": 3, "max_order": 1},
    {"cache_interval": 3, "disable_cache_before_step": 5, "max_order": 1},
    {"cache_interval": 4, "disable_cache_before_step": 5, "max_order": 1},
)


@dataclass
class PeerMethod:
    """One operating point of one peer cache, ready to apply to ``pipe.transformer``.

    ``name`` (e.g. ``"FirstBlockCache t=0.1"``), ``family``, ``config`` (the keyword arguments of the peer's
    config class, callbacks excluded) and ``context`` (what we supply from outside so that it runs on DiT).
    ``apply()`` is a context manager that installs the peer and, on exit, restores the pipeline exactly (see
    :mod:`bench.restore`); several generations may run inside one ``apply()``, each giving the output of a
    fresh ``apply()`` with the same seed::

        with method.apply():
            images = pipe(class_labels=labels, num_inference_steps=50, output_type="pt").images
    """

    name: str
    family: str
    config: dict
    context: str
    _apply: Callable[[], ContextManager] = field(repr=False)

    def apply(self) -> ContextManager:
        """Install on the pipeline's transformer; on exit remove and restore exactly (raises if it cannot)."""
        return self._apply()


def hook_method(name: str, family: str, config: dict, pipe, install, swap: bool = False) -> PeerMethod:
    """A :class:`PeerMethod` whose ``apply()`` is a :class:`HookSession` with ``install``."""
    return PeerMethod(name, family, dict(config), CONTEXT[family],
                      lambda: HookSession(pipe, install, swap_cfg_halves=swap))


def _range(r) -> str:
    return f"[{r[0]},{r[1]}]"


def peer_methods(pipe, num_inference_steps: int = 50, guidance_scale: float = 4.0,
                 calibration_labels: Sequence[int] = tuple(range(10)), *, calibration_seed: int = 1234,
                 mag_ratios: Sequence[float] | None = None,
                 families: Sequence[str] = FAMILIES) -> dict[str, PeerMethod]:
    """All operating points of ``families`` for ``pipe`` (a ``DiTPipeline``), keyed by name, gentle first.

    Args:
        pipe: the pipeline.
        num_inference_steps / guidance_scale: those the generations will use (MagCache's ratios are per step;
            FasterCache's CFG handling depends on whether guidance is on; TaylorSeer's warm-up scales with
            steps).
        calibration_labels / calibration_seed: MagCache's calibration generation (disjoint from evaluation
        seeds).
        mag_ratios: skip MagCache's calibration and use these.
        families: which of :data:`FAMILIES`.
    """
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown peer families {sorted(unknown)}; choose from {FAMILIES}")
    cfg = guidance_scale > 1
    methods: list[PeerMethod] = []
    if "FirstBlockCache" in families:
        for c in FBC_POINTS:
            methods.append(hook_method(f"FirstBlockCache t={c['threshold']}", "FirstBlockCache", c, pipe,
                                       install_fbc(c)))
    if "MagCache" in families:
        if mag_ratios is None:
            mag_ratios = calibrate_mag_ratios(pipe, num_inference_steps, guidance_scale, calibration_labels,
                                              calibration_seed)
        ratios = [round(float(r), 6) for r in mag_ratios]
        for c in MAG_POINTS:
            name = f"MagCache t={c['threshold']} K={c['max_skip_steps']} r={c['retention_ratio']}"
            methods.append(hook_method(name, "MagCache", dict(c, num_inference_steps=num_inference_steps,
                                                              mag_ratios=ratios),
                                       pipe, install_mag(c, ratios, num_inference_steps)))
    if "PyramidAttentionBroadcast" in families:
        for c in PAB_POINTS:
            name = (f"PAB every {c['spatial_attention_block_skip_range']} "
                    f"t in {_range(c['spatial_attention_timestep_skip_range'])}")
            methods.append(hook_method(name, "PyramidAttentionBroadcast", c, pipe, install_pab(c)))
    if "FasterCache" in families:
        for c in FASTER_POINTS:
            name = (f"FasterCache uncond every {c['unconditional_batch_skip_range']} "
                    f"t<{c['unconditional_batch_timestep_skip_range'][1]}, "
                    f"attn every {c['spatial_attention_block_skip_range']} "
                    f"t<{c['spatial_attention_timestep_skip_range'][1]}")
            config = dict(c, tensor_format="BCHW", is_guidance_distilled=not cfg, attention_weight=0.5,
                          uncond_cond_kwargs=["hidden_states", "timestep", "class_labels"],
                          swap_cfg_halves=cfg)
            methods.append(hook_method(name, "FasterCache", config, pipe, install_faster(c, cfg), swap=cfg))
    if "TaylorSeer" in families:
        for c in TAYLOR_POINTS:
            warmup = max(1, round(c["disable_cache_before_step"] * num_inference_steps / 50))
            c = dict(c, disable_cache_before_step=warmup)
            name = f"TaylorSeer N={c['cache_interval']} O={c['max_order']} warmup={warmup}"
            config = dict(c, taylor_factors_dtype="float32", cache_identifiers=list(TAYLOR_CACHE_IDENTIFIERS))
            methods.append(hook_method(name, "TaylorSeer", config, pipe, install_taylor(c)))
    return {m.name: m for m in methods}
