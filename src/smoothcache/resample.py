"""Resampling error tables to another step count, so one calibration serves schedules of many lengths.

Each new step is placed at a fractional old step: by its timestep when the new run's timesteps are given
(e.g. ``scheduler.timesteps`` after ``set_timesteps(num_steps)``) and the calibration recorded its own,
else at the same fraction of the run (``i * T / num_steps``). A prediction from step ``b`` to step ``b + k``
then spans the old distance between their positions, and its error is read off the old grid by linear
interpolation: over the distance (zero error at distance 0, the slope of the last two rows continued past
the calibrated K when the new run has fewer steps), over the start step, and for ``linear`` over the spacing
of its two sources (clamped to the calibrated 1..K+1). The result keeps the mean tables; the spread over
runs is not carried over.
"""

from __future__ import annotations

import numpy as np

from .errors import ProfileError

__all__ = ["linear_grid", "positions", "resample_table", "reuse_grid"]


def positions(old_steps: int, old_timesteps: np.ndarray | None, num_steps: int, timesteps=None) -> np.ndarray:
    """Fractional old step index of every new step."""
    if timesteps is None or old_timesteps is None or not np.all(np.isfinite(old_timesteps)):
        return np.arange(num_steps) * (old_steps / num_steps)
    new = np.asarray(timesteps.cpu() if hasattr(timesteps, "cpu") else timesteps, dtype=np.float64).reshape(
        -1
    )
    if new.shape != (num_steps,):
        raise ProfileError(f"got {new.size} timesteps for a {num_steps}-step run")
    old = old_timesteps
    if np.any(np.diff(old) >= 0):
        raise ProfileError("the calibration's timesteps do not decrease; resample by step fraction instead")
    # np.interp needs increasing x: reverse the decreasing timesteps; outside the range, extend linearly
    steps = np.arange(old_steps, dtype=np.float64)
    pos = np.interp(new, old[::-1], steps[::-1])
    slope = (steps[-1] - steps[0]) / (old[-1] - old[0])
    pos = np.where(new > old[0], (new - old[0]) * slope, pos)
    return np.where(new < old[-1], steps[-1] + (new - old[-1]) * slope, pos)


def resample_table(predictor: str, mean: np.ndarray, new_positions: np.ndarray) -> np.ndarray:
    """A predictor's mean table read off at the new steps' positions."""
    return reuse_grid(mean, new_positions) if predictor == "reuse" else linear_grid(mean, new_positions)


def reuse_grid(mean: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A ``[K, T']`` grid read off a ``[K, T]`` mean grid at the new positions."""
    lookahead, num_steps = mean.shape[0], positions.size
    grid = np.full((lookahead, num_steps), np.nan)
    for k in range(1, min(lookahead, num_steps - 1) + 1):
        starts = positions[: num_steps - k]
        grid[k - 1, : num_steps - k] = _read(mean, positions[k:] - starts, starts)
    return grid


def linear_grid(mean: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A ``[K, D, T']`` grid read off a ``[K, D, T]`` mean grid: per calibrated spacing, then across
    spacings."""
    lookahead, spacings, num_steps = mean.shape[0], mean.shape[1], positions.size
    per_spacing = [reuse_grid(mean[:, d], positions) for d in range(spacings)]  # each [K, T']
    grid = np.full((lookahead, spacings, num_steps), np.nan)
    for d in range(1, spacings + 1):
        for b in range(d, num_steps):
            gap = np.clip(positions[b] - positions[b - d], 1.0, float(spacings))
            lo = min(int(np.floor(gap)), spacings - 1)  # between calibrated spacings lo and lo + 1
            below, above = per_spacing[lo - 1][:, b], per_spacing[lo][:, b]
            grid[:, d - 1, b] = below + (gap - lo) * (above - below)
    return grid


def _read_row(mean: np.ndarray, k: int, starts: np.ndarray) -> np.ndarray:
    """Row ``k`` (0 = no prediction, zero error) of a ``[K, T]`` mean grid at fractional start steps."""
    if k == 0:
        return np.zeros_like(starts)
    row = mean[k - 1]
    valid = np.flatnonzero(np.isfinite(row))
    if valid.size == 0:
        return np.full_like(starts, np.nan)
    x, y = valid.astype(np.float64), row[valid]
    out = np.interp(starts, x, y)
    if x.size > 1:  # continue the end slopes a little past the recorded starts (never below zero)
        lo, hi = starts < x[0], starts > x[-1]
        out[lo] = y[0] + (starts[lo] - x[0]) * (y[1] - y[0]) / (x[1] - x[0])
        out[hi] = y[-1] + (starts[hi] - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])
    return np.maximum(out, 0.0)


def _read(mean: np.ndarray, distances: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Errors for fractional prediction distances (in old steps) at fractional start steps."""
    top = mean.shape[0]
    rows = [_read_row(mean, k, starts) for k in range(top + 1)]  # rows[k] for k = 0..K
    out = np.empty_like(starts)
    for j, d in enumerate(distances):
        if d <= top:
            lo = min(int(np.floor(d)), top - 1)
            w = d - lo
            out[j] = rows[lo][j] + w * (rows[lo + 1][j] - rows[lo][j])
        else:  # past the calibrated K: extend the last two rows' slope (errors grow about linearly with k)
            a, b = rows[top - 1][j], rows[top][j]
            out[j] = max(b + (d - top) * (b - a), b)
    return out
