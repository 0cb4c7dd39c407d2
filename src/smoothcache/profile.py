"""Calibration profiles: the error tables a calibration recorded, saved once and planned from many times.

For every wrapped branch (one block's ``attn1``, say) the profile keeps running sums over calibration
samples of each predictor's relative L1 error ``|y_s - prediction|_1 / |y_s|_1``:

- ``reuse``, shape ``[K, T]``: entry ``[k-1, b]`` is the error at step ``b + k`` of reusing step ``b``'s
  output;
- ``linear``, shape ``[K, D, T]``: entry ``[k-1, d-1, b]`` is the error at step ``b + k`` of extrapolating
  linearly (in timestep) from the outputs of steps ``b - d`` and ``b``.

Entries without a sample (past the end, no source step) have count 0 and read as NaN. Files are
safetensors (numpy arrays plus a JSON header), so loading a profile someone sent you never runs code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import ProfileError
from .predictors import PREDICTORS, table_shape
from .profile_file import read_profile, write_profile
from .resample import positions, resample_table
from .validate import check_int

__all__ = ["BranchErrors", "CalibrationProfile", "ErrorSums", "ProfileError", "mean_times", "same_conditions"]


@dataclass
class ErrorSums:
    """Running sums of one error table over calibration samples (three arrays of the table's shape)."""

    total: np.ndarray
    total_sq: np.ndarray
    count: np.ndarray

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> "ErrorSums":
        return cls(np.zeros(shape), np.zeros(shape), np.zeros(shape))

    @classmethod
    def of_mean(cls, mean: np.ndarray) -> "ErrorSums":
        """One sample of ``mean`` where it is finite (used for resampled tables)."""
        known = np.isfinite(mean)
        values = np.where(known, mean, 0.0)
        return cls(values, values**2, known.astype(np.float64))

    def add(self, index: tuple[int, ...], value: float) -> None:
        """One sample at ``index``."""
        self.total[index] += value
        self.total_sq[index] += value * value
        self.count[index] += 1

    def __add__(self, other: "ErrorSums") -> "ErrorSums":
        return ErrorSums(self.total + other.total, self.total_sq + other.total_sq, self.count + other.count)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over samples; NaN where there is no sample."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self.count > 0, self.total / np.maximum(self.count, 1), np.nan)
            var = np.where(self.count > 0, self.total_sq / np.maximum(self.count, 1) - mean**2, np.nan)
        return mean, np.sqrt(np.clip(var, 0.0, None))


@dataclass
class BranchErrors:
    """The error tables of one branch of one block, by predictor name."""

    key: str
    block: int
    tables: dict[str, ErrorSums]

    @classmethod
    def empty(
        cls, key: str, block: int, lookahead: int, num_steps: int, predictors: Iterable[str] = ("reuse",)
    ) -> "BranchErrors":
        return cls(key, block, {p: ErrorSums.zeros(table_shape(p, lookahead, num_steps)) for p in predictors})

    def add(self, k: int, step: int, value: float, spacing: int | None = None) -> None:
        """One sample: the error at step ``step + k`` predicted from ``step`` (reuse), or from
        ``step - spacing`` and ``step`` (linear)."""
        if spacing is None:
            self.tables["reuse"].add((k - 1, step), value)
        else:
            self.tables["linear"].add((k - 1, spacing - 1, step), value)


@dataclass
class CalibrationProfile:
    """Error tables of a calibration: per branch module, per predictor.

    Args:
        lookahead: K, the largest number of steps a prediction spans.
        num_steps: T, the number of denoising steps of the calibration runs.
        errors: module path -> :class:`BranchErrors`.
        runs: number of generations accumulated.
        timesteps: mean timestep of each step (all NaN when the denoiser got none), for resampling.
        macs: multiply-accumulates of one denoiser call: ``"total"`` and one entry per branch module path.
        model: class name of the calibrated model.
        times: median seconds measured while calibrating (:mod:`smoothcache.timing`): ``"call"``,
            ``"between"``, ``"tail"``, and per path ``"branches"`` and ``"blocks"``; empty if not recorded.
        block_of: branch module path -> the path of its block.
        block_macs: block path -> multiply-accumulates of one call of the block.
        conditions: the pipeline arguments the calibration generations ran with, where a diffusers pipeline
            ran them (``{"guidance_scale": 4.0}``); schedules planned from the profile carry them, and warn
            when used under others.
        stochastic: whether the sampler of the calibration generations draws fresh noise at each step (SDE and
            ancestral samplers; None when no diffusers pipeline ran them). The recommended mode then plans
            reuse runs (:func:`smoothcache.planning.plan`).
    """

    lookahead: int
    num_steps: int
    errors: dict[str, BranchErrors] = field(default_factory=dict)
    runs: int = 0
    timesteps: np.ndarray | None = None
    macs: dict[str, float] = field(default_factory=dict)
    model: str = ""
    times: dict[str, Any] = field(default_factory=dict)
    block_of: dict[str, str] = field(default_factory=dict)
    block_macs: dict[str, float] = field(default_factory=dict)
    conditions: dict[str, float] = field(default_factory=dict)
    stochastic: bool | None = None

    def __repr__(self) -> str:
        blocks = len({b.block for b in self.errors.values()})
        return (
            f"CalibrationProfile({self.model or 'model'}: {self.num_steps} steps, K={self.lookahead}, "
            f"{self.runs} run(s), keys {self.keys} over {blocks} block(s), predictors {self.predictors})"
        )

    # ------------------------------------------------------------------ views
    @property
    def keys(self) -> list[str]:
        """Branch keys (``attn1``, ``ff``...) in first-seen order."""
        return list(dict.fromkeys(b.key for b in self.errors.values()))

    @property
    def predictors(self) -> list[str]:
        """Predictors whose errors were recorded (``reuse`` always)."""
        first = next(iter(self.errors.values()), None)
        return [p for p in PREDICTORS if first is not None and p in first.tables]

    def blocks(self, key: str) -> list[int]:
        """Block indices recorded for a branch key."""
        return sorted({b.block for b in self.errors.values() if b.key == key})

    def select(self, key: str, block: int | None = None) -> list[BranchErrors]:
        """The branch modules of ``key`` (in ``block``, or in every block)."""
        chosen = [b for b in self.errors.values() if b.key == key and (block is None or b.block == block)]
        if not chosen:
            where = "" if block is None else f" in block {block}"
            raise ProfileError(f"the profile has no branch {key!r}{where}; it has {self.keys}")
        return chosen

    def mean_errors(
        self, key: str, block: int | None = None, predictor: str = "reuse"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread (std over samples) of a predictor's errors for ``key``, pooled over runs and over
        blocks (or of one ``block``); NaN where nothing was recorded."""
        if predictor not in self.predictors:
            raise ProfileError(
                f"this profile did not record the {predictor!r} predictor's errors (it has "
                f"{self.predictors}); "
                "calibrate again with this version of smoothcache"
            )
        items = self.select(key, block)
        pooled = items[0].tables[predictor]
        for item in items[1:]:
            pooled = pooled + item.tables[predictor]
        return pooled.mean_std()

    def curves(
        self, key: str, block: int | None = None, predictor: str = "reuse"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Deprecated name of :meth:`mean_errors`."""
        warnings.warn("CalibrationProfile.curves() is now mean_errors()", DeprecationWarning, stacklevel=2)
        return self.mean_errors(key, block, predictor)

    def rows(self, key: str, block: int | None = None) -> list[list[float]]:
        """Deprecated: the mean reuse errors per lookahead k, by start step (length T - k); use
        :meth:`mean_errors`."""
        warnings.warn(
            "CalibrationProfile.rows() is deprecated; use mean_errors(key, block)[0]",
            DeprecationWarning,
            stacklevel=2,
        )
        mean, _ = self.mean_errors(key, block)
        return [
            [float(v) for v in mean[k - 1, : max(self.num_steps - k, 0)]]
            for k in range(1, self.lookahead + 1)
        ]

    def noise_spread(self, predictor: str = "reuse") -> float | None:
        """How much the errors vary between calibration generations (noise draws): the median, over every
        branch and table entry recorded in two generations or more, of their standard deviation over their
        mean. None when no entry was recorded twice."""
        ratios = []
        for branch in self.errors.values():
            sums = branch.tables.get(predictor)
            if sums is None:
                continue
            mean, std = sums.mean_std()
            keep = (sums.count >= 2) & (mean > 0)
            ratios.append((std[keep] / mean[keep]).ravel())
        values = np.concatenate(ratios) if ratios else np.zeros(0)
        return float(np.median(values)) if values.size else None

    # -------------------------------------------------------------- combining
    def merge(self, other: "CalibrationProfile") -> "CalibrationProfile":
        """A profile holding the samples of both (same model, lookahead, step count and predictors)."""
        if (self.lookahead, self.num_steps) != (other.lookahead, other.num_steps):
            raise ProfileError(
                f"cannot merge a profile of K={other.lookahead}, {other.num_steps} steps into one of "
                f"K={self.lookahead}, {self.num_steps} steps"
            )
        if set(self.errors) != set(other.errors) or self.predictors != other.predictors:
            raise ProfileError("cannot merge profiles recorded on different branches or predictors")
        merged = CalibrationProfile(
            self.lookahead,
            self.num_steps,
            runs=self.runs + other.runs,
            macs=dict(self.macs or other.macs),
            model=self.model or other.model,
            times=mean_times(self.times, self.runs, other.times, other.runs),
            block_of={**other.block_of, **self.block_of},
            block_macs=dict(self.block_macs or other.block_macs),
            conditions=same_conditions(self.conditions, other.conditions),
            stochastic=None if self.stochastic is None and other.stochastic is None
            else bool(self.stochastic or other.stochastic),
        )
        for path, mine in self.errors.items():
            theirs = other.errors[path].tables
            merged.errors[path] = BranchErrors(
                mine.key, mine.block, {p: sums + theirs[p] for p, sums in mine.tables.items()}
            )
        merged.timesteps = _mean_timesteps(self.timesteps, self.runs, other.timesteps, other.runs)
        return merged

    def resample(self, num_steps: int, timesteps=None) -> "CalibrationProfile":
        """The tables mapped to a run of ``num_steps`` steps, for a schedule at another step count.

        ``timesteps``: the new run's (e.g. ``scheduler.timesteps`` after ``set_timesteps(num_steps)``), to
        place its steps by timestep instead of by fraction of the run (:mod:`smoothcache.resample`).
        """
        check_int(num_steps, "num_steps", minimum=2, error=ProfileError)
        where = positions(self.num_steps, self.timesteps, num_steps, timesteps)
        if num_steps == self.num_steps and timesteps is None:
            return self
        out = CalibrationProfile(
            self.lookahead,
            num_steps,
            runs=self.runs,
            macs=dict(self.macs),
            model=self.model,
            times=dict(self.times),
            block_of=dict(self.block_of),
            block_macs=dict(self.block_macs),
            conditions=dict(self.conditions),
            stochastic=self.stochastic,
        )
        for path, b in self.errors.items():
            out.errors[path] = BranchErrors(
                b.key,
                b.block,
                {
                    p: ErrorSums.of_mean(resample_table(p, sums.mean_std()[0], where))
                    for p, sums in b.tables.items()
                },
            )
        if self.timesteps is not None:
            out.timesteps = np.interp(where, np.arange(self.num_steps), self.timesteps)
        return out

    # ---------------------------------------------------------------------- io
    @classmethod
    def coerce(cls, profile: "CalibrationProfile | str | Path") -> "CalibrationProfile":
        """A profile, or the path of a saved one (loaded and validated)."""
        if isinstance(profile, CalibrationProfile):
            return profile
        if isinstance(profile, (str, Path)):
            return cls.load(profile)
        raise TypeError(
            f"expected a CalibrationProfile or the path of a saved one, got {type(profile).__name__}"
        )

    def save(self, path: str | Path) -> Path:
        """Write the profile as safetensors (arrays + JSON header)."""
        return write_profile(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationProfile":
        """Read and validate a profile written by :meth:`save` (this version or an earlier one)."""
        parts = read_profile(path)
        profile = cls(
            parts["lookahead"],
            parts["num_steps"],
            runs=parts["runs"],
            macs=parts["macs"],
            model=parts["model"],
            times=parts["times"],
            block_of=parts["block_of"],
            block_macs=parts["block_macs"],
            timesteps=parts["timesteps"],
            conditions=parts["conditions"],
            stochastic=parts["stochastic"],
        )
        for name, key, block, tables in parts["errors"]:
            profile.errors[name] = BranchErrors(key, block, {p: ErrorSums(*t) for p, t in tables.items()})
        return profile


def same_conditions(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """The conditions two calibrations share: a value both recorded alike, or one only one of them
    recorded; a value they recorded differently is left out (the merged calibration covers both)."""
    merged = {**b, **a}
    return {k: v for k, v in merged.items() if a.get(k, v) == b.get(k, v)}


def _mean_timesteps(a: np.ndarray | None, na: int, b: np.ndarray | None, nb: int) -> np.ndarray | None:
    if a is None or na == 0:
        return b
    if b is None or nb == 0:
        return a
    return (a * na + b * nb) / (na + nb)


def mean_times(a: dict, na: int, b: dict, nb: int) -> dict:
    """The timings of two profiles, weighted by their runs (one side's where the other has none)."""
    if not a or not b:
        return dict(a or b)

    def mean(x: float, y: float) -> float:
        return (x * na + y * nb) / max(na + nb, 1)

    out = {k: mean(a[k], b[k]) for k in ("call", "between", "tail") if k in a and k in b}
    for part in ("branches", "blocks"):
        mine, theirs = a.get(part, {}), b.get(part, {})
        out[part] = {p: mean(mine[p], theirs[p]) if p in theirs else mine[p] for p in mine}
    return out
