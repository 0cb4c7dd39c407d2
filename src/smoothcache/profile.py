"""Calibration profiles: the relative L1 error curves a calibration recorded, saved for many alphas.

For every wrapped branch (one block's ``attn1``, say) the profile keeps running sums over calibration
samples of ``e[k-1, i] = |y_{i+k} - y_i|_1 / |y_{i+k}|_1``: the error of reusing step ``i``'s output ``k``
steps later (k = 1..K). Entries with ``i + k >= T`` have no sample. Files are safetensors (numpy arrays
plus a JSON header), so loading a profile someone sent you never runs code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

__all__ = ["BranchErrors", "CalibrationProfile", "ProfileError"]

_FORMAT = "smoothcache-profile"
_VERSION = 1


class ProfileError(ValueError):
    """A calibration profile is malformed, or profiles that cannot be combined were combined."""


@dataclass
class BranchErrors:
    """Error sums of one branch of one block: arrays of shape ``[K, T]``."""

    key: str
    block: int
    total: np.ndarray
    total_sq: np.ndarray
    count: np.ndarray

    @classmethod
    def empty(cls, key: str, block: int, lookahead: int, num_steps: int) -> "BranchErrors":
        shape = (lookahead, num_steps)
        return cls(key, block, np.zeros(shape), np.zeros(shape), np.zeros(shape))

    def add(self, k: int, step: int, value: float) -> None:
        self.total[k - 1, step] += value
        self.total_sq[k - 1, step] += value * value
        self.count[k - 1, step] += 1


def _pooled(items: Iterable[BranchErrors]) -> tuple[np.ndarray, np.ndarray]:
    items = list(items)
    total = sum(b.total for b in items)
    total_sq = sum(b.total_sq for b in items)
    count = sum(b.count for b in items)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        var = np.where(count > 0, total_sq / np.maximum(count, 1) - mean**2, np.nan)
    return mean, np.sqrt(np.clip(var, 0.0, None))


@dataclass
class CalibrationProfile:
    """Error curves of a calibration: per branch, per lookahead k, per step.

    Args:
        lookahead: K, the largest reuse distance recorded.
        num_steps: T, the number of denoising steps of the calibration runs.
        branches: module path -> :class:`BranchErrors`.
        runs: number of generations accumulated.
        timesteps: mean timestep of each step (NaN where unknown), used to resample to other step counts.
        macs: multiply-accumulates of one denoiser call: ``"total"`` and one entry per branch module path.
        model: class name of the calibrated model.
    """

    lookahead: int
    num_steps: int
    branches: dict[str, BranchErrors] = field(default_factory=dict)
    runs: int = 0
    timesteps: np.ndarray | None = None
    macs: dict[str, float] = field(default_factory=dict)
    model: str = ""

    # ------------------------------------------------------------------ views
    @property
    def keys(self) -> list[str]:
        """Branch keys (``attn1``, ``ff``...) in first-seen order."""
        return list(dict.fromkeys(b.key for b in self.branches.values()))

    def blocks(self, key: str) -> list[int]:
        """Block indices recorded for a branch key."""
        return sorted({b.block for b in self.branches.values() if b.key == key})

    def _select(self, key: str, block: int | None) -> list[BranchErrors]:
        chosen = [b for b in self.branches.values() if b.key == key and (block is None or b.block == block)]
        if not chosen:
            where = "" if block is None else f" in block {block}"
            raise ProfileError(f"the profile has no branch {key!r}{where}; it has {self.keys}")
        return chosen

    def curves(self, key: str, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread (std over samples) of the errors, shape ``[K, T]``, pooled over blocks and runs."""
        return _pooled(self._select(key, block))

    def rows(self, key: str, block: int | None = None) -> list[list[float]]:
        """The scan's input: for k = 1..K the list of mean errors by start step (length T - k)."""
        mean, _ = self.curves(key, block)
        return [[float(v) for v in mean[k - 1, : max(self.num_steps - k, 0)]] for k in range(1, self.lookahead + 1)]

    def branch_macs(self, key: str, block: int | None = None) -> float:
        """MACs per denoiser call of a branch key (summed over its blocks, or one block)."""
        return float(sum(self.macs.get(path, 0.0) for path, b in self.branches.items()
                         if b.key == key and (block is None or b.block == block)))

    # -------------------------------------------------------------- combining
    def merge(self, other: "CalibrationProfile") -> "CalibrationProfile":
        """A profile holding the samples of both (same model, lookahead and step count)."""
        if (self.lookahead, self.num_steps) != (other.lookahead, other.num_steps):
            raise ProfileError(
                f"cannot merge a profile of K={other.lookahead}, {other.num_steps} steps into one of "
                f"K={self.lookahead}, {self.num_steps} steps"
            )
        if set(self.branches) != set(other.branches):
            raise ProfileError("cannot merge profiles recorded on different branches")
        merged = CalibrationProfile(self.lookahead, self.num_steps, runs=self.runs + other.runs,
                                    macs=dict(self.macs or other.macs), model=self.model or other.model)
        for path, mine in self.branches.items():
            theirs = other.branches[path]
            merged.branches[path] = BranchErrors(mine.key, mine.block, mine.total + theirs.total,
                                                 mine.total_sq + theirs.total_sq, mine.count + theirs.count)
        merged.timesteps = _mean_timesteps(self.timesteps, self.runs, other.timesteps, other.runs)
        return merged

    def resample(self, num_steps: int, timesteps=None) -> "CalibrationProfile":
        """The curves mapped to a run of ``num_steps`` steps, for a schedule at another step count.

        Each new step is placed at a fractional old step: by its timestep when ``timesteps`` (the new
        run's, e.g. ``scheduler.timesteps`` after ``set_timesteps(num_steps)``) are given and the
        calibration recorded its own, else at the same fraction of the run (``i * T / num_steps``).
        Reusing step ``i``'s output at step ``i + k`` then spans the old distance between their positions,
        and the error is read off the old ``[k, step]`` grid by linear interpolation (zero error at k = 0;
        linear extrapolation past the calibrated K when the new run has fewer steps). The result keeps
        the mean curves; the spread over runs is not carried over.
        """
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
            raise ProfileError(f"num_steps must be an integer >= 2, got {num_steps!r}")
        positions = self._positions(num_steps, timesteps)
        if num_steps == self.num_steps and timesteps is None:
            return self
        out = CalibrationProfile(self.lookahead, num_steps, runs=self.runs, macs=dict(self.macs), model=self.model)
        for path, b in self.branches.items():
            mean, _ = _pooled([b])
            grid = np.full((self.lookahead, num_steps), np.nan)
            for k in range(1, min(self.lookahead, num_steps - 1) + 1):
                starts = positions[: num_steps - k]
                distances = positions[k:] - starts
                grid[k - 1, : num_steps - k] = _read(mean, distances, starts)
            known = np.isfinite(grid)
            values = np.where(known, grid, 0.0)
            out.branches[path] = BranchErrors(b.key, b.block, values, values**2, known.astype(np.float64))
        if self.timesteps is not None:
            out.timesteps = np.interp(positions, np.arange(self.num_steps), self.timesteps)
        return out

    def _positions(self, num_steps: int, timesteps) -> np.ndarray:
        """Fractional old step index of every new step."""
        if timesteps is None or self.timesteps is None or not np.all(np.isfinite(self.timesteps)):
            return np.arange(num_steps) * (self.num_steps / num_steps)
        new = np.asarray(timesteps.cpu() if hasattr(timesteps, "cpu") else timesteps, dtype=np.float64).reshape(-1)
        if new.shape != (num_steps,):
            raise ProfileError(f"got {new.size} timesteps for a {num_steps}-step run")
        old = self.timesteps
        if np.any(np.diff(old) >= 0):
            raise ProfileError("the calibration's timesteps do not decrease; resample by step fraction instead")
        # np.interp needs increasing x: reverse the decreasing timesteps; outside the range, extend linearly
        steps = np.arange(self.num_steps, dtype=np.float64)
        pos = np.interp(new, old[::-1], steps[::-1])
        slope = (steps[-1] - steps[0]) / (old[-1] - old[0])
        pos = np.where(new > old[0], (new - old[0]) * slope, pos)
        return np.where(new < old[-1], steps[-1] + (new - old[-1]) * slope, pos)

    # ---------------------------------------------------------------------- io
    def save(self, path: str | Path) -> Path:
        """Write the profile as safetensors (arrays + JSON header)."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, np.ndarray] = {}
        index = {}
        for i, (name, b) in enumerate(self.branches.items()):
            index[name] = {"key": b.key, "block": b.block, "id": i}
            tensors[f"b{i}.total"] = np.ascontiguousarray(b.total, dtype=np.float64)
            tensors[f"b{i}.total_sq"] = np.ascontiguousarray(b.total_sq, dtype=np.float64)
            tensors[f"b{i}.count"] = np.ascontiguousarray(b.count, dtype=np.float64)
        tensors["timesteps"] = np.asarray(
            self.timesteps if self.timesteps is not None else np.full(self.num_steps, np.nan), dtype=np.float64
        )
        header = {
            "format": _FORMAT, "version": _VERSION, "lookahead": self.lookahead, "num_steps": self.num_steps,
            "runs": self.runs, "model": self.model, "macs": self.macs, "branches": index,
        }
        save_file(tensors, str(path), metadata={"smoothcache": json.dumps(header)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationProfile":
        """Read and validate a profile written by :meth:`save`."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ProfileError(f"calibration profile {path} does not exist")
        try:
            with safe_open(str(path), framework="numpy") as f:
                metadata = f.metadata() or {}
            arrays = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ProfileError(f"{path} is not a calibration profile (safetensors): {err}") from err
        try:
            header = json.loads(metadata["smoothcache"])
        except (KeyError, json.JSONDecodeError) as err:
            raise ProfileError(f"{path} has no smoothcache profile header") from err
        return cls._from_parts(header, arrays, str(path))

    @classmethod
    def _from_parts(cls, header: Mapping, arrays: Mapping[str, np.ndarray], where: str) -> "CalibrationProfile":
        def fail(msg: str) -> ProfileError:
            return ProfileError(f"{where}: {msg}")

        if not isinstance(header, Mapping) or header.get("format") != _FORMAT:
            raise fail("not a smoothcache calibration profile")
        if header.get("version") != _VERSION:
            raise fail(f"profile version {header.get('version')!r} is not supported (expected {_VERSION})")
        k, t = header.get("lookahead"), header.get("num_steps")
        if not (isinstance(k, int) and k >= 1 and isinstance(t, int) and t >= 1):
            raise fail(f"invalid lookahead {k!r} or num_steps {t!r}")
        macs = header.get("macs", {})
        if not isinstance(macs, Mapping) or not all(
            isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in macs.values()
        ):
            raise fail("invalid MAC counts")
        profile = cls(k, t, runs=int(header.get("runs", 0)), macs={str(a): float(b) for a, b in macs.items()},
                      model=str(header.get("model", "")))
        branches = header.get("branches")
        if not isinstance(branches, Mapping) or not branches:
            raise fail("the profile names no branches")
        for name, info in branches.items():
            try:
                key, block, i = str(info["key"]), int(info["block"]), int(info["id"])
                parts = [arrays[f"b{i}.{part}"] for part in ("total", "total_sq", "count")]
            except (KeyError, TypeError, ValueError) as err:
                raise fail(f"branch {name!r} is incomplete ({err})") from None
            for part in parts:
                if part.shape != (k, t) or not np.all(np.isfinite(part)):
                    raise fail(f"branch {name!r} has arrays of shape {part.shape} or non-finite values; "
                               f"expected finite [{k}, {t}]")
            if np.any(parts[2] < 0) or np.any(parts[0] < 0):
                raise fail(f"branch {name!r} has negative errors or counts")
            profile.branches[str(name)] = BranchErrors(key, block, *parts)
        timesteps = arrays.get("timesteps")
        if timesteps is not None:
            if timesteps.shape != (t,):
                raise fail(f"timesteps have shape {timesteps.shape}, expected ({t},)")
            profile.timesteps = timesteps
        return profile


def _read_row(mean: np.ndarray, k: int, starts: np.ndarray) -> np.ndarray:
    """Row ``k`` (0 = no reuse, zero error) of a ``[K, T]`` mean grid at fractional start steps."""
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
    """Errors for fractional reuse distances (in old steps) at fractional start steps."""
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


def _mean_timesteps(a: np.ndarray | None, na: int, b: np.ndarray | None, nb: int) -> np.ndarray | None:
    if a is None or na == 0:
        return b
    if b is None or nb == 0:
        return a
    return (a * na + b * nb) / (na + nb)
