"""Calibration profile files: safetensors (numpy arrays and a JSON header), written and read back validated.

Loading a profile someone sent you never runs code, and every malformed file raises a
:class:`~smoothcache.errors.ProfileError` naming the file and the problem. Version 3 adds the timings and
block costs of a calibration; versions 1 and 2 still load (without them).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import ProfileError
from .predictors import PREDICTORS, table_shape
from .validate import check_file

__all__ = ["CONDITIONS", "check_conditions", "read_profile", "write_profile"]

_FORMAT = "smoothcache-profile"
_VERSION = 3
_PARTS = ("total", "total_sq", "count")


def write_profile(profile: Any, path: str | Path) -> Path:
    """Write ``profile`` (a :class:`~smoothcache.profile.CalibrationProfile`) to ``path``."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    index = {}
    for i, (name, b) in enumerate(profile.errors.items()):
        index[name] = {"key": b.key, "block": b.block, "id": i}
        for predictor, sums in b.tables.items():
            for part in _PARTS:
                tensors[f"b{i}.{predictor}.{part}"] = np.ascontiguousarray(
                    getattr(sums, part), dtype=np.float64
                )
    timesteps = profile.timesteps if profile.timesteps is not None else np.full(profile.num_steps, np.nan)
    tensors["timesteps"] = np.asarray(timesteps, dtype=np.float64)
    header = {
        "format": _FORMAT,
        "version": _VERSION,
        "lookahead": profile.lookahead,
        "num_steps": profile.num_steps,
        "runs": profile.runs,
        "model": profile.model,
        "macs": profile.macs,
        "branches": index,
        "predictors": profile.predictors,
        "times": profile.times,
        "block_of": profile.block_of,
        "block_macs": profile.block_macs,
        "conditions": profile.conditions,
        "stochastic": profile.stochastic,
    }
    save_file(tensors, str(path), metadata={"smoothcache": json.dumps(header)})
    return path


def read_profile(path: str | Path) -> dict[str, Any]:
    """The validated contents of a profile file: its header fields, ``"timesteps"`` and ``"errors"`` (a list
    of ``(path, key, block, {predictor: (total, total_sq, count)})``)."""
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
        raise ProfileError(
            f"{path} has no smoothcache profile header: it is a safetensors file, but not "
            "one that smoothcache calibrate wrote"
        )
    try:
        header = json.loads(metadata["smoothcache"])
    except (ValueError, RecursionError) as err:  # JSONDecodeError, an over-long integer, deep nesting
        problem = err if isinstance(err, json.JSONDecodeError) else "too deep, or a number too long"
        raise ProfileError(f"{path}: its smoothcache profile header is not valid JSON ({problem})") from None
    return _validated(header, arrays, str(path))


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


def _validated(header: Mapping, arrays: Mapping[str, np.ndarray], where: str) -> dict[str, Any]:
    def fail(msg: str) -> ProfileError:
        return ProfileError(f"{where}: {msg}")

    if not isinstance(header, Mapping) or header.get("format") != _FORMAT:
        raise fail('not a smoothcache calibration profile (no "format": "smoothcache-profile" in its header)')
    version = header.get("version")
    if _count(version) not in range(1, _VERSION + 1):
        raise fail(
            f"profile version {version!r} is not supported (expected 1 to {_VERSION}): "
            "it was written by another version of smoothcache; calibrate again with this one"
        )
    k, t = _count(header.get("lookahead"), 1), _count(header.get("num_steps"), 1)
    if k is None or t is None:
        raise fail(
            f"invalid lookahead {header.get('lookahead')!r} or num_steps {header.get('num_steps')!r}; "
            "both must be integers >= 1"
        )
    predictors = header.get("predictors", ["reuse"]) if version >= 2 else ["reuse"]
    if (
        not isinstance(predictors, list)
        or "reuse" not in predictors
        or any(not isinstance(p, str) or p not in PREDICTORS for p in predictors)
    ):
        raise fail(f"invalid predictors {predictors!r}; known: {list(PREDICTORS)}")
    predictors = list(dict.fromkeys(predictors))
    macs = header.get("macs", {})
    if not isinstance(macs, Mapping) or any(_real(v) is None for v in macs.values()):
        raise fail(f"invalid MAC counts {macs!r}; they must be finite numbers >= 0")
    runs = _count(header.get("runs", 0))
    if runs is None:
        raise fail(f"invalid run count {header.get('runs')!r}; it must be an integer >= 0")
    out: dict[str, Any] = {
        "lookahead": k,
        "num_steps": t,
        "runs": runs,
        "macs": {str(a): _real(b) for a, b in macs.items()},
        "model": str(header.get("model", "")),
        "predictors": predictors,
        "errors": [],
        "timesteps": None,
        "conditions": _conditions(header.get("conditions", {}), fail),
        "stochastic": _flag(header.get("stochastic"), "stochastic", fail),
        **_costs(header, fail),
    }
    branches = header.get("branches")
    if not isinstance(branches, Mapping) or not branches:
        raise fail("the profile names no branches")
    ids = set()
    for name, info in branches.items():
        info = info if isinstance(info, Mapping) else {}
        key, block, i = info.get("key"), _count(info.get("block")), _count(info.get("id"))
        valid_key = isinstance(key, str) and _BRANCH_KEY.fullmatch(key)
        if not valid_key or block is None or i is None or i in ids:
            raise fail(
                f'branch {name!r} is incomplete or invalid ({branches[name]!r}): it needs a "key" '
                '(a branch name), a "block" and a unique "id" (integers >= 0)'
            )
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
            tables[predictor] = tuple(parts)
        out["errors"].append((str(name), key, block, tables))
    timesteps = _float_array(arrays, "timesteps", fail)
    if timesteps is not None:
        if timesteps.shape != (t,):
            raise fail(f"timesteps have shape {timesteps.shape}, expected ({t},)")
        finite = np.isfinite(timesteps)
        if finite.any() and not finite.all():
            raise fail("some timesteps are NaN or inf: they must be all known or all unknown (NaN)")
        if np.isinf(timesteps).any():
            raise fail("timesteps contain inf")
        out["timesteps"] = timesteps
    return out


#: The pipeline arguments a profile or schedule may record as the conditions it was calibrated under.
CONDITIONS = ("guidance_scale",)


def _flag(value: object, name: str, fail) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise fail(f"invalid {name} {value!r}: it must be true, false or null")
    return value


def _conditions(value: object, fail) -> dict[str, float]:
    """Validated calibration conditions: ``{"guidance_scale": 4.0}`` (known names, finite numbers)."""
    if not isinstance(value, Mapping):
        raise fail(f"invalid conditions {value!r}: they must be an object like {{\"guidance_scale\": 4.0}}")
    clean = {}
    for name, number in value.items():
        if name not in CONDITIONS or _real(number) is None:
            raise fail(
                f"invalid condition {name!r}: {number!r} (known: {list(CONDITIONS)}, each a finite "
                "number >= 0)"
            )
        clean[name] = _real(number)
    return clean


def check_conditions(value: object, error: type[Exception] = ProfileError) -> dict[str, float]:
    """``value`` as validated calibration conditions, else ``error`` naming the problem."""
    return _conditions(value, error)


def _costs(header: Mapping, fail) -> dict[str, Any]:
    """The block costs and timings of a version-3 header (empty for earlier versions), validated."""
    block_of, block_macs, times = (
        header.get("block_of", {}),
        header.get("block_macs", {}),
        header.get("times", {}),
    )
    if not isinstance(block_of, Mapping) or not all(isinstance(v, str) for v in block_of.values()):
        raise fail("invalid block_of: it must map branch paths to block paths")
    if not isinstance(block_macs, Mapping) or any(_real(v) is None for v in block_macs.values()):
        raise fail("invalid block MAC counts: they must be finite numbers >= 0")
    if not isinstance(times, Mapping):
        raise fail("invalid times: it must be an object")
    clean: dict[str, Any] = {}
    for name, value in times.items():
        if name in ("branches", "blocks"):
            if not isinstance(value, Mapping) or any(_real(v) is None for v in value.values()):
                raise fail(f"invalid times[{name!r}]: seconds must be finite numbers >= 0")
            clean[name] = {str(p): _real(v) for p, v in value.items()}
        elif name in ("call", "between", "tail") and _real(value) is not None:
            clean[name] = _real(value)
        else:
            raise fail(f"invalid times entry {name!r}: {value!r}")
    if clean and "call" not in clean:
        raise fail('times without the seconds of a denoiser call ("call")')
    return {
        "block_of": {str(a): b for a, b in block_of.items()},
        "block_macs": {str(a): _real(b) for a, b in block_macs.items()},
        "times": clean,
    }
