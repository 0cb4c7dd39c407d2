"""Models that ship with smoothcache, trained here, and the offline evaluators that judge their samples.

- image: a class-conditional DiT on scikit-learn's handwritten digits (``digits_pipeline()``,
  ``digits_evaluator()``; model card ``zoo/digits/README.md``);
- audio: a class-conditional Stable-Audio-style DiT on spoken digits synthesised with espeak-ng, sampled with
  DPM-Solver++(3M) SDE (``audio_pipeline()``, ``audio_evaluator()``; model card ``zoo/audio/README.md``);
- Flux: a class-conditional ``FluxTransformer2DModel`` (4 double- + 8 single-stream blocks) on the same
  digits, sampled with rectified flow (``digits_flux_pipeline()``, folder ``DIGITS_FLUX_DIR``, scored by
  ``digits_evaluator()``; model card ``zoo/digits_flux/README.md``);
- video: a class-conditional Latte video DiT on moving digits, sampled with rectified flow
  (``video_pipeline()``, ``video_evaluator()``, folder ``VIDEO_DIR``; model card ``zoo/video/README.md``);
- the demo (:mod:`smoothcache.zoo.demo`), the calibration plots (:mod:`smoothcache.zoo.plot`) and the
  metrics (:mod:`smoothcache.zoo.metrics`).

Nothing here is imported by the core library; names are loaded on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    **{
        name: "digits_model"
        for name in ("DIGITS_DIR", "DIGITS_GUIDANCE_SCALE", "digits_evaluator", "digits_pipeline")
    },
    **{
        name: "audio_model"
        for name in ("AUDIO_DIR", "AUDIO_GUIDANCE_SCALE", "audio_evaluator", "audio_pipeline")
    },
    **{
        name: "digits_flux_model"
        for name in ("DIGITS_FLUX_DIR", "DIGITS_FLUX_GUIDANCE_SCALE", "digits_flux_pipeline")
    },
    **{name: "video_model" for name in ("VIDEO_DIR", "VIDEO_GUIDANCE_SCALE", "video_pipeline")},
    "video_evaluator": "video_eval",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
