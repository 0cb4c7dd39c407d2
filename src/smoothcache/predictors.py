"""Predictors: what a skipped branch call returns, built from the outputs of the steps that were computed.

- ``reuse`` (the paper's and the original implementation's): the output of the last computed step.
- ``linear``: the first-order extrapolation, in the time variable the denoiser receives (timestep or
  sigma, so non-uniform step spacings are right), through the outputs of the last two computed steps:
  ``y(t) = y_a + (t - t_a) / (t_b - t_a) * (y_b - y_a)``, one fused ``torch.lerp`` per skipped call.
  With only one computed step so far it falls back to ``reuse``.

Every predictor listed here runs end to end: calibration records its errors (:mod:`smoothcache.calibration`),
the planners choose the steps to compute for it (:mod:`smoothcache.planning`), and the cache applies it
(:mod:`smoothcache.cache`). A cache keeps ``order + 1`` outputs per branch and CFG call: one for ``reuse``,
two for ``linear``.
"""

from __future__ import annotations

from typing import Any, Sequence

from .outputs import lerp

__all__ = ["PREDICTORS", "ORDER", "predict", "predict_kept", "sources_needed", "table_shape"]

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
    """The predicted output at ``time`` from ``sources``: ``(time, output)`` of computed steps, oldest
    first."""
    t_b, y_b = sources[-1]
    if predictor == "reuse" or len(sources) < 2:
        return y_b
    t_a, y_a = sources[-2]
    if t_b == t_a:
        return y_b
    return lerp(y_a, y_b, (time - t_a) / (t_b - t_a))


def predict_kept(predictor: str, kept: Sequence[Any], time: float) -> Any:
    """:func:`predict` from :class:`~smoothcache.store.Kept` outputs, in the computed outputs' dtypes."""
    out = predict(predictor, [(k.time, k.out) for k in kept], time)
    return kept[-1].restored(out)
