"""Schedule files: JSON in the original implementation's format, read back validated whatever their bytes.

A schedule file is a JSON object of 0/1 lists (UTF-8, or UTF-16/32, with or without a byte-order mark), plus
``"predictor"`` for forecasts. Every file that is not one raises a :class:`~smoothcache.errors.ScheduleError`
naming the file and the problem; a calibration profile given as a schedule says how to plan one from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from .errors import ScheduleError
from .validate import check_file

__all__ = ["plan_hint", "read_schedule", "write_schedule"]

#: Files larger than this are not schedules (a 50-step per-block schedule of DiT-XL is about 10 KB).
_MAX_BYTES = 64 * 2**20


def plan_hint(path: object = "PROFILE") -> str:
    return ("plan a schedule from it with Schedule.for_budget(profile, speedup=2.0) (or "
            "Schedule.from_profile(profile, alpha=0.08)), or on the command line: "
            f"smoothcache schedule {path} --speedup 2 --out schedule.json")


def _read_json(path: Path) -> object:
    """The JSON content of a schedule file, or a ScheduleError naming the file and what is wrong with it."""
    try:
        with open(path, "rb") as f:
            too_large = os.fstat(f.fileno()).st_size > _MAX_BYTES
            raw = f.read(16) if too_large else f.read()
    except OSError as err:
        raise ScheduleError(f"cannot read schedule file {path}: {err.strerror or err}") from None
    try:
        if too_large:
            raise ScheduleError(f"schedule file {path} is larger than {_MAX_BYTES >> 20} MiB; a schedule "
                                "JSON is a few KB: is this the right file?")
        if not raw.strip():
            raise ScheduleError(f"schedule file {path} is empty; it needs a JSON object of 0/1 lists")
        try:
            text = raw.decode(json.detect_encoding(raw))
        except UnicodeDecodeError as err:
            bad = raw[err.start:err.start + 1]
            raise ScheduleError(f"schedule file {path} is not UTF-8 text (nor UTF-16/32): byte {err.start} "
                                f"({bad!r}) is not {err.encoding}; save it as UTF-8") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ScheduleError(f"schedule file {path} is not valid JSON: {err}") from None
        except RecursionError:
            raise ScheduleError(f"schedule file {path} nests JSON too deeply to be a schedule "
                                "(a schedule is an object of flat lists)") from None
        except ValueError as err:  # an integer of more than sys.get_int_max_str_digits() digits
            raise ScheduleError(f"schedule file {path} is not a schedule: it holds a number too long to read "
                                f"({str(err).split(':')[0]})") from None
    except ScheduleError:
        if _looks_like_safetensors(raw):
            raise ScheduleError(f"{path} is a calibration profile, not a schedule JSON: "
                                f"{plan_hint(path)}") from None
        raise


def _looks_like_safetensors(raw: bytes) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then the JSON header."""
    return len(raw) >= 10 and raw[8:9] == b"{" and int.from_bytes(raw[:8], "little") >= 2




def read_schedule(path: str | Path) -> tuple[Path, dict]:
    """The checked path and the JSON object of a schedule file."""
    path = check_file(path, "schedule file", error=ScheduleError)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ScheduleError(f"schedule file {path} must hold a JSON object, got {type(data).__name__}")
    return path, data


def write_schedule(path: str | Path, content: Mapping[str, Any]) -> Path:
    """Write a schedule's JSON content, one key per line (readable and diff-friendly)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"    {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in content.items()]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    return path
