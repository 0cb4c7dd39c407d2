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

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .errors import ProfileError
from .predictors import PREDICTORS, table_shape
from .resample import positions, resample_table
from .validate import check_file, check_int

__all__ = ["BranchErrors", "CalibrationProfile", "ErrorSums", "ProfileError"]

_FORMAT = "smoothcache-profile"
_VERSION = 2
_PARTS = ("total", "total_sq", "count")


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
    """

    lookahead: int
    num_steps: int
    errors: dict[str, BranchErrors] = field(default_factory=dict)
    runs: int = 0
    timesteps: np.ndarray | None = None
    macs: dict[str, float] = field(default_factory=dict)
    model: str = ""

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
            self.lookahead, num_steps, runs=self.runs, macs=dict(self.macs), model=self.model
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
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, np.ndarray] = {}
        index = {}
        for i, (name, b) in enumerate(self.errors.items()):
            index[name] = {"key": b.key, "block": b.block, "id": i}
            for predictor, sums in b.tables.items():
                for part in _PARTS:
                    tensors[f"b{i}.{predictor}.{part}"] = np.ascontiguousarray(
                        getattr(sums, part), dtype=np.float64
                    )
        tensors["timesteps"] = np.asarray(
            self.timesteps if self.timesteps is not None else np.full(self.num_steps, np.nan),
            dtype=np.float64,
        )
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "lookahead": self.lookahead,
            "num_steps": self.num_steps,
            "runs": self.runs,
            "model": self.model,
            "macs": self.macs,
            "branches": index,
            "predictors": self.predictors,
        }
        save_file(tensors, str(path), metadata={"smoothcache": json.dumps(header)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationProfile":
        """Read and validate a profile written by :meth:`save` (this version or the first)."""
        from safetensors import SafetensorError, safe_open
        from safetensors.numpy import load_file

        path = check_file(path, "calibration profile", error=ProfileError)
        try:
            with safe_open(str(path), framework="numpy") as f:
                metadata = f.metadata() or {}
            arrays = load_file(str(path))
        except (SafetensorError, OSError, ValueError, TypeError, KeyError) as err:
            if _looks_like_json(path):
                raise ProfileError(
                    f"{path} is a schedule JSON, not a calibration profile: give it where a schedule is "
                    "expected (SmoothCache(model, path), Schedule.load); a profile is what `smoothcache "
                    "calibrate MODEL --out profile.safetensors` or Calibrator(...).profile.save() writes"
                ) from None
            raise ProfileError(f"{path} is not a calibration profile (safetensors): {err}") from None
        if "smoothcache" not in metadata:
            raise ProfileError(f"{path} has no smoothcache profile header: it is a safetensors file, but not "
                               "one that smoothcache calibrate wrote")
        try:
            header = json.loads(metadata["smoothcache"])
        except (ValueError, RecursionError) as err:  # JSONDecodeError, an over-long integer, deep nesting
            problem = err if isinstance(err, json.JSONDecodeError) else "too deep, or a number too long"
            raise ProfileError(f"{path}: its smoothcache profile header is not valid JSON ({problem})") \
                from None
        return _from_parts(header, arrays, str(path))


def _looks_like_json(path: Path) -> bool:
    """The file starts like a JSON object (after a byte-order mark and white space; UTF-8, -16 or -32)."""
    with open(path, "rb") as f:
        return f.read(64).lstrip(b"\xef\xbb\xbf\xfe\xff\x00 \t\r\n").startswith(b"{")


def _count(value: object, minimum: int = 0) -> int | None:
    """``value`` if it is an integer (not a bool) of at least ``minimum``, else None."""
    return value if type(value) is int and value >= minimum else None


def _real(value: object) -> float | None:
    """``value`` as a finite, non-negative float, else None (bools, strings, inf, 10**400 included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _float_array(arrays: Mapping[str, np.ndarray], name: str, fail) -> np.ndarray | None:
    """The named array as float64, refusing other kinds (ints, bools, complex): smoothcache writes float64."""
    array = arrays.get(name)
    if array is None:
        return None
    if array.dtype.kind != "f":
        raise fail(f"array {name!r} has dtype {array.dtype}; a profile holds floating-point arrays (float64)")
    return np.array(array, dtype=np.float64)


_BRANCH_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _from_parts(header: Mapping, arrays: Mapping[str, np.ndarray], where: str) -> CalibrationProfile:
    def fail(msg: str) -> ProfileError:
        return ProfileError(f"{where}: {msg}")

    if not isinstance(header, Mapping) or header.get("format") != _FORMAT:
        raise fail('not a smoothcache calibration profile (no "format": "smoothcache-profile" in its header)')
    version = header.get("version")
    if _count(version) not in (1, _VERSION):
        raise fail(f"profile version {version!r} is not supported (expected 1 or {_VERSION}): "
                   "it was written by another version of smoothcache; calibrate again with this one")
    k, t = _count(header.get("lookahead"), 1), _count(header.get("num_steps"), 1)
    if k is None or t is None:
        raise fail(f"invalid lookahead {header.get('lookahead')!r} or num_steps {header.get('num_steps')!r}; "
                   "both must be integers >= 1")
    predictors = header.get("predictors", ["reuse"]) if version == _VERSION else ["reuse"]
    if not isinstance(predictors, list) or "reuse" not in predictors or any(
            not isinstance(p, str) or p not in PREDICTORS for p in predictors):
        raise fail(f"invalid predictors {predictors!r}; known: {list(PREDICTORS)}")
    predictors = list(dict.fromkeys(predictors))
    macs = header.get("macs", {})
    if not isinstance(macs, Mapping) or any(_real(v) is None for v in macs.values()):
        raise fail(f"invalid MAC counts {macs!r}; they must be finite numbers >= 0")
    runs = _count(header.get("runs", 0))
    if runs is None:
        raise fail(f"invalid run count {header.get('runs')!r}; it must be an integer >= 0")
    profile = CalibrationProfile(k, t, runs=runs, macs={str(a): _real(b) for a, b in macs.items()},
                                 model=str(header.get("model", "")))
    branches = header.get("branches")
    if not isinstance(branches, Mapping) or not branches:
        raise fail("the profile names no branches")
    ids = set()
    for name, info in branches.items():
        info = info if isinstance(info, Mapping) else {}
        key, block, i = info.get("key"), _count(info.get("block")), _count(info.get("id"))
        valid_key = isinstance(key, str) and _BRANCH_KEY.fullmatch(key)
        if not valid_key or block is None or i is None or i in ids:
            raise fail(f"branch {name!r} is incomplete or invalid ({branches[name]!r}): it needs a \"key\" "
                       "(a branch name), a \"block\" and a unique \"id\" (integers >= 0)")
        ids.add(i)
        tables = {}
        for predictor in predictors:
            prefix = f"b{i}." if version == 1 else f"b{i}.{predictor}."
            parts = [_float_array(arrays, prefix + part, fail) for part in _PARTS]
            if any(part is None for part in parts):
                missing = [prefix + part for part, a in zip(_PARTS, parts) if a is None]
                raise fail(f"branch {name!r} lacks the array(s) {missing}")
            shape = table_shape(predictor, k, t)
            for part in parts:
                if part.shape != shape or not np.all(np.isfinite(part)):
                    raise fail(
                        f"branch {name!r} {predictor} table has shape {part.shape} or non-finite values; "
                        f"expected finite {list(shape)}"
                    )
            if any(np.any(part < 0) for part in parts):
                raise fail(f"branch {name!r} has negative errors or counts")
            tables[predictor] = ErrorSums(*parts)
        profile.errors[str(name)] = BranchErrors(key, block, tables)
    timesteps = _float_array(arrays, "timesteps", fail)
    if timesteps is not None:
        if timesteps.shape != (t,):
            raise fail(f"timesteps have shape {timesteps.shape}, expected ({t},)")
        finite = np.isfinite(timesteps)
        if finite.any() and not finite.all():
            raise fail("some timesteps are NaN or inf: they must be all known or all unknown (NaN)")
        if np.isinf(timesteps).any():
            raise fail("timesteps contain inf")
        profile.timesteps = timesteps
    return profile


def _mean_timesteps(a: np.ndarray | None, na: int, b: np.ndarray | None, nb: int) -> np.ndarray | None:
    if a is None or na == 0:
        return b
    if b is None or nb == 0:
        return a
    return (a * na + b * nb) / (na + nb)
