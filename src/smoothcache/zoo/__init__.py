"""Models that ship with smoothcache, trained here, and the offline evaluators that judge their samples.

- image: a class-conditional DiT on scikit-learn's handwritten digits (``digits_pipeline()``,
  ``digits_evaluator()``; model card ``zoo/digits/README.md``);
- audio: a class-conditional Stable-Audio-style DiT on spoken digits synthesised with espeak-ng, sampled with
  DPM-Solver++(3M) SDE (``audio_pipeline()``, ``audio_evaluator()``; model card ``zoo/audio/README.md``);
- the demo (:mod:`smoothcache.zoo.demo`), the calibration plots (:mod:`smoothcache.zoo.plot`) and the
  metrics (:mod:`smoothcache.zoo.metrics`).

Nothing here is imported by the core library; names are loaded on first use.
"""

from __future__ import annotations

import importlib

_DIGITS = ["DIGITS_DIR", "DIGITS_GUIDANCE_SCALE", "digits_evaluator", "digits_pipeline"]
_AUDIO = ["AUDIO_DIR", "AUDIO_GUIDANCE_SCALE", "audio_evaluator", "audio_pipeline"]
__all__ = _DIGITS + _AUDIO

_EXPORTS = {name: "digits_model" for name in _DIGITS} | {name: "audio_model" for name in _AUDIO}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
