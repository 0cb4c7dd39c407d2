"""Predictors: what a skipped branch call returns, built from the outputs of the steps that were computed.

- ``reuse`` (the paper's and the original implementation's): the output of the last computed step.
- ``linear``: the first-order extrapolation, in the time variable the denoiser receives (timestep or
  sigma, so non-uniform step spacings are right), through the outputs of the last two computed steps:
  ``y(t) = y_a + (t - t_a) / (t_b - t_a) * (y_b - y_a)``, one fused ``torch.lerp`` per skipped call.
  With only one computed step so far it falls back to ``reuse``.

Calibration records each predictor's error (:mod:`smoothcache.calibration`), planners choose the steps to
compute for it (:mod:`smoothcache.planning`), and the cache applies it (:mod:`smoothcache.cache`). A cache
holds ``order + 1`` outputs per branch and CFG call: one for ``reuse``, two for ``linear``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .outputs import cast, cast_back, dtypes, lerp, versions

__all__ = ["PREDICTORS", "ORDER", "Kept", "predict", "predict_kept", "sources_needed", "table_shape"]

#: Known predictors, by increasing order.
PREDICTORS = ("reuse", "linear")
#: Polynomial order of each predictor (number of computed outputs used, minus one).
ORDER = {"reuse": 0, "linear": 1}


def sources_needed(predictor: str) -> int:
    """Computed outputs a predictor keeps per branch and CFG call."""
    return ORDER[predictor] + 1


def table_shape(predictor: str, lookahead: int, num_steps: int) -> tuple[int, ...]:
    """Shape of a predictor's calibration table: ``[K, T]`` for reuse, ``[K, K + 1, T]`` for linear.

    The middle axis of the linear table is the spacing ``d`` of its two sources (1..K+1: with skip runs of
    at most K steps, two consecutive computed steps are at most K + 1 apart).
    """
    if predictor == "reuse":
        return (lookahead, num_steps)
    return (lookahead, lookahead + 1, num_steps)


def predict(predictor: str, sources: Sequence[tuple[float, Any]], time: float) -> Any:
    """The predicted output at ``time`` from ``sources``: ``(time, output)`` of computed steps, oldest first."""
    t_b, y_b = sources[-1]
    if predictor == "reuse" or len(sources) < 2:
        return y_b
    t_a, y_a = sources[-2]
    if t_b == t_a:
        return y_b
    return lerp(y_a, y_b, (time - t_a) / (t_b - t_a))


class Kept:
    """One computed output kept for prediction: its step time, the (possibly low-precision) output, and
    what is needed to check and restore it."""

    __slots__ = ("time", "out", "versions", "dtypes")

    def __init__(self, time: float, out: Any, dtype: torch.dtype | None):
        self.dtypes = None if dtype is None else dtypes(out)
        self.out = out if dtype is None else cast(out, dtype)
        self.time = time
        self.versions = versions(self.out)


def predict_kept(predictor: str, kept: Sequence[Kept], time: float) -> Any:
    """:func:`predict` from kept outputs, cast back to the computed outputs' dtypes if they were stored lower."""
    out = predict(predictor, [(k.time, k.out) for k in kept], time)
    return out if kept[-1].dtypes is None else cast_back(out, kept[-1].dtypes)
